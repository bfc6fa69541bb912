"""A loaded Bert-VITS2 v2.3 voice and ``synthesize``: text -> audio, z, phones and their durations.

This is upstream's ``infer.py`` + the text handling of its ``webui.py`` as a library (spec §6):

- :func:`find_model_files` locates a voice (``G_*.pth`` latest, ``config.json``, the three BERT folders) and says, for
  every missing file, what it is and where to put it; :meth:`Voice.load` loads the generator once.
- :meth:`Voice.synthesize` accepts ZH / JP / EN / ``mix`` (``[speaker]<zh>..<en>..``) / ``auto`` (langid + script
  rules, :func:`bert_vits2.text.language.split_auto`), optional paragraph / sentence splitting with pauses, and
  ``|`` slices as upstream's web UI: each slice (with all its mix/auto language runs) is ONE ``infer_multilang``-style
  generator call, its padding trimmed at the ``|`` joins (:func:`plan_slices`); pieces are then joined. The result
  keeps the latent ``z`` (86.13 frames/s, pause frames zero-filled), every phone with its duration in seconds
  (pauses included as ``"_"``), so a face computed from it lines up with the final audio.
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
    return [(piece, pause) for piece, pause, _joined in
            split_text_slices(text, by_paragraph, by_sentence, paragraph_pause_s, sentence_pause_s)]


def split_text_slices(
    text: str, by_paragraph: bool = False, by_sentence: bool = False,
    paragraph_pause_s: float = DEFAULTS["paragraph_pause_s"], sentence_pause_s: float = DEFAULTS["sentence_pause_s"],
    slices: bool = True,
) -> list[tuple[str, float, bool]]:
    """:func:`split_text` plus, per piece, whether it is joined to the next one by a ``|`` with no pause between
    (upstream trims the padding at such joins: ``skip_end`` on this piece, ``skip_start`` on the next).
    ``slices=False`` leaves ``|`` in the pieces (the ``mix`` syntax cuts its slices itself)."""
    out: list[list[Any]] = []  # [piece, pause, joined, paragraph index, slice index]
    paragraphs = re.split(r"\n\s*\n|\n", text) if by_paragraph else [text]
    for p_i, para in enumerate(paragraphs):
        for s_i, sl in enumerate(para.split("|") if slices else [para]):
            sentences = [s for s in _SENTENCE_END.split(sl)] if by_sentence else [sl]
            for s in sentences:
                if s.strip():
                    out.append([s.strip(), float(sentence_pause_s) if by_sentence else 0.0, False, p_i, s_i])
        if out:
            out[-1][1] = float(paragraph_pause_s) if by_paragraph else out[-1][1]
    if out:
        out[-1][1] = 0.0
    for cur, nxt in zip(out, out[1:]):
        cur[2] = cur[1] == 0.0 and cur[3] == nxt[3] and cur[4] != nxt[4]
    return [(piece, pause, joined) for piece, pause, joined, _p, _s in out]


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


@dataclass
class SliceCall:
    """One ``infer_multilang``-style generator call: the language runs of one slice, synthesised as ONE utterance
    (their inputs concatenated), as upstream's web UI does for every ``|`` slice and every mix/auto slice.

    ``skip_start`` / ``skip_end``: trim the utterance's leading 3 / trailing 2 ids (the ``_`` boundary phone and its
    blanks, which the BERT's [CLS] / [SEP] cover) because a ``|`` joins it to the previous / next slice. Inside the
    call every join between two runs is trimmed the same way (spec §6: infer_multilang trims 3/2 boundary ids).
    """

    runs: list[tuple[str, str]]  # (ZH/JP/EN, text)
    speaker: str | None = None  # mix: the [speaker] tag (None = the request's speaker)
    skip_start: bool = False
    skip_end: bool = False
    pause_after_s: float = 0.0


def _mix_slices(piece: str) -> list[tuple[str | None, list[tuple[str, str]], bool]]:
    """``[speaker]<zh>..<en>..`` text (``|`` allowed inside) -> ``(speaker, runs, joined_to_next)`` slices.

    Runs of one speaker stay in one slice until a ``|`` cuts it; a new ``[speaker]`` starts a new slice that is
    not trimmed against the previous speaker's (the two are separate requests upstream)."""
    from bert_vits2.text.language import split_mix

    slices: list[list[Any]] = []
    cur: list[Any] | None = None
    cur_spk: object = object()
    for spk, lang, chunk in split_mix(piece):
        if spk != cur_spk:
            cur, cur_spk = None, spk
        for k, part in enumerate(chunk.split("|")):
            if k > 0:  # a "|": the current slice ends here and joins the next one
                if cur is not None:
                    cur[2] = True
                cur = None
            part = part.strip()
            if not part:
                continue
            if cur is None:
                cur = [spk, [], False]
                slices.append(cur)
            cur[1].append((lang, part))
    for i, sl in enumerate(slices):  # a join needs a following slice of the same speaker
        sl[2] = sl[2] and i + 1 < len(slices) and slices[i + 1][0] == sl[0]
    return [(spk, runs, joined) for spk, runs, joined in slices]


