"""Training data of Bert-VITS2 v2.3: dataset over cleaned filelists, length-bucketed distributed sampler, collate.

Each line of a cleaned filelist (``wav|speaker|LANG|norm_text|phones|tones|word2ph``, written by preprocess_text)
becomes the tensors ``SynthesizerTrn.forward`` takes. The phone-level BERT feature comes from the ``.bert.pt`` cache
bert_gen wrote beside the wav; the linear spectrogram is computed once and cached beside the wav as ``.spec.pt``
(``mel_processing.load_wav_spectrogram``). As upstream, the two BERT channels of the other languages are filled
with N(0, 1) noise, and blanks get id 0 / tone 0 / language 0.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from bert_vits2.mel_processing import load_wav_spectrogram
from bert_vits2.models import BERT_DIM
from bert_vits2.preprocess import CleanedLine, bert_path_for
from bert_vits2.text import add_blank as add_blank_ids
from bert_vits2.text import cleaned_text_to_sequence

__all__ = ["DataError", "Utterance", "TextAudioSpeakerDataset", "DistributedBucketSampler", "collate_batch",
           "DEFAULT_BUCKET_BOUNDARIES", "DataProblem", "PreflightReport", "preflight_check"]

logger = logging.getLogger(__name__)

DEFAULT_BUCKET_BOUNDARIES = [32, 300, 400, 500, 600, 700, 800, 900, 1000]  # spectrogram frames (upstream)
_BERT_SLOT = {"ZH": 0, "JP": 1, "EN": 2}


class DataError(ValueError):
    """A filelist or cached feature that training cannot use; the message says what to run or fix."""


@dataclass(frozen=True)
class Utterance:
    """One usable training line and its estimated spectrogram length (frames)."""

    line: CleanedLine
    speaker_id: int
    frames: int


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


class TextAudioSpeakerDataset(Dataset):
    """Items ``(phones, spec, wav, sid, tones, languages, bert, ja_bert, en_bert)`` of one cleaned filelist.

    Lines are filtered like upstream (``min_text_len <= n_phones <= max_text_len``) and, unlike upstream, audio
    shorter than one training segment is dropped too (the model cannot cut a segment from it); every dropped line
    is counted in the log. ``lengths`` are frame counts estimated from the file size (16-bit mono PCM), as upstream.
    """

    def __init__(
        self,
        filelist: str | os.PathLike,
        hps: Any,
        spec_cache: bool = True,
        min_text_len: int = 1,
        max_text_len: int = 384,
        shuffle_seed: int | None = 1234,
        skip_lines: set[int] | frozenset[int] = frozenset(),
    ) -> None:
        """``skip_lines``: 1-based line numbers to leave out (the bad lines :func:`preflight_check` found)."""
        data = hps.data
        self.hps = hps
        self.sampling_rate = int(data.sampling_rate)
        self.hop_length = int(data.hop_length)
        self.add_blank = bool(_get(data, "add_blank", True))
        self.spec_cache = spec_cache
        self.spk2id: dict[str, int] = dict(_get(data, "spk2id", {}) or {})
        self.segment_samples = int(hps.train.segment_size)
        path = Path(filelist)
        if not path.is_file():
            raise DataError(f"filelist {path} does not exist: run preprocess_text.py (and bert_gen.py) first")
        utterances: list[Utterance] = []
        dropped = {"text length": 0, "too short audio": 0, "missing wav": 0, "unknown speaker": 0, "bad line": 0}
        for line_no, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
            if not raw.strip():
                continue
            if line_no in skip_lines:
                dropped["bad line"] += 1
                continue
            try:
                line = CleanedLine.parse(raw)
            except ValueError as exc:
                raise DataError(f"{path}:{line_no}: {exc} (is this a cleaned list from preprocess_text.py?)") from None
            if not min_text_len <= len(line.phones) <= max_text_len:
                dropped["text length"] += 1
                continue
            if line.speaker not in self.spk2id:
                if self.spk2id:
                    dropped["unknown speaker"] += 1
                    continue
                raise DataError(f"{path}:{line_no}: the config has no data.spk2id; run preprocess_text.py with this config")
            try:
                size = os.path.getsize(line.wav)
            except OSError:
                dropped["missing wav"] += 1
                logger.warning("%s:%d: %s not found, skipped", path, line_no, line.wav)
                continue
            samples = max(0, (size - 44) // 2)
            if samples < self.segment_samples:
                dropped["too short audio"] += 1
                continue
            utterances.append(Utterance(line, int(self.spk2id[line.speaker]), size // (2 * self.hop_length)))
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(utterances)
        self.utterances = utterances
        self.lengths = [u.frames for u in utterances]
        summary = ", ".join(f"{n} {why}" for why, n in dropped.items() if n)
        logger.info("%s: %d utterances%s", path, len(utterances), f" (dropped: {summary})" if summary else "")
        if not utterances:
            raise DataError(f"{path}: no usable utterance (dropped: {summary or 'none'}); each needs 1..{max_text_len} "
                            f"phones, a known speaker and at least {self.segment_samples} samples of audio")

    def __len__(self) -> int:
        return len(self.utterances)

    def text_tensors(self, line: CleanedLine) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        phones, tones, langs = cleaned_text_to_sequence(line.phones, line.tones, line.language)
        if self.add_blank:
            phones, tones, langs, _ = add_blank_ids(phones, tones, langs)
        return torch.LongTensor(phones), torch.LongTensor(tones), torch.LongTensor(langs)

    def bert_tensors(self, line: CleanedLine, n_ids: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bert_path = bert_path_for(line.wav)
        try:
            feature = torch.load(bert_path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise DataError(f"{bert_path} not found: run bert_gen.py over the train and val lists") from None
        if not isinstance(feature, torch.Tensor) or feature.dim() != 2 or feature.shape[1] != n_ids:
            shape = tuple(feature.shape) if isinstance(feature, torch.Tensor) else type(feature).__name__
            raise DataError(f"{bert_path}: shape {shape}, expected [{BERT_DIM}, {n_ids}] (the phones of {line.wav} "
                            "changed or add_blank differs): rerun bert_gen.py with --overwrite")
        if feature.shape[0] != BERT_DIM:
            raise DataError(f"{bert_path}: {feature.shape[0]} BERT channels, Bert-VITS2 needs {BERT_DIM} "
                            "(use the large BERT models of spec section 4)")
        slots = [torch.randn(BERT_DIM, n_ids) for _ in range(3)]
        slots[_BERT_SLOT[line.language]] = feature.float()
        return slots[0], slots[1], slots[2]

    def __getitem__(self, index: int):
        utt = self.utterances[index]
        phones, tones, langs = self.text_tensors(utt.line)
        bert, ja_bert, en_bert = self.bert_tensors(utt.line, len(phones))
        spec, wav = load_wav_spectrogram(utt.line.wav, self.hps.data, use_cache=self.spec_cache)
        return phones, spec, wav, torch.LongTensor([utt.speaker_id]), tones, langs, bert, ja_bert, en_bert


def collate_batch(batch: Sequence[tuple]) -> tuple[torch.Tensor, ...]:
    """Zero-pad a list of dataset items, longest spectrogram first.

    Returns ``(text, text_lengths, spec, spec_lengths, wav, wav_lengths, sid, tone, language, bert, ja_bert, en_bert)``.
    """
    order = sorted(range(len(batch)), key=lambda i: batch[i][1].size(1), reverse=True)
    n = len(batch)
    max_text = max(item[0].size(0) for item in batch)
    max_spec = max(item[1].size(1) for item in batch)
    max_wav = max(item[2].size(1) for item in batch)
    n_freq = batch[0][1].size(0)
    text = torch.zeros(n, max_text, dtype=torch.long)
    tone = torch.zeros(n, max_text, dtype=torch.long)
    language = torch.zeros(n, max_text, dtype=torch.long)
    berts = [torch.zeros(n, BERT_DIM, max_text) for _ in range(3)]
    spec = torch.zeros(n, n_freq, max_spec)
    wav = torch.zeros(n, 1, max_wav)
    text_lengths = torch.zeros(n, dtype=torch.long)
    spec_lengths = torch.zeros(n, dtype=torch.long)
    wav_lengths = torch.zeros(n, dtype=torch.long)
    sid = torch.zeros(n, dtype=torch.long)
    for row, i in enumerate(order):
        phones, s, w, speaker, tones, langs, b0, b1, b2 = batch[i]
        t = phones.size(0)
        text[row, :t], tone[row, :t], language[row, :t] = phones, tones, langs
        for dst, src in zip(berts, (b0, b1, b2)):
            dst[row, :, :t] = src
        spec[row, :, : s.size(1)] = s
        wav[row, :, : w.size(1)] = w
        text_lengths[row], spec_lengths[row], wav_lengths[row] = t, s.size(1), w.size(1)
        sid[row] = speaker[0]
    return text, text_lengths, spec, spec_lengths, wav, wav_lengths, sid, tone, language, berts[0], berts[1], berts[2]


class DistributedBucketSampler(Sampler[list[int]]):
    """Batches of similar length: items go to buckets ``(boundaries[i], boundaries[i+1]]`` by frame count.

    Items outside ``(boundaries[0], boundaries[-1]]`` are left out (upstream behaviour). Each bucket is padded by
    repetition to a multiple of ``num_replicas * batch_size`` so every rank gets the same number of full batches;
    rank ``r`` takes every ``num_replicas``-th item. Call ``set_epoch`` each epoch for a new shuffle.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        boundaries: Sequence[int],
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        if list(boundaries) != sorted(boundaries) or len(boundaries) < 2:
            raise ValueError(f"bucket boundaries must be at least two increasing frame counts, got {list(boundaries)}")
        self.lengths = list(lengths)
        self.batch_size = int(batch_size)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        buckets: list[list[int]] = [[] for _ in range(len(boundaries) - 1)]
        self.left_out = 0
        for idx, length in enumerate(self.lengths):
            slot = next((b for b in range(len(boundaries) - 1) if boundaries[b] < length <= boundaries[b + 1]), None)
            if slot is None:
                self.left_out += 1
            else:
                buckets[slot].append(idx)
        self.buckets = [b for b in buckets if b]
        self.boundaries = list(boundaries)
        if not self.buckets:
            raise DataError(f"no utterance has a length in ({boundaries[0]}, {boundaries[-1]}] frames; adjust "
                            "train.bucket_boundaries in the config")
        if self.left_out:
            logger.warning("%d utterance(s) outside the bucket boundaries %s (frames) are not used", self.left_out,
                           self.boundaries)
        per_step = self.num_replicas * self.batch_size
        self.samples_per_bucket = [math.ceil(len(b) / per_step) * per_step for b in self.buckets]
        self.num_samples = sum(self.samples_per_bucket) // self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        batches: list[list[int]] = []
        for bucket, total in zip(self.buckets, self.samples_per_bucket):
            order = torch.randperm(len(bucket), generator=gen).tolist() if self.shuffle else list(range(len(bucket)))
            order = (order * (total // len(order) + 1))[:total]
            mine = order[self.rank :: self.num_replicas]
            for start in range(0, len(mine), self.batch_size):
                batches.append([bucket[i] for i in mine[start : start + self.batch_size]])
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        return iter(batches)

    def __len__(self) -> int:
        return self.num_samples // self.batch_size


# ----------------------------------------------------------------------------------------------------------------------
# Pre-flight check: every problem of the lists before training step 1, instead of a DataLoader traceback mid-run


@dataclass(frozen=True)
class DataProblem:
    """One bad line: where it is, why, and whether training can go on without it (``fatal``: it would crash)."""

    file: str
    line: int  # 1-based; 0 for a problem of the whole file or config
    reason: str
    fatal: bool = True

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.reason}" + ("" if self.fatal else " (skipped in training)")


@dataclass
class PreflightReport:
    """Outcome of :func:`preflight_check` over the training and validation lists."""

    checked: int = 0
    problems: list[DataProblem] = field(default_factory=list)

    @property
    def errors(self) -> list[DataProblem]:
        return [p for p in self.problems if p.fatal]

    @property
    def warnings(self) -> list[DataProblem]:
        return [p for p in self.problems if not p.fatal]

    @property
    def ok(self) -> bool:
        return not self.errors

    def bad_lines(self, filelist: str | os.PathLike) -> set[int]:
        """Line numbers of ``filelist`` with a fatal problem (what ``skip_lines`` leaves out)."""
        name = str(filelist)
        return {p.line for p in self.errors if p.file == name and p.line}

    def describe(self) -> str:
        n_bad = len({(p.file, p.line) for p in self.errors})
        n_skipped = len({(p.file, p.line) for p in self.warnings} - {(p.file, p.line) for p in self.errors})
        head = f"data check: {self.checked} lines, {n_bad} bad, {n_skipped} skipped by the length filters"
        return "\n".join([head] + [f"  {p}" for p in self.errors + self.warnings])


def _bert_problem(bert_path: str, n_ids: int) -> str | None:
    if not os.path.isfile(bert_path):
        return f"missing {bert_path}: run bert_gen.py over the train and val lists"
    try:
        feature = torch.load(bert_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable cache is reported the same way
        return f"unreadable {bert_path} ({type(exc).__name__}): rerun bert_gen.py with --overwrite"
    if not isinstance(feature, torch.Tensor) or feature.dim() != 2 or tuple(feature.shape) != (BERT_DIM, n_ids):
        shape = tuple(feature.shape) if isinstance(feature, torch.Tensor) else type(feature).__name__
        return (f"{bert_path} has shape {shape}, expected ({BERT_DIM}, {n_ids}) for this line's phones: rerun "
                "bert_gen.py with --overwrite")
    return None


def _check_line(raw: str, hps: Any, spk2id: Mapping[str, int], segment: int, add_blank: bool,
                max_text_len: int) -> list[tuple[str, bool]]:
    """(reason, fatal) for everything wrong with one filelist line; empty when it is fine."""
    try:
        line = CleanedLine.parse(raw)
    except ValueError as exc:
        return [(f"{exc} (is this a cleaned list from preprocess_text.py?)", True)]
    found: list[tuple[str, bool]] = []
    try:
        phones, _, _ = cleaned_text_to_sequence(line.phones, line.tones, line.language)
    except ValueError as exc:
        found.append((str(exc), True))
        phones = list(line.phones)
    if line.speaker not in spk2id:
        found.append((f"unknown speaker {line.speaker!r} (not in data.spk2id of the config): rerun "
                      "preprocess_text.py with this config", True))
    if not os.path.isfile(line.wav):
        found.append((f"audio {line.wav} not found", True))
    else:
        try:
            info = sf.info(line.wav)
        except Exception as exc:  # noqa: BLE001 - soundfile raises several types by format
            found.append((f"cannot read audio {line.wav} ({' '.join(str(exc).split())[:120]})", True))
        else:
            rate = int(hps.data.sampling_rate)
            if info.samplerate != rate:
                found.append((f"{line.wav} is {info.samplerate} Hz, the config expects {rate} Hz: run resample.py",
                              True))
            if info.channels != 1:
                found.append((f"{line.wav} has {info.channels} channels, training audio must be mono: run "
                              "resample.py", True))
            if info.frames < segment:
                found.append((f"{line.wav} is shorter ({info.frames} samples) than one training segment ({segment})",
                              False))
    if not 1 <= len(line.phones) <= max_text_len:
        found.append((f"{len(line.phones)} phones, outside 1..{max_text_len}", False))
    n_ids = 2 * len(phones) + 1 if add_blank else len(phones)
    problem = _bert_problem(bert_path_for(line.wav), n_ids) if os.path.isfile(line.wav) else None
    if problem:
        found.append((problem, True))
    return found


def preflight_check(
    hps: Any,
    filelists: Sequence[str | os.PathLike] | None = None,
    progress: bool = True,
    max_text_len: int = 384,
) -> PreflightReport:
    """Check every line of the training (and validation) lists before training: parse, speaker, audio rate and
    channels, BERT feature shape; every problem with its file, line number and reason.

    Fatal problems (``report.errors``) would stop training mid-run; the others are lines the dataset's length
    filters leave out, as upstream. ``filelists`` defaults to ``data.training_files`` and ``data.validation_files``.
    Shows a tqdm progress bar over the lines unless ``progress`` is false.
    """
    data = hps.data
    if filelists is None:
        filelists = [data.training_files] + ([data.validation_files] if _get(data, "validation_files") else [])
    spk2id = dict(_get(data, "spk2id", {}) or {})
    segment = int(hps.train.segment_size)
    add_blank = bool(_get(data, "add_blank", True))
    report = PreflightReport()
    contents: list[tuple[str, list[str]]] = []
    for filelist in filelists:
        path = Path(filelist)
        if not path.is_file():
            report.problems.append(DataProblem(str(filelist), 0, "filelist not found: run preprocess_text.py "
                                                                 "(and bert_gen.py) first"))
            continue
        contents.append((str(filelist), path.read_text(encoding="utf-8-sig").splitlines()))
    if not spk2id:
        report.problems.append(DataProblem("config", 0, "data.spk2id is empty: run preprocess_text.py with this "
                                                        "config"))
    total = sum(1 for _, lines in contents for raw in lines if raw.strip())
    with tqdm(total=total, desc="checking data", unit="line", disable=not progress, leave=False) as bar:
        for name, lines in contents:
            for line_no, raw in enumerate(lines, 1):
                if not raw.strip():
                    continue
                report.checked += 1
                for reason, fatal in _check_line(raw, hps, spk2id, segment, add_blank, max_text_len):
                    report.problems.append(DataProblem(name, line_no, reason, fatal))
                bar.update(1)
    if report.errors:
        logger.warning("data check: %d bad line(s) in %s", len(report.errors), ", ".join(n for n, _ in contents))
    return report
