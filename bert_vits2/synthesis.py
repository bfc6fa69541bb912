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
- Every request is a :class:`~bert_vits2.request.SynthesisRequest` and draws from its own ``torch.Generator``
  (seeded results do not depend on other requests). One model per :class:`Voice`; its lock, held per generator call,
  shares the CPU between concurrent requests.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from bert_vits2 import streaming
from bert_vits2.checkpoint_files import latest_checkpoint_path
from bert_vits2.inference import FastGenerator, load_model_for_inference
from bert_vits2.request import LANGUAGE_CHOICES, MAX_SEED, WEBUI_DEFAULTS, SynthesisError, SynthesisRequest
from bert_vits2.results import PieceOutput, StreamChunk, SynthesisResult, join_pieces, pause_samples
from bert_vits2.streaming import StreamOptions
from bert_vits2.text.bert import BERT_MODELS, LANGUAGES, default_bert_dir, normalize_language, resolve_bert_precision
from bert_vits2.text.inputs import get_text
from bert_vits2.text.language import split_auto, split_mix

log = logging.getLogger(__name__)

#: upstream web UI defaults (one table: :data:`bert_vits2.request.WEBUI_DEFAULTS`)
DEFAULTS = WEBUI_DEFAULTS
PHONE_LANG = {"ZH": "zh", "JP": "ja", "EN": "en"}
# a sentence ends after end punctuation of any supported language, or at a line break
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…\.\n])\s*")
STREAMED_TEXT = "(streamed text)"  # the request's text when the text arrives in pieces (each sentence replaces it)
_CLAUSE_END = re.compile(r"(?<=[，,、：:])\s*")  # where min_clause_chars may cut a long sentence early


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


class SentenceStream:
    """Text arriving in pieces (tokens of a language model) -> complete sentences, cut exactly where
    :func:`split_text_slices` cuts the whole text with ``by_sentence`` (so the speech equals the whole text's).

    ``min_clause_chars``: also cut an unfinished sentence at its last comma once it holds at least that many
    characters (speech starts earlier; the cut changes the audio there, as two generator calls differ from one)."""

    def __init__(self, min_clause_chars: int | None = None) -> None:
        if min_clause_chars is not None and int(min_clause_chars) < 1:
            raise SynthesisError(f"min_clause_chars must be 1 or more, got {min_clause_chars}")
        self.min_clause_chars = min_clause_chars
        self._buffer = ""

    def feed(self, piece: str) -> list[str]:
        """The sentences (and clauses) that ``piece`` completes."""
        return [text for text, _clause in self.feed_marked(piece)]

    def feed_marked(self, piece: str) -> list[tuple[str, bool]]:
        """:meth:`feed` with, for each, whether it is a clause cut at a comma (no pause follows it)."""
        if not isinstance(piece, str):
            raise SynthesisError(f"streamed text must be strings, got {type(piece).__name__}")
        self._buffer += piece
        done = [(text, False) for text in self._take(_SENTENCE_END)]
        return done + ([(text, True) for text in self._clauses()] if self.min_clause_chars else [])

    def close(self) -> list[str]:
        """The rest (the text ended)."""
        rest, self._buffer = self._buffer, ""
        return [s.strip() for s in _SENTENCE_END.split(rest) if s.strip()]

    def _take(self, boundary: re.Pattern) -> list[str]:
        cuts = [m.start() for m in boundary.finditer(self._buffer) if m.start() > 0]
        if not cuts:
            return []
        done, self._buffer = self._buffer[:cuts[-1]], self._buffer[cuts[-1]:]
        return [s.strip() for s in boundary.split(done) if s.strip()]

    def _clauses(self) -> list[str]:
        if len(self._buffer.strip()) < int(self.min_clause_chars):
            return []
        return self._take(_CLAUSE_END)


def language_pieces(text: str, language: str) -> list[tuple[str | None, str, str]]:
    """``(speaker override or None, ZH/JP/EN, text)`` runs of one piece for ``language`` (a code, ``mix`` or ``auto``)."""
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
    pause_before_s: float = 0.0  # streamed text: the pause between sentences goes out before the next one


