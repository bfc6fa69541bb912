"""Dataset preparation for Bert-VITS2 v2.3 training: resample audio, clean transcriptions, cache BERT features.

The three steps of upstream's pipeline (``resample.py`` -> ``preprocess_text.py`` -> ``bert_gen.py``) as library
functions; the top-level scripts only parse arguments. Every step can be re-run: finished outputs are skipped, every file
is written atomically (temp file + ``os.replace``), and bad input is reported with its location and skipped instead of
stopping the run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import soundfile as sf
from tqdm import tqdm

from bert_vits2.audio import (  # noqa: F401
    AUDIO_EXTENSIONS,
    AudioReadError,
    read_audio,
    to_mono_resampled,
    write_wav_pcm16,
)
from bert_vits2.fileio import atomic_write, write_text_atomic
from bert_vits2.hparams import load_hparams, save_hparams
from bert_vits2.text import add_blank, clean_text

logger = logging.getLogger(__name__)

LANGUAGES = ("ZH", "JP", "EN")

# ----------------------------------------------------------------------------------------------------------------------
# small helpers


def _atomic_write_text(path: str | os.PathLike, text: str) -> None:
    write_text_atomic(path, text)


_worker_state: dict[str, Any] = {}  # per worker process (or the caller, when run in-process)


def _default_processes(requested: int | None, n_jobs: int) -> int:
    if requested is None or requested <= 0:
        cpus = os.cpu_count() or 1
        requested = cpus - 2 if cpus > 4 else 1  # upstream: leave two cores free on big machines
    return max(1, min(requested, max(n_jobs, 1)))


def _run_chunk(worker: Callable[[Any], Any], chunk: list[Any]) -> list[Any]:
    return [worker(job) for job in chunk]


def _run_jobs(
    worker: Callable[[Any], Any],
    jobs: Sequence[Any],
    processes: int,
    desc: str,
    progress: bool,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    unit: str = "file",
) -> list[Any]:
    """Map ``worker`` over ``jobs`` in-process (processes == 1) or in a spawn process pool, with a tqdm bar.

    A worker process that dies (out of memory, killed) stops the run with an error instead of hanging.
    """
    results: list[Any] = []
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, unit=unit)
    try:
        if processes <= 1 or len(jobs) <= 1:
            if initializer is not None:
                initializer(*initargs)
            for job in jobs:
                results.append(worker(job))
                bar.update()
            return results
        # spawn: forking a process whose torch/OpenMP threads are running can deadlock the children
        size = max(1, min(32, len(jobs) // (processes * 4)))
        chunks = [list(jobs[i : i + size]) for i in range(0, len(jobs), size)]
        ctx = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(processes, mp_context=ctx, initializer=initializer, initargs=initargs) as pool:
                futures = [pool.submit(_run_chunk, worker, chunk) for chunk in chunks]
                for future in as_completed(futures):
                    done = future.result()
                    results.extend(done)
                    bar.update(len(done))
        except BrokenProcessPool as exc:
            raise RuntimeError(
                f"{desc}: a worker process died ({exc}); finished outputs are kept, run again (maybe with fewer "
                f"processes if memory ran out)"
            ) from None
    finally:
        bar.close()
    return results


# ----------------------------------------------------------------------------------------------------------------------
# resample

def resample_file(src: str | os.PathLike, dst: str | os.PathLike, sampling_rate: int = 44100) -> None:
    """Convert one file of any format/rate/channel count to mono 16-bit PCM wav at ``sampling_rate``."""
    data, sr = read_audio(src)
    write_wav_pcm16(dst, to_mono_resampled(data, sr, sampling_rate), sampling_rate)


def find_audio_files(in_dir: str | os.PathLike) -> list[Path]:
    """Audio files under ``in_dir`` (recursive, sorted), relative to it; hidden files/folders are ignored."""
    root = Path(in_dir)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                found.append((Path(dirpath) / name).relative_to(root))
    return found


@dataclass
class ToolSummary:
    """What a tool did: counts and the problems it skipped (each a human-readable line)."""

    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def describe(self, what: str) -> str:
        lines = [f"{what}: {self.done} written, {self.skipped} already done (skipped), {len(self.failed)} failed"]
        lines += [f"  FAILED {msg}" for msg in self.failed]
        lines += [f"  note: {msg}" for msg in self.notes]
        return "\n".join(lines)


def _is_done(dst: Path, sampling_rate: int) -> bool:
    """An output counts as done only when it is a readable mono wav at the asked rate (not one at an old rate)."""
    if not dst.is_file() or dst.stat().st_size <= 44:
        return False

    try:
        info = sf.info(str(dst))
    except (RuntimeError, OSError, sf.LibsndfileError):
        return False
    return info.samplerate == int(sampling_rate) and info.channels == 1 and info.frames > 0


def _resample_job(job: tuple[str, str, int]) -> tuple[str, str | None]:
    src, dst, sr = job
    try:
        resample_file(src, dst, sr)
        return src, None
    except Exception as exc:  # report and go on with the other files
        return src, f"{type(exc).__name__}: {exc}"


def resample_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    sampling_rate: int = 44100,
    processes: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ToolSummary:
    """Resample every audio file under ``in_dir`` into ``out_dir`` (same sub-folders, ``.wav`` names).

    Files whose output already exists are skipped unless ``overwrite``. ``processes`` None/0: cpu_count - 2 on
    machines with more than 4 cores, else 1 (upstream's choice).
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise FileNotFoundError(f"input folder {in_dir} does not exist; put the raw audio there or pass --in-dir")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out-dir {out_dir} is a file, not a folder")
    if out_dir.resolve() == in_dir.resolve():
        # the originals would count as converted (at their old rate) or be replaced by --overwrite
        raise ValueError(f"--out-dir {out_dir} is the --in-dir: the wavs would replace the originals; give another "
                         f"folder, e.g. {in_dir.parent / (in_dir.name + '_' + str(sampling_rate))}")
    inside = out_dir.resolve().is_relative_to(in_dir.resolve())
    summary = ToolSummary()
    jobs: list[tuple[str, str, int]] = []
    targets: dict[Path, Path] = {}
    for rel in find_audio_files(in_dir):
        if inside and (in_dir / rel).resolve().is_relative_to(out_dir.resolve()):
            continue  # outputs of an earlier run inside the input folder are not inputs
        dst = (out_dir / rel).with_suffix(".wav")
        if dst in targets:
            summary.notes.append(f"{in_dir / rel} skipped: {targets[dst]} already maps to {dst}")
            continue
        targets[dst] = in_dir / rel
        if not overwrite and _is_done(dst, sampling_rate):
            summary.skipped += 1
            continue
        jobs.append((str(in_dir / rel), str(dst), int(sampling_rate)))
    if not targets:
        summary.notes.append(f"no audio files found under {in_dir} (extensions: {', '.join(sorted(AUDIO_EXTENSIONS))})")
    n_proc = _default_processes(processes, len(jobs))
    for src, error in _run_jobs(_resample_job, jobs, n_proc, "resample", progress):
        if error is None:
            summary.done += 1
        else:
            summary.failed.append(f"{src}: {error}")
    return summary


# ----------------------------------------------------------------------------------------------------------------------
# preprocess_text


@dataclass(frozen=True)
class CleanedLine:
    """One line of a cleaned filelist (spec 3.6): ``wav|speaker|LANG|norm_text|phones|tones|word2ph``."""

    wav: str
    speaker: str
    language: str
    norm_text: str
    phones: tuple[str, ...]
    tones: tuple[int, ...]
    word2ph: tuple[int, ...]

    def to_line(self) -> str:
        return "|".join(
            [
                self.wav,
                self.speaker,
                self.language,
                self.norm_text,
                " ".join(self.phones),
                " ".join(map(str, self.tones)),
                " ".join(map(str, self.word2ph)),
            ]
        )

    @classmethod
    def parse(cls, line: str) -> "CleanedLine":
        """Parse one cleaned line; ValueError says what is wrong."""
        fields = line.rstrip("\r\n").split("|")
        if len(fields) != 7:
            raise ValueError(f"expected 7 '|'-separated fields (wav|speaker|LANG|norm|phones|tones|word2ph), got {len(fields)}")
        wav, speaker, language, norm_text, phones, tones, word2ph = fields
        try:
            tone_list = tuple(int(t) for t in tones.split())
            w2p = tuple(int(w) for w in word2ph.split())
        except ValueError:
            raise ValueError("tones and word2ph must be space-separated integers") from None
        phone_list = tuple(phones.split())
        if len(phone_list) != len(tone_list):
            raise ValueError(f"{len(phone_list)} phones but {len(tone_list)} tones")
        if sum(w2p) != len(phone_list):
            raise ValueError(f"word2ph sums to {sum(w2p)} but there are {len(phone_list)} phones")
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r} (use ZH, JP or EN)")
        return cls(wav, speaker, language, norm_text, phone_list, tone_list, w2p)


