"""The FastAPI app (this module imports FastAPI; ``motion.server`` imports it only when an app is created):
upstream-compatible ``/voice`` + ``/models/*``, speech with a face, streaming over HTTP and
WebSocket, optional face push to Live Link / VMC. :func:`create_app` builds it from a :class:`ServerConfig`.

Every synthesis runs in a worker thread behind an admission queue (``workers`` at a time, ``max_queue`` waiting,
more get 503). Streams hand chunks to the event loop through a small bounded bridge; when the client goes away the
request's cancel event is set, the worker closes the voice's stream and the producer stops after its current piece.
Errors are JSON: ``{"status": <code>, "detail": "<what went wrong and what to do>"}`` with a matching HTTP status.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import json
import logging
import struct
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from motion.server.config import ServerConfig
from motion.server.registry import ModelRegistry, NotFound, PathRefused

log = logging.getLogger(__name__)

WHOLE_PIECE = 1 << 20  # z frames per decoder call for one-response routes: a piece in one call
UPSTREAM_DEFAULTS = {"sdp_ratio": 0.2, "noise": 0.2, "noisew": 0.9, "length": 1.0, "style_weight": 0.7}


# --- errors -------------------------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, http_status: int, detail: str) -> None:
        super().__init__(detail)
        self.http_status, self.detail = int(http_status), detail


class Cancelled(Exception):
    """The client went away (or asked to stop)."""


def _as_api_error(err: BaseException) -> ApiError:
    from bert_vits2.synthesis import SynthesisError

    if isinstance(err, ApiError):
        return err
    if isinstance(err, PathRefused):
        return ApiError(403, str(err))
    if isinstance(err, NotFound):
        return ApiError(404, str(err))
    if isinstance(err, (SynthesisError, ValueError)):
        return ApiError(400, str(err))
    log.exception("request failed", exc_info=err)
    return ApiError(500, f"internal error: {type(err).__name__}: {err}")


# --- admission queue and counters ---------------------------------------------------------------------------------


class Admission:
    """At most ``workers`` jobs run, ``max_queue`` wait; :meth:`reserve` refuses the rest at once (503)."""

    def __init__(self, workers: int, max_queue: int) -> None:
        self.workers, self.max_queue = int(workers), int(max_queue)
        self._sem = threading.Semaphore(self.workers)
        self._lock = threading.Lock()
        self.reserved = 0  # running + waiting
        self.running = 0
        self.counts = {"accepted": 0, "rejected": 0, "completed": 0, "cancelled": 0, "failed": 0}

    def reserve(self) -> None:
        with self._lock:
            if self.reserved >= self.workers + self.max_queue:
                self.counts["rejected"] += 1
                raise ApiError(503, f"the server is busy ({self.running} running, {self.reserved - self.running} "
                                    f"queued, queue limit {self.max_queue}); retry later")
            self.reserved += 1
            self.counts["accepted"] += 1

    def run(self, cancel: threading.Event) -> None:
        """Wait (in a worker thread) for a free worker; raises Cancelled if the client leaves meanwhile."""
        while not self._sem.acquire(timeout=0.05):
            if cancel.is_set():
                raise Cancelled()
        with self._lock:
            self.running += 1

    def done(self, outcome: str, ran: bool) -> None:
        with self._lock:
            if ran:
                self.running -= 1
            self.reserved -= 1
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if ran:
            self._sem.release()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"running": self.running, "queued": self.reserved - self.running, "workers": self.workers,
                    "max_queue": self.max_queue, **self.counts}


class Bridge:
    """Worker thread -> event loop, at most ``depth`` items in flight; ``cancel`` stops the worker."""

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int = 8) -> None:
        self.loop = loop
        self.q: asyncio.Queue = asyncio.Queue()
        self.slots = threading.Semaphore(depth)
        self.cancel = threading.Event()

    def put(self, item: tuple[str, Any]) -> None:
        while not self.slots.acquire(timeout=0.05):
            if self.cancel.is_set():
                raise Cancelled()
        if self.cancel.is_set():
            raise Cancelled()
        try:
            self.loop.call_soon_threadsafe(self.q.put_nowait, item)
        except RuntimeError as err:  # the loop is gone
            self.cancel.set()
            raise Cancelled() from err

    async def get(self) -> tuple[str, Any]:
        item = await self.q.get()
        self.slots.release()
        return item


# --- audio helpers ------------------------------------------------------------------------------------------------


def pcm16(audio: np.ndarray) -> np.ndarray:
    """float -> int16 as libsndfile writes PCM_16 (clip, x 32767, round)."""
    a = np.clip(np.nan_to_num(np.asarray(audio, dtype=np.float32)), -1.0, 1.0)
    return np.rint(a * 32767.0).astype("<i2")


def wav_header(sample_rate: int, num_samples: int | None, bits: int = 16, fmt: int = 1) -> bytes:
    """RIFF/WAVE header, mono; ``num_samples=None`` (a stream of unknown length) writes the 0xFFFFFFFF sizes that
    players treat as "read to the end"."""
    block = bits // 8
    data = 0xFFFFFFFF if num_samples is None else num_samples * block
    riff = 0xFFFFFFFF if num_samples is None else 36 + data
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, fmt, 1, sample_rate,
                                                                            sample_rate * block, block, bits)
            + b"data" + struct.pack("<I", data))


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.nan_to_num(np.asarray(audio, dtype=np.float32)), -1.0, 1.0), int(sample_rate),
             subtype="PCM_16", format="WAV")
    return buf.getvalue()


# --- the app ------------------------------------------------------------------------------------------------------


class ServerState:
    """What the routes share: config, voices, the face maker (lazy), the queue."""

    def __init__(self, config: ServerConfig, registry: ModelRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or ModelRegistry(config.model_roots, config.bert_dir, config.precision)
        self.admission = Admission(config.workers, config.max_queue)
        self._face_maker = None
        self._face_lock = threading.Lock()

    def load_initial(self) -> None:
        for d in self.config.model_dirs:
            mid = self.registry.load_dir(d, device=self.config.device, language=self.config.language)
            log.info("model %d: %s", mid, self.registry.get(mid).model_path)
        if self.config.demo_voice or not self.config.model_dirs:
            from motion.demo_voice import DemoVoice

            mid = self.registry.add_voice(DemoVoice(), "demo", "", "cpu", "EN" if not self.config.model_dirs
                                          else self.config.language)
            log.info("model %d: the eSpeak NG demo voice", mid)

    @property
    def face_maker(self):
        with self._face_lock:
            if self._face_maker is None:
                from motion.face.api import FaceMaker

                self._face_maker = FaceMaker(head_path=self.config.head, alive=self.config.face_alive,
                                             seed=int(self.config.face_seed))
            return self._face_maker


def _check_token(config: ServerConfig, headers: Any, query: Any) -> None:
    if not config.token:
        return
    got = headers.get("x-api-token") or query.get("token") or ""
    auth = headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        got = auth[7:].strip()
    if not hmac.compare_digest(str(got).encode(), str(config.token).encode()):
        raise ApiError(401, "missing or wrong API token: send 'Authorization: Bearer <token>' (or X-API-Token, or "
                            "?token= for WebSockets)")


def create_app(config: ServerConfig, *, load: bool = True):
    """The FastAPI app for ``config`` (loads the configured voices unless ``load=False``)."""
    config.check()
    state = ServerState(config)
    if load:
        state.load_initial()
    app = FastAPI(
        title="Bert-VITS2 Face server",
        version="0.2.0",
        description="Bert-VITS2 v2.3 speech (upstream-compatible `/voice` and `/models/*`), speech with a face "
                    "(61 Live Link curves at 60 fps), streaming over HTTP and WebSocket. Errors are JSON "
                    '`{"status": code, "detail": "..."}`. With a token configured every route needs '
                    "`Authorization: Bearer <token>`.",
    )
    app.state.bv2 = state

    @app.exception_handler(ApiError)
    async def _api_error(_request, err: ApiError):
        return JSONResponse({"status": err.http_status, "detail": err.detail}, status_code=err.http_status)

    async def _lib_error(_request, err: Exception):
        api = _as_api_error(err)
        return JSONResponse({"status": api.http_status, "detail": api.detail}, status_code=api.http_status)

    for exc_type in (NotFound, PathRefused, ValueError):
        app.add_exception_handler(exc_type, _lib_error)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, err):
        return JSONResponse({"status": err.status_code, "detail": str(err.detail)}, status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request, err):
        parts = []
        for e in err.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "body"))
            parts.append(f"{where}: {e.get('msg')}")
        return JSONResponse({"status": 422, "detail": "; ".join(parts) or "invalid request"}, status_code=422)

    async def auth(request: Request) -> None:
        _check_token(config, request.headers, request.query_params)

    # --- synthesis plumbing -----------------------------------------------------------------------------------

    def prepare(text: str | None, model_id: int, speaker_name: str | None, speaker_id: int | None, sdp_ratio: float,
                noise: float, noisew: float, length: float, language: str | None, auto_split: bool,
                style_text: str | None, style_weight: float, seed: int | None) -> tuple[Any, dict[str, Any]]:
        import math

        if text is None or not str(text).strip():
            raise ApiError(400, "text is empty: pass text=... (query, or form field for POST)")
        total = len(text) + len(style_text or "")
        if total > config.max_chars:
            raise ApiError(413, f"the text has {total} characters; this server takes at most {config.max_chars} per "
                                "request: split it into several requests")
        for name, value, lo, hi in (("sdp_ratio", sdp_ratio, 0, 1), ("noise", noise, 0, 10), ("noisew", noisew, 0, 10),
                                    ("length", length, 0.1, 10), ("style_weight", style_weight, 0, 1)):
            if not math.isfinite(float(value)) or not lo <= float(value) <= hi:
                raise ApiError(400, f"{name}={value} is out of range [{lo}, {hi}]")
        entry = state.registry.get(int(model_id))
        speaker = entry.speaker_name(speaker_name, speaker_id)
        kwargs = dict(text=str(text), speaker=speaker, language=language or entry.language, sdp_ratio=float(sdp_ratio),
                      noise_scale=float(noise), noise_scale_w=float(noisew), length_scale=float(length),
                      style_text=style_text or None, style_weight=float(style_weight),
                      split_sentences=bool(auto_split), seed=seed)
        return entry, kwargs

    def start_job(loop: asyncio.AbstractEventLoop, entry: Any, kwargs: dict[str, Any], with_face: bool,
                  whole: bool = False) -> Bridge:
        """Reserve a queue slot (503 when full) and start the worker thread that streams into a Bridge.

        ``whole``: the client gets one response; each piece is decoded in one call (no chunk overhead, the same
        samples as ``synthesize``) and the job can still be cancelled between pieces."""
        state.admission.reserve()
        bridge = Bridge(loop)
        max_samples = int(config.max_audio_s * entry.voice.sample_rate)
        face_fn = None
        if with_face:
            from motion.face.streaming import face_function

            face_fn = face_function(state.face_maker)

        def work() -> None:
            ran, outcome = False, "completed"
            try:
                state.admission.run(bridge.cancel)
                ran = True
                sizes = {"first_chunk_frames": WHOLE_PIECE, "max_chunk_frames": WHOLE_PIECE} if whole else {}
                gen = entry.voice.stream(**kwargs, face=face_fn, cancel=bridge.cancel, **sizes)
                try:
                    for chunk in gen:
                        if bridge.cancel.is_set():
                            raise Cancelled()
                        if chunk.start_sample + len(chunk.audio) > max_samples:
                            raise ApiError(413, f"the speech is longer than this server's limit of "
                                                f"{config.max_audio_s:g} s per request: split the text")
                        bridge.put(("chunk", chunk))
                finally:
                    gen.close()
                bridge.put(("end", None))
            except Cancelled:
                outcome = "cancelled"
            except BaseException as err:  # noqa: BLE001 - handed to the client as a JSON error
                outcome = "failed"
                try:
                    bridge.put(("error", _as_api_error(err)))
                except Cancelled:
                    outcome = "cancelled"
            finally:
                state.admission.done(outcome, ran)

        threading.Thread(target=work, daemon=True, name="bv2-job").start()
        return bridge

    async def collect(request: Request, bridge: Bridge) -> list[Any]:
        """All chunks of a job; cancels it when the HTTP client disconnects."""
        chunks = []
        try:
            while True:
                try:
                    kind, item = await asyncio.wait_for(bridge.get(), timeout=0.25)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        raise Cancelled() from None
                    continue
                if kind == "chunk":
                    chunks.append(item)
                elif kind == "error":
                    raise item
                else:
                    return chunks
        finally:
            bridge.cancel.set()

    # --- upstream /voice ----------------------------------------------------------------------------------------

    voice_doc = ("Upstream-compatible: returns `audio/wav` (16-bit PCM). `auto_split` cuts at sentence ends with "
                 "0.2 s pauses. `speaker_name` or `speaker_id` (default: the model's first speaker). `language` "
                 "defaults to the model's language (ZH/JP/EN/mix/auto). `seed` makes the result reproducible.")

    async def do_voice(request: Request, params: dict[str, Any]) -> Response:
        entry, kwargs = prepare(**params)
        chunks = await collect(request, start_job(asyncio.get_running_loop(), entry, kwargs, False, whole=True))
        audio = np.concatenate([c.audio for c in chunks]) if chunks else np.zeros(0, np.float32)
        return Response(content=wav_bytes(audio, entry.voice.sample_rate), media_type="audio/wav")

    def common_query():
        return dict(
            model_id=Query(0, description="model id (see /models/info)"),
            speaker_name=Query(None, description="speaker name (or speaker_id)"),
            speaker_id=Query(None, description="speaker id (or speaker_name)"),
            sdp_ratio=Query(UPSTREAM_DEFAULTS["sdp_ratio"], description="SDP/DP mix 0..1"),
            noise=Query(UPSTREAM_DEFAULTS["noise"], description="noise scale"),
            noisew=Query(UPSTREAM_DEFAULTS["noisew"], description="duration noise scale"),
            length=Query(UPSTREAM_DEFAULTS["length"], description="length scale (speed)"),
            language=Query(None, description="ZH / JP / EN / mix / auto (default: the model's)"),
            auto_split=Query(False, description="split at sentence ends (0.2 s pauses)"),
            style_text=Query(None, description="style text (single-language only)"),
            style_weight=Query(UPSTREAM_DEFAULTS["style_weight"], description="style text weight 0..1"),
            seed=Query(None, description="random seed (reproducible result)"),
        )

    q = common_query()

    def params_from(text, model_id, speaker_name, speaker_id, sdp_ratio, noise, noisew, length, language, auto_split,
                    style_text, style_weight, seed) -> dict[str, Any]:
        return dict(text=text, model_id=model_id, speaker_name=speaker_name, speaker_id=speaker_id,
                    sdp_ratio=sdp_ratio, noise=noise, noisew=noisew, length=length, language=language,
                    auto_split=auto_split, style_text=style_text, style_weight=style_weight, seed=seed)

    @app.get("/voice", dependencies=[Depends(auth)], response_class=Response, description=voice_doc,
             responses={200: {"content": {"audio/wav": {}}}})
    async def voice_get(request: Request, text: str = Query(..., description="text to say"),
                        model_id: int = q["model_id"], speaker_name: str | None = q["speaker_name"],
                        speaker_id: int | None = q["speaker_id"], sdp_ratio: float = q["sdp_ratio"],
                        noise: float = q["noise"], noisew: float = q["noisew"], length: float = q["length"],
                        language: str | None = q["language"], auto_split: bool = q["auto_split"],
                        style_text: str | None = q["style_text"], style_weight: float = q["style_weight"],
                        seed: int | None = q["seed"]):
        return await do_voice(request, params_from(text, model_id, speaker_name, speaker_id, sdp_ratio, noise, noisew,
                                                   length, language, auto_split, style_text, style_weight, seed))

    @app.post("/voice", dependencies=[Depends(auth)], response_class=Response, description=voice_doc +
              " POST: `text` as a form field (as upstream) or in the query.",
              responses={200: {"content": {"audio/wav": {}}}})
    async def voice_post(request: Request, text: str | None = Form(None), text_q: str | None = Query(None, alias="text"),
                         reference_audio: UploadFile | None = File(None, description="ignored for v2.3"),  # noqa: B008
                         model_id: int = q["model_id"], speaker_name: str | None = q["speaker_name"],
                         speaker_id: int | None = q["speaker_id"], sdp_ratio: float = q["sdp_ratio"],
                         noise: float = q["noise"], noisew: float = q["noisew"], length: float = q["length"],
                         language: str | None = q["language"], auto_split: bool = q["auto_split"],
                         style_text: str | None = q["style_text"], style_weight: float = q["style_weight"],
                         seed: int | None = q["seed"]):
        return await do_voice(request, params_from(text if text is not None else text_q, model_id, speaker_name,
                                                   speaker_id, sdp_ratio, noise, noisew, length, language, auto_split,
                                                   style_text, style_weight, seed))

    # --- speech with a face -------------------------------------------------------------------------------------

    def face_payload(chunks: list[Any], sample_rate: int, fmt: str) -> Response:
        from motion.arkit import NAMES

        audio = np.concatenate([c.audio for c in chunks])
        frames = np.concatenate([c.face for c in chunks if c.face is not None], axis=0)
        fps = float(chunks[0].face_fps)
        meta = {"sample_rate": int(sample_rate), "samples": int(len(audio)), "fps": fps, "frames": int(len(frames)),
                "names": list(NAMES), "face": state.face_maker.describe(),
                "pieces": sorted({(c.piece, c.text) for c in chunks if c.text}, key=lambda x: x[0])}
        meta["pieces"] = [{"piece": p, "text": t} for p, t in meta["pieces"]]
        wav = wav_bytes(audio, sample_rate)
        if fmt == "json":
            return Response(json.dumps({**meta, "audio_wav_base64": base64.b64encode(wav).decode("ascii"),
                                        "curves": np.round(frames.astype(np.float64), 6).tolist()}),
                            media_type="application/json")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("speech.wav", wav)
            zf.writestr("meta.json", json.dumps(meta, indent=1))
            if fmt == "npy":
                nb = io.BytesIO()
                np.save(nb, frames.astype(np.float32))
                zf.writestr("face.npy", nb.getvalue())
            else:
                from motion.livelink.app_csv import write_csv

                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "face.csv"
                    write_csv(path, frames, fps)
                    zf.writestr("face.csv", path.read_bytes())
        return Response(buf.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="speech_face_{fmt}.zip"'})

    face_doc = ("Speech with a face in one response: the same parameters as /voice plus `format`: `json` "
                "(`audio_wav_base64`, `curves` [T][61] in Live Link order, `names`, `fps`), `csv` or `npy` (a zip "
                "with `speech.wav`, `face.csv` (Live Link Face app CSV) or `face.npy` [T, 61] float32, `meta.json`). "
                "The face is computed piece by piece, exactly as the streams compute it.")

    async def do_face(request: Request, params: dict[str, Any], fmt: str) -> Response:
        if fmt not in ("json", "csv", "npy"):
            raise ApiError(400, f"format={fmt!r}: use json, csv or npy")
        entry, kwargs = prepare(**params)
        chunks = await collect(request, start_job(asyncio.get_running_loop(), entry, kwargs, True, whole=True))
        return face_payload(chunks, entry.voice.sample_rate, fmt)

    @app.get("/voice/face", dependencies=[Depends(auth)], description=face_doc)
    async def face_get(request: Request, text: str = Query(...), format: str = Query("json"),
                       model_id: int = q["model_id"], speaker_name: str | None = q["speaker_name"],
                       speaker_id: int | None = q["speaker_id"], sdp_ratio: float = q["sdp_ratio"],
                       noise: float = q["noise"], noisew: float = q["noisew"], length: float = q["length"],
                       language: str | None = q["language"], auto_split: bool = q["auto_split"],
                       style_text: str | None = q["style_text"], style_weight: float = q["style_weight"],
                       seed: int | None = q["seed"]):
        return await do_face(request, params_from(text, model_id, speaker_name, speaker_id, sdp_ratio, noise, noisew,
                                                  length, language, auto_split, style_text, style_weight, seed), format)

    @app.post("/voice/face", dependencies=[Depends(auth)], description=face_doc)
    async def face_post(request: Request, text: str | None = Form(None), text_q: str | None = Query(None, alias="text"),
                        format: str = Query("json"), model_id: int = q["model_id"],
                        speaker_name: str | None = q["speaker_name"], speaker_id: int | None = q["speaker_id"],
                        sdp_ratio: float = q["sdp_ratio"], noise: float = q["noise"], noisew: float = q["noisew"],
                        length: float = q["length"], language: str | None = q["language"],
                        auto_split: bool = q["auto_split"], style_text: str | None = q["style_text"],
                        style_weight: float = q["style_weight"], seed: int | None = q["seed"]):
        return await do_face(request, params_from(text if text is not None else text_q, model_id, speaker_name,
                                                  speaker_id, sdp_ratio, noise, noisew, length, language, auto_split,
                                                  style_text, style_weight, seed), format)

    # --- chunked HTTP audio stream ------------------------------------------------------------------------------

    stream_doc = ("Chunked HTTP audio stream: the audio is sent as it is synthesised (first chunk after the first "
                  "~0.2 s of the first sentence is decoded). `format`: `wav` (16-bit PCM WAV with an open-ended "
                  "header), `pcm` (raw s16le mono) or `f32` (raw float32le mono). The sample rate is in the "
                  "`X-Sample-Rate` header. Closing the connection cancels the synthesis.")

    @app.get("/voice/stream", dependencies=[Depends(auth)], description=stream_doc)
    async def voice_stream(text: str = Query(...), format: str = Query("wav"), model_id: int = q["model_id"],
                           speaker_name: str | None = q["speaker_name"], speaker_id: int | None = q["speaker_id"],
                           sdp_ratio: float = q["sdp_ratio"], noise: float = q["noise"], noisew: float = q["noisew"],
                           length: float = q["length"], language: str | None = q["language"],
                           auto_split: bool = q["auto_split"], style_text: str | None = q["style_text"],
                           style_weight: float = q["style_weight"], seed: int | None = q["seed"]):
        if format not in ("wav", "pcm", "f32"):
            raise ApiError(400, f"format={format!r}: use wav, pcm or f32")
        entry, kwargs = prepare(**params_from(text, model_id, speaker_name, speaker_id, sdp_ratio, noise, noisew,
                                              length, language, auto_split, style_text, style_weight, seed))
        bridge = start_job(asyncio.get_running_loop(), entry, kwargs, False)
        sr = int(entry.voice.sample_rate)
        # wait for the first chunk so that an error can still be a JSON error response
        kind, first = await bridge.get()
        if kind == "error":
            bridge.cancel.set()
            raise first

        def encode(chunk: Any) -> bytes:
            if format == "f32":
                return np.asarray(chunk.audio, dtype="<f4").tobytes()
            return pcm16(chunk.audio).tobytes()

        async def body():
            try:
                if format == "wav":
                    yield wav_header(sr, None)
                item: tuple[str, Any] = (kind, first)
                while True:
                    k, value = item
                    if k == "chunk":
                        if len(value.audio):
                            yield encode(value)
                    elif k == "error":
                        log.warning("stream ended early: %s", value.detail)
                        return
                    else:
                        return
                    item = await bridge.get()
            finally:
                bridge.cancel.set()  # the client left (or we are done): stop the worker

        media = {"wav": "audio/wav", "pcm": f"audio/L16;rate={sr};channels=1", "f32": "application/octet-stream"}
        return StreamingResponse(body(), media_type=media[format],
                                 headers={"X-Sample-Rate": str(sr), "Cache-Control": "no-store"})

    # --- WebSocket stream ---------------------------------------------------------------------------------------

    async def ws_error(ws: WebSocket, err: ApiError, close_code: int = 1008) -> None:
        try:
            await ws.send_text(json.dumps({"type": "error", "status": err.http_status, "detail": err.detail}))
            await ws.close(code=close_code)
        except Exception:  # noqa: BLE001 - the client is gone already
            pass

    async def accept_authorised(ws: WebSocket) -> bool:
        """Accept the socket; when the token is wrong, send the error, close with 4401 and answer False."""
        await ws.accept()
        try:
            _check_token(config, ws.headers, ws.query_params)
        except ApiError as err:
            await ws_error(ws, err, 4401)
            return False
        return True

    @app.websocket("/ws/voice")
    async def ws_voice(ws: WebSocket):
        """See README "Server": one request message, then start / audio (+binary) / face / end messages."""
        if not await accept_authorised(ws):
            return
        try:
            req = json.loads(await ws.receive_text())
            if not isinstance(req, dict):
                raise ApiError(400, "the first message must be a JSON object with at least 'text'")
        except WebSocketDisconnect:
            return
        except (ValueError, KeyError) as err:
            await ws_error(ws, ApiError(400, f"the first message must be JSON: {err}"))
            return
        except ApiError as err:
            await ws_error(ws, err)
            return
        pusher = None
        bridge = None
        try:
            fmt = str(req.get("audio_format", "s16"))
            if fmt not in ("s16", "f32"):
                raise ApiError(400, f"audio_format={fmt!r}: use s16 or f32")
            with_face = bool(req.get("face", True))
            params = {k: req.get(k, d) for k, d in (
                ("text", None), ("model_id", 0), ("speaker_name", None), ("speaker_id", None),
                ("sdp_ratio", UPSTREAM_DEFAULTS["sdp_ratio"]), ("noise", UPSTREAM_DEFAULTS["noise"]),
                ("noisew", UPSTREAM_DEFAULTS["noisew"]), ("length", UPSTREAM_DEFAULTS["length"]), ("language", None),
                ("auto_split", False), ("style_text", None), ("style_weight", UPSTREAM_DEFAULTS["style_weight"]),
                ("seed", None))}
            entry, kwargs = prepare(**params)
            push = req.get("push") or {}
            if push and not with_face:
                raise ApiError(400, "push needs the face: drop face=false")
            if push:
                from motion.constants import LIVELINK_PORT, VMC_PORT
                from motion.server.push import FacePusher, parse_target

                ll = parse_target(push["livelink"], LIVELINK_PORT) if push.get("livelink") else None
                vmc = parse_target(push["vmc"], VMC_PORT) if push.get("vmc") else None
                for target in (ll, vmc):
                    if target and target[0] not in config.livelink_hosts:
                        raise ApiError(403, f"push to {target[0]} is not allowed; this server pushes only to "
                                            f"{', '.join(config.livelink_hosts)} (--push-host)")
                pusher = FacePusher(60.0, ll, vmc)
                pusher.start()
            bridge = start_job(asyncio.get_running_loop(), entry, kwargs, with_face)
        except (ApiError, NotFound, PathRefused, ValueError, KeyError) as err:
            await ws_error(ws, _as_api_error(err) if not isinstance(err, KeyError) else ApiError(400, str(err)))
            if pusher:
                pusher.stop()
            return

        from motion.arkit import NAMES

        async def reader():
            """Client messages while streaming: playing (starts the push clock), cancel; a disconnect cancels."""
            try:
                while True:
                    msg = json.loads(await ws.receive_text())
                    if msg.get("type") == "playing" and pusher is not None:
                        pusher.playing(float(msg.get("offset_ms", 0.0)) / 1000.0)
                    elif msg.get("type") == "cancel":
                        bridge.cancel.set()
                        return
            except (WebSocketDisconnect, RuntimeError):
                bridge.cancel.set()
            except ValueError:
                pass

        reader_task = asyncio.create_task(reader())
        t0 = time.perf_counter()
        sent_samples = sent_frames = 0
        try:
            await ws.send_text(json.dumps({
                "type": "start", "sample_rate": int(entry.voice.sample_rate), "audio_format": fmt,
                "fps": 60.0 if with_face else None, "names": list(NAMES) if with_face else None,
                "voice": entry.voice.name, "face": state.face_maker.describe() if with_face else None}))
            while True:
                get = asyncio.ensure_future(bridge.get())
                done, _ = await asyncio.wait({get, reader_task}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:  # the client left or cancelled
                    get.cancel()
                    return
                kind, item = get.result()
                if kind == "error":
                    await ws_error(ws, item, 1011)
                    return
                if kind == "end":
                    await ws.send_text(json.dumps({
                        "type": "end", "samples": sent_samples, "frames": sent_frames,
                        "elapsed_s": round(time.perf_counter() - t0, 4)}))
                    break
                c = item
                if len(c.audio):
                    await ws.send_text(json.dumps({
                        "type": "audio", "index": c.index, "piece": c.piece, "start_sample": c.start_sample,
                        "samples": len(c.audio), "pause": c.pause, "text": c.text,
                        "ready_s": round(c.timings.get("ready_s", 0.0), 4)}))
                    data = np.asarray(c.audio, dtype="<f4").tobytes() if fmt == "f32" else pcm16(c.audio).tobytes()
                    await ws.send_bytes(data)
                    sent_samples += len(c.audio)
                if c.face is not None and len(c.face):
                    await ws.send_text(json.dumps({"type": "face", "start": c.face_start,
                                                   "frames": np.round(c.face.astype(np.float64), 6).tolist()}))
                    sent_frames += len(c.face)
                    if pusher is not None:
                        pusher.add(c.face_start, c.face)
            if pusher is not None:
                pusher.finish()
                # keep the socket open while the face is pushed, so the client can still send 'playing'
                while pusher.is_alive() and not reader_task.done():
                    await asyncio.sleep(0.05)
                if not reader_task.done():
                    await ws.send_text(json.dumps({"type": "push_done", "sent": pusher.stats.sent,
                                                   "skipped": pusher.stats.skipped, "error": pusher.stats.error}))
            await ws.close()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            bridge.cancel.set()
            if pusher is not None:
                pusher.stop()
            reader_task.cancel()

    @app.websocket("/ws/face")
    async def ws_face(ws: WebSocket):
        """Audio in, face out: a JSON header ``{"sample_rate": 44100, "audio_format": "s16"|"f32"}``, then binary
        PCM chunks (mono), then ``{"type": "end"}``; the server sends ``face`` messages as segments complete and
        ``end`` after the last."""
        if not await accept_authorised(ws):
            return
        from motion.face.streaming import AudioFaceStream

        try:
            head = json.loads(await ws.receive_text())
            sr = int(head.get("sample_rate", 44100))
            fmt = str(head.get("audio_format", "s16"))
            if fmt not in ("s16", "f32") or not 8000 <= sr <= 192000:
                raise ApiError(400, "header: sample_rate 8000..192000 and audio_format s16 or f32")
            afs = AudioFaceStream(state.face_maker, sr)
            await ws.send_text(json.dumps({"type": "start", "fps": afs.fps}))
            total = 0
            loop = asyncio.get_running_loop()
            while True:
                msg = await ws.receive()
                if msg.get("type") == "websocket.disconnect":
                    return
                if msg.get("bytes") is not None:
                    dtype = "<i2" if fmt == "s16" else "<f4"
                    pcm = np.frombuffer(msg["bytes"], dtype=dtype)
                    total += len(pcm)
                    if total > config.max_audio_s * sr:
                        raise ApiError(413, f"more than {config.max_audio_s:g} s of audio in one stream")
                    outs = await loop.run_in_executor(None, afs.feed, pcm)
                else:
                    if json.loads(msg.get("text") or "{}").get("type") != "end":
                        continue
                    outs = await loop.run_in_executor(None, afs.close)
                for o in outs:
                    await ws.send_text(json.dumps({"type": "face", "start": o.start,
                                                   "frames": np.round(o.frames.astype(np.float64), 6).tolist()}))
                if msg.get("bytes") is None:
                    await ws.send_text(json.dumps({"type": "end", "samples": total}))
                    await ws.close()
                    return
        except WebSocketDisconnect:
            return
        except (ApiError, ValueError) as err:
            await ws_error(ws, _as_api_error(err))

    # --- models (upstream) --------------------------------------------------------------------------------------

    def ok(detail: str, **data: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"status": 0, "detail": detail}
        if data:
            out["Data"] = data
        return out

    @app.get("/models/info", dependencies=[Depends(auth)])
    def models_info():
        """Loaded models: ``{id: {config_path, model_path, device, language, spk2id, id2spk, version}}``."""
        return state.registry.info()

    @app.get("/models/add", dependencies=[Depends(auth)])
    def models_add(model_path: str = Query(..., description="G_*.pth, relative to a model root or inside one"),
                   config_path: str | None = Query(None, description="default: config.json next to it or ../"),
                   device: str = Query("cpu"), language: str = Query("ZH")):
        """Load a model that lies inside the server's model roots (anything else is refused with 403)."""
        if device != "cpu" and not device.startswith("cuda"):
            raise ApiError(400, f"device={device!r}: use cpu or cuda[:N]")
        mid = state.registry.add(model_path, config_path, device, language)
        return ok("model added", model_id=mid, model_info=state.registry.get(mid).info())

    @app.get("/models/delete", dependencies=[Depends(auth)])
    def models_delete(model_id: int = Query(...)):
        state.registry.delete(model_id)
        return ok("model deleted")

    @app.get("/models/get_local", dependencies=[Depends(auth)])
    def models_local(root_dir: str | None = Query(None, description="a folder inside the model roots")):
        """``{folder: [G_*.pth, models/G_*.pth]}`` under the model roots."""
        return state.registry.local_models(root_dir)

    @app.get("/models/get_unloaded", dependencies=[Depends(auth)])
    def models_unloaded(root_dir: str | None = Query(None, description="a folder inside the model roots")):
        return state.registry.local_models(root_dir, only_unloaded=True)

    @app.get("/status", dependencies=[Depends(auth)])
    def status():
        """Queue and request counters, and this process's resident memory."""
        return {"queue": state.admission.snapshot(), "rss_mb": round(rss_mb(), 1),
                "models": sorted(state.registry.models)}

    @app.get("/live", response_class=HTMLResponse)
    def live_page():
        """A page to type a text and hear + see it streamed from ``/ws/voice`` (public like ``/docs``: it holds no
        data; with a token configured, open it as ``/live?token=...`` and the page passes the token to the socket)."""
        from motion.server.live_page import LIVE_PAGE_HEADERS, live_page_html

        return HTMLResponse(live_page_html(), headers=LIVE_PAGE_HEADERS)

    return app


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux /proc)."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def serve(config: ServerConfig) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    app = create_app(config)
    log.info("serving on http://%s:%d (docs at /docs)%s", config.host, config.port,
             "; token required" if config.token else "")
    uvicorn.run(app, host=config.host, port=int(config.port), log_level=config.log_level,
                ws="websockets-sansio")


__all__ = ["Admission", "ApiError", "ServerState", "create_app", "pcm16", "rss_mb", "serve", "wav_header"]
