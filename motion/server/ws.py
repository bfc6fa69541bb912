"""The WebSocket protocols: ``/ws/voice`` (text in; audio, face and push out) and ``/ws/face`` (audio in, face out).

Both are jobs under the same admission as every route (:mod:`motion.server.jobs`). Every malformed message is answered
with ``{"type": "error", "status": 400, "detail": ...}`` and a close (1008), never a dropped socket; a socket that sends
nothing for ``ws_idle_s`` seconds while the server waits for it is closed the same way (status 408).
"""

from __future__ import annotations

import asyncio
import json
import math
import queue
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from bert_vits2.synthesis import STREAMED_TEXT
from motion.arkit import NAMES
from motion.constants import LIVELINK_PORT, VMC_PORT
from motion.face.emotion import EmotionMarks, EmotionStream, EmotionTimeline, streamed_tags
from motion.face.live_run import in_live_thread
from motion.face.streaming import AudioFaceStream
from motion.server.encode import audio_message, face_message, pcm_bytes
from motion.server.errors import ApiError, Cancelled, as_api_error, error_body
from motion.server.params import ApiSynthesis, WsOptions, ws_options
from motion.server.push import FacePusher, parse_target
from motion.server.state import FACE_FPS, ServerState

__all__ = ["FaceSession", "VoiceSession"]

_END = object()
CLOSE_CODES = {401: 4401, 503: 1013, 500: 1011}  # otherwise 1008 (policy violation: a bad message)


async def send_error(ws: WebSocket, err: ApiError) -> None:
    """The error message, then the close; the client may be gone already."""
    try:
        await ws.send_text(json.dumps({"type": "error", **error_body(err)}))
        await ws.close(code=CLOSE_CODES.get(err.http_status, 1008))
    except (RuntimeError, WebSocketDisconnect, OSError):
        pass


async def receive_json(ws: WebSocket, idle_s: float | None) -> dict[str, Any]:
    """The next message as a JSON object (400 for binary data, bad JSON or a non-object; 408 after ``idle_s``)."""
    msg = await _receive(ws, idle_s)
    if msg.get("text") is None:
        raise ApiError(400, "expected a JSON text message here, got binary data")
    return parse_object(msg["text"])


