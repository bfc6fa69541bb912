"""Training data for the expression heads, made from the takes in ``records/``.

For every complete take (``<take>.wav`` + ``<take>.npy`` + ``<take>.json``, recorded or imported):

1. audio -> mono 44.1 kHz -> log-mel (``<take>.mel.npy``) and, with a G checkpoint, -> linear spectrogram -> ``enc_q``
   -> z (``<take>.z.npy``), both [C, T] at 86.13 frames/s;
2. face frames -> a uniform 60 fps grid starting at the first audio sample (``Take.on_grid``: frame numbers placed by
   the arrival times, gaps interpolated and flagged as not measured);
3. the audio<->face offset is estimated per take and overall by cross-correlating the audio envelope with mouth
   opening (positive: the face lags the audio), and the overall one (or ``--offset-ms``) is applied by shifting the
   face earlier (with a warning when the estimate sits at the search range's edge or takes disagree by more than
   a few frames, naming them); the result goes to ``<take>.face.npz`` (``frames`` [M, 61], ``valid`` [M], ``fps``, ``offset_s``);
4. takes are split (by take, seeded; by default 15 % held out, at least one, never most of them) into
   ``train_visemes.list`` / ``val_visemes.list``, one line per take:
   ``z_path|face_path|mel_path`` (the first two fields as in the original ``z|blendshapes`` list; a field is empty
   when that feature was not computed).
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from bert_vits2.audio import AudioReadError
from bert_vits2.fileio import save_npy_atomic as _save_npy_atomic
from bert_vits2.fileio import save_npz_atomic as _save_npz_atomic
from bert_vits2.fileio import write_text_atomic as _write_text_atomic
from motion.arkit import INDEX
from motion.constants import FACE_FPS as GRID_FPS
from motion.livelink.protocol import frames_out_of_range
from motion.livelink.take import load_take

log = logging.getLogger(__name__)


Z_SUFFIX = ".z.npy"
MEL_SUFFIX = ".mel.npy"
FACE_SUFFIX = ".face.npz"
MOUTH_OPEN = (INDEX["JawOpen"], INDEX["MouthLowerDownLeft"], INDEX["MouthLowerDownRight"])


class PrepareError(RuntimeError):
    """Takes could not be prepared; the message says what to do."""


# --- audio <-> face offset ----------------------------------------------------------------------------------------


def audio_envelope(audio: np.ndarray, sample_rate: int, num_frames: int, fps: float = GRID_FPS) -> np.ndarray:
    """Log RMS energy (dB, floored 50 dB under the peak) in one-frame windows centred on the grid's frame centres."""
    audio = np.asarray(audio, dtype=np.float64)
    win = max(1, int(round(sample_rate / fps)))
    centres = ((np.arange(num_frames) + 0.5) / fps * sample_rate).astype(np.int64)
    csum = np.concatenate([[0.0], np.cumsum(audio * audio)])
    lo = np.clip(centres - win, 0, len(audio))
    hi = np.clip(centres + win, 0, len(audio))
    energy = (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)
    db = 10.0 * np.log10(energy + 1e-10)
    return np.maximum(db, db.max() - 50.0)


def mouth_opening(frames: np.ndarray) -> np.ndarray:
    """JawOpen + mean MouthLowerDown: the face signal that follows loudness."""
    f = np.asarray(frames, dtype=np.float64)
    return f[:, MOUTH_OPEN[0]] + 0.5 * (f[:, MOUTH_OPEN[1]] + f[:, MOUTH_OPEN[2]])


