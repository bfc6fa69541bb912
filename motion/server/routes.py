"""The HTTP routes: upstream-compatible ``/voice`` and ``/models/*``, speech with a face, the chunked audio stream,
``/status`` and the ``/live`` page. Each handler parses, runs one job (:mod:`motion.server.jobs`) and encodes
(:mod:`motion.server.encode`)."""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from bert_vits2.streaming import WHOLE_PIECES
from motion.face.emotion import with_emotion
from motion.server.docs import ERROR_RESPONSES, binary, errors
from motion.server.encode import STREAM_FORMATS, face_payload, pcm_bytes, wav_bytes, wav_header
from motion.server.errors import ApiError
from motion.server.jobs import run_until_disconnect
from motion.server.live_page import LIVE_PAGE_HEADERS, live_page_html
from motion.server.params import ApiSynthesis, api_query
from motion.server.registry import DEFAULT_ROOT_DIR, api_language
from motion.server.state import ServerState
from motion.server.system import machine_status, usable_device

log = logging.getLogger(__name__)

__all__ = ["http_router", "live_router", "rss_mb"]

Api = Annotated[ApiSynthesis, Depends(api_query)]  # the synthesis parameters of every route, read once

VOICE_DOC = ("Upstream-compatible: returns `audio/wav` (16-bit PCM). `auto_split` cuts at sentence ends with 0.2 s "
             "pauses. `speaker_name` or `speaker_id` (default: the model's first speaker). `language` defaults to the "
             "model's language (ZH/JP/EN/mix/auto). `seed` makes the result reproducible.")
FACE_DOC = ("Speech with a face in one response: the same parameters as /voice plus `format`: `json` "
            "(`audio_wav_base64`, `curves` [T][61] in Live Link order, `names`, `fps`), `csv` or `npy` (a zip with "
            "`speech.wav`, `face.csv` (Live Link Face app CSV) or `face.npy` [T, 61] float32, `meta.json`). The face is "
            "computed piece by piece, exactly as the streams compute it.")
STREAM_DOC = ("Chunked HTTP audio stream: the audio is sent as it is synthesised (first chunk after the first ~0.2 s "
              "of the first sentence is decoded). `format`: `wav` (16-bit PCM WAV with an open-ended header), `pcm` "
              "(raw s16le mono) or `f32` (raw float32le mono). The sample rate is in the `X-Sample-Rate` header. "
              "Closing the connection cancels the synthesis.")
SPEECH_ERRORS = errors(400, 404, 413, 422, 503)
WAV_RESPONSE = SPEECH_ERRORS | binary("audio/wav", description="16-bit PCM WAV, mono, at the model's sample rate")
FACE_RESPONSE = SPEECH_ERRORS | {200: {
    "description": "format=json: one JSON object; format=csv / npy: a zip (Content-Disposition: attachment) holding "
                   "speech.wav, face.csv or face.npy, and meta.json",
    "content": {"application/json": {"schema": {"type": "object", "properties": {
        "audio_wav_base64": {"type": "string"}, "curves": {"type": "array", "items": {"type": "array", "items": {
            "type": "number"}}}, "names": {"type": "array", "items": {"type": "string"}}, "fps": {"type": "number"},
        "sample_rate": {"type": "integer"}, "samples": {"type": "integer"}, "frames": {"type": "integer"},
        "face": {"type": "object"}, "pieces": {"type": "array", "items": {"type": "object"}}}}},
        "application/zip": {"schema": {"type": "string", "format": "binary"}}}}}
STREAM_RESPONSE = SPEECH_ERRORS | binary("audio/wav", "audio/L16", "application/octet-stream",
                         description="chunked audio (Transfer-Encoding: chunked), sent while it is synthesised: "
                                     "format=wav a WAV header with open-ended sizes then 16-bit PCM, pcm raw s16le "
                                     "(audio/L16;rate=<sr>;channels=1), f32 raw float32le (application/octet-stream)",
                         headers={"X-Sample-Rate": "the sample rate of the audio"})


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux /proc)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def http_router(state: ServerState, auth: Any) -> APIRouter:
    """The HTTP routes over ``state``; ``auth`` is the token dependency."""
    router = APIRouter(dependencies=[Depends(auth)], responses=ERROR_RESPONSES)
    _speech_routes(router, state)
    _models_routes(router, state)
    return router


