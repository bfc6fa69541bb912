"""A face for a synthesis result (or any audio), the demo voice, and the per-request output files.

- :class:`DemoVoice`: eSpeak NG (``motion.espeak_tts``) behind the same ``synthesize`` signature as
  ``bert_vits2.synthesis.Voice``, so everything downstream works on a fresh machine without any model.
- :class:`FaceMaker`: the trained expression head when one is configured (``V_*.pth``: a z head on the voice's z,
  a mel head on the audio), else the rule-based lip-sync (``motion.lipsync``) from the phone durations. Pieces and
  pauses of a joined result stay aligned: frames cover the final audio (``ceil(duration * fps)`` frames).
- :func:`write_outputs`: wav + ``[T, 61]`` npy + Live Link Face CSV + JSON (+ PNG plot) into a per-request folder
  made by :func:`new_request_dir` (never fixed names in the working directory).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bert_vits2.synthesis import DEFAULTS, SynthesisError, SynthesisResult, join_pieces, language_pieces, split_text
from motion.arkit import INDEX, NAMES, NUM_VALUES
from motion.postprocess import DEFAULT_FPS, num_frames_for, postprocess, resample_curves

log = logging.getLogger(__name__)

#: curves shown in the UI plot (jaw, lips, smile, blink, brows)
PLOT_NAMES = ("JawOpen", "MouthClose", "MouthFunnel", "MouthPucker", "MouthSmileLeft", "EyeBlinkLeft", "BrowInnerUp",
              "BrowDownLeft")
ESPEAK_VOICES = {"ZH": "cmn", "JP": "ja", "EN": "en-us"}
FEATURE_FPS = 44100 / 512


# --- demo voice ---------------------------------------------------------------------------------------------------


class DemoVoice:
    """eSpeak NG as a stand-in voice (no model files needed). Speakers are eSpeak voice variants."""

    kind = "demo"
    name = "demo voice (eSpeak NG)"
    speakers = ["default", "female (f3)", "male (m3)"]
    _variants = {"default": "", "female (f3)": "+f3", "male (m3)": "+m3"}

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        from motion import espeak_tts

        return espeak_tts.sample_rate()

    def synthesize(
        self, text: str, speaker: str | None = None, language: str = "ZH", sdp_ratio: float = DEFAULTS["sdp_ratio"],
        noise_scale: float = DEFAULTS["noise_scale"], noise_scale_w: float = DEFAULTS["noise_scale_w"],
        length_scale: float = DEFAULTS["length_scale"], style_text: str | None = None,
        style_weight: float = DEFAULTS["style_weight"], *, split_paragraphs: bool = False, split_sentences: bool = False,
        paragraph_pause_s: float = DEFAULTS["paragraph_pause_s"], sentence_pause_s: float = DEFAULTS["sentence_pause_s"],
        seed: int | None = None,
    ) -> SynthesisResult:
        """Same arguments as ``Voice.synthesize``; only text, speaker, language, length and the splitting apply
        (eSpeak has no SDP/noise/style controls). ``length_scale`` maps to the speaking rate."""
        from motion import espeak_tts

        if not isinstance(text, str) or not text.strip():
            raise SynthesisError("the text is empty; type something to say")
        variant = self._variants.get(speaker or "default", "")
        rate = int(np.clip(175 / max(float(length_scale), 0.1), 80, 450))
        parts, sr = [], None
        t0 = time.perf_counter()
        with self._lock:
            for piece, pause in split_text(text, split_paragraphs, split_sentences, paragraph_pause_s, sentence_pause_s):
                runs = language_pieces(piece, language)
                for j, (_spk, lang, run_text) in enumerate(runs):
                    audio, sr, events = espeak_tts.synthesize(run_text, ESPEAK_VOICES[lang] + variant, rate=rate)
                    parts.append({
                        "audio": audio, "phones": [e[0] for e in events],
                        "durations": [e[2] - e[1] for e in events], "phone_langs": ["ipa"] * len(events),
                        "pause_after_s": pause if j == len(runs) - 1 else 0.0,
                        "meta": {"text": run_text, "language": lang, "speaker": speaker or "default"},
                    })
        if not parts:
            raise SynthesisError("nothing to synthesise after splitting; type some words")
        result = join_pieces(parts, int(sr))
        result.voice = self.name
        result.timings = {"synthesis": time.perf_counter() - t0}
        return result


# --- faces --------------------------------------------------------------------------------------------------------


def rule_based_face(result: SynthesisResult, fps: float = DEFAULT_FPS) -> np.ndarray:
    """Lip-sync from the phones and their durations (per language run, so each uses its phone table)."""
    from motion.lipsync import render, segments_from_phones

    d = np.asarray(result.durations, dtype=np.float64)
    ends = np.cumsum(d)
    starts = ends - d
    segs = []
    i = 0
    while i < len(result.phones):  # runs of one phone language
        j = i
        while j < len(result.phones) and result.phone_langs[j] == result.phone_langs[i]:
            j += 1
        segs += segments_from_phones(result.phones[i:j], starts[i:j], ends[i:j], result.phone_langs[i])
        i = j
    return render(segs, num_frames_for(result.duration_s, fps), fps)


def energy_face(audio: np.ndarray, sample_rate: int, fps: float = DEFAULT_FPS) -> np.ndarray:
    """Crude fallback for audio without text or trained head: jaw opening follows the loudness envelope."""
    from motion.visemes_data import audio_envelope

    n = num_frames_for(len(audio) / sample_rate, fps)
    out = np.zeros((n, NUM_VALUES), dtype=np.float32)
    if len(audio) == 0:
        return out
    db = audio_envelope(audio, sample_rate, n, fps)
    level = np.clip((db - (db.max() - 40.0)) / 40.0, 0.0, 1.0)
    out[:, INDEX["JawOpen"]] = 0.6 * level
    out[:, INDEX["MouthLowerDownLeft"]] = out[:, INDEX["MouthLowerDownRight"]] = 0.3 * level
    return out


@dataclass
class FaceResult:
    frames: np.ndarray  # [T, 61] at fps, Live Link wire order, post-processed
    fps: float
    source: str  # which method made it


class FaceMaker:
    """Chooses how faces are made: a trained head (``head_path``, a ``V_*.pth``) or the rule-based lip-sync."""

    def __init__(self, head_path: str | os.PathLike | None = None, fps: float = DEFAULT_FPS, blink: bool = True) -> None:
        self.fps, self.blink = float(fps), blink
        self.head = None
        self.head_kind: str | None = None
        self.head_path = Path(head_path) if head_path else None
        self.n_mels = 80
        self._lock = threading.Lock()
        if self.head_path is not None:
            from motion.train_visemes import load_head_checkpoint

            self.head, ckpt = load_head_checkpoint(self.head_path)
            feature = dict(ckpt.get("feature") or {})
            self.head_kind = str(feature.get("kind") or ckpt["head_config"].get("type", "mel"))
            self.n_mels = int(feature.get("n_mels") or ckpt["head_config"].get("n_mels") or 80)

    def describe(self) -> str:
        if self.head is None:
            return "rule-based lip-sync from phone timings (no trained head configured; pass --head V_*.pth)"
        return f"trained {self.head_kind} head {self.head_path}"

    def _head_predict(self, features: np.ndarray) -> np.ndarray:
        from motion.heads import predict

        with self._lock:
            return predict(self.head, features, fps=FEATURE_FPS, num_frames=features.shape[1])

    def _mel_face(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        from motion.features import TTS_SAMPLE_RATE, log_mel

        a = np.asarray(audio, dtype=np.float32)
        if sample_rate != TTS_SAMPLE_RATE:
            import soxr

            a = soxr.resample(a, sample_rate, TTS_SAMPLE_RATE).astype(np.float32)
        return self._head_predict(log_mel(a, self.n_mels))

    def _finish(self, frames: np.ndarray, src_fps: float, duration_s: float, source: str) -> FaceResult:
        n = num_frames_for(duration_s, self.fps)
        if src_fps != self.fps or len(frames) != n:
            frames = resample_curves(frames, src_fps, self.fps, n)
        return FaceResult(postprocess(frames, self.fps, blink=self.blink), self.fps, source)

    def for_result(self, result: SynthesisResult) -> FaceResult:
        """The face of a synthesis result, aligned with its audio (pauses neutral for head-made faces)."""
        t0 = time.perf_counter()
        if self.head is not None and self.head_kind == "z" and result.z is not None \
                and result.z.shape[0] == getattr(self.head, "in_channels", result.z.shape[0]):
            raw = np.zeros((result.z.shape[1], NUM_VALUES), dtype=np.float32)
            for piece in result.pieces or [{"start_s": 0.0, "end_s": result.duration_s}]:
                a, b = int(round(piece["start_s"] * result.z_fps)), int(round(piece["end_s"] * result.z_fps))
                if b > a:
                    raw[a:b] = self._head_predict(result.z[:, a:b])
            face = self._finish(raw, result.z_fps, result.duration_s, f"trained z head ({self.head_path.name})")
        elif self.head is not None and self.head_kind == "mel":
            raw = self._mel_face(result.audio, result.sample_rate)
            face = self._finish(raw, FEATURE_FPS, result.duration_s, f"trained mel head ({self.head_path.name})")
        else:
            face = self._finish(rule_based_face(result, self.fps), self.fps, result.duration_s,
                                "rule-based lip-sync from phone durations")
        result.timings["face"] = time.perf_counter() - t0
        return face

    def for_audio(self, audio: np.ndarray, sample_rate: int, posterior=None) -> FaceResult:
        """A face for any audio: mel head; else z head on ``posterior`` (a ``motion.features.PosteriorEncoder``);
        else a loudness-driven jaw (labelled as such)."""
        duration = len(audio) / float(sample_rate)
        if self.head is not None and self.head_kind == "mel":
            return self._finish(self._mel_face(audio, sample_rate), FEATURE_FPS, duration,
                                f"trained mel head ({self.head_path.name})")
        if self.head is not None and self.head_kind == "z" and posterior is not None:
            from motion.features import TTS_SAMPLE_RATE

            a = np.asarray(audio, dtype=np.float32)
            if sample_rate != TTS_SAMPLE_RATE:
                import soxr

                a = soxr.resample(a, sample_rate, TTS_SAMPLE_RATE).astype(np.float32)
            return self._finish(self._head_predict(posterior.encode(a)), FEATURE_FPS, duration,
                                f"trained z head on the voice's posterior encoder ({self.head_path.name})")
        return self._finish(energy_face(audio, sample_rate, self.fps), self.fps, duration,
                            "loudness-driven jaw only (no trained head configured: pass --head V_*.pth for real lip-sync)")


# --- outputs ------------------------------------------------------------------------------------------------------


def new_request_dir(root: str | os.PathLike) -> Path:
    """A fresh, uniquely named folder under ``root`` for one request's files."""
    path = Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def plot_curves(frames: np.ndarray, fps: float, path: str | os.PathLike, title: str = "") -> Path:
    """PNG of the main blendshape curves over time."""
    import matplotlib

    t = (np.arange(len(frames)) + 0.5) / fps
    # CJK titles: fall back to WenQuanYi (Debian fonts-wqy-microhei) where DejaVu has no glyph
    fonts = {"font.family": ["DejaVu Sans", "WenQuanYi Micro Hei", "sans-serif"]}
    with matplotlib.rc_context(fonts):
        return _plot(frames, t, path, title)