def plan_slices(
    text: str, language: str, by_paragraph: bool = False, by_sentence: bool = False,
    paragraph_pause_s: float = DEFAULTS["paragraph_pause_s"], sentence_pause_s: float = DEFAULTS["sentence_pause_s"],
) -> list[SliceCall]:
    """How :meth:`Voice.synthesize` cuts ``text``: one :class:`SliceCall` per generator call.

    ZH/JP/EN: every ``|`` slice is one run. ``auto``: every ``|`` slice is cut into language runs by
    :func:`bert_vits2.text.language.split_auto` and synthesised as one call. ``mix``: ``[speaker]<lang>`` runs, cut into
    slices at ``|`` and at speaker changes. Paragraph / sentence pieces (with pauses) are never trimmed."""
    from bert_vits2.text.bert import normalize_language
    from bert_vits2.text.language import split_auto

    mode = str(language).strip()
    calls: list[SliceCall] = []
    if mode.lower() == "mix":
        for piece, pause, _joined in split_text_slices(text, by_paragraph, by_sentence, paragraph_pause_s,
                                                        sentence_pause_s, slices=False):
            groups = _mix_slices(piece)
            for k, (spk, runs, joined) in enumerate(groups):
                calls.append(SliceCall(runs, spk, k > 0 and groups[k - 1][2], joined,
                                       pause if k == len(groups) - 1 else 0.0))
        return calls
    items = split_text_slices(text, by_paragraph, by_sentence, paragraph_pause_s, sentence_pause_s)
    code = None if mode.lower() == "auto" else normalize_language(mode)
    for i, (piece, pause, joined) in enumerate(items):
        runs = [(code, piece)] if code else [(lang, t) for lang, t in split_auto(piece)]
        if runs:
            calls.append(SliceCall(runs, None, i > 0 and items[i - 1][2], joined, pause))
    return calls


def peak_normalize_pcm16(audio: np.ndarray) -> np.ndarray:
    """Upstream web UI's output conversion of one slice (gradio ``convert_to_16_bit_wav``): divide float audio by
    its peak, scale by 32767 and truncate to int16 (silence stays zeros)."""
    a = np.asarray(audio)
    peak = float(np.abs(a).max()) if a.size else 0.0
    if peak == 0.0:
        return np.zeros(a.shape, dtype=np.int16)
    return (a / peak * 32767).astype(np.int16)


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