def streamed_calls(pieces: Iterable[str], language: str, sentence_pause_s: float,
                   min_clause_chars: int | None = None) -> Iterator[SliceCall]:
    """The generator calls for text arriving in pieces: one per complete sentence (:class:`SentenceStream`) as soon as
    it is complete, ``sentence_pause_s`` between sentences (none after a ``min_clause_chars`` clause). Joined, the
    speech equals the whole text's with ``split_sentences`` (the same sentences, calls and pauses)."""
    if str(language).strip().lower() == "mix":
        raise SynthesisError("streamed text cannot be 'mix' ([speaker] tags may span pieces); use ZH, JP, EN or auto")
    sentences = SentenceStream(min_clause_chars)
    pause = 0.0

    def plan(marked: list[tuple[str, bool]]) -> Iterator[SliceCall]:
        nonlocal pause
        for text, clause in marked:
            for k, call in enumerate(plan_slices(text, language)):
                call.pause_before_s = pause if k == 0 else 0.0
                yield call
            pause = 0.0 if clause else float(sentence_pause_s)

    for piece in pieces:
        yield from plan(sentences.feed_marked(piece))
    yield from plan([(text, False) for text in sentences.close()])


def streamed_request(request: Any, text_pieces: Iterable[str] | None, *args: Any,
                     **kwargs: Any) -> tuple[SynthesisRequest, Iterable[str] | None]:
    """``stream``'s arguments -> the request and the streamed text pieces (None: the request's own text)."""
    if text_pieces is None and not isinstance(request, (str, SynthesisRequest)) and isinstance(request, Iterable):
        request, text_pieces = STREAMED_TEXT, request
    if text_pieces is not None and isinstance(request, SynthesisRequest):
        request = request.replace(text=STREAMED_TEXT)
    return SynthesisRequest.of(request, *args, **kwargs), text_pieces


