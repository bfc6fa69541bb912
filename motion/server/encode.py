"""Payload encoders: audio as WAV / PCM, speech with a face as JSON or a zip, and the WebSocket messages."""

from __future__ import annotations

import base64
import io
import json
import struct
import zipfile
from typing import Any

import numpy as np
import soundfile as sf

from motion.arkit import NAMES
from motion.livelink.app_csv import csv_text

__all__ = ["audio_message", "face_message", "face_payload", "pcm16", "pcm_bytes", "wav_bytes", "wav_header"]

FACE_FORMATS = ("json", "csv", "npy")
STREAM_FORMATS = {"wav": "audio/wav", "pcm": "audio/L16", "f32": "application/octet-stream"}


def pcm16(audio: np.ndarray) -> np.ndarray:
    """float -> int16 as libsndfile writes PCM_16 (clip, x 32767, round)."""
    a = np.clip(np.nan_to_num(np.asarray(audio, dtype=np.float32)), -1.0, 1.0)
    return np.rint(a * 32767.0).astype("<i2")


def pcm_bytes(audio: np.ndarray, fmt: str) -> bytes:
    """Raw little-endian samples: ``f32`` (float32) or anything else as 16-bit PCM."""
    if fmt == "f32":
        return np.asarray(audio, dtype="<f4").tobytes()
    return pcm16(audio).tobytes()


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
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.nan_to_num(np.asarray(audio, dtype=np.float32)), -1.0, 1.0), int(sample_rate),
             subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _rounded(frames: np.ndarray) -> list:
    return np.round(np.asarray(frames, dtype=np.float64), 6).tolist()


def face_payload(audio: np.ndarray, sample_rate: int, frames: np.ndarray, fps: float, fmt: str,
                 meta: dict[str, Any]) -> tuple[bytes, str, dict[str, str]]:
    """Speech with a face in one response: ``(body, media type, headers)``. ``json``: one object with the wav as
    base64 and the curves; ``csv`` / ``npy``: a zip of ``speech.wav``, ``face.csv`` (Live Link Face app CSV) or
    ``face.npy`` [T, 61] float32, and ``meta.json``."""
    meta = {"sample_rate": int(sample_rate), "samples": int(len(audio)), "fps": float(fps), "frames": int(len(frames)),
            "names": list(NAMES), **meta}
    wav = wav_bytes(audio, sample_rate)
    if fmt == "json":
        body = {**meta, "audio_wav_base64": base64.b64encode(wav).decode("ascii"), "curves": _rounded(frames)}
        return json.dumps(body).encode(), "application/json", {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("speech.wav", wav)
        zf.writestr("meta.json", json.dumps(meta, indent=1))
        if fmt == "npy":
            nb = io.BytesIO()
            np.save(nb, np.asarray(frames, dtype=np.float32))
            zf.writestr("face.npy", nb.getvalue())
        else:
            zf.writestr("face.csv", csv_text(frames, fps))
    return buf.getvalue(), "application/zip", {"Content-Disposition": f'attachment; filename="speech_face_{fmt}.zip"'}


def audio_message(chunk: Any) -> str:
    """The JSON that precedes a chunk's binary audio on ``/ws/voice``."""
    return json.dumps({"type": "audio", "index": chunk.index, "piece": chunk.piece, "start_sample": chunk.start_sample,
                       "samples": len(chunk.audio), "pause": chunk.pause, "text": chunk.text,
                       "ready_s": round(chunk.timings.get("ready_s", 0.0), 4)})


def face_message(start: int, frames: np.ndarray) -> str:
    """Face frames ``start ..`` of a stream's 60 fps grid."""
    return json.dumps({"type": "face", "start": int(start), "frames": _rounded(frames)})