@dataclass
class StreamChunk:
    """One piece of a stream (:meth:`Voice.stream`): audio samples, their z frames and face frames, in order.

    Joined in order, the chunks' audio is the whole utterance (``start_sample`` is where this one starts); ``z``
    covers the same span (``z_start`` = its first frame; zeros in pauses). ``face`` holds the frames of the stream's
    grid (frame ``k`` centred at ``(k + 0.5) / face_fps``) whose centres lie in this chunk, starting at frame
    ``face_start`` (None when the stream has no face function). ``timings``: ``ready_s`` (seconds from the start of
    the stream until this chunk was ready), ``decode_s`` (its HiFi-GAN time), ``face_s`` (its piece's face time).
    The last chunk has ``last=True``; it may hold no audio and only the face frames past the end of the audio.
    """

    index: int
    piece: int  # which part (sentence / language run) of the text it belongs to
    audio: np.ndarray  # float32 samples
    sample_rate: int
    start_sample: int
    z: np.ndarray | None
    z_start: int
    face: np.ndarray | None
    face_start: int
    face_fps: float
    text: str
    pause: bool  # the silence between two pieces
    last: bool
    timings: dict[str, float] = field(default_factory=dict)
    voice: str = ""

    @property
    def start_s(self) -> float:
        return self.start_sample / float(self.sample_rate)

    @property
    def end_s(self) -> float:
        return (self.start_sample + len(self.audio)) / float(self.sample_rate)


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
    from bert_vits2.checkpoint_files import latest_checkpoint_path
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
        from bert_vits2.inference import load_model_for_inference

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
        decode: bool = True,
    ) -> dict[str, Any]:
        """One piece through the text frontend and the generator. ``decode=False`` (streaming) stops before the
        HiFi-GAN: the part has ``latent`` (z [1, C, T]) and ``g`` instead of ``audio`` (same random draws)."""
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
                noise_scale_w=noise_scale_w, sdp_ratio=sdp_ratio, max_len=None if decode else 1,
            )
            g = None if decode else self.model.emb_g(torch.LongTensor([sid]).to(dev)).unsqueeze(-1)
        t2 = time.perf_counter()
        timings["text_inputs"] = timings.get("text_inputs", 0.0) + t1 - t0
        timings["synthesis"] = timings.get("synthesis", 0.0) + t2 - t1
        frames = attn[0, 0].sum(0).double().cpu().numpy()  # z frames per phone
        part = {
            "z": z[0].float().cpu().numpy(), "phones": inp.phones,
            "durations": frames * self.hop / self.sample_rate, "phone_langs": [PHONE_LANG[language]] * len(inp.phones),
        }
        if decode:
            part["audio"] = o[0, 0].float().cpu().numpy()
        else:
            part["latent"], part["g"] = z, g
        return part

    def _infer_slice(
        self, call: SliceCall, sid: int, sdp_ratio: float, noise_scale: float, noise_scale_w: float,
        length_scale: float, style_text: str | None, style_weight: float, timings: dict[str, float],
        decode: bool = True, peak_normalize: bool = False,
    ) -> list[dict[str, Any]]:
        """One :class:`SliceCall` as ONE generator call (upstream ``infer_multilang``): each run's inputs (text
        frontend, BERT, the randn fillers drawn run by run as upstream) are trimmed at the joins and concatenated.

        Returns one part per run (what :func:`join_pieces` joins): the slice's audio / z are cut at the frame where
        the run's first id starts, so phones, durations, z and audio stay aligned. ``peak_normalize``: the slice's
        audio becomes upstream web UI's 16-bit output (:func:`peak_normalize_pcm16`) as float (int16 / 32768).
        ``decode=False`` (streaming): parts carry ``latent`` (the slice's z [1, C, T]), ``latent_span`` (the run's
        frames in it) and ``g`` instead of ``audio``."""
        from bert_vits2.text.inputs import get_text

        blanks = bool(getattr(self.hps.data, "add_blank", True))
        head, tail = (3, 2) if blanks else (1, 1)  # `_` + blanks covered by [CLS] / [SEP] (spec §4, §6)
        t0 = time.perf_counter()
        pieces = []
        for k, (lang, run_text) in enumerate(call.runs):
            inp = get_text(run_text, lang, self.hps, bert_dirs=self.files.bert_dirs, device=self.device,
                           style_text=style_text or None, style_weight=style_weight)
            n = len(inp.phone_ids)
            a = head if (k > 0 or call.skip_start) else 0
            b = n - tail if (k < len(call.runs) - 1 or call.skip_end) else n
            b = max(a, b)
            pieces.append((lang, run_text, inp.bert[:, a:b], inp.ja_bert[:, a:b], inp.en_bert[:, a:b],
                           inp.phone_ids[a:b], inp.tone_ids[a:b], inp.language_ids[a:b], inp.phones[a:b]))
        t1 = time.perf_counter()
        timings["text_inputs"] = timings.get("text_inputs", 0.0) + t1 - t0
        pieces = [p for p in pieces if len(p[5])]
        if not pieces:
            log.warning("nothing left to say in %r after trimming the slice joins; skipped", call.runs)
            return []
        dev = self.device
        cat = [torch.cat([p[i] for p in pieces], dim=-1).to(dev)[None] for i in range(2, 8)]
        bert, ja_bert, en_bert, x, tone, language = cat
        with torch.no_grad():
            o, attn, _, (z, *_rest) = self.model.infer(
                x, torch.LongTensor([x.shape[1]]).to(dev), torch.LongTensor([sid]).to(dev), tone, language,
                bert, ja_bert, en_bert, noise_scale=noise_scale, length_scale=length_scale,
                noise_scale_w=noise_scale_w, sdp_ratio=sdp_ratio, max_len=None if decode else 1,
            )
            g = None if decode else self.model.emb_g(torch.LongTensor([sid]).to(dev)).unsqueeze(-1)
        timings["synthesis"] = timings.get("synthesis", 0.0) + time.perf_counter() - t1
        frames = attn[0, 0].sum(0).double().cpu().numpy()  # z frames per id
        z_np = z[0].float().cpu().numpy()
        audio = o[0, 0].float().cpu().numpy() if decode else None
        if audio is not None and peak_normalize:
            audio = peak_normalize_pcm16(audio).astype(np.float32) / 32768.0
        parts, i0, f0 = [], 0, 0
        for lang, run_text, *_t, phones in pieces:
            i1 = i0 + len(phones)
            f1 = f0 + int(round(frames[i0:i1].sum()))
            part = {"z": z_np[:, f0:f1], "phones": list(phones),
                    "durations": frames[i0:i1] * self.hop / self.sample_rate,
                    "phone_langs": [PHONE_LANG[lang]] * len(phones),
                    "meta": {"text": run_text, "language": lang}, "pause_after_s": 0.0}
            if decode:
                part["audio"] = audio[f0 * self.hop:f1 * self.hop]
            else:
                # the whole slice z: the stream decodes frames f0..f1 with the slice around them as context
                part["latent"], part["g"], part["latent_span"] = z, g, (f0, f1)
            parts.append(part)
            i0, f0 = i1, f1
        parts[-1]["pause_after_s"] = call.pause_after_s
        return parts

    def _iter_parts(
        self, text: str, speaker: str | None, language: str, sdp_ratio: float, noise_scale: float,
        noise_scale_w: float, length_scale: float, style_text: str | None, style_weight: float,
        split_paragraphs: bool, split_sentences: bool, paragraph_pause_s: float, sentence_pause_s: float,
        timings: dict[str, float], decode: bool = True, peak_normalize: bool = False,
    ):
        """The parts of ``text`` one by one (what :func:`join_pieces` joins), shared by :meth:`synthesize` and
        :meth:`stream` so both always cut and synthesise the text the same way. The caller holds the lock/RNG.

        Each slice of :func:`plan_slices` is one generator call (upstream ``infer_multilang``), trimmed at ``|``
        joins; it yields one part per language run of the slice."""
        sid = self._speaker_id(speaker)
        single = str(language).lower() not in ("mix", "auto")
        for call in plan_slices(text, language, split_paragraphs, split_sentences, paragraph_pause_s, sentence_pause_s):
            call_sid = self._speaker_id(call.speaker) if call.speaker else sid
            parts = self._infer_slice(call, call_sid, sdp_ratio, noise_scale, noise_scale_w, length_scale,
                                      style_text if single else None, style_weight, timings, decode=decode,
                                      peak_normalize=peak_normalize)
            for part in parts:
                part["meta"]["speaker"] = call.speaker or speaker or self.speakers[0]
                yield part

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
        peak_normalize: bool = False,
    ) -> SynthesisResult:
        """Synthesise ``text`` (see the module docstring). ``speaker`` is a name from :attr:`speakers` (default: the
        first); style text applies to single-language input only, as upstream.

        Each ``|`` slice (each mix/auto slice with all its language runs) is one generator call with the padding
        trimmed at the ``|`` joins, as upstream's web UI (see :func:`plan_slices`). ``peak_normalize=True`` gives
        that web UI's output level too: every slice peak-normalised and truncated to 16 bit
        (:func:`peak_normalize_pcm16`; ``(result.audio * 32768).astype(np.int16)`` recovers the int16 samples)."""
        if not isinstance(text, str) or not text.strip():
            raise SynthesisError("the text is empty; type something to say")
        timings: dict[str, float] = {}
        with self._lock:
            if seed is not None:
                torch.manual_seed(int(seed))
            parts = list(self._iter_parts(text, speaker, language, sdp_ratio, noise_scale, noise_scale_w, length_scale,
                                          style_text, style_weight, split_paragraphs, split_sentences,
                                          paragraph_pause_s, sentence_pause_s, timings, peak_normalize=peak_normalize))
        result = join_pieces(parts, self.sample_rate, hop=self.hop)
        result.voice, result.timings = self.name, timings
        return result

    def stream(
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
        peak_normalize: bool = False,
        face: Any = None,
        face_fps: float = 60.0,
        first_chunk_frames: int | None = None,
        max_chunk_frames: int | None = None,
        context_frames: int | None = None,
        cancel: threading.Event | None = None,
    ):
        """:meth:`synthesize` as a stream of :class:`StreamChunk` (same arguments, same pieces, same random draws).

        The next piece's text/BERT/encoder work runs in a producer thread while the current piece is decoded in
        chunks (see :mod:`bert_vits2.streaming`); the joined audio equals ``synthesize``'s for the same ``seed``
        within float rounding. ``face``: a function ``SynthesisResult -> [T, C]`` curves at ``face_fps`` applied to
        each piece's own result (``motion.face.streaming.face_function`` makes one from a ``FaceMaker``). Close the
        generator or set ``cancel`` to stop early. ``peak_normalize`` is refused: it needs a whole slice's peak
        before the slice's first sample can be sent."""
        from bert_vits2 import streaming

        if not isinstance(text, str) or not text.strip():
            raise SynthesisError("the text is empty; type something to say")
        if peak_normalize:
            raise SynthesisError("peak_normalize is not available while streaming (each slice's level depends on its "
                                 "whole audio); use synthesize(..., peak_normalize=True)")
        self._speaker_id(speaker)  # an unknown speaker fails here, before anything starts
        is_cuda = str(self.device).startswith("cuda") and torch.cuda.is_available()

        def produce():
            timings: dict[str, float] = {}
            it = self._iter_parts(text, speaker, language, sdp_ratio, noise_scale, noise_scale_w, length_scale,
                                  style_text, style_weight, split_paragraphs, split_sentences, paragraph_pause_s,
                                  sentence_pause_s, timings, decode=False)
            state = None
            while True:
                with self._lock:  # per piece, carrying this stream's RNG state across other requests
                    if state is None:
                        if seed is not None:
                            torch.manual_seed(int(seed))
                    else:
                        torch.set_rng_state(state[0])
                        if is_cuda:
                            torch.cuda.set_rng_state(state[1])
                    try:
                        part = next(it)
                    except StopIteration:
                        return
                    finally:
                        state = (torch.get_rng_state(), torch.cuda.get_rng_state() if is_cuda else None)
                yield part

        cfg = getattr(self.hps, "model", None)
        yield from streaming.run_stream(
            produce, sample_rate=self.sample_rate, hop=self.hop, dec=self.model.dec, face=face, face_fps=face_fps,
            first_chunk_frames=first_chunk_frames or streaming.DEFAULT_FIRST_CHUNK_FRAMES,
            max_chunk_frames=max_chunk_frames or streaming.DEFAULT_MAX_CHUNK_FRAMES,
            context_frames=context_frames if context_frames is not None else streaming.decoder_context_frames(cfg),
            cancel=cancel, voice=self.name,
        )


__all__ = [
    "DEFAULTS", "FileStatus", "LANGUAGE_CHOICES", "ModelFiles", "StreamChunk", "SynthesisError", "SynthesisResult",
    "Voice",
    "find_model_files", "join_pieces", "language_pieces", "split_text",
    "SliceCall", "peak_normalize_pcm16", "plan_slices", "split_text_slices",
]