@dataclass
class TextSummary:
    """Outcome of preprocess_text: kept lines per split, speakers, and every skipped line with its reason."""

    n_lines: int = 0
    n_train: int = 0
    n_val: int = 0
    spk2id: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            f"preprocess_text: {self.n_lines} lines read, {self.n_train} train + {self.n_val} val kept, "
            f"{len(self.problems)} skipped, {len(self.spk2id)} speakers: "
            + ", ".join(f"{name}={sid}" for name, sid in self.spk2id.items())
        ]
        lines += [f"  skipped {p}" for p in self.problems]
        return "\n".join(lines)


class TokenizerMissingError(FileNotFoundError):
    """A JP/EN word-tokenizer (BERT) folder the list needs is absent and the fallback was not asked for."""


_LANGUAGE_NAMES = {"JP": "Japanese", "EN": "English"}


def check_tokenizer_dirs(
    languages: Iterable[str], dirs: dict[str, str], where: str, allow_fallback: bool = False,
    counts: dict[str, int] | None = None,
) -> list[str]:
    """Raise ``TokenizerMissingError`` (one line) when a JP/EN line needs a word-tokenizer folder that is absent.

    Without the folder the frontend falls back to a plain word split whose word2ph does not match the BERT tokens,
    and bert_gen.py then rejects every such line, so the fallback is only used when asked for (returns the
    languages that fall back).
    """
    from bert_vits2.text.bert import BERT_MODELS  # text.bert imports torch (~2.5 s): resample/cleaning never need it

    fallback = []
    for lang in sorted(set(languages) & set(_LANGUAGE_NAMES)):
        folder = dirs[lang]
        if os.path.isdir(folder):
            continue
        if allow_fallback:
            fallback.append(lang)
            continue
        n = f"{counts[lang]} " if counts and lang in counts else ""
        option = "--tokenizer-dir-jp" if lang == "JP" else "--tokenizer-dir-en"
        raise TokenizerMissingError(
            f"{where}: {n}{lang} line(s) need the {_LANGUAGE_NAMES[lang]} word tokenizer, but its folder {folder} does "
            f"not exist: put the BERT folder there (Hugging Face {BERT_MODELS[lang].hf_repo}) or pass {option} DIR; "
            "--allow-tokenizer-fallback splits words without it, but bert_gen.py then rejects those lines")
    for lang in fallback:
        logger.warning("%s: no %s word tokenizer at %s: using the fallback split (--allow-tokenizer-fallback)", where,
                       _LANGUAGE_NAMES[lang], dirs[lang])
    return fallback


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"transcription list {path} does not exist (lines: wav_path|speaker|LANG|text)")
    return path.read_text(encoding="utf-8-sig").splitlines()


