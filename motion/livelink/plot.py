"""Plots and summaries of a take (waveform + the main shapes, gaps marked): the library behind
``motion/plot_take.py``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from bert_vits2.audio import load_audio
from bert_vits2.fileio import atomic_write
from motion.arkit import INDEX, NAMES
from motion.cli import refuse_overwriting_inputs
from motion.livelink.take import Take, TakeError, load_take, resolve_stem

log = logging.getLogger(__name__)

PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("jaw / mouth", ("JawOpen", "MouthClose", "MouthFunnel", "MouthPucker")),
    ("smile", ("MouthSmileLeft", "MouthSmileRight")),
    ("blink", ("EyeBlinkLeft", "EyeBlinkRight")),
    ("brows", ("BrowInnerUp", "BrowDownLeft", "BrowDownRight", "BrowOuterUpLeft")),
    ("head (deg/180)", ("HeadYaw", "HeadPitch", "HeadRoll")),
)
STILL_RANGE = 1e-4


def summarize(take: Take) -> dict:
    """Figures about a take (duration, frames, rate, gaps, ranges, shapes that never move)."""
    f = take.frames
    gaps = take.gaps()
    lo = f.min(axis=0) if len(f) else np.zeros(len(NAMES))
    hi = f.max(axis=0) if len(f) else np.zeros(len(NAMES))
    t = take.times()
    packets = take.meta.get("packets") or {}
    return {
        "duration_s": take.duration_s,
        "audio_s": take.audio_duration_s,
        "frames": take.num_frames,
        "fps": take.fps,
        "face_span_s": float(t[-1] - t[0] + 1.0 / take.fps) if len(t) else 0.0,
        "first_frame_s": float(t[0]) if len(t) else None,
        "gaps": len(gaps),
        "dropped": int(sum(g[1] for g in gaps)),
        "header_only": packets.get("header_only"),
        "invalid": packets.get("invalid"),
        "min": {n: float(lo[i]) for i, n in enumerate(NAMES)},
        "max": {n: float(hi[i]) for i, n in enumerate(NAMES)},
        "still": [n for i, n in enumerate(NAMES) if hi[i] - lo[i] < STILL_RANGE],
    }


def format_summary(s: dict, name: str) -> str:
    lines = [f"{name}:"]
    dur = f"{s['duration_s']:.2f} s" + (f" (audio {s['audio_s']:.2f} s)" if s["audio_s"] is not None else " (no audio)")
    lines.append(f"  duration {dur}, {s['frames']} frames at {s['fps']:g} fps, face spans {s['face_span_s']:.2f} s"
                 + (f" from {s['first_frame_s']:.3f} s" if s["first_frame_s"] is not None else ""))
    extra = "" if s["header_only"] is None else f", {s['header_only']} header-only, {s['invalid']} invalid packets"
    lines.append(f"  gaps: {s['gaps']} ({s['dropped']} frames dropped){extra}")
    moving = [n for n in NAMES if n not in s["still"]]
    top = sorted(moving, key=lambda n: s["max"][n] - s["min"][n], reverse=True)[:8]
    lines.append("  widest ranges: " + ", ".join(f"{n} {s['min'][n]:.2f}..{s['max'][n]:.2f}" for n in top))
    all_lo, all_hi = min(s["min"].values()), max(s["max"].values())
    lines.append(f"  all values in [{all_lo:.3f}, {all_hi:.3f}]")
    lines.append(f"  never move ({len(s['still'])}): " + (", ".join(s["still"]) if s["still"] else "none"))
    return "\n".join(lines)


def plot_take(take: Take, out: str | Path | None, show: bool = False, title: str | None = None):
    """Draw the waveform and the main shapes on one time axis; saves a PNG to ``out`` (if given). Returns the figure."""
    import matplotlib  # matplotlib: ~0.4 s import (pyplot ~1.9 s), only when plotting

    if not show:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use(): the backend is chosen first

    t = take.times()
    rows = 1 + len(PANELS)
    fig, axes = plt.subplots(rows, 1, figsize=(12, 1.6 * rows + 1), sharex=True)
    ax = axes[0]
    if take.audio is not None and len(take.audio):
        a = np.asarray(take.audio)
        step = max(1, len(a) // 20000)  # enough points for the envelope
        ta = np.arange(0, len(a), step) / take.sample_rate
        ax.plot(ta, a[::step], lw=0.4, color="0.3")
        ax.set_ylim(-1, 1)
    else:
        ax.text(0.5, 0.5, "no audio", transform=ax.transAxes, ha="center", va="center")
    ax.set_ylabel("audio")
    gaps = take.gaps()
    for ax, (label, names) in zip(axes[1:], PANELS):
        for n in names:
            ax.plot(t, take.frames[:, INDEX[n]], lw=0.9, label=n)
        ax.set_ylabel(label)
        ax.legend(loc="upper right", fontsize=6, ncol=len(names))
    for ax in axes:
        for i, missing in gaps:
            if i + 1 < len(t):
                ax.axvspan(t[i], t[i + 1], color="red", alpha=0.25, lw=0)
    axes[-1].set_xlabel("time (s, from the first audio sample)")
    s = summarize(take)
    fig.suptitle((title or "take") + f" - {s['frames']} frames @ {s['fps']:g} fps, {s['dropped']} dropped"
                 + (" (red: gaps)" if gaps else ""), fontsize=10)
    fig.tight_layout()
    if out is not None:
        fmt = Path(out).suffix.lower().lstrip(".") or "png"
        with atomic_write(out, "wb") as f:  # a failed or interrupted plot never leaves half a PNG
            fig.savefig(f, dpi=90, format=fmt)
    if show:
        plt.show()
    return fig


PLOT_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def _check_plot_out(out: Path, src: Path, wav: str | None) -> None:
    """The picture must be an image file and never one of the take's own files."""
    if out.suffix.lower() not in PLOT_FORMATS:
        raise ValueError(f"--out {out}: give an image file name ({', '.join(PLOT_FORMATS)})")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give an image file name")
    stem = resolve_stem(src)
    inputs = [("take", src), ("--wav", wav)] + [(f"take file {stem.name}{s}", stem.with_name(stem.name + s))
                                                for s in (".npy", ".wav", ".json", ".csv")]
    refuse_overwriting_inputs("--out", out, inputs)


def run(args) -> int:
    """``plot_take.py``: load the take, print its summary, write the PNG; returns the exit code."""
    try:
        take = load_take(args.take, fps=args.fps)
        if args.wav:
            take.audio, take.sample_rate = load_audio(args.wav, sample_rate=None)
    except (TakeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    src = Path(args.take)
    out = Path(args.out) if args.out else (src.with_suffix("") if src.suffix else src).with_name(
        (src.stem if src.suffix else src.name) + ".png")
    try:
        _check_plot_out(out, src, args.wav)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_summary(summarize(take), str(args.take)))
    plot_take(take, out, show=args.show, title=src.name)
    print(f"plot: {out}")
    return 0