def _plot(frames: np.ndarray, t: np.ndarray, path: str | os.PathLike, title: str) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for name in PLOT_NAMES:
        ax.plot(t, frames[:, INDEX[name]], label=name, linewidth=1.2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("weight")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, max(t[-1] if len(t) else 0.0, 1e-3))
    ax.set_title(title or "blendshape curves")
    ax.legend(loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.stem + ".part.png")
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path


def write_outputs(
    out_dir: str | os.PathLike, audio: np.ndarray, sample_rate: int, face: FaceResult, meta: dict[str, Any] | None = None,
    stem: str = "speech",
) -> dict[str, Path]:
    """Write ``<stem>.wav``, ``.npy`` ([T, 61] float32), ``.csv`` (Live Link Face app format), ``.json`` and ``.png``."""
    from motion.audio import write_wav_pcm16
    from motion.llf_csv import write_csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{stem}.{k}" for k in ("wav", "npy", "csv", "json", "png")}
    write_wav_pcm16(paths["wav"], audio, sample_rate)
    tmp = out / f"{stem}.part.npy"
    np.save(tmp, np.asarray(face.frames, dtype=np.float32))
    os.replace(tmp, paths["npy"])
    write_csv(paths["csv"], face.frames, face.fps)
    info = {
        "names": list(NAMES), "fps": face.fps, "num_frames": int(len(face.frames)), "sample_rate": int(sample_rate),
        "audio_seconds": len(audio) / float(sample_rate), "face_source": face.source, **(meta or {}),
    }
    tmp = out / f"{stem}.json.part"
    tmp.write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, paths["json"])
    plot_curves(face.frames, face.fps, paths["png"], title=meta.get("title", "") if meta else "")
    return paths


