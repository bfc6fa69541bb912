"""The gradio web UI: text -> speech with a face, audio -> face, streaming to Unreal (Live Link) and VMC apps.

:func:`build_app` takes a :class:`WebUIConfig` and returns a ``gr.Blocks``; nothing is loaded at import time. Voices
and the expression head are loaded once by :class:`WebUIState` and shared by all requests (each voice serialises
its own requests). With no Bert-VITS2 model present the UI offers the eSpeak NG **demo voice**.
Set ``GRADIO_ANALYTICS_ENABLED=False`` before gradio is imported (``webui.py`` and :func:`build_app` do).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bert_vits2.audio import AudioReadError, load_audio, wav_pcm16_writer
from bert_vits2.request import LANGUAGE_CHOICES, WEBUI_DEFAULTS, SynthesisError, SynthesisRequest
from bert_vits2.synthesis import ModelFiles, Voice, find_model_files
from bert_vits2.threads import own_thread, run_in_own_thread
from motion.arkit import NAMES
from motion.constants import DEFAULT_HOST, FACE_FPS, LIVELINK_PORT, VMC_PORT, WEBUI_PORT
from motion.demo_voice import DemoVoice
from motion.face.api import FaceMaker, FaceResult
from motion.face.emotion import EMOTIONS, EmotionError, EmotionTimeline, describe_weights, parse_emotion_tags
from motion.face.features import TTS_SAMPLE_RATE, iter_tts_audio, posterior_from_generator
from motion.face.outputs import new_request_dir, write_outputs
from motion.face.streaming import piecewise_face
from motion.send import Streamer
from motion.webui.limits import Janitor, LimitError, RequestLimits, check_audio_seconds, check_text, check_upload
from motion.webui.preview import MIC_JS, PREVIEW_JS, empty_preview, mic_html, preview_for, take_result, video_for

log = logging.getLogger(__name__)

DEMO_LABEL = "Demo voice (eSpeak NG)"


@dataclass
class WebUIConfig:
    model_dir: str | None = None
    config: str | None = None
    checkpoint: str | None = None
    bert_dir: str | None = None
    bert_dirs: dict[str, str] = field(default_factory=dict)
    head: str | None = None
    outputs_dir: str | None = None  # default: a fresh temp folder
    device: str = "cpu"
    precision: str = "auto"  # "fp32" (exact), "bf16" (faster decoder/flow, same durations) or "auto" (bf16 where faster)
    bert_precision: str = "auto"  # the generator's; "int8": about half the BERT time, not bit-equal (Voice.load)
    fps: float = FACE_FPS
    blink: bool = True
    use_default_head: bool = True  # False: rule-based lip-sync from phone timings when no --head is given
    alive: bool = True  # blinks, brows, nods, idle head/eye motion where the head predicts none (motion.face.alive)
    seed: int = 0  # the alive layer's seed
    # bounded work (motion/webui/limits.py): refused at the door with a message naming the option
    max_chars: int = 2000  # characters of text per request
    max_upload_mb: float = 50.0  # one uploaded file
    max_audio_s: float = 600.0  # uploaded audio / synthesised speech
    queue_size: int = 16  # requests waiting in gradio's queue; more are told the server is busy
    concurrency: int = 1  # requests running at once (synthesis is CPU/GPU bound)
    keep_outputs_s: float = 3600.0  # request folders and gradio's cached copies older than this are removed (0: never)


class WebUIState:
    """Everything loaded once: the voices, the face maker, the model-file report, the streamer."""

    def __init__(self, cfg: WebUIConfig) -> None:
        self.cfg = cfg
        self.outputs = Path(cfg.outputs_dir) if cfg.outputs_dir else Path(tempfile.mkdtemp(prefix="bv2-webui-"))
        self.outputs.mkdir(parents=True, exist_ok=True)
        self.files: ModelFiles = find_model_files(cfg.model_dir, cfg.config, cfg.checkpoint, cfg.bert_dir, cfg.bert_dirs)
        self.voices: dict[str, Any] = {}
        self.load_error = ""
        if self.files.complete:
            try:
                voice = Voice.load(self.files, cfg.device, precision=cfg.precision, bert_precision=cfg.bert_precision)
                self.voices[f"Bert-VITS2: {voice.name}"] = voice
            except Exception as err:  # noqa: BLE001 - shown in the settings panel, demo voice still works
                self.load_error = f"{type(err).__name__}: {err}"
                log.error("could not load the Bert-VITS2 voice: %s", err)
        self.voices[DEMO_LABEL] = DemoVoice()
        self.face = FaceMaker(cfg.head, fps=cfg.fps, blink=cfg.blink, use_default_head=cfg.use_default_head,
                              alive=cfg.alive, seed=cfg.seed)
        self.streamer = Streamer()
        self.limits = RequestLimits(cfg.max_chars, cfg.max_upload_mb, cfg.max_audio_s)
        self.janitor = Janitor(self.outputs, cfg.keep_outputs_s, every_s=min(60.0, max(cfg.keep_outputs_s / 4, 1.0)))

    @property
    def default_voice(self) -> str:
        return next(iter(self.voices))

    def posterior(self, voice: Any):
        """The voice's posterior encoder, needed only by a trained z head reading plain audio."""
        if isinstance(voice, Voice) and self.face.head_kind == "z":
            return posterior_from_generator(voice.model, voice.hps.data, source=voice.files.checkpoint)
        return None

    def settings_markdown(self) -> str:
        bv2 = [k for k in self.voices if k != DEMO_LABEL]
        head = "### Voices\n"
        if bv2:
            head += f"- **{bv2[0]}** loaded ({len(self.voices[bv2[0]].speakers)} speakers).\n"
        else:
            head += ("- No Bert-VITS2 voice is loaded: the UI uses the **demo voice** (eSpeak NG; robotic but real "
                     "speech, face from its phoneme timings).\n")
        head += ("- To use a Bert-VITS2 v2.3 voice start `python webui.py --model-dir FOLDER` where FOLDER holds "
                 "`G_<step>.pth` and `config.json` (or give `--checkpoint` / `--config`), with the BERT models in "
                 "`FOLDER/bert/<name>`, `--bert-dir ROOT` or `bert/<name>`.\n")
        if self.load_error:
            head += f"- **Loading the voice failed:** `{self.load_error}`\n"
        head += (f"\n### Face\n- audio → face: {self.face.describe()}\n- synthesised speech: "
                 f"{self.face.describe_result()}\n- output rate {self.face.fps:g} fps\n")
        head += f"\n### Outputs\n- per-request folders under `{self.outputs}`\n"
        head += "\n### Model files\n" + self.files.describe()
        return head