def lag_correlations(envelope: np.ndarray, mouth: np.ndarray, valid: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r between ``envelope[k]`` and ``mouth[k + lag]`` for lag in [-max_lag, max_lag], and the overlap counts."""
    n = len(envelope)
    lags = np.arange(-max_lag, max_lag + 1)
    r = np.full(len(lags), np.nan)
    counts = np.zeros(len(lags), dtype=np.int64)
    for i, lag in enumerate(lags):
        a0, a1 = max(0, -lag), min(n, n - lag)
        if a1 - a0 < 8:
            continue
        a = envelope[a0:a1]
        b = mouth[a0 + lag:a1 + lag]
        ok = valid[a0 + lag:a1 + lag]
        if ok.sum() < 8:
            continue
        a, b = a[ok], b[ok]
        sa, sb = a.std(), b.std()
        if sa < 1e-9 or sb < 1e-9:
            continue
        r[i] = float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))
        counts[i] = int(ok.sum())
    return r, counts


def peak_lag(r: np.ndarray, max_lag: int) -> float | None:
    """Lag (in frames, sub-frame by parabolic interpolation) of the correlation maximum; None if undefined."""
    if not np.isfinite(r).any():
        return None
    i = int(np.nanargmax(r))
    lag = float(i - max_lag)
    if 0 < i < len(r) - 1 and np.isfinite(r[i - 1]) and np.isfinite(r[i + 1]):
        den = r[i - 1] - 2 * r[i] + r[i + 1]
        if den < 0:
            lag += float(np.clip(0.5 * (r[i - 1] - r[i + 1]) / den, -0.5, 0.5))
    return lag


def shift_face(frames: np.ndarray, valid: np.ndarray, offset_s: float, fps: float = GRID_FPS) -> tuple[np.ndarray, np.ndarray]:
    """Undo a face lag of ``offset_s``: the result at frame k is the face at time ``(k + 0.5) / fps + offset_s``.

    Frames that would come from outside the recording (or from unmeasured frames) are marked invalid."""
    m = frames.shape[0]
    src = (np.arange(m) + 0.5) + offset_s * fps - 0.5  # fractional source index
    lo = np.floor(src).astype(np.int64)
    w = (src - lo)[:, None].astype(np.float32)
    inside = (lo >= 0) & (lo + 1 <= m - 1) | ((lo == m - 1) & (w[:, 0] < 1e-6))
    lo_c = np.clip(lo, 0, m - 1)
    hi_c = np.clip(lo + 1, 0, m - 1)
    out = frames[lo_c] * (1.0 - w) + frames[hi_c] * w
    ok = inside & valid[lo_c] & (valid[hi_c] | (w[:, 0] < 1e-6))
    return out.astype(np.float32), ok


# --- takes --------------------------------------------------------------------------------------------------------


def find_takes(records: str | os.PathLike) -> list[Path]:
    """Stems of the complete takes (wav + npy + json) in ``records``, sorted by name."""
    records = Path(records)
    if not records.is_dir():
        raise PrepareError(f"{records}: no such folder; record takes with `python motion/record.py` or pass --records")
    stems = []
    for js in sorted(records.glob("*.json")):
        stem = js.with_suffix("")
        if stem.with_name(stem.name + ".npy").is_file() and stem.with_name(stem.name + ".wav").is_file():
            stems.append(stem)
    return stems


@dataclass
class PreparedTake:
    stem: Path
    duration_s: float
    frames: np.ndarray  # [M, 61] on the 60 fps grid, before the offset shift
    measured: np.ndarray  # [M] bool
    envelope: np.ndarray  # [M]
    gaps: int = 0
    offset_s: float | None = None  # this take's own estimate
    paths: dict[str, str] = field(default_factory=dict)


#: the share of the takes held out for validation by default
DEFAULT_VAL_SHARE = 0.15


def parse_val_size(value: str | int | float) -> int | float:
    """``--val-size``: a share of the takes (``15%`` or ``0.15``) or a count (``5``); 0 holds none out."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100.0
        elif "." in text or "e" in text.lower():
            share = float(text)
        else:
            count = int(text)
            if count < 0:
                raise ValueError
            return count
    except ValueError:
        raise ValueError(f"--val-size {value!r}: give a share of the takes (15%, 0.15) or a count (5)") from None
    if not (0.0 <= share < 1.0) or share != share:
        raise ValueError(f"--val-size {value!r}: a share must be at least 0 and below 100%")
    return share


def split_takes(stems: list[str], val_size: int | float | str = DEFAULT_VAL_SHARE,
                seed: int = 1234) -> tuple[list[str], list[str]]:
    """Seeded split by take. ``val_size``: a share of the takes (a float below 1 or ``"15%"``) or a count (an int).

    With two or more takes at least one is held out, and never so many that training keeps fewer than most of them:
    at most ``(n - 1) // 2`` (one of two takes). 0 holds none out."""
    stems = sorted(stems)
    size = parse_val_size(val_size)
    n = len(stems)
    if n < 2 or size == 0:
        return stems, []
    wanted = int(round(size * n)) if isinstance(size, float) else int(size)
    n_val = max(1, min(wanted, max(1, (n - 1) // 2)))
    order = stems[:]
    random.Random(seed).shuffle(order)
    val = sorted(order[:n_val])
    return [s for s in stems if s not in val], val


def describe_split(train: list[str], val: list[str], val_size: int | float | str) -> str:
    """One line: how many takes train and validate, the share, what was asked and the validation takes' names."""
    n = len(train) + len(val)
    size = parse_val_size(val_size)
    asked = f"{size:.0%}" if isinstance(size, float) else f"{size} take(s)"
    if not val:
        why = "only one take" if n < 2 else "--val-size 0"
        return (f"split: all {n} take(s) for training, none for validation ({why}); training will evaluate on its own "
                "takes")
    names = ", ".join(Path(v).name for v in val)
    return (f"split: {len(train)} takes for training, {len(val)} for validation ({len(val) / n:.0%} of {n}; asked "
            f"{asked}): {names}")


def read_filelist(path: str | os.PathLike) -> list[dict[str, str]]:
    """Lines ``z_path|face_path|mel_path`` (or the original two-field ``z_path|face_path``) -> dicts."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("|")
        if len(parts) < 2:
            raise PrepareError(f"{path}: bad line {line!r}; expected z_path|face_path|mel_path (run prepare_visemes.py)")
        out.append({"z": parts[0], "face": parts[1], "mel": parts[2] if len(parts) > 2 else ""})
    return out


@dataclass
class PrepareReport:
    takes: list[PreparedTake]
    offset_s: float
    offset_source: str  # "estimated", "manual" or "none"
    train: list[str]
    val: list[str]
    warnings: list[str] = field(default_factory=list)  # offset estimate at its range's edge, takes that disagree
    split: str = ""  # the split in words (counts, share, validation takes)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (take name, why): a bad take never stops the rest


class _BadTake(ValueError):
    """A take whose values or files cannot be trained on (reported and skipped)."""


def _prepare_take(stem: Path, *, mel: bool, n_mels: int, posterior, sample_z: bool, z_seed: int | None) -> PreparedTake | None:
    """Load one take: its face on the 60 fps grid over the audio's span, the audio envelope, and the feature files
    (log-mel and/or z, written beside the take). None (with a warning) when too few face frames were measured."""
    # features imports torch (~3 s): reading filelists and splits (train.py, prepare_visemes --help) needs none
    from motion.face.features import load_tts_audio, log_mel

    take = load_take(stem, load_audio=False)  # NaN/inf values, unreadable files: TakeError / ValueError
    why = frames_out_of_range(take.frames)
    if why is not None:
        raise _BadTake(f"{stem.name}.npy: {why}")
    audio = load_tts_audio(stem.with_name(stem.name + ".wav"))
    if not np.isfinite(audio).all():
        raise _BadTake(f"{stem.name}.wav: NaN or infinite samples")
    sr = 44100
    duration = len(audio) / sr
    frames, measured = take.on_grid(GRID_FPS, duration)
    if measured.sum() < 10:
        log.warning("%s: fewer than 10 face frames on the audio's time span; skipped", stem)
        return None
    env = audio_envelope(audio, sr, frames.shape[0])
    p = PreparedTake(stem, duration, frames, measured, env, gaps=int(sum(g[1] for g in take.gaps())))
    if mel:
        path = stem.with_name(stem.name + MEL_SUFFIX)
        _save_npy_atomic(path, log_mel(audio, n_mels))
        p.paths["mel"] = str(path)
    if posterior is not None:
        path = stem.with_name(stem.name + Z_SUFFIX)
        _save_npy_atomic(path, posterior.encode(audio, sample=sample_z, seed=z_seed))
        p.paths["z"] = str(path)
    return p


def _estimate_offsets(prepared: list[PreparedTake], max_offset_s: float) -> float | None:
    """Set each take's own offset estimate (a diagnostic) and return the overall one in seconds (None: no peak):
    the peak of the audio-envelope / mouth-opening correlation pooled over all takes, weighted by frame counts."""
    max_lag = int(round(max_offset_s * GRID_FPS))
    total_r = np.zeros(2 * max_lag + 1)
    total_w = np.zeros(2 * max_lag + 1)
    for p in prepared:
        r, counts = lag_correlations(p.envelope, mouth_opening(p.frames), p.measured, max_lag)
        lag = peak_lag(r, max_lag)
        p.offset_s = None if lag is None else lag / GRID_FPS
        ok = np.isfinite(r)
        total_r[ok] += r[ok] * counts[ok]
        total_w[ok] += counts[ok]
        log.info("%s: offset %s", p.stem.name, "n/a" if lag is None else f"{lag / GRID_FPS * 1000:.1f} ms")
    overall = peak_lag(np.where(total_w > 0, total_r / np.maximum(total_w, 1), np.nan), max_lag)
    return None if overall is None else overall / GRID_FPS


#: per-take offset estimates farther than this from their median are named (a few frames at 60 fps)
OFFSET_TOLERANCE_FRAMES = 4


def offset_warnings(prepared: list[PreparedTake], overall_s: float | None, max_offset_s: float,
                    tolerance_frames: int = OFFSET_TOLERANCE_FRAMES) -> list[str]:
    """Warnings about the offset estimate: at the edge of the search range, or takes that disagree by more than
    ``tolerance_frames`` with the others (named, with their estimates)."""
    out: list[str] = []
    max_lag = int(round(max_offset_s * GRID_FPS))
    fix = "give --offset-ms (after checking a take with motion/render_face.py --delay-ms or motion/plot_take.py) or re-record"
    if overall_s is not None and max_lag > 0 and abs(overall_s * GRID_FPS) >= max_lag - 0.5:
        out.append(f"the overall audio->face offset estimate {overall_s * 1000:+.0f} ms is at the edge of the search range "
                   f"(±{max_offset_s * 1000:.0f} ms): the real offset may lie beyond it or the takes' audio and face may "
                   f"not belong together; raise --max-offset-ms, or {fix}")
    ests = [(p.stem.name, float(p.offset_s)) for p in prepared if p.offset_s is not None]
    if len(ests) >= 2:
        med = float(np.median([s for _, s in ests]))
        tol = tolerance_frames / GRID_FPS
        odd = [(name, s) for name, s in ests if abs(s - med) > tol]
        if odd:
            lo, hi = min(s for _, s in ests), max(s for _, s in ests)
            listed = ", ".join(f"{name} {s * 1000:+.0f} ms" + (" (at the edge)" if abs(s * GRID_FPS) >= max_lag - 0.5
                                                                 else "") for name, s in odd)
            out.append(f"per-take offset estimates range from {lo * 1000:+.0f} to {hi * 1000:+.0f} ms; these differ from "
                       f"the median {med * 1000:+.0f} ms by more than {tolerance_frames} frames "
                       f"({tol * 1000:.0f} ms): {listed}; check them, {fix}")
    return out


def _write_face_labels(prepared: list[PreparedTake], offset_s: float) -> None:
    """``<take>.face.npz`` for every take: the face shifted by ``offset_s`` with its validity mask."""
    for p in prepared:
        shifted, valid = shift_face(p.frames, p.measured, offset_s)
        path = p.stem.with_name(p.stem.name + FACE_SUFFIX)
        _save_npz_atomic(path, frames=shifted, valid=valid, fps=np.float32(GRID_FPS), offset_s=np.float32(offset_s))
        p.paths["face"] = str(path)


def _write_filelists(prepared: list[PreparedTake], filelist_dir: Path, train: list[str], val: list[str],
                     summary: dict) -> None:
    """train/val ``z|face|mel`` lists and ``visemes_prepare.json`` (``summary`` plus the per-take diagnostics)."""
    by_name = {str(p.stem): p for p in prepared}

    def line(name: str) -> str:
        q = by_name[name].paths
        return f"{q.get('z', '')}|{q['face']}|{q.get('mel', '')}"

    _write_text_atomic(filelist_dir / "train_visemes.list", "".join(line(n) + "\n" for n in train))
    _write_text_atomic(filelist_dir / "val_visemes.list", "".join(line(n) + "\n" for n in val))
    takes = {p.stem.name: {"offset_s": p.offset_s, "gaps": p.gaps, "duration_s": round(p.duration_s, 3)} for p in prepared}
    _write_text_atomic(filelist_dir / "visemes_prepare.json", json.dumps({**summary, "takes": takes}, indent=1))


def prepare(
    records: str | os.PathLike = "records",
    filelist_dir: str | os.PathLike = "filelists",
    *,
    posterior=None,
    mel: bool = True,
    n_mels: int = 80,
    sample_z: bool = False,
    offset_ms: float | None = None,
    max_offset_s: float = 0.3,
    val_size: int | float | str = DEFAULT_VAL_SHARE,
    seed: int = 1234,
    takes: Iterable[Path] | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Prepare every take in ``records`` (see the module docstring); ``posterior`` (a ``features.PosteriorEncoder``)
    enables z. Returns the offsets found and the split; filelists go to ``filelist_dir``."""
    stems = list(takes) if takes is not None else find_takes(records)
    if not stems:
        raise PrepareError(f"{records}: no complete takes (<take>.wav + .npy + .json); record some with motion/record.py")
    if posterior is None and not mel:
        raise PrepareError("nothing to compute: give a G checkpoint for z, or keep the mel features on")

    prepared: list[PreparedTake] = []
    skipped: list[tuple[str, str]] = []
    for stem in tqdm(stems, desc="takes", disable=not progress):
        z_seed = (seed * 1000003 + len(prepared)) % (2**31) if sample_z else None
        try:
            p = _prepare_take(stem, mel=mel, n_mels=n_mels, posterior=posterior, sample_z=sample_z, z_seed=z_seed)
        except (ValueError, OSError, AudioReadError) as err:  # one bad take is reported; the others go on
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            log.warning("%s: skipped: %s", stem.name, reason)
            skipped.append((stem.name, reason))
            continue
        if p is not None:
            prepared.append(p)
    if not prepared:
        raise PrepareError("no take had usable face frames")

    overall = _estimate_offsets(prepared, max_offset_s)
    if offset_ms is not None:
        offset_s, source = float(offset_ms) / 1000.0, "manual"
    elif overall is not None:
        offset_s, source = overall, "estimated"
    else:
        offset_s, source = 0.0, "none"
    warnings = offset_warnings(prepared, overall, max_offset_s) if source == "estimated" else []
    for w in warnings:
        log.warning("%s", w)
    _write_face_labels(prepared, offset_s)

    train, val = split_takes([str(p.stem) for p in prepared], val_size, seed)
    split = describe_split(train, val, val_size)
    log.info("%s", split)
    _write_filelists(prepared, Path(filelist_dir), train, val, {
        "offset_s": offset_s, "offset_source": source, "fps": GRID_FPS, "n_mels": n_mels if mel else None,
        "z": posterior is not None, "sample_z": sample_z, "skipped": dict(skipped), "split": split, "warnings": warnings,
    })
    return PrepareReport(prepared, offset_s, source, train, val, warnings, split, skipped=skipped)


def find_generator(model: str) -> Path | None:
    """A G checkpoint: the file itself, or the newest G_*.pth in MODEL or MODEL/models."""
    from bert_vits2.checkpoint_files import latest_checkpoint_path  # checkpoint_files imports torch (~3 s)

    p = Path(model)
    if p.is_file():
        return p
    for d in (p / "models", p):
        if d.is_dir():
            found = latest_checkpoint_path(d, "G_*.pth")
            if found:
                return Path(found)
    return None


def run(args) -> int:
    """``prepare_visemes.py``: find the posterior encoder, prepare every take, print the report; exit code."""
    # features imports torch (~3 s): only when the takes are prepared
    from motion.face.features import PosteriorEncoderError, load_exported_posterior, load_posterior_from_checkpoint

    posterior = None
    try:
        if not args.no_z:
            if args.posterior:
                posterior = load_exported_posterior(args.posterior)
            else:
                g = find_generator(args.model)
                if g is not None:
                    if not Path(args.config).is_file():
                        print(f"prepare_visemes: {args.config}: config not found (needed with the G checkpoint {g}); "
                              "pass -c/--config", file=sys.stderr)
                        return 1
                    print(f"posterior encoder from {g}")
                    posterior = load_posterior_from_checkpoint(args.config, g, args.speaker)
                else:
                    print(f"no G checkpoint at {args.model}: making mel features only (mel head)")
        if posterior is None and args.no_mel:
            print("prepare_visemes: --no-mel needs z features: give -m MODEL with a G checkpoint or --posterior",
                  file=sys.stderr)
            return 1
        report = prepare(
            args.records, args.output, posterior=posterior, mel=not args.no_mel, n_mels=args.n_mels,
            sample_z=args.z_mode == "sample", offset_ms=args.offset_ms, max_offset_s=args.max_offset_ms / 1000.0,
            val_size=args.val_size, seed=args.seed, progress=not args.quiet,
        )
    except (PrepareError, PosteriorEncoderError) as err:
        print(f"prepare_visemes: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # checkpoint/config errors from bert_vits2 carry their own clear messages
        name = type(err).__name__
        if name in ("CheckpointError", "CheckpointNotFoundError", "ConfigError", "ConfigNotFoundError", "TakeError"):
            print(f"prepare_visemes: {err}", file=sys.stderr)
            return 1
        raise
    for t in report.takes:
        est = "n/a" if t.offset_s is None else f"{t.offset_s * 1000:+.1f} ms"
        print(f"  {t.stem.name}: {t.duration_s:.1f} s, offset estimate {est}, dropped frames {t.gaps}")
    for name, why in report.skipped:
        print(f"prepare_visemes: skipped {name}: {why}", file=sys.stderr)
    print(f"audio->face offset: {report.offset_s * 1000:+.1f} ms ({report.offset_source}); applied to all takes")
    for w in report.warnings:
        print(f"warning: {w}")
    print(report.split)
    print(f"{len(report.train)} training / {len(report.val)} validation takes -> {Path(args.output) / 'train_visemes.list'}, "
          f"{Path(args.output) / 'val_visemes.list'}")
    return 0


__all__ = [
    "FACE_SUFFIX", "GRID_FPS", "MEL_SUFFIX", "PrepareError", "PrepareReport", "Z_SUFFIX", "audio_envelope",
    "find_takes", "lag_correlations", "mouth_opening", "peak_lag", "prepare", "read_filelist", "shift_face",
    "split_takes", "DEFAULT_VAL_SHARE", "OFFSET_TOLERANCE_FRAMES", "describe_split", "offset_warnings",
    "parse_val_size",
]
