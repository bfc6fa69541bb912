"""Audio files → curve files: the library behind ``motion/wav_to_visemes.py``.

Each input (any audio or video file; folders are expanded) becomes ``<name>.v.npy`` ([T, 61] float32, Live Link
order), ``<name>.v.csv`` (the Live Link Face app's format) and ``<name>.v.json``, beside the input or in ``out_dir``.
Faces come from :class:`motion.face.api.FaceMaker`, exactly as in the web UI's Audio → face tab.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from bert_vits2.audio import AUDIO_EXTENSIONS, AudioReadError
from motion.face.outputs import write_curve_files

log = logging.getLogger(__name__)

__all__ = ["ConvertReport", "collect_inputs", "convert_file", "convert_files", "outputs_for"]


def collect_inputs(paths: list[str | os.PathLike]) -> list[Path]:
    """Files as given; folders expanded to their audio/video files (sorted, not recursive)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
        else:
            out.append(p)
    return out


def outputs_for(src: Path, out_dir: Path | None, unique_name: bool = False) -> tuple[Path, Path, Path]:
    """``<stem>.v.npy/.csv/.json``; ``unique_name`` keeps the extension (``x.flac.v.npy``) when stems collide."""
    name = src.name if unique_name else src.stem
    base = (out_dir or src.parent) / name
    return tuple(base.with_name(base.name + suffix) for suffix in (".v.npy", ".v.csv", ".v.json"))  # type: ignore[return-value]


def convert_file(maker, src: Path, out_dir: Path | None = None, unique_name: bool = False) -> tuple[Path, int]:
    """One file → its curve files; returns ``(npy path, frame count)``."""
    npy, csv, js = outputs_for(src, out_dir, unique_name)
    if npy.resolve() == src.resolve():
        raise AudioReadError(f"{src}: the output would overwrite the input; pass another --out-dir")
    face, audio = maker.for_file(src)
    model = maker.model or maker.default_model()
    meta = {
        "duration_s": round(len(audio) / 44100, 6), "source": str(src), "face_source": face.source,
        "model": str(model.path) if model is not None else None, "head": model.kind if model is not None else None,
        "offset_s": {"training": model.offset_s if model is not None else 0.0, "applied_delay": maker.delay_s},
        "postprocess": maker.post.as_dict(),
    }
    emotion = getattr(maker, "emotion", None)
    if emotion:
        from motion.face.emotion import parse_emotion

        meta["emotion"] = {"weights": parse_emotion(emotion), "intensity": maker.emotion_intensity}
    write_curve_files(npy, face.frames, face.fps, meta, csv, js)
    return npy, len(face.frames)


@dataclass
class ConvertReport:
    done: list[tuple[Path, Path, int]] = field(default_factory=list)  # (input, npy, frames)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, reason)


def convert_files(maker, inputs: list[Path], out_dir: Path | None = None) -> ConvertReport:
    """Convert every input; a file that cannot be read is reported (with the reason) and the others go on."""
    report = ConvertReport()
    stems: dict[tuple[Path, str], int] = {}
    for src in inputs:
        key = ((out_dir or src.parent).resolve(), src.stem)
        stems[key] = stems.get(key, 0) + 1
    for src in tqdm(inputs, desc="wav_to_visemes", unit="file", disable=len(inputs) < 2):
        unique = stems[((out_dir or src.parent).resolve(), src.stem)] > 1
        try:
            npy, n = convert_file(maker, src, out_dir, unique)
            report.done.append((src, npy, n))
        except (AudioReadError, ValueError) as err:
            report.failed.append((src, str(err)))
    return report