def _summary(result_kind: str, voice_name: str, duration: float, sr: int, face, folder: Path, extra: str = "") -> str:
    return (f"**{result_kind}** — voice: {voice_name} — {duration:.2f} s at {sr} Hz — face: {len(face.frames)} frames "
            f"at {face.fps:g} fps ({face.source}){extra}\n\nfiles in `{folder}`")


class Handlers:
    """The UI's callbacks, separate from the layout so that they can be called (and tested) without a browser."""

    def __init__(self, state: WebUIState) -> None:
        self.state = state

    def _error(self, message: str) -> Exception:
        import gradio as gr  # gradio: optional [webui] extra, ~10 s import, only when the UI is built

        return gr.Error(message)

    def outputs_for(self, folder: Path, audio: np.ndarray | None, sr: int, face, meta: dict[str, Any]) -> tuple:
        """The request's files (``audio`` None: its wav is already written, block by block)."""
        paths = write_outputs(folder, audio, sr, face, meta)
        last = {"npy": str(paths["npy"]), "wav": str(paths["wav"]), "fps": face.fps, "sr": sr}
        files = [str(paths[k]) for k in ("wav", "npy", "csv", "json")]
        return str(paths["wav"]), str(paths["png"]), files, last

    @own_thread  # torch in a thread that ends with the request, not in gradio's pool (bert_vits2.threads)
    def tts(self, voice_name, text, speaker, language, sdp, noise, noise_w, length, style_text, style_weight,
            split_para, split_sent, para_pause, sent_pause, emotion="neutral", emotion_weight=1.0):
        """Text → speech with a face. Emotion tags in the text (``[joy]``, ``[sadness:0.5]``, ``[neutral]``) are
        removed before synthesis and move the face from where they stand; ``emotion`` (× ``emotion_weight``) is the
        face's emotion before the first tag."""
        state = self.state
        voice = state.voices.get(voice_name)
        if voice is None:
            raise self._error(f"unknown voice {voice_name!r}")
        state.janitor.maybe_sweep()
        try:
            check_text(text, state.limits)
            check_text(style_text, state.limits, "the style text")
        except LimitError as err:
            raise self._error(str(err)) from None
        try:
            marks = parse_emotion_tags(text or "")
            initial = {emotion: float(emotion_weight)} if emotion and emotion != "neutral" else None
            timeline = EmotionTimeline(marks, initial) if (marks.has_tags or initial) else None
        except EmotionError as err:
            raise self._error(str(err)) from None
        try:
            request = SynthesisRequest(
                marks.text, speaker or None, language, sdp, noise, noise_w, length, style_text or None, style_weight,
                split_paragraphs=bool(split_para), split_sentences=bool(split_sent), paragraph_pause_s=para_pause,
                sentence_pause_s=sent_pause, peak_normalize=isinstance(voice, Voice),  # upstream web UI's output level
            )
            result = voice.synthesize(request)
            check_audio_seconds(result.duration_s, state.limits, "the speech")
            face = piecewise_face(state.face, result)  # the face of a synthesis result, as the server streams it
            if timeline is not None:  # the tags' and the control's emotion, placed by the result's pieces
                face = FaceResult(timeline.add_result(result).apply(face.frames, face.fps), face.fps,
                                  f"{face.source}, emotion from {describe_weights(initial or {})}"
                                  f"{f' with {len(marks.marks)} tag(s)' if marks.has_tags else ''}")
        except (SynthesisError, ValueError, FileNotFoundError, RuntimeError) as err:
            raise self._error(str(err)) from None
        folder = new_request_dir(state.outputs)
        meta = {"title": text[:40], "text": text, "voice": result.voice, "speaker": speaker, "language": language,
                "pieces": result.pieces, "timings_s": result.timings}
        wav, png, files, last = self.outputs_for(folder, result.audio, result.sample_rate, face, meta)
        kind = "Demo voice" if voice_name == DEMO_LABEL else "Bert-VITS2"
        md = _summary(kind, result.voice, result.duration_s, result.sample_rate, face, folder,
                      f" — {len(result.pieces)} piece(s), {len(result.phones)} phones")
        return wav, png, files, md, last

    @own_thread
    def audio_to_face(self, path, voice_name):
        """The same faces as ``wav_to_visemes.py`` (same reading, same FaceMaker): mono 44.1 kHz.

        The upload is read block by block and each block goes straight into the request's wav and the face's
        features (:meth:`FaceMaker.for_audio_blocks`): a 10-minute upload is never held whole (bounded memory)."""
        if not path:
            raise self._error("upload or record an audio file first")

        state = self.state
        state.janitor.maybe_sweep()
        try:
            check_upload(path, state.limits)
        except LimitError as err:
            raise self._error(f"could not make a face for this audio: {err}") from None
        folder = new_request_dir(state.outputs)
        sr, counted = TTS_SAMPLE_RATE, [0]

        def blocks(write):
            for block in iter_tts_audio(path, sr):  # read in blocks: bounded memory on long uploads
                counted[0] += len(block)
                check_audio_seconds(counted[0] / sr, state.limits, Path(path).name)  # formats without a header
                write(block)
                yield block

        try:
            with wav_pcm16_writer(folder / "speech.wav", sr) as write:
                face = state.face.for_audio_blocks(blocks(write), posterior=state.posterior(state.voices.get(voice_name)))
        except Exception as err:  # noqa: BLE001 - any unreadable file ends here with its message
            shutil.rmtree(folder, ignore_errors=True)  # the fresh folder of this failed request only
            raise self._error(f"could not make a face for this audio: {err}") from None
        wav, png, files, last = self.outputs_for(folder, None, sr, face,
                                                 {"title": Path(path).name, "source_audio": Path(path).name})
        md = _summary("Audio → face", Path(path).name, counted[0] / sr, sr, face, folder)
        return wav, png, files, md, last

    def send(self, target, last, host, port, with_audio):
        if not last:
            raise self._error("nothing to send yet: synthesise something (or convert an audio file) first")
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise self._error(f"port {port!r} is not a number (1-65535)") from None
        if not 1 <= port <= 65535:
            raise self._error(f"port {port} is out of range (1-65535)")

        try:
            frames = np.load(last["npy"], allow_pickle=False)
            audio = load_audio(last["wav"], sample_rate=None)[0] if with_audio else None
        except (OSError, ValueError, AudioReadError):
            raise self._error("the last result's files are gone (old results are cleaned up after a while): "
                              "synthesise or convert it again") from None
        try:
            return self.state.streamer.start(target, frames, float(last["fps"]), audio, int(last["sr"]),
                                             str(host).strip(), port, with_audio=bool(with_audio))
        except (ValueError, OSError) as err:
            raise self._error(str(err)) from None

    def preview(self, last) -> str:
        """The canvas face of the last result, playing with its own audio player (motion/webui/preview.py)."""
        try:
            return preview_for(last)
        except (OSError, ValueError) as err:
            raise self._error(f"could not show the face: {err}") from None

    def video(self, last) -> str:
        """An MP4 of the last result's face with its audio (ffmpeg)."""
        if not last:
            raise self._error("nothing to render yet: synthesise something (or convert an audio file) first")

        try:
            return str(video_for(last))
        except (OSError, ValueError) as err:
            raise self._error(f"could not write the video: {err}") from None

    def take(self, wav, curves, fps):
        """Preview any take: its audio + a [T, 61] npy (rate from ``fps``) or a Live Link Face app CSV."""
        if not wav or not curves:
            raise self._error("upload the take's audio and its curves (.npy [T, 61] or the app's .csv)")

        try:
            for upload in (wav, curves):
                check_upload(upload, self.state.limits)
            last = take_result(new_request_dir(self.state.outputs), wav, curves, float(fps) if fps else None)
            return preview_for(last), last
        except (OSError, ValueError) as err:
            raise self._error(f"could not read this take: {err}") from None

    def send_status(self) -> str:
        """What the streamer is doing now, or how its last stream ended (errors of the background thread too)."""
        return self.state.streamer.last_message

    def speakers_for(self, voice_name):
        import gradio as gr  # gradio: optional [webui] extra, ~10 s import, only when the UI is built

        voice = self.state.voices[voice_name]
        return gr.update(choices=list(voice.speakers), value=voice.speakers[0])