def _clean_worker_init(tokenizer_dirs: dict[str, str]) -> None:
    _worker_state["tokenizer_dirs"] = tokenizer_dirs


def _clean_job(job: tuple[int, str, str, str, str, str]) -> tuple[int, CleanedLine | None, str | None]:
    """Frontend on one transcription line: (line number, cleaned line or None, problem or None)."""
    line_no, where, wav, speaker, language, text = job
    try:
        norm_text, phones, tones, word2ph = clean_text(
            text.strip(), language, tokenizer_dir=_worker_state["tokenizer_dirs"][language]
        )
    except Exception as exc:  # the frontend rejects this text; keep going with the rest
        return line_no, None, f"{where}: text rejected by the {language} frontend ({type(exc).__name__}: {exc}): {text!r}"
    if "|" in norm_text or "\n" in norm_text:
        return line_no, None, f"{where}: normalised text contains '|' or a line break: {norm_text!r}"
    if all(p == "_" for p in phones):
        return line_no, None, f"{where}: text gives no phones: {text!r}"
    cleaned = CleanedLine(wav, speaker, language, norm_text, tuple(phones), tuple(map(int, tones)),
                          tuple(map(int, word2ph)))
    return line_no, cleaned, None


def clean_transcription(
    transcription_path: str | os.PathLike,
    tokenizer_dirs: dict[str, str | os.PathLike] | None = None,
    check_wavs: bool = True,
    progress: bool = True,
    processes: int = 1,
    allow_tokenizer_fallback: bool = False,
) -> tuple[list[tuple[int, CleanedLine]], list[str]]:
    """Run the frontend over a ``wav|speaker|LANG|text`` list (in ``processes`` worker processes).

    Returns (line number, CleanedLine) for the good lines in file order and one message per bad line (wrong field
    count, unknown language, missing wav when ``check_wavs``, text the frontend rejects). ``tokenizer_dirs`` maps JP/EN
    to the word-tokenizer (BERT) folders the frontend splits words with (default ``bert/<upstream name>``).
    """
    from bert_vits2.text.bert import (
        resolve_bert_dirs,  # text.bert imports torch (~2.5 s): resample/cleaning never need it
    )

    path = Path(transcription_path)
    dirs = {lang: str(folder) for lang, folder in resolve_bert_dirs(tokenizer_dirs).items()}
    problems: list[tuple[int, str]] = []
    jobs = []
    for line_no, raw in enumerate(_read_lines(path), 1):
        if not raw.strip():
            continue
        where = f"{path}:{line_no}"
        fields = raw.strip("\r\n").split("|")
        if len(fields) != 4:
            problems.append((line_no, f"{where}: expected 4 '|'-separated fields wav|speaker|LANG|text, got {len(fields)}: {raw!r}"))
            continue
        wav, speaker, language, text = (fields[0].strip(), fields[1].strip(), fields[2].strip().upper(), fields[3])
        if language not in LANGUAGES:
            problems.append((line_no, f"{where}: unknown language {fields[2]!r} (use ZH, JP or EN)"))
        elif not wav or not speaker:
            problems.append((line_no, f"{where}: empty wav path or speaker name"))
        elif check_wavs and not os.path.isfile(wav):
            problems.append((line_no, f"{where}: audio file {wav} not found"))
        else:
            jobs.append((line_no, where, wav, speaker, language, text))
    counts: dict[str, int] = defaultdict(int)
    for job in jobs:
        counts[job[4]] += 1
    check_tokenizer_dirs(counts, dirs, str(path), allow_tokenizer_fallback, counts)  # before the long cleaning run
    n_proc = max(1, min(processes, len(jobs) or 1))
    good: list[tuple[int, CleanedLine]] = []
    for line_no, cleaned, problem in _run_jobs(_clean_job, jobs, n_proc, "clean text", progress,
                                               initializer=_clean_worker_init, initargs=(dirs,), unit="line"):
        if cleaned is not None:
            good.append((line_no, cleaned))
        else:
            problems.append((line_no, problem))
    good.sort(key=lambda item: item[0])
    return good, [msg for _, msg in sorted(problems, key=lambda item: item[0])]


