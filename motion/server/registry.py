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
            "sample_rate": int(v.sample_rate),
        }

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


_STEP = re.compile(r"G_(\d+)\.pth$")


def _step(name: str) -> int:
    m = _STEP.search(name)
    return int(m.group(1)) if m else 10**10


class ModelRegistry:
    """Voices by id; ``add`` / ``local_models`` accept only paths inside ``roots`` (after resolving symlinks)."""

    def __init__(self, roots: list[str], bert_dir: str | None = None, precision: str = "fp32") -> None:
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.bert_dir, self.precision = bert_dir, precision
        self.models: dict[int, Entry] = {}
        self._next = 0
        self._lock = threading.Lock()

    # --- paths ---------------------------------------------------------------------------------------------------

    def confine(self, path: str, what: str = "path") -> Path:
        """``path`` (relative to a root, or absolute) resolved; refused unless it lies inside one of the roots."""
        if not isinstance(path, str) or not path.strip() or "\x00" in path:
            raise PathRefused(f"{what}: give a path inside the model roots")
        if not self.roots:
            raise PathRefused("no model roots are configured on this server (--model-root)")
        raw = Path(path)
        candidates = [raw] if raw.is_absolute() else [root / raw for root in self.roots]
        for cand in candidates:
            real = Path(os.path.realpath(cand))
            for root in self.roots:
                if real == root or root in real.parents:
                    return real
        raise PathRefused(f"{what} {path!r} is outside the model roots this server allows")

    # --- models --------------------------------------------------------------------------------------------------

    def add_voice(self, voice: Any, model_path: str, config_path: str, device: str, language: str) -> int:
        with self._lock:
            mid = self._next
            self.models[mid] = Entry(voice, model_path, config_path, device, language)
            self._next += 1
            return mid

    def load_dir(self, model_dir: str, device: str = "cpu", language: str = "ZH",
                 checkpoint: str | None = None, config: str | None = None) -> int:
        from bert_vits2.synthesis import Voice, find_model_files

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
        voice = Voice.load(files, device=device, precision=self.precision)
        return self.add_voice(voice, str(real), str(os.path.realpath(files.config)), device, language)

    def add(self, model_path: str, config_path: str | None, device: str, language: str) -> int:
        """``/models/add``: a ``G_*.pth`` inside the roots (its ``config.json`` next to it or one folder up)."""
        ckpt = self.confine(model_path, "model_path")
        if not ckpt.is_file() or not _STEP.search(ckpt.name):
            raise NotFound(f"model_path {model_path!r}: no G_<step>.pth file there")
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
        """``{folder: [G_*.pth, models/G_*.pth, ...]}`` for the folders of a root (upstream's get_local)."""
        roots = [self.confine(root_dir, "root_dir")] if root_dir else self.roots
        loaded = {e.model_path for e in self.models.values()}
        out: dict[str, list[str]] = {}
        for root in roots:
            if not root.is_dir():
                continue
            for sub in sorted([p for p in root.iterdir() if p.is_dir()] + [root]):
                real = Path(os.path.realpath(sub))
                if not any(real == r or r in real.parents for r in self.roots):
                    continue  # a symlink that leads out of the roots
                files = []
                for folder, prefix in ((sub, ""), (sub / "models", "models/")):
                    if not folder.is_dir():
                        continue
                    names = [p.name for p in folder.iterdir() if p.is_file() and _STEP.search(p.name)
                             and not (only_unloaded and os.path.realpath(p) in loaded)]
                    files += [prefix + n for n in sorted(names, key=_step)]
                if files:
                    key = sub.name if sub != root else "."
                    if len(roots) > 1:
                        key = f"{root.name}/{key}"
                    out[key] = files
        return out


__all__ = ["Entry", "ModelRegistry", "NotFound", "PathRefused"]