# --- streaming ----------------------------------------------------------------------------------------------------


class Streamer:
    """Streams one clip at a time in a background thread (a new request stops the previous one)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_message = ""

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._thread = None

    def start(self, target: str, frames: np.ndarray, fps: float, audio: np.ndarray | None, sample_rate: int,
              host: str, port: int, with_audio: bool = True) -> str:
        """Start sending to ``target`` ('livelink' or 'vmc'); returns a status line at once."""
        self.stop()
        self._stop = threading.Event()
        stop = self._stop
        if target == "livelink":
            from motion.livelink import LiveLinkSender

            sender = LiveLinkSender(host=host, port=int(port))  # raises a clear ValueError for a bad host

            def run_one(a):
                with sender:
                    return sender.stream(frames, fps, a, sample_rate if a is not None else None, stop=stop)
        elif target == "vmc":
            from motion.vmc import stream_face

            def run_one(a):
                return stream_face(frames, fps, host, int(port), audio=a, sample_rate=sample_rate if a is not None else None,
                                   stop=stop)
        else:
            raise ValueError(f"unknown target {target!r}")

        def run() -> None:
            try:
                try:
                    run_one(audio if with_audio else None)
                except RuntimeError as err:  # no sound device on this machine: send the face alone
                    if not with_audio or "audio output" not in str(err):
                        raise
                    log.warning("%s; streaming the face without sound", err)
                    self.last_message = f"no audio device ({err}); face sent without sound"
                    run_one(None)
            except Exception as err:  # noqa: BLE001 - reported in the UI
                log.error("streaming to %s:%s failed: %s", host, port, err)
                self.last_message = f"streaming failed: {err}"

        self._thread = threading.Thread(target=run, name=f"stream-{target}", daemon=True)
        self._thread.start()
        what = "Live Link (Unreal)" if target == "livelink" else "VMC"
        return f"streaming {len(frames)} frames at {fps:g} fps to {what} {host}:{port}" + (" with audio" if with_audio else "")

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


__all__ = [
    "DemoVoice", "FaceMaker", "FaceResult", "PLOT_NAMES", "Streamer", "energy_face", "new_request_dir", "plot_curves",
    "rule_based_face", "write_outputs",
]