def split_train_val(
    lines: Sequence[CleanedLine],
    val_per_lang: int = 4,
    max_val_total: int = 12,
    seed: int | None = 1234,
    group_by: str = "language",
) -> tuple[list[CleanedLine], list[CleanedLine]]:
    """Upstream's split: per group (language, or speaker) shuffle and take ``val_per_lang`` for validation; if the
    validation list then exceeds ``max_val_total`` the surplus (after a shuffle) goes back to training."""
    if group_by not in ("language", "speaker"):
        raise ValueError("group_by must be 'language' or 'speaker'")
    rng = random.Random(seed)
    groups: dict[str, list[CleanedLine]] = defaultdict(list)
    for line in lines:
        groups[line.language if group_by == "language" else line.speaker].append(line)
    train: list[CleanedLine] = []
    val: list[CleanedLine] = []
    for items in groups.values():
        items = list(items)
        rng.shuffle(items)
        val += items[:val_per_lang]
        train += items[val_per_lang:]
    rng.shuffle(val)
    if len(val) > max_val_total:
        train += val[max_val_total:]
        val = val[:max_val_total]
    return train, val


def preprocess_text(
    transcription_path: str | os.PathLike = "filelists/esd.list",
    cleaned_path: str | os.PathLike | None = None,
    train_path: str | os.PathLike = "filelists/train.list",
    val_path: str | os.PathLike = "filelists/val.list",
    config_path: str | os.PathLike = "configs/config.json",
    val_per_lang: int = 4,
    max_val_total: int = 12,
    clean: bool = True,
    tokenizer_dirs: dict[str, str | os.PathLike] | None = None,
    seed: int | None = 1234,
    group_by: str = "language",
    progress: bool = True,
    processes: int = 1,
    allow_tokenizer_fallback: bool = False,
) -> TextSummary:
    """Clean a transcription list, split it into train/val lists and write spk2id/n_speakers into the config.

    ``cleaned_path`` defaults to ``<transcription_path>.cleaned``; with ``clean=False`` an existing cleaned list is
    reused. ``processes`` > 1 runs the frontend in that many worker processes. Lines with a missing or repeated wav, an unknown language, a wrong field count or text the frontend rejects
    are listed in the summary and left out; nothing is written when no line is usable.
    """
    transcription_path = Path(transcription_path)
    cleaned_path = Path(cleaned_path) if cleaned_path else Path(str(transcription_path) + ".cleaned")
    hps = load_hparams(config_path)  # fail before the long cleaning run if the config is unusable
    summary = TextSummary()

    if clean:
        good, summary.problems = clean_transcription(transcription_path, tokenizer_dirs, progress=progress,
                                                     processes=processes,
                                                     allow_tokenizer_fallback=allow_tokenizer_fallback)
        summary.n_lines = sum(1 for raw in _read_lines(transcription_path) if raw.strip())
        _atomic_write_text(cleaned_path, "".join(line.to_line() + "\n" for _, line in good))
        source = transcription_path
    else:
        good = []
        raws = _read_lines(cleaned_path)
        summary.n_lines = sum(1 for raw in raws if raw.strip())
        for line_no, raw in enumerate(raws, 1):
            if not raw.strip():
                continue
            try:
                good.append((line_no, CleanedLine.parse(raw)))
            except ValueError as exc:
                summary.problems.append(f"{cleaned_path}:{line_no}: {exc}")
        source = cleaned_path

    kept: list[CleanedLine] = []
    seen: dict[str, int] = {}
    for line_no, line in good:
        if line.wav in seen:
            summary.problems.append(f"{source}:{line_no}: audio {line.wav} already used on line {seen[line.wav]}")
            continue
        if not clean and not os.path.isfile(line.wav):
            summary.problems.append(f"{source}:{line_no}: audio file {line.wav} not found")
            continue
        seen[line.wav] = line_no
        kept.append(line)
        summary.spk2id.setdefault(line.speaker, len(summary.spk2id))
    if not kept:
        raise ValueError(
            f"no usable line in {source}; nothing written.\n" + "\n".join(summary.problems[:20])
        )

    train, val = split_train_val(kept, val_per_lang, max_val_total, seed, group_by)
    summary.n_train, summary.n_val = len(train), len(val)
    _atomic_write_text(train_path, "".join(line.to_line() + "\n" for line in train))
    _atomic_write_text(val_path, "".join(line.to_line() + "\n" for line in val))

    hps.data.spk2id = dict(summary.spk2id)
    hps.data.n_speakers = len(summary.spk2id)
    hps.data.training_files = Path(os.path.normpath(train_path)).as_posix()
    hps.data.validation_files = Path(os.path.normpath(val_path)).as_posix()
    hps.version = "2.3"
    save_hparams(hps, config_path)
    return summary