async def _collect(state: ServerState, request: Request, api: ApiSynthesis, with_face: bool) -> tuple[Any, list[Any]]:
    """All chunks of one job (each piece decoded in one call: the samples of ``synthesize``); cancelled when the
    client disconnects."""
    entry, req = api.resolve(state.registry, state.config.max_chars)
    emotion = api.emotion_timeline() if with_face else None  # the emotion parameter and the text's tags

    async def work() -> list[Any]:
        async with state.admission.job("http"):
            stream = state.synthesis(entry, req, with_face, WHOLE_PIECES)
            try:
                items = [item async for item in stream]
                return list(with_emotion(items, emotion)) if emotion is not None else items
            finally:
                stream.close()

    return entry, await run_until_disconnect(request, work())


def _speech_routes(router: APIRouter, state: ServerState) -> None:
    """``/voice`` (upstream), ``/voice/face`` and ``/voice/stream``."""

    async def voice(request: Request, api: ApiSynthesis) -> Response:
        entry, chunks = await _collect(state, request, api, with_face=False)
        audio = np.concatenate([c.audio for c in chunks]) if chunks else np.zeros(0, np.float32)
        return Response(wav_bytes(audio, entry.voice.sample_rate), media_type="audio/wav")

    @router.get("/voice", response_class=Response, description=VOICE_DOC, responses=WAV_RESPONSE)
    async def voice_get(request: Request, api: Api, text: str = Query(..., description="text to say")):
        return await voice(request, api.with_text(text))

    @router.post("/voice", response_class=Response, description=VOICE_DOC + " POST: `text` as a form field (as "
                 "upstream) or in the query.", responses=WAV_RESPONSE)
    async def voice_post(request: Request, api: Api, text: str | None = Form(None),
                         text_q: str | None = Query(None, alias="text"),
                         reference_audio: UploadFile | None = File(None, description="ignored for v2.3")):  # noqa: B008
        return await voice(request, api.with_text(text if text is not None else text_q))

    async def face(request: Request, api: ApiSynthesis, fmt: str) -> Response:
        if fmt not in ("json", "csv", "npy"):
            raise ApiError(400, f"format={fmt!r}: use json, csv or npy")
        entry, chunks = await _collect(state, request, api, with_face=True)
        audio = np.concatenate([c.chunk.audio for c in chunks])
        frames = np.concatenate([c.face for c in chunks], axis=0)
        pieces = sorted({(c.chunk.piece, c.chunk.text) for c in chunks if c.chunk.text})
        meta = {"face": state.face_maker.describe_result(), "pieces": [{"piece": p, "text": t} for p, t in pieces]}
        body, media, headers = face_payload(audio, entry.voice.sample_rate, frames, chunks[0].face_fps, fmt, meta)
        return Response(body, media_type=media, headers=headers)

    @router.get("/voice/face", description=FACE_DOC, responses=FACE_RESPONSE)
    async def face_get(request: Request, api: Api, text: str = Query(...), format: str = Query("json")):
        return await face(request, api.with_text(text), format)

    @router.post("/voice/face", description=FACE_DOC, responses=FACE_RESPONSE)
    async def face_post(request: Request, api: Api, text: str | None = Form(None),
                        text_q: str | None = Query(None, alias="text"), format: str = Query("json")):
        return await face(request, api.with_text(text if text is not None else text_q), format)

    @router.get("/voice/stream", description=STREAM_DOC, response_class=StreamingResponse, responses=STREAM_RESPONSE)
    async def voice_stream(api: Api, text: str = Query(...), format: str = Query("wav")):
        if format not in STREAM_FORMATS:
            raise ApiError(400, f"format={format!r}: use wav, pcm or f32")
        entry, req = api.with_text(text).resolve(state.registry, state.config.max_chars)
        return await _audio_stream(state, entry, req, format)


async def _audio_stream(state: ServerState, entry: Any, req: Any, fmt: str) -> StreamingResponse:
    """The chunked response. The job is admitted before the response starts (503 / errors stay JSON), and the
    first chunk is awaited for the same reason; Starlette cancels the body when the client leaves."""
    sr = int(entry.voice.sample_rate)
    job = state.admission.job("http_stream")
    await job.__aenter__()
    stream = state.synthesis(entry, req, False)
    try:
        first = await stream.__anext__()
    except BaseException as err:
        stream.close()
        await job.__aexit__(type(err), err, err.__traceback__)
        raise

    async def body():
        exc: BaseException | None = None
        try:
            if fmt == "wav":
                yield wav_header(sr, None)
            yield pcm_bytes(first.audio, fmt)
            async for chunk in stream:
                yield pcm_bytes(chunk.audio, fmt)
        except BaseException as err:  # the client left (cancelled) or the stream failed mid-way
            exc = err
            raise
        finally:
            stream.close()
            await job.__aexit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    media = "audio/wav" if fmt == "wav" else (f"audio/L16;rate={sr};channels=1" if fmt == "pcm" else STREAM_FORMATS[fmt])
    return StreamingResponse(body(), media_type=media, headers={"X-Sample-Rate": str(sr), "Cache-Control": "no-store"})


