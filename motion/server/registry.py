"""Loaded voices by model id (upstream's ``/models/*`` semantics) with every client path confined to the roots."""

from __future__ import annotations

import gc
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bert_vits2.synthesis import Voice, find_model_files
from bert_vits2.text.bert import normalize_language

log = logging.getLogger(__name__)


class PathRefused(ValueError):
    """A path from a request that lies outside the configured model roots (or is not a model file)."""


class NotFound(LookupError):
    pass


@dataclass
class Entry:
    voice: Any  # bert_vits2.synthesis.Voice or motion.demo_voice.DemoVoice
    model_path: str
    config_path: str
    device: str
    language: str

    def info(self) -> dict[str, Any]:
        v = self.voice
        spk2id = dict(v.hps.data.spk2id) if hasattr(v, "hps") else {s: i for i, s in enumerate(v.speakers)}
        return {
            "config_path": self.config_path, "model_path": self.model_path, "device": self.device,
            "language": self.language, "spk2id": spk2id, "id2spk": {str(i): s for s, i in spk2id.items()},
            "version": str(getattr(getattr(v, "hps", None), "version", "demo") or "2.3"), "kind": v.kind,
            "sample_rate": int(v.sample_rate), "style2id": dict(STYLE2ID),
        }

    def missing_bert(self) -> str:
        """One line naming the BERT folders this voice lacks and how to get them ("" when none is missing)."""
        files = getattr(self.voice, "files", None)
        missing = [s for s in getattr(files, "status", []) if "BERT" in s.name and not s.found]
        if not missing:
            return ""
        parts = [f"{s.name.split()[0]} BERT folder {s.path} is missing ({s.how.split(', or ')[0]})" for s in missing]
        return "; ".join(parts) + "; requests in those languages answer 503 until then"

    def speaker_name(self, speaker_name: str | None, speaker_id: int | None) -> str | None:
        info = self.info()
        if speaker_name is None and speaker_id is None:
            return None
        if speaker_name is None:
            name = info["id2spk"].get(str(speaker_id))
            if name is None:
                raise NotFound(f"speaker_id={speaker_id} does not exist; this model has ids "
                               f"{', '.join(info['id2spk'])}")
            return name
        if speaker_name not in info["spk2id"]:
            raise NotFound(f"speaker_name={speaker_name!r} does not exist; this model has: "
                           f"{', '.join(info['spk2id'])}")
        return speaker_name


#: generator checkpoints a client may list and load: ``G_<step>.pth`` and the release forms ``G_<step>_release.pth``,
#: ``G_<step>_release_half.pth`` (:mod:`bert_vits2.release`)
_STEP = re.compile(r"^G_(\d+)(?:_release(?:_half)?)?\.pth$")
#: the one style of a Bert-VITS2 v2.3 voice, for clients made for Style-Bert-VITS2 (SillyTavern's SBVits2 lists
#: ``speaker (style)`` from ``style2id``); the ``style`` they send back is accepted and ignored
STYLE2ID = {"Neutral": 0}
#: upstream's default ``root_dir`` of ``/models/get_local``: ``Data/<name>/models/G_*.pth`` in the server's folder
DEFAULT_ROOT_DIR = "Data"


def api_language(value: str | None, default: str = "ZH") -> str:
    """A model's default language as upstream's clients show it: ``ZH`` / ``JP`` / ``EN`` (any case, ``JA`` too),
    ``mix`` or ``auto``; ValueError for anything else."""
    text = str(value or default).strip()
    if text.lower() in ("mix", "auto"):
        return text.lower()
    try:
        return normalize_language(text)
    except ValueError:
        raise ValueError(f"language={value!r}: use ZH, JP, EN, mix or auto") from None


def _step(name: str) -> tuple[int, str]:
    m = _STEP.search(name)
    return (int(m.group(1)) if m else 10**10, name)