def parse_object(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except ValueError as err:
        raise ApiError(400, f"the message is not JSON ({err})") from None
    if not isinstance(obj, dict):
        raise ApiError(400, f"a message must be a JSON object, got {type(obj).__name__}")
    return obj


async def _receive(ws: WebSocket, idle_s: float | None) -> dict[str, Any]:
    try:
        msg = await asyncio.wait_for(ws.receive(), idle_s)
    except asyncio.TimeoutError:
        raise ApiError(408, f"nothing received for {idle_s:g} s: closing (the server's --ws-idle-timeout)") from None
    if msg["type"] == "websocket.disconnect":
        raise Cancelled("the client disconnected")
    return msg


async def _session(ws: WebSocket, state: ServerState, authorise: Callable[[Any, Any], None],
                   body: Callable[[], Awaitable[None]]) -> None:
    """Accept, check the token, run ``body``; every error becomes an error message and a close."""
    await ws.accept()
    try:
        authorise(ws.headers, ws.query_params)
        await body()
    except (WebSocketDisconnect, Cancelled):
        return
    except Exception as err:  # noqa: BLE001 - every failure is answered on the socket (500s are logged)
        await send_error(ws, as_api_error(err))


class TextFeed:
    """Text pieces from the client to the voice's stream (read in the job pool): an iterable that blocks until the next piece
    (``end`` finishes it: the last sentence is spoken; ``cancel`` stops it: nothing more is spoken)."""

    _END, _CANCEL = object(), object()

    def __init__(self, max_chars: int) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self.max_chars, self.chars, self.ended = int(max_chars), 0, False

    def put(self, text: Any) -> None:
        if self.ended:
            raise ApiError(400, "text after end_text: start a new request for more text")
        if not isinstance(text, str):
            raise ApiError(400, f"a text message needs 'text' as a string, got {type(text).__name__}")
        self.chars += len(text)
        if self.chars > self.max_chars:
            raise ApiError(413, f"the streamed text passed {self.max_chars} characters, this server's limit per "
                                "request: start a new request")
        self._queue.put(text)

    def end(self) -> None:
        self.ended = True
        self._queue.put(self._END)

    def cancel(self) -> None:
        self.ended = True
        self._queue.put(self._CANCEL)

    def __iter__(self) -> Iterator[str]:
        while (item := self._queue.get()) is not self._END:
            if item is self._CANCEL:
                raise Cancelled("the text stream was cancelled")
            yield item


class VoiceSession:
    """``/ws/voice``: one request message, then ``start`` / (``audio`` + binary) / ``face`` / ``end`` messages;
    the client may send ``playing`` (starts the push clock) and ``cancel``. With ``"text_stream": true`` the text
    comes afterwards in ``{"type": "text", "text": ...}`` messages closed by ``{"type": "end_text"}``; speech starts
    with the first complete sentence."""

    def __init__(self, ws: WebSocket, state: ServerState) -> None:
        self.ws, self.state = ws, state
        self.pusher: FacePusher | None = None
        self.feed: TextFeed | None = None
        self.sent_samples = self.sent_frames = 0

    async def run(self, authorise: Callable[[Any, Any], None]) -> None:
        try:
            await _session(self.ws, self.state, authorise, self._body)
        finally:
            if self.pusher is not None:
                self.pusher.stop()

    async def _body(self) -> None:
        cfg = self.state.config
        msg = await receive_json(self.ws, cfg.ws_idle_s)
        opts = ws_options(msg)
        streamed = self._text_stream(msg)
        if streamed:
            msg = {**msg, "text": STREAMED_TEXT}
        api = ApiSynthesis.from_json(msg)
        entry, request = api.resolve(self.state.registry, cfg.max_chars)
        timeline = api.emotion_timeline() if opts.face else None  # the emotion parameter and the text's tags
        if streamed:  # tags in streamed text: removed as the text comes (never spoken), placed by the sentences
            if timeline is None and opts.face:
                timeline = EmotionTimeline(EmotionMarks(""))
            marks = EmotionMarks("")
            if timeline is not None:
                timeline.marks = marks
            streamed["text_pieces"] = streamed_tags(streamed["text_pieces"], marks)
        self.emotion = EmotionStream(timeline) if timeline is not None else None
        self.pusher = self._pusher(opts)
        async with self.state.admission.job("ws_voice"):
            await self.ws.send_text(json.dumps({
                "type": "start", "sample_rate": int(entry.voice.sample_rate), "audio_format": opts.audio_format,
                "fps": FACE_FPS if opts.face else None, "names": list(NAMES) if opts.face else None,
                "voice": entry.voice.name, "face": self.state.face_maker.describe_result() if opts.face else None}))
            await self._stream(self.state.synthesis(entry, request, opts.face, streamed=streamed), opts)

    def _text_stream(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """The streamed-text options of a ``"text_stream": true`` request (None for a whole text)."""
        flag, min_clause = msg.get("text_stream", False), msg.get("min_clause_chars")
        if not isinstance(flag, bool):
            raise ApiError(400, f"text_stream must be true or false, got {flag!r}")
        if not flag:
            return None
        if msg.get("text") not in (None, ""):
            raise ApiError(400, "text_stream: send the text in {\"type\": \"text\"} messages, not in the request")
        if min_clause is not None and (isinstance(min_clause, bool) or not isinstance(min_clause, int)
                                       or min_clause < 1):
            raise ApiError(400, f"min_clause_chars must be a whole number of at least 1, got {min_clause!r}")
        self.feed = TextFeed(self.state.config.max_chars)
        return {"text_pieces": self.feed, "min_clause_chars": min_clause}

    def _pusher(self, opts: WsOptions) -> FacePusher | None:
        if not opts.push:
            return None
        try:
            ll = parse_target(opts.push["livelink"], LIVELINK_PORT) if opts.push.get("livelink") else None
            vmc = parse_target(opts.push["vmc"], VMC_PORT) if opts.push.get("vmc") else None
            vts = parse_target(opts.push["vts"], 8001) if opts.push.get("vts") else None  # VTube Studio's API port
        except ValueError as err:
            raise ApiError(400, f"push: {err}") from None
        for target in (ll, vmc, vts):
            if target and target[0] not in self.state.config.livelink_hosts:
                raise ApiError(403, f"push to {target[0]} is not allowed; this server pushes only to "
                                    f"{', '.join(self.state.config.livelink_hosts)} (--push-host)")
        pusher = FacePusher(FACE_FPS, ll, vmc, vts=vts)
        pusher.start()
        return pusher

    async def _stream(self, stream: Any, opts: WsOptions) -> None:
        reader = asyncio.ensure_future(self._read_controls())
        t0 = asyncio.get_running_loop().time()
        try:
            while (item := await _next_or(stream, reader)) is not _END:
                emotion = getattr(self, "emotion", None)
                for out in (emotion.feed(item) if emotion is not None else [item]):
                    await self._send(out, opts)
            await self.ws.send_text(json.dumps({
                "type": "end", "samples": self.sent_samples, "frames": self.sent_frames,
                "elapsed_s": round(asyncio.get_running_loop().time() - t0, 4)}))
            if self.pusher is not None:
                await self._finish_push(reader)
            await self.ws.close()
        finally:
            if self.feed is not None and not self.feed.ended:
                self.feed.cancel()
            stream.close()
            reader.cancel()

    async def _send(self, item: Any, opts: WsOptions) -> None:
        chunk = getattr(item, "chunk", item)
        if len(chunk.audio):
            await self.ws.send_text(audio_message(chunk))
            await self.ws.send_bytes(pcm_bytes(chunk.audio, opts.audio_format))
            self.sent_samples += len(chunk.audio)
        face = getattr(item, "face", None)
        if face is not None and len(face):
            await self.ws.send_text(face_message(item.face_start, face))
            self.sent_frames += len(face)
            if self.pusher is not None:
                self.pusher.add(item.face_start, face)

    async def _read_controls(self) -> None:
        """Client messages while streaming; returns on ``cancel``, raises on a bad message or a disconnect. While
        streamed text is still open the idle timeout applies (the server is waiting for the client)."""
        while True:
            open_text = self.feed is not None and not self.feed.ended
            msg = await receive_json(self.ws, self.state.config.ws_idle_s if open_text else None)
            kind = msg.get("type")
            if kind == "cancel":
                return
            if kind == "text" and self.feed is not None:
                self.feed.put(msg.get("text"))
            elif kind == "end_text" and self.feed is not None:
                self.feed.end()
            elif kind == "playing":
                self._playing(msg)
            else:
                expected = "text, end_text, playing or cancel" if self.feed is not None else "playing or cancel"
                raise ApiError(400, f"unknown message type {kind!r} while streaming: send {expected}")

    def _playing(self, msg: dict[str, Any]) -> None:
        offset = msg.get("offset_ms", 0.0)
        if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not math.isfinite(offset) \
                or offset < 0:
            raise ApiError(400, f"playing: offset_ms must be a number of milliseconds >= 0, got {offset!r}")
        if self.pusher is not None:
            self.pusher.playing(float(offset) / 1000.0)

    async def _finish_push(self, reader: asyncio.Future) -> None:
        """Keep the socket open while the face is pushed (the client can still send ``playing``), then report."""
        self.pusher.finish()
        joined = asyncio.get_running_loop().run_in_executor(None, self.pusher.join)
        await asyncio.wait({joined, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader.done():
            reader.result()  # a bad message or a disconnect ends the session here
            raise Cancelled()
        stats = self.pusher.stats
        await self.ws.send_text(json.dumps({"type": "push_done", "sent": stats.sent, "skipped": stats.skipped,
                                            "error": stats.error}))


async def _next_or(stream: Any, reader: asyncio.Future) -> Any:
    """The stream's next item, unless the client's reader ends first (cancel, a bad message or a disconnect)."""
    nxt = asyncio.ensure_future(stream.__anext__())
    await asyncio.wait({nxt, reader}, return_when=asyncio.FIRST_COMPLETED)
    if nxt.done():
        try:
            return nxt.result()
        except StopAsyncIteration:
            return _END
    nxt.cancel()
    reader.result()  # raises the client's error or disconnect
    raise Cancelled()


class FaceSession:
    """``/ws/face``: a JSON header ``{"sample_rate": 44100, "audio_format": "s16"|"f32", "mode": "live"|"segments"}``,
    then binary PCM chunks (mono), then ``{"type": "end"}``.

    ``live`` (the default) answers each chunk with the frames whose audio (plus the causal head's lookahead) has
    arrived (:class:`motion.face.live.LiveFace`), so a speaker's face follows within ``lookahead_s`` + one chunk +
    compute; ``segments`` runs the offline face on segments cut at pauses or every 2 s (:class:`AudioFaceStream`:
    the offline default head's quality, up to ~2 s later)."""

    MODES = ("live", "segments")

    def __init__(self, ws: WebSocket, state: ServerState) -> None:
        self.ws, self.state = ws, state

    async def run(self, authorise: Callable[[Any, Any], None]) -> None:
        await _session(self.ws, self.state, authorise, self._body)

    async def _body(self) -> None:
        head = await receive_json(self.ws, self.state.config.ws_idle_s)
        sr, fmt = head.get("sample_rate", 44100), head.get("audio_format", "s16")
        mode = head.get("mode", "live")
        if isinstance(sr, bool) or not isinstance(sr, int) or not 8000 <= sr <= 192000 or fmt not in ("s16", "f32"):
            raise ApiError(400, "header: sample_rate a whole number 8000..192000 and audio_format s16 or f32")
        if mode not in self.MODES:
            raise ApiError(400, f"header: mode must be \"live\" (frames as the audio arrives) or \"segments\" "
                                f"(the offline face per pause-cut segment), got {mode!r}")
        dtype = "<i2" if fmt == "s16" else "<f4"
        async with self.state.admission.job("ws_face"):
            if mode == "segments":
                stream = AudioFaceStream(self.state.face_maker, sr)
                await self.ws.send_text(json.dumps({"type": "start", "fps": stream.fps, "mode": mode}))
                await self._feed(stream.feed, stream.close, sr, dtype)
                return
            live = await in_live_thread(_live_face, sr)
            await self.ws.send_text(json.dumps({"type": "start", "fps": FACE_FPS, "mode": mode,
                                                "lookahead_s": live.lookahead_s, "names": list(NAMES)}))
            frames_out = [0]

            def feed(pcm: np.ndarray) -> list[Any]:
                return _numbered(frames_out, live.feed(pcm))

            await self._feed(feed, lambda: _numbered(frames_out, live.close()), sr, dtype, live=True)

    async def _feed(self, feed: Callable[[np.ndarray], list[Any]], close: Callable[[], list[Any]], sr: int,
                    dtype: str, live: bool = False) -> None:
        cfg, total = self.state.config, 0
        # live: the live-face thread (one torch thread), not the synthesis pool (a busy pool would hold frames back)
        call = in_live_thread if live else self.state.pool.call
        while True:
            msg = await _receive(self.ws, cfg.ws_idle_s)
            if msg.get("bytes") is not None:
                pcm = _pcm(msg["bytes"], dtype)
                total += len(pcm)
                if total > cfg.max_audio_s * sr:
                    raise ApiError(413, f"more than {cfg.max_audio_s:g} s of audio in one stream (the server's "
                                        "--max-seconds): start a new stream")
                outs = await call(feed, pcm)
            else:
                kind = parse_object(msg.get("text") or "").get("type")
                if kind != "end":
                    raise ApiError(400, f"unknown message type {kind!r}: send binary PCM, then {{\"type\": \"end\"}}")
                outs = await call(close)
            for o in outs:
                await self.ws.send_text(face_message(o.start, o.frames))
            if msg.get("bytes") is None:
                await self.ws.send_text(json.dumps({"type": "end", "samples": total}))
                await self.ws.close()
                return


@dataclass
class _Frames:
    start: int
    frames: np.ndarray


def _numbered(counter: list[int], frames: np.ndarray) -> list[_Frames]:
    """Live frames as one ``face`` message numbered on the stream's grid (none when there are no new frames)."""
    if not len(frames):
        return []
    out = _Frames(counter[0], frames)
    counter[0] += len(frames)
    return [out]


def _live_face(sample_rate: int) -> Any:
    from motion.face.live import LiveFace  # torch + the causal head: loaded by the first live stream

    # threads=None: in_live_thread sets torch's threads for each step only (LiveFace's default would set them for good)
    return LiveFace(sample_rate=sample_rate, threads=None)


def _pcm(data: bytes, dtype: str) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    if len(data) % size:
        raise ApiError(400, f"a binary message must hold whole {size}-byte samples; got {len(data)} bytes")
    pcm = np.frombuffer(data, dtype=dtype)
    if dtype == "<f4" and not np.isfinite(pcm).all():
        raise ApiError(400, "the f32 audio holds NaN or infinite samples")
    return pcm