def _ok(detail: str, **data: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"status": 0, "detail": detail}
    if data:
        out["Data"] = data
    return out


def _models_routes(router: APIRouter, state: ServerState) -> None:
    """Upstream's ``/models/*`` and ``/status``, with upstream's keys (plus this server's own)."""
    registry = state.registry

    @router.get("/models/info")
    def models_info():
        """Loaded models: ``{id: {config_path, model_path, device, language, spk2id, id2spk, version, style2id,
        kind, sample_rate}}`` (``style2id`` for clients made for Style-Bert-VITS2: a v2.3 voice has one style)."""
        return registry.info()

    @router.get("/models/add", responses=errors(400, 403, 404, 422, 503))
    async def models_add(model_path: str = Query(..., description="G_*.pth (or G_*_release.pth, or a folder: its "
                                                                   "newest), relative to the server's folder or a "
                                                                   "model root, or inside one"),
                         config_path: str | None = Query(None, description="default: config.json next to it or ../"),
                         device: str | None = Query(None, description="cpu, cuda, cuda:N or mps (default: the "
                                                                      "server's); empty or one this machine lacks: cpu, "
                                                                      "with a warning"),
                         language: str = Query("ZH", description="the model's default language")):
        """Load a model that lies inside the server's folder or model roots (anything else is refused with 403)."""
        try:
            lang = api_language(language)
            dev, warning = usable_device(state.config.device if device is None else device, "device")
        except ValueError as err:
            raise ApiError(400, str(err)) from None
        async with state.admission.job("models_add"):
            mid = await state.pool.call(registry.add, model_path, config_path, dev, lang)
        entry = registry.get(mid)
        missing = entry.missing_bert()
        if missing:
            log.warning("model %d (%s): %s", mid, entry.model_path, missing)
        return _ok("model added" + (f" ({warning})" if warning else ""), model_id=mid, model_info=entry.info())

    @router.get("/models/delete", responses=errors(404, 422))
    def models_delete(model_id: int = Query(...)):
        registry.delete(model_id)
        return _ok("model deleted")

    root_doc = (f"a folder in the server's folder or the model roots (default: {DEFAULT_ROOT_DIR}, as upstream, when "
                "the server's folder has one; else the model roots)")

    @router.get("/models/get_local", responses=errors(403, 422))
    def models_local(root_dir: str | None = Query(None, description=root_doc)):
        """``{folder: [G_*.pth, models/G_*.pth]}``: upstream's ``Data/<name>/models/G_*.pth`` layout, release
        checkpoints included."""
        return registry.local_models(root_dir)

    @router.get("/models/get_unloaded", responses=errors(403, 422))
    def models_unloaded(root_dir: str | None = Query(None, description=root_doc)):
        """As ``/models/get_local``, without the files that are loaded."""
        return registry.local_models(root_dir, only_unloaded=True)

    @router.get("/status")
    def status():
        """Upstream's keys (``devices``, ``cpu_percent``, ``memory_total``, ``memory_available``, ``memory_used``,
        ``memory_percent``, ``gpu``) and this server's: ``queue`` (jobs running by kind, queued, outcomes),
        ``rss_mb`` (this process's resident memory) and ``models`` (the loaded ids)."""
        return {**machine_status(), "queue": state.admission.snapshot(), "rss_mb": round(rss_mb(), 1),
                "models": sorted(registry.models)}


def live_router() -> APIRouter:
    """``/live``: public like ``/docs`` (it holds no data; with a token configured, open it as ``/live?token=...``
    and the page passes the token to the socket)."""
    router = APIRouter()

    @router.get("/live", response_class=HTMLResponse)
    def live_page():
        """A page to type a text and hear + see it streamed from ``/ws/voice``."""
        return HTMLResponse(live_page_html(), headers=LIVE_PAGE_HEADERS)

    return router