def _mix_slices(piece: str) -> list[tuple[str | None, list[tuple[str, str]], bool]]:
    """``[speaker]<zh>..<en>..`` text (``|`` allowed inside) -> ``(speaker, runs, joined_to_next)`` slices.

    Runs of one speaker stay in one slice until a ``|`` cuts it; a new ``[speaker]`` starts a new slice that is
    not trimmed against the previous speaker's (the two are separate requests upstream)."""
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

    def __init__(self, model: torch.nn.Module, hps: Any, files: ModelFiles, device: str = "cpu",
                 bert_precision: str | None = None) -> None:
        self.model, self.hps, self.files, self.device = model, hps, files, device
        self._lock = threading.Lock()
        self.name = files.checkpoint.name if files.checkpoint else "voice"
        #: the BERT's precision (:data:`bert_vits2.text.bert.BERT_PRECISIONS`); by default the generator's (bf16 voice:
        #: bf16 BERT; fp32: fp32, exact as before). ``int8`` trades exactness for speed: see :meth:`load`
        self.bert_precision = resolve_bert_precision(bert_precision, getattr(model, "precision", "fp32"), device)
        # streaming needs z only: the fast decoder takes 0 frames (no decoder work), the plain one at least 1
        self._latent_only_len = 0 if isinstance(getattr(model, "dec", None), FastGenerator) else 1

    @classmethod
    def load(cls, files: ModelFiles, device: str = "cpu", precision: str = "fp32",
             bert_precision: str | None = None) -> "Voice":
        """Load the generator of ``files`` (see :func:`find_model_files`); clear error if something is missing.

        ``precision``: ``fp32`` / ``bf16`` / ``auto`` (see :func:`bert_vits2.inference.load_model_for_inference`).
        ``bert_precision``: ``None``/``auto`` (the generator's), ``fp32``, ``bf16`` or ``int8`` (dynamic int8
        quantisation of the BERT's linears, CPU only). Why int8: a BERT-large feature for a short clause is bound by
        reading its 1.3 GB of fp32 weights; int8 reads a quarter of that and takes about half the time (the first
        audio's largest part after the flow). It changes the features slightly (README: measured error), so the audio
        is no longer bit-equal to upstream's; ``synthesize`` and ``stream`` still agree with each other.
        """
        if not files.complete:
            raise SynthesisError("cannot load the Bert-VITS2 voice:\n" + files.describe())
        resolve_bert_precision(bert_precision, "fp32", device)  # a bad value fails before the model loads
        model, hps = load_model_for_inference(files.config, files.checkpoint, device=device, precision=precision,
                                              warmup_s=None)  # bf16: bucket shapes warmed (bounded, logged)
        log.info("loaded voice %s (%d speakers, precision %s)", files.checkpoint, len(hps.data.spk2id),
                 getattr(model, "precision", precision))
        return cls(model, hps, files, device, bert_precision=bert_precision)

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


    def _generators(self, seed: int | None) -> tuple[torch.Generator, torch.Generator]:
        """The request's own random streams: CPU (BERT fillers, duration noise) and the model's device (prior
        noise), both seeded with ``seed`` (as ``torch.manual_seed`` seeds both for upstream). Without a seed one is
        drawn from torch's global RNG, so ``torch.manual_seed(n)`` before an unseeded call still reproduces it."""
        if seed is None:
            seed = int(torch.randint(0, MAX_SEED, (1,)).item())
        cpu = torch.Generator().manual_seed(int(seed))
        device = torch.device(self.device)
        if device.type == "cpu":
            return cpu, cpu
        return cpu, torch.Generator(device=device).manual_seed(seed)

    def _slice_inputs(self, call: SliceCall, request: SynthesisRequest, cpu_gen: torch.Generator) -> list[tuple]:
        """Text frontend + BERT of each run of ``call``, trimmed at the joins (spec §4, §6: ``_`` + blanks covered
        by [CLS] / [SEP]); runs with nothing left are dropped."""
        blanks = bool(getattr(self.hps.data, "add_blank", True))
        head, tail = (3, 2) if blanks else (1, 1)
        style_text = request.style_text if request.is_single_language else None
        runs = []
        for k, (lang, run_text) in enumerate(call.runs):
            inp = get_text(run_text, lang, self.hps, bert_dirs=self.files.bert_dirs, device=self.device,
                           style_text=style_text, style_weight=request.style_weight, generator=cpu_gen,
                           bert_precision=self.bert_precision)
            n = len(inp.phone_ids)
            a = head if (k > 0 or call.skip_start) else 0
            b = max(a, n - tail if (k < len(call.runs) - 1 or call.skip_end) else n)
            runs.append((lang, run_text, inp.bert[:, a:b], inp.ja_bert[:, a:b], inp.en_bert[:, a:b],
                         inp.phone_ids[a:b], inp.tone_ids[a:b], inp.language_ids[a:b], inp.phones[a:b]))
        return [r for r in runs if len(r[5])]

    def _infer_slice(self, call: SliceCall, sid: int, request: SynthesisRequest,
                     gens: tuple[torch.Generator, torch.Generator], timings: dict[str, float],
                     decode: bool = True) -> list[PieceOutput]:
        """One :class:`SliceCall` as ONE generator call (upstream ``infer_multilang``): each run's inputs (text
        frontend, BERT, the randn fillers drawn run by run as upstream) are trimmed at the joins and concatenated.

        Returns one piece per run: the slice's audio / z are cut at the frame where the run's first id starts, so
        phones, durations, z and audio stay aligned. ``request.peak_normalize``: the slice's audio becomes upstream
        web UI's 16-bit output (:func:`peak_normalize_pcm16`) as float (int16 / 32768). ``decode=False`` (streaming):
        pieces carry ``latent`` (the slice's z [1, C, T]), ``latent_span`` (the run's frames in it) and ``g``."""
        t0 = time.perf_counter()
        runs = self._slice_inputs(call, request, gens[0])
        t1 = time.perf_counter()
        timings["text_inputs"] = timings.get("text_inputs", 0.0) + t1 - t0
        if not runs:
            log.warning("nothing left to say in %r after trimming the slice joins; skipped", call.runs)
            return []
        dev = self.device
        bert, ja_bert, en_bert, x, tone, language = (torch.cat([r[i] for r in runs], dim=-1).to(dev)[None]
                                                     for i in range(2, 8))
        with torch.no_grad():
            o, attn, _, (z, *_rest) = self.model.infer(
                x, torch.LongTensor([x.shape[1]]).to(dev), torch.LongTensor([sid]).to(dev), tone, language,
                bert, ja_bert, en_bert, noise_scale=request.noise_scale, length_scale=request.length_scale,
                noise_scale_w=request.noise_scale_w, sdp_ratio=request.sdp_ratio,
                max_len=None if decode else self._latent_only_len,
                generator=gens[0], device_generator=gens[1],
            )
            g = None if decode else self.model.emb_g(torch.LongTensor([sid]).to(dev)).unsqueeze(-1)
        timings["synthesis"] = timings.get("synthesis", 0.0) + time.perf_counter() - t1
        frames = attn[0, 0].sum(0).double().cpu().numpy()  # z frames per id
        z_np = z[0].float().cpu().numpy()
        audio = o[0, 0].float().cpu().numpy() if decode else None
        if audio is not None and request.peak_normalize:
            audio = peak_normalize_pcm16(audio).astype(np.float32) / 32768.0
        pieces, i0, f0 = [], 0, 0
        for lang, run_text, *_t, phones in runs:
            i1 = i0 + len(phones)
            f1 = f0 + int(round(frames[i0:i1].sum()))
            piece = PieceOutput(phones=list(phones), durations=frames[i0:i1] * self.hop / self.sample_rate,
                                phone_langs=[PHONE_LANG[lang]] * len(phones), text=run_text, language=lang,
                                z=z_np[:, f0:f1])
            if decode:
                piece.audio = audio[f0 * self.hop:f1 * self.hop]
            else:  # the whole slice z: the stream decodes frames f0..f1 with the slice around them as context
                piece.latent, piece.g, piece.latent_span = z, g, (f0, f1)
            pieces.append(piece)
            i0, f0 = i1, f1
        pieces[-1].pause_after_s = call.pause_after_s
        return pieces

    def _silence(self, seconds: float, language: str) -> PieceOutput:
        """A pause as a piece of its own (streamed text: the pause before the next sentence), whole z frames long."""
        n = pause_samples(seconds, self.sample_rate, self.hop)
        channels = int(getattr(self.hps.model, "inter_channels", 192)) if hasattr(self.hps, "model") else 192
        return PieceOutput(phones=["_"], durations=np.array([n / self.sample_rate]),
                           phone_langs=[PHONE_LANG.get(language, "zh")], language=language,
                           audio=np.zeros(n, np.float32), z=np.zeros((channels, n // self.hop), np.float32))

    def _iter_parts(self, request: SynthesisRequest, timings: dict[str, float], decode: bool = True,
                    calls: Iterable[SliceCall] | None = None) -> Iterator[PieceOutput]:
        """The pieces of ``request`` one by one (what :func:`join_pieces` joins), shared by :meth:`synthesize` and
        :meth:`stream` so both always cut and synthesise the text the same way, from the request's own generator.

        Each slice of :func:`plan_slices` is one generator call (upstream ``infer_multilang``), trimmed at ``|``
        joins; it yields one piece per language run of the slice. The voice's lock is held per slice: it shares the
        CPU fairly between requests (the random draws no longer depend on it)."""
        sid = self._speaker_id(request.speaker)
        gens = self._generators(request.seed)
        if calls is None:
            calls = plan_slices(request.text, request.language, request.split_paragraphs, request.split_sentences,
                                request.paragraph_pause_s, request.sentence_pause_s)
        for call in calls:
            if call.pause_before_s > 0:
                yield self._silence(call.pause_before_s, call.runs[0][0] if call.runs else "ZH")
            call_sid = self._speaker_id(call.speaker) if call.speaker else sid
            with self._lock:
                pieces = self._infer_slice(call, call_sid, request, gens, timings, decode=decode)
            for piece in pieces:
                piece.speaker = call.speaker or request.speaker or self.speakers[0]
                yield piece

    def synthesize(self, request: SynthesisRequest | str, *args: Any, **kwargs: Any) -> SynthesisResult:
        """Synthesise a :class:`~bert_vits2.request.SynthesisRequest` (or the same fields as arguments:
        ``synthesize(text, speaker, language, sdp_ratio, ..., seed=1)``). See the module docstring.

        Each ``|`` slice (each mix/auto slice with all its language runs) is one generator call with the padding
        trimmed at the ``|`` joins, as upstream's web UI (see :func:`plan_slices`). ``peak_normalize=True`` gives
        that web UI's output level too: every slice peak-normalised and truncated to 16 bit
        (:func:`peak_normalize_pcm16`; ``(result.audio * 32768).astype(np.int16)`` recovers the int16 samples)."""
        req = SynthesisRequest.of(request, *args, **kwargs)
        timings: dict[str, float] = {}
        result = join_pieces(list(self._iter_parts(req, timings)), self.sample_rate, hop=self.hop)
        result.voice, result.timings = self.name, timings
        return result

    def stream(self, request: SynthesisRequest | str | Iterable[str], *args: Any, options: StreamOptions | None = None,
               cancel: threading.Event | None = None, text_pieces: Iterable[str] | None = None,
               min_clause_chars: int | None = None, **kwargs: Any) -> Iterator[StreamChunk]:
        """:meth:`synthesize` as a stream of :class:`~bert_vits2.results.StreamChunk` (same request, same pieces,
        same random draws).

        Pieces are computed in order and decoded in chunks, all in the iterating thread on the CPU (a producer thread
        computes the next piece meanwhile where the decoder is on a GPU: see :mod:`bert_vits2.streaming`); the joined
        audio equals ``synthesize``'s for the same ``seed`` within float rounding. ``options``: chunk sizes (:class:`~bert_vits2.streaming.StreamOptions`). Close the
        generator or set ``cancel`` to stop early. ``peak_normalize`` is refused: it needs a whole slice's peak
        before the slice's first sample can be sent. Faces: ``motion.face.streaming.with_faces`` attaches them.

        **Text streamed in**: ``text_pieces`` (or ``request`` itself) may be an iterable of text pieces (the tokens of
        a language model, read as they come; the request's own text is then unused); each
        sentence is spoken as soon as it is complete (:func:`streamed_calls`), and the speech equals the whole text's
        with ``split_sentences=True``. ``min_clause_chars`` starts a long sentence at a comma (earlier speech, not
        equal to the whole text's there)."""
        req, pieces = streamed_request(request, text_pieces, *args, **kwargs)
        if req.peak_normalize:
            raise SynthesisError("peak_normalize is not available while streaming (each slice's level depends on its "
                                 "whole audio); use synthesize(..., peak_normalize=True)")
        self._speaker_id(req.speaker)  # an unknown speaker fails here, before anything starts
        calls = None if pieces is None else streamed_calls(pieces, req.language, req.sentence_pause_s,
                                                           min_clause_chars)
        return streaming.run_stream(
            lambda: self._iter_parts(req, {}, decode=False, calls=calls), sample_rate=self.sample_rate, hop=self.hop,
            dec=self.model.dec, options=options or StreamOptions(),
            context_frames=streaming.decoder_context_frames(getattr(self.hps, "model", None)), cancel=cancel,
            voice=self.name,
        )


__all__ = [
    "DEFAULTS", "FileStatus", "LANGUAGE_CHOICES", "ModelFiles", "PieceOutput", "StreamChunk", "SynthesisError",
    "SynthesisRequest", "SynthesisResult", "Voice",
    "find_model_files", "join_pieces", "language_pieces", "split_text",
    "SentenceStream", "SliceCall", "peak_normalize_pcm16", "plan_slices", "split_text_slices", "streamed_calls",
    "streamed_request",
]