# ----------------------------------------------------------------------------------------------------------------------
# bert_gen


def bert_path_for(wav_path: str) -> str:
    """Where bert_gen caches a wav's BERT feature: upstream's ``.wav``/``.WAV`` -> ``.bert.pt`` (other suffixes too)."""
    bert_path = wav_path.replace(".WAV", ".wav").replace(".wav", ".bert.pt")
    if bert_path == wav_path:  # not a .wav name: never overwrite the audio
        root, _ = os.path.splitext(wav_path)
        bert_path = root + ".bert.pt"
    return bert_path


def n_model_phones(n_phones: int, add_blank: bool) -> int:
    """Length of the model's phone sequence (ids) for ``n_phones`` cleaned phones."""
    return 2 * n_phones + 1 if add_blank else n_phones


def is_valid_bert_cache(path: str | os.PathLike, n_phones: int) -> bool:
    """True if ``path`` holds a 2-D tensor covering ``n_phones`` phones (header only: memory-mapped)."""
    import torch  # torch: ~2.5 s import, only for the BERT step (resample/cleaning stay light)

    try:
        feat = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return isinstance(feat, torch.Tensor) and feat.ndim == 2 and feat.shape[-1] == n_phones and feat.numel() > 0


def _bert_worker_init(bert_dirs: dict[str, str], device: str, threads: int) -> None:
    import torch  # torch: ~2.5 s import, only for the BERT step (resample/cleaning stay light)

    if threads > 0:  # a worker process: share the cores, keep transformers' per-model loading bars out of ours
        torch.set_num_threads(threads)
        from transformers.utils import logging as hf_logging  # transformers: ~1.6 s import, only in BERT workers

        hf_logging.disable_progress_bar()
    _worker_state["bert_dirs"] = bert_dirs
    _worker_state["device"] = device


