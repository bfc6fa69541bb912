"""A loaded Bert-VITS2 v2.3 voice and ``synthesize``: text -> audio, z, phones and their durations.

This is upstream's ``infer.py`` + the text handling of its ``webui.py`` as a library (spec §6):

- :func:`find_model_files` locates a voice (``G_*.pth`` latest, ``config.json``, the three BERT folders) and says, for
  every missing file, what it is and where to put it; :meth:`Voice.load` loads the generator once.
- :meth:`Voice.synthesize` accepts ZH / JP / EN / ``mix`` (``[speaker]<zh>..<en>..``) / ``auto`` (split by script),
  optional paragraph / sentence splitting with pauses (and ``|`` slices, as upstream), synthesises each piece and
  joins them. The result keeps the latent ``z`` (86.13 frames/s, pause frames zero-filled), every phone with its
  duration in seconds (pauses included as ``"_"``), so a face computed from it lines up with the final audio.
- One model per :class:`Voice`; a lock serialises requests (torch's global RNG is used for the BERT fillers and the
  noise, so concurrent calls must not interleave).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

LANGUAGE_CHOICES = ("ZH", "JP", "EN", "mix", "auto")
#: upstream webui defaults (spec §6)
DEFAULTS: dict[str, float] = {
    "sdp_ratio": 0.5, "noise_scale": 0.6, "noise_scale_w": 0.9, "length_scale": 1.0, "style_weight": 0.7,
    "sentence_pause_s": 0.2, "paragraph_pause_s": 1.0,
}
PHONE_LANG = {"ZH": "zh", "JP": "ja", "EN": "en"}
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…\.])\s*")


class SynthesisError(ValueError):
    """Bad request or voice (unknown speaker, empty text, ...); the message says what to do."""


# --- text pieces --------------------------------------------------------------------------------------------------


def split_text(
    text: str, by_paragraph: bool = False, by_sentence: bool = False,
    paragraph_pause_s: float = DEFAULTS["paragraph_pause_s"], sentence_pause_s: float = DEFAULTS["sentence_pause_s"],
) -> list[tuple[str, float]]:
    """Cut ``text`` into ``(piece, pause_after_s)``.

    ``|`` always separates slices (no pause, as upstream); ``by_paragraph`` splits at line breaks with
    ``paragraph_pause_s`` between paragraphs; ``by_sentence`` splits after sentence-final punctuation with
    ``sentence_pause_s``. The last piece has no pause after it. Empty pieces are dropped.
    """
    out: list[tuple[str, float]] = []
    paragraphs = re.split(r"\n\s*\n|\n", text) if by_paragraph else [text]
    for para in paragraphs:
        for sl in para.split("|"):
            sentences = [s for s in _SENTENCE_END.split(sl)] if by_sentence else [sl]
            for s in sentences:
                if s.strip():
                    out.append((s.strip(), float(sentence_pause_s) if by_sentence else 0.0))
        if out:
            out[-1] = (out[-1][0], float(paragraph_pause_s) if by_paragraph else out[-1][1])
    if out:
        out[-1] = (out[-1][0], 0.0)
    return out


def language_pieces(text: str, language: str) -> list[tuple[str | None, str, str]]:
    """``(speaker override or None, ZH/JP/EN, text)`` runs of one piece for ``language`` (a code, ``mix`` or ``auto``)."""
    from bert_vits2.text.bert import normalize_language
    from bert_vits2.text.language import split_auto, split_mix

    lang = str(language).strip()
    if lang.lower() == "mix":
        return split_mix(text)
    if lang.lower() == "auto":
        return [(None, code, piece) for code, piece in split_auto(text)]
    return [(None, normalize_language(lang), text)]


# --- results ------------------------------------------------------------------------------------------------------


@dataclass
class SynthesisResult:
    """Audio and what a face needs. ``durations`` are seconds and sum to the audio length (pauses included)."""

    audio: np.ndarray  # float32 [N] in [-1, 1]
    sample_rate: int
    phones: list[str]
    durations: np.ndarray  # float64 seconds, one per phone
    phone_langs: list[str]  # 'zh' / 'ja' / 'en' (Bert-VITS2 symbols) or 'ipa' (eSpeak NG), one per phone
    z: np.ndarray | None = None  # float32 [C, T] at z_fps (zeros in pauses), None for voices without one
    z_fps: float = 44100 / 512
    pieces: list[dict[str, Any]] = field(default_factory=list)  # text, language, speaker, start_s, end_s
    voice: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / float(self.sample_rate)


def join_pieces(parts: Sequence[dict[str, Any]], sample_rate: int, hop: int | None = None) -> SynthesisResult:
    """Concatenate per-piece outputs (dicts with audio, phones, durations, phone_langs, z?, pause_after_s, meta) into
    one :class:`SynthesisResult`. With ``hop`` pauses are rounded to whole z frames so audio and z stay aligned."""
    audio, z, phones, durs, langs, pieces = [], [], [], [], [], []
    has_z = bool(parts) and hop is not None and all(p.get("z") is not None for p in parts)
    t = 0.0
    for part in parts:
        a = np.asarray(part["audio"], dtype=np.float32).reshape(-1)
        start = t
        audio.append(a)
        phones += list(part["phones"])
        d = np.asarray(part["durations"], dtype=np.float64)
        # make the phones cover exactly this piece's audio (Bert-VITS2: exact already; eSpeak: float rounding)
        if len(d) and abs(d.sum() - len(a) / sample_rate) > 1e-9:
            d = d.copy()
            d[-1] = max(0.0, d[-1] + len(a) / sample_rate - d.sum())
        durs.append(d)
        langs += list(part["phone_langs"])
        if has_z:
            z.append(np.asarray(part["z"], dtype=np.float32))
        t += len(a) / sample_rate
        pieces.append({**part.get("meta", {}), "start_s": start, "end_s": t})
        pause = float(part.get("pause_after_s", 0.0))
        if pause > 0:
            if hop:
                n_frames = int(round(pause * sample_rate / hop))
                n = n_frames * hop
                if has_z:
                    z.append(np.zeros((z[-1].shape[0], n_frames), dtype=np.float32))
            else:
                n = int(round(pause * sample_rate))
            if n > 0:
                audio.append(np.zeros(n, dtype=np.float32))
                phones.append("_")
                durs.append(np.array([n / sample_rate]))
                langs.append(langs[-1] if langs else "zh")
                t += n / sample_rate
    if not audio:
        raise SynthesisError("nothing to synthesise: the text is empty after splitting; type some words")
    return SynthesisResult(
        audio=np.concatenate(audio), sample_rate=int(sample_rate), phones=phones,
        durations=np.concatenate(durs) if durs else np.zeros(0), phone_langs=langs,
        z=np.concatenate(z, axis=1) if has_z else None,
        z_fps=(sample_rate / hop) if hop else 44100 / 512, pieces=pieces,
    )


# --- finding the files of a voice ---------------------------------------------------------------------------------


@dataclass
class FileStatus:
    """One file or folder a voice needs: where it was looked for, whether it was found, what it is for."""

    name: str
    path: Path | None
    found: bool
    what: str
    how: str = ""
    required: bool = True


@dataclass
class ModelFiles:
    checkpoint: Path | None
    config: Path | None
    bert_dirs: dict[str, Path]
    status: list[FileStatus]

    @property
    def complete(self) -> bool:
        """Generator and config found (BERT folders are needed only for the languages actually used)."""
        return self.checkpoint is not None and self.config is not None

    def describe(self) -> str:
        """Markdown list: found / missing, what each file is and where to put it."""
        lines = []
        for s in self.status:
            mark = "found" if s.found else ("**missing**" if s.required else "missing (optional)")
            lines.append(f"- {s.name}: {mark} — `{s.path}`" if s.path else f"- {s.name}: {mark}")
            lines.append(f"  - {s.what}")
            if not s.found and s.how:
                lines.append(f"  - {s.how}")
        return "\n".join(lines)


def find_model_files(
    model_dir: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    bert_dir: str | os.PathLike | None = None,
    bert_dirs: dict[str, str | os.PathLike] | None = None,
) -> ModelFiles:
    """Locate a voice's files. Order: explicit paths; then in ``model_dir``: the latest ``G_*.pth`` (also under
    ``models/``), ``config.json`` (or ``../config.json``), BERT folders ``bert/<name>``; then ``bert_dir/<name>``;
    then the project default ``bert/<name>`` (``BV2_BERT_ROOT``)."""
    from bert_vits2.checkpoint import latest_checkpoint_path
    from bert_vits2.text.bert import BERT_MODELS, LANGUAGES, default_bert_dir, normalize_language

    mdir = Path(model_dir) if model_dir else None
    status: list[FileStatus] = []
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is None and mdir is not None:
        for d in (mdir, mdir / "models"):
            found = latest_checkpoint_path(d) if d.is_dir() else None
            if found:
                ckpt = Path(found)
                break
    status.append(FileStatus(
        "generator checkpoint (G_*.pth)", ckpt or (mdir / "G_<step>.pth" if mdir else None), bool(ckpt and ckpt.is_file()),
        "the trained Bert-VITS2 v2.3 voice (train_ms.py writes G_<step>.pth; the newest is used)",
        "put G_<step>.pth into the model folder (--model-dir) or pass --checkpoint PATH",
    ))
    cfg = Path(config) if config else None
    if cfg is None and mdir is not None:
        for c in (mdir / "config.json", mdir.parent / "config.json"):
            if c.is_file():
                cfg = c
                break
    status.append(FileStatus(
        "config.json", cfg or (mdir / "config.json" if mdir else None), bool(cfg and cfg.is_file()),
        "the voice's training config (model sizes, speakers spk2id, sample rate)",
        "copy the config.json the voice was trained with next to G_*.pth, or pass --config PATH",
    ))
    dirs: dict[str, Path] = {}
    explicit = {normalize_language(k): Path(v) for k, v in (bert_dirs or {}).items() if v}
    for lang in LANGUAGES:
        info = BERT_MODELS[lang]
        candidates = [explicit[lang]] if lang in explicit else []
        if bert_dir:
            candidates.append(Path(bert_dir) / info.folder_name)
        if mdir is not None:
            candidates.append(mdir / "bert" / info.folder_name)
        candidates.append(default_bert_dir(lang))
        chosen = next((c for c in candidates if (c / "config.json").is_file()), candidates[0])
        dirs[lang] = chosen
        status.append(FileStatus(
            f"{lang} BERT ({info.folder_name})", chosen, (chosen / "config.json").is_file(), info.purpose,
            f"download {info.hf_repo} into that folder (e.g. `huggingface-cli download {info.hf_repo} --local-dir "
            f"{chosen}`), or into <model-dir>/bert/{info.folder_name}, or pass --bert-dir ROOT",
            required=False,
        ))
    return ModelFiles(ckpt if ckpt and ckpt.is_file() else None, cfg if cfg and cfg.is_file() else None, dirs, status)


# --- the voice ----------------------------------------------------------------------------------------------------


class Voice:
    """A Bert-VITS2 v2.3 generator in memory with its config and BERT folders; thread-safe ``synthesize``."""

    kind = "bert-vits2"

    def __init__(self, model: torch.nn.Module, hps: Any, files: ModelFiles, device: str = "cpu") -> None:
        self.model, self.hps, self.files, self.device = model, hps, files, device
        self._lock = threading.Lock()
        self.name = files.checkpoint.name if files.checkpoint else "voice"

    @classmethod
    def load(cls, files: ModelFiles, device: str = "cpu", precision: str = "fp32") -> "Voice":
        """Load the generator of ``files`` (see :func:`find_model_files`); clear error if something is missing.

        ``precision``: ``fp32`` / ``bf16`` / ``auto`` (see :func:`bert_vits2.checkpoint.load_model_for_inference`).
        """
        from bert_vits2.checkpoint import load_model_for_inference

        if not files.complete:
            raise SynthesisError("cannot load the Bert-VITS2 voice:\n" + files.describe())
        model, hps = load_model_for_inference(files.config, files.checkpoint, device=device, precision=precision)
        log.info("loaded voice %s (%d speakers, precision %s)", files.checkpoint, len(hps.data.spk2id),
                 getattr(model, "precision", precision))
        return cls(model, hps, files, device)

    @property
    def speakers(self) -> list[str]:
        spk = self.hps.data.spk2id
        return sorted(spk, key=lambda k: spk[k])

    @property
    def sample_rate(self) -> int:
        return int(self.hps.data.sampling_rate)

    @property
    def hop(self) -> int:
        return int(self.hps.data.hop_length)

    def _speaker_id(self, speaker: str | None) -> int:
        spk = self.hps.data.spk2id
        if speaker is None or speaker == "":
            return int(spk[self.speakers[0]])
        if speaker not in spk:
            raise SynthesisError(f"unknown speaker {speaker!r}; this voice has: {', '.join(self.speakers)}")
        return int(spk[speaker])

    def _infer_piece(
        self, text: str, language: str, sid: int, sdp_ratio: float, noise_scale: float, noise_scale_w: float,
        length_scale: float, style_text: str | None, style_weight: float, timings: dict[str, float],
    ) -> dict[str, Any]:
        from bert_vits2.text.inputs import get_text

        t0 = time.perf_counter()
        inp = get_text(text, language, self.hps, bert_dirs=self.files.bert_dirs, device=self.device,
                       style_text=style_text or None, style_weight=style_weight)
        t1 = time.perf_counter()
        dev = self.device
        with torch.no_grad():
            x = inp.phone_ids.to(dev)[None]
            o, attn, _, (z, *_rest) = self.model.infer(
                x, torch.LongTensor([x.shape[1]]).to(dev), torch.LongTensor([sid]).to(dev), inp.tone_ids.to(dev)[None],
                inp.language_ids.to(dev)[None], inp.bert.to(dev)[None], inp.ja_bert.to(dev)[None],
                inp.en_bert.to(dev)[None], noise_scale=noise_scale, length_scale=length_scale,
                noise_scale_w=noise_scale_w, sdp_ratio=sdp_ratio,
            )
        t2 = time.perf_counter()
        timings["text_inputs"] = timings.get("text_inputs", 0.0) + t1 - t0
        timings["synthesis"] = timings.get("synthesis", 0.0) + t2 - t1
        frames = attn[0, 0].sum(0).double().cpu().numpy()  # z frames per phone
        audio = o[0, 0].float().cpu().numpy()
        return {
            "audio": audio, "z": z[0].float().cpu().numpy(), "phones": inp.phones,
            "durations": frames * self.hop / self.sample_rate, "phone_langs": [PHONE_LANG[language]] * len(inp.phones),
        }

    def synthesize(
        self,
        text: str,
        speaker: str | None = None,
        language: str = "ZH",
        sdp_ratio: float = DEFAULTS["sdp_ratio"],
        noise_scale: float = DEFAULTS["noise_scale"],
        noise_scale_w: float = DEFAULTS["noise_scale_w"],
        length_scale: float = DEFAULTS["length_scale"],
        style_text: str | None = None,
        style_weight: float = DEFAULTS["style_weight"],
        *,
        split_paragraphs: bool = False,
        split_sentences: bool = False,
        paragraph_pause_s: float = DEFAULTS["paragraph_pause_s"],
        sentence_pause_s: float = DEFAULTS["sentence_pause_s"],
        seed: int | None = None,
    ) -> SynthesisResult:
        """Synthesise ``text`` (see the module docstring). ``speaker`` is a name from :attr:`speakers` (default: the
        first); style text applies to single-language input only, as upstream."""
        if not isinstance(text, str) or not text.strip():
            raise SynthesisError("the text is empty; type something to say")
        sid = self._speaker_id(speaker)
        single = str(language).lower() not in ("mix", "auto")
        timings: dict[str, float] = {}
        parts = []
        with self._lock:
            if seed is not None:
                torch.manual_seed(int(seed))
            for piece, pause in split_text(text, split_paragraphs, split_sentences, paragraph_pause_s, sentence_pause_s):
                runs = language_pieces(piece, language)
                for j, (spk_override, lang, run_text) in enumerate(runs):
                    run_sid = self._speaker_id(spk_override) if spk_override else sid
                    part = self._infer_piece(run_text, lang, run_sid, sdp_ratio, noise_scale, noise_scale_w, length_scale,
                                             style_text if single else None, style_weight, timings)
                    part["pause_after_s"] = pause if j == len(runs) - 1 else 0.0
                    part["meta"] = {"text": run_text, "language": lang,
                                    "speaker": spk_override or speaker or self.speakers[0]}
                    parts.append(part)
        result = join_pieces(parts, self.sample_rate, hop=self.hop)
        result.voice, result.timings = self.name, timings
        return result


__all__ = [
    "DEFAULTS", "FileStatus", "LANGUAGE_CHOICES", "ModelFiles", "SynthesisError", "SynthesisResult", "Voice",
    "find_model_files", "join_pieces", "language_pieces", "split_text",
]
