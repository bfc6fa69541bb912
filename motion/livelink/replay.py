"""Replay face curves (+ their audio) to Unreal's Live Link: the library behind ``motion/tts2ue.py``.

Loads a take, an npy (+ wav) or an app CSV, resamples to the send rate, post-processes, and streams with the
audio output's clock (:meth:`motion.livelink.LiveLinkSender.stream`).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bert_vits2.audio import load_audio
from motion.arkit import INDEX, check_frames
from motion.cli import refuse_overwriting_inputs
from motion.face.postprocess import postprocess
from motion.frames import resample_curves
from motion.inputs import load_npy
from motion.livelink import LiveLinkSender, PacketLog, default_device_id
from motion.livelink.take import Take, find_app_audio, import_app_take, load_take, resolve_stem
from motion.playback import VirtualClock
from motion.vtube_studio import open_sender

log = logging.getLogger(__name__)

KNOWN_RATES = (60.0, 86.1328125, 30.0, 50.0, 25.0, 24.0, 100.0, 120.0)


@dataclass
class Clip:
    """What to send: frames [T, 61] at ``fps`` (time 0 = first audio sample) and the audio, if any."""

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None
    sample_rate: int | None
    source: str

    @property
    def seconds(self) -> float:
        return self.frames.shape[0] / self.fps


def infer_fps(num_frames: int, audio_seconds: float, tolerance: float = 0.03) -> float | None:
    """The known rate that makes ``num_frames`` last as long as the audio (within ``tolerance``), else None."""
    if audio_seconds <= 0 or num_frames <= 0:
        return None
    est = num_frames / audio_seconds
    best = min(KNOWN_RATES, key=lambda r: abs(r - est))
    return best if abs(best - est) <= tolerance * best else None


def _sidecar_fps(npy: Path) -> float | None:
    js = npy.with_suffix(".json")
    if not js.exists():
        return None
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return float(meta["fps"]) if isinstance(meta, dict) and meta.get("fps") else None


def load_clip(
    take: str | None = None,
    npy: str | None = None,
    wav: str | None = None,
    csv: str | None = None,
    fps: float | None = None,
    send_fps: float = 60.0,
    with_audio: bool = True,
) -> Clip:
    """Load a take / npy (+ wav) / app CSV (+ audio) and put the frames on the ``send_fps`` grid from audio time 0."""
    audio, sr = None, None
    if wav and not csv:
        audio, sr = load_audio(wav, sample_rate=None)

    def from_take(t: Take, label: str) -> Clip:
        a, r = (audio, sr) if audio is not None else (t.audio, t.sample_rate)
        if a is None and wav is None and t.stem is not None and with_audio:
            log.warning("%s has no .wav; sending the face only", t.stem)
        dur = len(a) / r if a is not None else None
        if t.num_frames == 0:
            raise ValueError(f"{label}: the take holds no face frames")
        if t.frame_numbers is not None or t.frame_times is not None:
            end = float(t.times()[-1] + 1.0 / t.fps)
            grid, measured = t.on_grid(send_fps, duration_s=min(dur, end) if dur else end)
            if (~measured).any():
                log.info("%s: %d of %d frames interpolated over gaps or held before the first / after the last face frame", label, int((~measured).sum()), len(grid))
        else:
            grid = resample_curves(t.frames, t.fps, send_fps)
        return Clip(grid, send_fps, a, r, label)

    if csv:
        t = import_app_take(csv, (wav or find_app_audio(csv)) if with_audio else None)
        return from_take(t, str(csv))
    if take or (npy and resolve_stem(npy).with_suffix(".json").exists() and _is_take_json(resolve_stem(npy).with_suffix(".json"))):
        t = load_take(take or npy, fps=fps, load_audio=wav is None)
        return from_take(t, str(take or npy))
    if not npy:
        raise ValueError("nothing to send: give a take (records/<name>), --bs_npy_file NPY or --csv CSV")

    p = Path(npy)
    frames = check_frames(load_npy(p), str(p))
    if not len(frames):
        raise ValueError(f"{p}: holds no frames (shape [0, 61]); nothing to send")
    rate = fps or _sidecar_fps(p)
    if rate is None and audio is not None:
        rate = infer_fps(len(frames), len(audio) / sr)
        if rate is not None:
            log.info("%s: %d frames over %.2f s of audio: %g fps (pass --fps to override)", p, len(frames), len(audio) / sr, rate)
    if rate is None:
        rate = 60.0
        log.warning("%s: no --fps and no JSON with the rate; assuming 60 fps", p)
    return Clip(resample_curves(frames, rate, send_fps), send_fps, audio, sr, str(p))


def _is_take_json(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and "frame_numbers" in meta


def prepare_frames(frames: np.ndarray, fps: float, blink: bool | None, do_mirror: bool, zero_head: bool) -> np.ndarray:
    """Clamp as Unreal expects (shapes [0, 1], rotations [-1, 1]), optional mirror, blinks and zeroed rotations.

    ``blink=None`` adds blinks only when the clip never blinks by itself (model output rather than a recording).
    """
    if blink is None:
        blinks = frames[:, [INDEX["EyeBlinkLeft"], INDEX["EyeBlinkRight"]]]
        blink = bool(frames.shape[0]) and float(blinks.max()) < 0.5
    return postprocess(frames, fps, do_mirror=do_mirror, blink=blink, zero_rotations=zero_head)




def run(args: argparse.Namespace, stop: threading.Event | None = None) -> dict:
    """Load, prepare and stream; returns a summary dict."""
    if args.send_fps <= 0:
        raise ValueError("--send-fps must be positive")
    if args.virtual_clock and args.loop:
        raise ValueError("--virtual-clock with --loop would never end")
    if args.virtual_clock and not args.dry_run:
        raise ValueError("--virtual-clock only makes sense with --dry-run (the network would get every frame at once)")
    if args.dry_run:
        stem = resolve_stem(args.take) if args.take else None
        take_files = [] if stem is None else [(f"take file {stem.name}{s}", stem.with_name(stem.name + s))
                                              for s in (".npy", ".wav", ".json")]
        refuse_overwriting_inputs("--dry-run", args.dry_run, [("--bs_npy_file", args.npy), ("--wav_file", args.wav),
                                                              ("--csv", args.csv), *take_files])
    clip = load_clip(args.take, args.npy, args.wav, args.csv, args.fps, args.send_fps, with_audio=not args.no_audio)
    frames = prepare_frames(clip.frames, clip.fps, args.blink, args.mirror, args.zero_head)
    audio_s = len(clip.audio) / clip.sample_rate if clip.audio is not None else None
    if audio_s is not None and abs(audio_s - clip.seconds) > 0.5:
        log.warning("the face lasts %.2f s but the audio %.2f s: is --fps right?", clip.seconds, audio_s)
    play = clip.audio is not None and not args.no_audio and not args.virtual_clock
    clock = VirtualClock() if args.virtual_clock else None
    transport = PacketLog(args.dry_run, clock=clock.now if clock else None) if args.dry_run else None
    device = int(args.audio_device) if args.audio_device and str(args.audio_device).isdigit() else args.audio_device
    vts = None
    if getattr(args, "vts", None) is not None:  # also drive a Live2D model in VTube Studio (--vts [HOST:PORT])
        if args.dry_run:
            raise ValueError("--vts sends to VTube Studio over the network; drop --dry-run or --vts")
        vts = open_sender(args.vts, clip.fps)
    sender = LiveLinkSender(args.host, args.port, args.subject, args.device_id or default_device_id(), transport=transport)
    if transport is not None and clock is None:
        t0 = time.perf_counter()
        transport.clock = lambda: time.perf_counter() - t0
    target = args.dry_run if args.dry_run else f"{args.host}:{args.port}"
    log.info("sending %d frames (%.2f s) at %g fps to %s as subject %r%s", len(frames), clip.seconds, clip.fps, target,
             args.subject, " with audio" if play else "")
    try:
        stats = sender.stream(
            frames, clip.fps, clip.audio if play else None, clip.sample_rate if play else None,
            delay_s=args.delay_ms / 1000.0, loop=args.loop, stop=stop, clock=clock,
            sleep=clock.sleep if clock else None, audio_device=device,
            on_frame=(lambda number, _due: vts.send(frames[number % len(frames)])) if vts else None,
        )
    finally:
        sender.close()
        if vts is not None:
            vts.close()
    summary = {"frames_sent": stats.sent, "fps": clip.fps, "seconds": stats.duration_s, "audio_seconds": audio_s,
               "timing_error_ms": stats.summary_ms(), "target": target, "send_errors": sender.send_errors,
               "vts_sent": vts.sent if vts is not None else 0}
    return summary