class ModelRegistry:
    """Voices by id; ``add`` / ``local_models`` accept only paths inside ``roots`` (after resolving symlinks).

    ``base_dir`` is the folder the server runs in: relative paths are looked up there first (as upstream, whose paths
    are relative to its working folder), then in the other roots; it is one of the roots."""

    def __init__(self, roots: list[str], bert_dir: str | None = None, precision: str = "fp32",
                 base_dir: str | None = None, bert_precision: str | None = None) -> None:
        self.base_dir = Path(os.path.realpath(base_dir)) if base_dir else None
        self.model_roots = list(dict.fromkeys(Path(os.path.realpath(r)) for r in roots))  # listed by default
        self.roots = list(dict.fromkeys(([self.base_dir] if self.base_dir else []) + self.model_roots))
        self.bert_dir, self.precision, self.bert_precision = bert_dir, precision, bert_precision
        self.models: dict[int, Entry] = {}
        self._next = 0
        self._lock = threading.Lock()

    # --- paths ---------------------------------------------------------------------------------------------------

    def _inside(self, real: Path) -> bool:
        return any(real == root or root in real.parents for root in self.roots)

    def confine(self, path: str, what: str = "path") -> Path:
        """``path`` (relative to a root, or absolute) resolved; refused unless it lies inside one of the roots.

        A relative path is taken from the first root where it exists; one that exists somewhere but leads out of the
        roots (``..``, a symlink) is refused even when it does not exist in another root."""
        if not isinstance(path, str) or not path.strip() or "\x00" in path:
            raise PathRefused(f"{what}: give a path inside the model roots")
        if not self.roots:
            raise PathRefused("no model roots are configured on this server (--model-root)")
        raw = Path(path)
        reals = [Path(os.path.realpath(c)) for c in ([raw] if raw.is_absolute() else [r / raw for r in self.roots])]
        if any(r.exists() and not self._inside(r) for r in reals):
            raise PathRefused(f"{what} {path!r} is outside the model roots this server allows")
        inside = [r for r in reals if self._inside(r)]
        found = next((r for r in inside if r.exists()), inside[0] if inside else None)
        if found is None:
            raise PathRefused(f"{what} {path!r} is outside the model roots this server allows")
        return found

    # --- models --------------------------------------------------------------------------------------------------

    def add_voice(self, voice: Any, model_path: str, config_path: str, device: str, language: str) -> int:
        with self._lock:
            mid = self._next
            self.models[mid] = Entry(voice, model_path, config_path, device, language)
            self._next += 1
            return mid

    def load_dir(self, model_dir: str, device: str = "cpu", language: str = "ZH",
                 checkpoint: str | None = None, config: str | None = None) -> int:
        files = find_model_files(model_dir, config=config, checkpoint=checkpoint, bert_dir=self.bert_dir)
        real = os.path.realpath(files.checkpoint) if files.checkpoint else None
        with self._lock:  # the same file twice shares one voice in memory (as upstream)
            for entry in self.models.values():
                if real and entry.model_path == real:
                    shared = entry
                    break
            else:
                shared = None
        if shared is not None:
            return self.add_voice(shared.voice, shared.model_path, shared.config_path, device, language)
        voice = Voice.load(files, device=device, precision=self.precision, bert_precision=self.bert_precision)
        return self.add_voice(voice, str(real), str(os.path.realpath(files.config)), device, language)

    def add(self, model_path: str, config_path: str | None, device: str, language: str) -> int:
        """``/models/add``: a ``G_*.pth`` (or a ``_release`` one) inside the roots, or a folder there (its newest
        one, also under ``models/``); its ``config.json`` next to it or one folder up unless ``config_path``."""
        ckpt = self._checkpoint(model_path)
        if config_path:
            cfg = self.confine(config_path, "config_path")
            if not cfg.is_file():
                raise NotFound(f"config_path {config_path!r}: no such file")
        else:
            cfg = next((c for c in (ckpt.parent / "config.json", ckpt.parent.parent / "config.json") if c.is_file()),
                       None)
            if cfg is None:
                raise NotFound("no config.json next to the model or one folder up; pass config_path")
            cfg = self.confine(str(cfg), "config_path")
        return self.load_dir(str(ckpt.parent), device=device, language=language, checkpoint=str(ckpt), config=str(cfg))

    def _checkpoint(self, model_path: str) -> Path:
        path = self.confine(model_path, "model_path")
        if path.is_dir():
            names = [p for d in (path, path / "models") if d.is_dir() for p in d.iterdir()
                     if p.is_file() and _STEP.search(p.name)]
            if not names:
                raise NotFound(f"model_path {model_path!r}: no G_<step>.pth file in that folder or its models/")
            return max(names, key=lambda p: _step(p.name))
        if not path.is_file() or not _STEP.search(path.name):
            raise NotFound(f"model_path {model_path!r}: no G_<step>.pth (or G_<step>_release.pth) file there")
        return path

    def delete(self, model_id: int) -> None:
        with self._lock:
            if model_id not in self.models:
                raise NotFound(f"model_id={model_id} is not loaded")
            del self.models[model_id]
        gc.collect()

    def get(self, model_id: int) -> Entry:
        entry = self.models.get(model_id)
        if entry is None:
            raise NotFound(f"model_id={model_id} is not loaded; loaded: {sorted(self.models) or 'none'}")
        return entry

    def info(self) -> dict[str, Any]:
        return {str(k): e.info() for k, e in sorted(self.models.items())}

    def local_models(self, root_dir: str | None = None, only_unloaded: bool = False) -> dict[str, list[str]]:
        """``{folder: [G_*.pth, models/G_*.pth, ...]}`` for the folders of ``root_dir`` (upstream's get_local).

        No ``root_dir``: upstream's default ``Data`` in the server's folder when there is one, else the model roots."""
        if root_dir is None and self.base_dir is not None and (self.base_dir / DEFAULT_ROOT_DIR).is_dir():
            root_dir = DEFAULT_ROOT_DIR
        roots = [self.confine(root_dir, "root_dir")] if root_dir else self.model_roots
        loaded = {e.model_path for e in self.models.values()}
        out: dict[str, list[str]] = {}
        for root in roots:
            for key, files in self._listing(root, loaded, only_unloaded):
                out[f"{root.name}/{key}" if len(roots) > 1 else key] = files
        return out

    def _listing(self, root: Path, loaded: set[str], only_unloaded: bool) -> list[tuple[str, list[str]]]:
        if not root.is_dir():
            return []
        out = []
        for sub in sorted([p for p in root.iterdir() if p.is_dir()] + [root]):
            if not self._inside(Path(os.path.realpath(sub))):
                continue  # a symlink that leads out of the roots
            files = []
            for folder, prefix in ((sub, ""), (sub / "models", "models/")):
                if not folder.is_dir():
                    continue
                names = [p.name for p in folder.iterdir() if p.is_file() and _STEP.search(p.name)
                         and not (only_unloaded and os.path.realpath(p) in loaded)]
                files += [prefix + n for n in sorted(names, key=_step)]
            if files:
                out.append((sub.name if sub != root else ".", files))
        return out


__all__ = ["DEFAULT_ROOT_DIR", "api_language", "Entry", "ModelRegistry", "NotFound", "PathRefused", "STYLE2ID"]