def _working(message: str = "working…"):
    """Clears a tab's previous result at the start of a request, so a failure never leaves it on screen as current."""
    return None, None, None, f"*{message}*"


def build_app(cfg: WebUIConfig | None = None, state: WebUIState | None = None):
    """The gradio Blocks of the UI (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr  # gradio: optional [webui] extra, ~10 s import, only when the UI is built

    state = state or run_in_own_thread(WebUIState, cfg or WebUIConfig())  # see bert_vits2.threads
    h = Handlers(state)
    keep = float(state.cfg.keep_outputs_s)
    cache = (int(max(60, keep // 4)), int(keep)) if keep > 0 else None  # gradio's own cached copies
    with gr.Blocks(title="Bert-VITS2 face", delete_cache=cache) as app:
        gr.Markdown("# Bert-VITS2 + face\nText → speech with ARKit / Live Link face curves.")
        if state.default_voice == DEMO_LABEL:
            gr.Markdown("**Using the demo voice (eSpeak NG)** — no Bert-VITS2 model was found; see *Settings* to add one.")
        last = gr.State(None)
        with gr.Tab("Text → speech + face"):
            voice = _tts_tab(gr, state, h, last)
        with gr.Tab("Audio → face"):
            _audio_tab(gr, h, last, voice)
        with gr.Tab("Microphone (live)"):
            _mic_tab(gr)
        with gr.Tab("Preview a take"):
            _take_tab(gr, h, last)
        with gr.Tab("Send"):
            _send_tab(gr, h, last)
        with gr.Tab("Settings"):
            gr.Markdown(state.settings_markdown(), elem_id="settings")
    app.queue(max_size=state.cfg.queue_size, default_concurrency_limit=state.cfg.concurrency)
    app.webui_state = state  # for tests and scripts
    app.webui_handlers = h
    return app


def _tts_tab(gr, state: WebUIState, h: Handlers, last):
    first = state.voices[state.default_voice]
    with gr.Row():
        with gr.Column():
            voice = gr.Dropdown(list(state.voices), value=state.default_voice, label="Voice", elem_id="tts-voice")
            text = gr.TextArea(label="Text", placeholder="你好，世界。 | Hello world. ('|' separates slices)",
                               elem_id="tts-text")
            speaker = gr.Dropdown(list(first.speakers), value=first.speakers[0], label="Speaker")
            language = gr.Dropdown(list(LANGUAGE_CHOICES), value="ZH", label="Language", elem_id="tts-language")
            sdp = gr.Slider(0, 1, WEBUI_DEFAULTS["sdp_ratio"], step=0.1, label="SDP Ratio")
            noise = gr.Slider(0.1, 2, WEBUI_DEFAULTS["noise_scale"], step=0.1, label="Noise")
            noise_w = gr.Slider(0.1, 2, WEBUI_DEFAULTS["noise_scale_w"], step=0.1, label="Noise_W")
            length = gr.Slider(0.1, 2, WEBUI_DEFAULTS["length_scale"], step=0.1, label="Length")
            with gr.Accordion("Style text", open=False):
                style_text = gr.Textbox(label="Style text (辅助文本)")
                style_weight = gr.Slider(0, 1, WEBUI_DEFAULTS["style_weight"], step=0.1, label="Style weight")
            with gr.Accordion("Split long text", open=False):
                split_para = gr.Checkbox(False, label="Split by paragraph")
                split_sent = gr.Checkbox(False, label="Split by sentence")
                para_pause = gr.Slider(0, 10, WEBUI_DEFAULTS["paragraph_pause_s"], step=0.1, label="Pause between paragraphs (s)")
                sent_pause = gr.Slider(0, 5, WEBUI_DEFAULTS["sentence_pause_s"], step=0.1, label="Pause between sentences (s)")
            with gr.Accordion("Emotion", open=False):
                emotion = gr.Dropdown(["neutral", *EMOTIONS], value="neutral", label="Emotion of the face",
                                      info="tags in the text change it as it is spoken: [joy], [sadness:0.5], "
                                           "[neutral] (never spoken)", elem_id="tts-emotion")
                emotion_weight = gr.Slider(0, 1, 0.8, step=0.05, label="Emotion strength", elem_id="tts-emotion-weight")
            go = gr.Button("Synthesize", variant="primary", elem_id="tts-go")
        with gr.Column():
            status = gr.Markdown(elem_id="tts-status")
            audio_out = gr.Audio(label="Audio", type="filepath", elem_id="tts-audio")
            preview = _preview_block(gr, h, last, "tts")
            plot = gr.Image(label="Blendshape curves", type="filepath", elem_id="tts-plot")
            files = gr.File(label="Downloads (wav, npy [T,61], Live Link Face CSV, JSON)", file_count="multiple",
                            elem_id="tts-files")
    voice.change(h.speakers_for, voice, speaker)
    inputs = [voice, text, speaker, language, sdp, noise, noise_w, length, style_text, style_weight, split_para,
              split_sent, para_pause, sent_pause, emotion, emotion_weight]
    go.click(_clear_preview, None, preview, queue=False)
    go.click(_working, None, [audio_out, plot, files, status]).then(
        h.tts, inputs, [audio_out, plot, files, status, last]).success(h.preview, last, preview, queue=False)
    return voice


def _audio_tab(gr, h: Handlers, last, voice) -> None:
    with gr.Row():
        with gr.Column():
            audio_in = gr.Audio(label="Any audio", type="filepath", sources=["upload", "microphone"])
            a2f_go = gr.Button("Make face", variant="primary", elem_id="a2f-go")
        with gr.Column():
            a2f_status = gr.Markdown(elem_id="a2f-status")
            a2f_audio = gr.Audio(label="Audio", type="filepath")
            a2f_preview = _preview_block(gr, h, last, "a2f")
            a2f_plot = gr.Image(label="Blendshape curves", type="filepath", elem_id="a2f-plot")
            a2f_files = gr.File(label="Downloads", file_count="multiple")
    a2f_go.click(_clear_preview, None, a2f_preview, queue=False)
    a2f_go.click(_working, None, [a2f_audio, a2f_plot, a2f_files, a2f_status]).then(
        h.audio_to_face, [audio_in, voice], [a2f_audio, a2f_plot, a2f_files, a2f_status, last]).success(
        h.preview, last, a2f_preview, queue=False)  # cheap: not behind other users' synthesis


def _clear_preview() -> str:
    return empty_preview("working…")


def _preview_block(gr, h: Handlers, last, prefix: str):
    """The face drawn in the page (canvas + its own audio player: gradio's waveform player exposes no media element
    to follow) and an MP4 export button; returns the preview."""
    preview = gr.HTML(empty_preview(), js_on_load=PREVIEW_JS, elem_id=f"{prefix}-preview", label="Face")
    with gr.Row():
        video_go = gr.Button("Export video (MP4)", size="sm", elem_id=f"{prefix}-video-go")
        video = gr.File(label="Video", elem_id=f"{prefix}-video", height=90)
    video_go.click(h.video, last, video)
    return preview


def _mic_tab(gr) -> None:
    gr.Markdown("Speak into your microphone: the face follows your voice live (the browser streams the microphone "
                "to this web UI's `/ws/face` socket, which answers with face frames as the audio arrives). Nothing is "
                "recorded; use `python motion/live_face.py --out DIR` to keep a take or drive Unreal / VMC.")
    gr.HTML(mic_html(), js_on_load=MIC_JS, elem_id="mic-live", label="Live face")


LIVE_IDLE_S = 60.0
"""A microphone socket that sends nothing for this long is closed (a tab left open with a dead microphone)."""


async def live_face_socket(ws) -> None:
    """``WS /ws/face`` of the web UI (live mode only; the server's protocol): a JSON header ``{"sample_rate",
    "audio_format": "f32"|"s16"}``, binary mono PCM, ``{"type": "end"}``; answers ``start``, ``face`` messages
    (frames ``start ..`` of the 60 fps grid) as the audio arrives and ``end``. Each step runs in a thread so the
    page stays served; a bad message gets ``{"type": "error", "status": 400, "detail"}`` and a close."""
    import asyncio
    import json

    from starlette.websockets import WebSocketDisconnect

    async def receive() -> dict:
        msg = await asyncio.wait_for(ws.receive(), LIVE_IDLE_S)
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect()
        return msg

    await ws.accept()
    try:
        head = json.loads((await receive()).get("text") or "null")
        sr = head.get("sample_rate") if isinstance(head, dict) else None
        fmt = head.get("audio_format", "f32") if isinstance(head, dict) else None
        if isinstance(sr, bool) or not isinstance(sr, int) or not 8000 <= sr <= 192000 or fmt not in ("s16", "f32"):
            raise ValueError("the first message must be {\"sample_rate\": 8000..192000, \"audio_format\": "
                             "\"f32\" or \"s16\"}")
        from motion.face.live import LiveFace  # torch + the causal head: loaded by the first microphone
        from motion.face.live_run import in_live_thread

        live = await in_live_thread(LiveFace, sample_rate=sr, threads=None)  # one torch thread per step (live_run)
        dtype, done = np.dtype("<i2" if fmt == "s16" else "<f4"), 0
        await ws.send_text(json.dumps({"type": "start", "fps": FACE_FPS, "mode": "live",
                                       "lookahead_s": live.lookahead_s, "names": list(NAMES)}))
        while True:
            msg = await receive()
            if msg.get("bytes") is not None:
                data = msg["bytes"]
                if len(data) % dtype.itemsize:
                    raise ValueError(f"a binary message must hold whole {dtype.itemsize}-byte samples")
                pcm = np.frombuffer(data, dtype=dtype)
                if dtype.kind == "f" and not np.isfinite(pcm).all():
                    raise ValueError("the f32 audio holds NaN or infinite samples")
                frames, ended = await in_live_thread(live.feed, pcm), False
            elif (json.loads(msg.get("text") or "null") or {}).get("type") == "end":
                frames, ended = await in_live_thread(live.close), True
            else:
                raise ValueError("send binary PCM, then {\"type\": \"end\"}")
            if len(frames):
                await ws.send_text(json.dumps({"type": "face", "start": done,
                                               "frames": np.round(np.asarray(frames, np.float64), 4).tolist()}))
                done += len(frames)
            if ended:
                await ws.send_text(json.dumps({"type": "end", "frames": done}))
                await ws.close()
                return
    except (WebSocketDisconnect, RuntimeError):
        return
    except (ValueError, AttributeError, asyncio.TimeoutError) as err:
        detail = str(err) if not isinstance(err, asyncio.TimeoutError) else f"nothing received for {LIVE_IDLE_S:g} s"
        try:
            await ws.send_text(json.dumps({"type": "error", "status": 400, "detail": detail}))
            await ws.close(code=1008)
        except (RuntimeError, WebSocketDisconnect, OSError):
            pass


def _take_tab(gr, h: Handlers, last) -> None:
    gr.Markdown("Play any take's face with its audio: a recorded take's `.wav` + `.npy` ([T, 61], Live Link order), "
                "a `wav_to_visemes.py` result, or a Live Link Face app `.csv` with its audio.")
    with gr.Row():
        with gr.Column():
            take_wav = gr.File(label="Audio (wav, or any audio/video file)", elem_id="take-wav")
            take_curves = gr.File(label="Curves (.npy [T, 61] or app .csv)", file_types=[".npy", ".csv"],
                                  elem_id="take-curves")
            take_fps = gr.Number(FACE_FPS, label="Frame rate of the .npy (fps; a CSV carries its own)")
            take_go = gr.Button("Show face", variant="primary", elem_id="take-go")
        with gr.Column():
            take_preview = _preview_block(gr, h, last, "take")
    # clear the previous take's face first (as the other tabs do), so a failing take leaves no stale face on screen
    take_go.click(_clear_preview, None, take_preview, queue=False).then(
        h.take, [take_wav, take_curves, take_fps], [take_preview, last])


def _send_tab(gr, h: Handlers, last) -> None:
    gr.Markdown("Streams the **last result** (face frames + its audio on this machine's speakers).")
    with_audio = gr.Checkbox(True, label="Play the audio here while sending")
    with gr.Row():
        ll_host = gr.Textbox(DEFAULT_HOST, label="Unreal host")
        ll_port = gr.Number(LIVELINK_PORT, label="Live Link port", precision=0)
        ll_go = gr.Button("Send to Unreal (Live Link)", elem_id="send-livelink")
    with gr.Row():
        vmc_host = gr.Textbox(DEFAULT_HOST, label="VMC host")
        vmc_port = gr.Number(VMC_PORT, label="VMC port", precision=0)
        vmc_go = gr.Button("Send to VMC app", elem_id="send-vmc")
    send_status = gr.Markdown(elem_id="send-status")
    ll_go.click(lambda *a: h.send("livelink", *a), [last, ll_host, ll_port, with_audio], send_status)
    vmc_go.click(lambda *a: h.send("vmc", *a), [last, vmc_host, vmc_port, with_audio], send_status)
    # the stream runs in the background: show how it goes (and why it failed) instead of only logging it
    gr.Timer(2.0).tick(h.send_status, None, send_status, queue=False, show_progress="hidden")
    gr.Button("Refresh status", size="sm", elem_id="send-refresh").click(h.send_status, None, send_status, queue=False)


def launch(app, host: str = DEFAULT_HOST, port: int = WEBUI_PORT, share: bool = False, block: bool = True):
    """Serve ``app`` (analytics off, only the outputs folder exposed besides gradio's own)."""
    from starlette.routing import WebSocketRoute

    state: WebUIState = app.webui_state
    return app.launch(server_name=host, server_port=port, share=share, allowed_paths=[str(state.outputs)],
                      prevent_thread_lock=not block, show_error=True, quiet=True,
                      max_file_size=int(state.cfg.max_upload_mb * 1e6),
                      app_kwargs={"routes": [WebSocketRoute("/ws/face", live_face_socket)]})  # the microphone mode


__all__ = ["DEMO_LABEL", "Handlers", "WebUIConfig", "WebUIState", "build_app", "launch", "live_face_socket"]