def _bert_job(job: tuple[str, str, str, str, tuple[int, ...], bool]) -> tuple[str, str | None]:
    """Compute and atomically save one utterance's feature; (where, error or None)."""
    import torch  # torch: ~2.5 s import, only for the BERT step (resample/cleaning stay light)

    from bert_vits2.text.bert import get_bert_feature  # text.bert imports torch: only in BERT workers

    where, wav, language, norm_text, word2ph, with_blanks = job
    try:
        w2p = add_blank((), (), (), word2ph)[3] if with_blanks else list(word2ph)
        feat = get_bert_feature(norm_text, w2p, language, _worker_state["bert_dirs"][language],
                                device=_worker_state["device"])
        out = Path(bert_path_for(wav))
        with atomic_write(out, "wb") as f:
            torch.save(feat.cpu().contiguous(), f)
        return where, None
    except Exception as exc:
        return where, f"{type(exc).__name__}: {exc}"


def bert_gen(
    list_paths: Iterable[str | os.PathLike],
    bert_dirs: dict[str, str | os.PathLike] | None = None,
    add_blank: bool = True,
    device: str = "cpu",
    processes: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> ToolSummary:
    """Cache the phone-level BERT feature of every line of the cleaned lists next to its wav (``.bert.pt``).

    Features already cached with the right length are skipped (unless ``overwrite``); each worker process loads the
    models it needs once. ``bert_dirs`` maps language -> BERT folder (default ``bert/<upstream name>``).
    """
    from bert_vits2.text.bert import (  # text.bert imports torch (~2.5 s): only for the BERT step
        check_bert_dir,
        resolve_bert_dirs,
    )

    dirs = resolve_bert_dirs(bert_dirs)
    summary = ToolSummary()
    jobs = []
    seen: set[str] = set()
    for list_path in list_paths:
        list_path = Path(list_path)
        if not list_path.is_file():
            raise FileNotFoundError(f"filelist {list_path} does not exist; run preprocess_text.py first")
        try:
            text = list_path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise ValueError(f"filelist {list_path} is not UTF-8 text (byte {err.start}: {err.reason}); save it as "
                             f"UTF-8 or run preprocess_text.py again") from None
        for line_no, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            where = f"{list_path}:{line_no}"
            try:
                line = CleanedLine.parse(raw)
            except ValueError as exc:
                summary.failed.append(f"{where}: {exc}")
                continue
            out = bert_path_for(line.wav)
            if out in seen:
                continue
            seen.add(out)
            if not Path(line.wav).parent.is_dir():
                summary.failed.append(f"{where}: folder of {line.wav} does not exist")
                continue
            n = n_model_phones(len(line.phones), add_blank)
            if not overwrite and is_valid_bert_cache(out, n):
                summary.skipped += 1
                continue
            jobs.append((where, line.wav, line.language, line.norm_text, line.word2ph, add_blank))
    for language in sorted({job[2] for job in jobs}):
        check_bert_dir(dirs[language], language)  # a missing model stops the run before any work
    jobs.sort(key=lambda job: job[2])  # group languages so workers touch fewer models
    n_proc = max(1, min(processes, len(jobs) or 1))
    # worker processes share the cores; in-process runs leave the caller's torch settings alone
    threads = max(1, (os.cpu_count() or 1) // n_proc) if device == "cpu" and n_proc > 1 else 0
    results = _run_jobs(
        _bert_job, jobs, n_proc, "bert_gen", progress,
        initializer=_bert_worker_init, initargs=({k: str(v) for k, v in dirs.items()}, device, threads),
    )
    for where, error in results:
        if error is None:
            summary.done += 1
        else:
            summary.failed.append(f"{where}: {error}")
    return summary
