"""A face that looks alive without recorded data: blinks, brows, nods, idle head and eye motion from the audio.

The default mel head and the rule lip-sync move the jaw and lips only. :func:`make_alive` adds, in the 61 Live Link
values (so Unreal and VMC get them too):

- **blinks** at a natural rate (about 17 a minute, 1.2 s apart at least) that move to a nearby pause or phrase end
  when there is one within ~0.9 s (people blink at syntactic breaks);
- **brow raises and small head nods** on pitch/energy accents (the louder or higher syllables of a phrase);
- **slow idle head motion** (sums of slow sinusoids of the stream's time) and **eye motion** (small
  fixation changes every 0.8–3 s, plus a partial counter-rotation of the head, as the vestibulo-ocular reflex does).

Everything is deterministic given ``seed`` and the audio. Channels the source already predicts are kept: a group
(blinks, brows, head rotation, eyes) is filled only where all its channels are flat in the source (a trained head
that predicts them keeps its own).

Conventions used here (the project's, as Live Link sends them): rotations are degrees / 180; positive head pitch is a
nod down, positive eye pitch looks down (``EyeLookDown*``), positive eye yaw looks to the subject's left
(``EyeLookOutLeft`` / ``EyeLookInRight``). Head rotation changes by at most :data:`MAX_HEAD_DEG_PER_S` degrees per
second (0.5 deg per frame at 60 fps).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from motion.arkit import INDEX, NUM_VALUES

log = logging.getLogger(__name__)

__all__ = ["AliveOptions", "AliveStream", "GROUPS", "MAX_HEAD_DEG_PER_S", "SpeechTrack", "blink_times", "make_alive",
           "predicted_groups", "speech_track"]

#: channel groups that are filled (or kept) together
GROUPS: dict[str, tuple[str, ...]] = {
    "blinks": ("EyeBlinkLeft", "EyeBlinkRight"),
    "brows": ("BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight"),
    "head": ("HeadYaw", "HeadPitch", "HeadRoll"),
    "eyes": ("EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeLookDownRight",
             "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
             "RightEyeYaw", "RightEyePitch", "RightEyeRoll"),
}
#: the head turns no faster than this (degrees per second): smooth at any frame rate
MAX_HEAD_DEG_PER_S = 30.0
_ANALYSIS_SR = 8000


@dataclass(frozen=True)
class AliveOptions:
    """What :func:`make_alive` adds (each switchable) and how much."""

    seed: int = 0
    blinks: bool = True
    brows: bool = True
    head: bool = True
    eyes: bool = True
    blinks_per_minute: float = 17.0
    head_deg: float = 2.5  # idle yaw amplitude (pitch and roll about half)
    nod_deg: float = 2.5  # nod on the strongest accent
    brow_raise: float = 0.35  # BrowInnerUp on the strongest accent


@dataclass
class SpeechTrack:
    """Per-frame speech analysis at the face rate."""

    energy_db: np.ndarray  # [T] RMS level in dB re. full scale
    speech: np.ndarray  # [T] bool: speech (not pause)
    f0: np.ndarray  # [T] Hz, nan where unvoiced
    accent: np.ndarray  # [T] >= 0: how strongly this frame is an accent peak region


def _block_windows(audio: np.ndarray, lo: int, hi: int, fps: float, win: int) -> np.ndarray:
    """``win`` samples around the centres of face frames ``lo..hi`` (zeros outside the audio)."""
    centres = ((np.arange(lo, hi) + 0.5) / fps * _ANALYSIS_SR).astype(np.int64)
    idx = centres[:, None] + np.arange(-win // 2, win // 2)[None, :]
    out = np.zeros(idx.shape, np.float32)
    ok = (idx >= 0) & (idx < len(audio))
    out[ok] = audio[idx[ok]]
    return out


def _pitch(frames: np.ndarray, fmin: float = 70.0, fmax: float = 450.0) -> np.ndarray:
    """Normalised-autocorrelation pitch per window (nan where the periodicity is weak)."""
    w = frames * np.hanning(frames.shape[1])[None, :]
    w = w - w.mean(axis=1, keepdims=True)
    nfft = 1 << int(np.ceil(np.log2(2 * frames.shape[1])))
    spec = np.fft.rfft(w, nfft, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, nfft, axis=1)[:, : frames.shape[1]]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    lo, hi = int(_ANALYSIS_SR / fmax), int(_ANALYSIS_SR / fmin)
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    peak = ac[np.arange(len(ac)), lag]
    f0 = _ANALYSIS_SR / lag.astype(np.float64)
    f0[peak < 0.45] = np.nan
    return f0


def _smooth(x: np.ndarray, frames: int) -> np.ndarray:
    if frames <= 1 or len(x) == 0:
        return x.astype(np.float64)
    k = np.hanning(frames + 2)[1:-1]
    k /= k.sum()
    pad = np.pad(x.astype(np.float64), (frames, frames), mode="edge")
    return np.convolve(pad, k, mode="same")[frames:-frames]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index runs where ``mask`` is true."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.nonzero(d == 1)[0].tolist(), np.nonzero(d == -1)[0].tolist()))


def speech_track(audio: np.ndarray | None, sample_rate: int, num_frames: int, fps: float) -> SpeechTrack:
    """Energy, speech/pause, pitch and accent strength at the face's frame centres."""
    n = int(num_frames)
    if audio is None or len(audio) == 0 or n == 0:
        z = np.zeros(n)
        return SpeechTrack(z - 120.0, np.zeros(n, bool), np.full(n, np.nan), z)
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1)
    if int(sample_rate) != _ANALYSIS_SR:
        import soxr

        a = soxr.resample(a, int(sample_rate), _ANALYSIS_SR, quality="LQ").astype(np.float32)
    win = max(2, int(round(2 * _ANALYSIS_SR / fps)) // 2 * 2)  # two face frames
    long_win = max(win, int(0.04 * _ANALYSIS_SR) // 2 * 2)  # 40 ms for the pitch
    energy_db, f0 = np.empty(n), np.empty(n)
    for lo in range(0, n, 512):  # in blocks: long audio never needs one huge window matrix (FFTs of 512 x 1024)
        hi = min(n, lo + 512)
        frames = _block_windows(a, lo, hi, fps, long_win)
        mid = frames.shape[1] // 2
        energy_db[lo:hi] = 10 * np.log10(np.mean(frames[:, mid - win // 2: mid + win // 2] ** 2, axis=1) + 1e-10)
        f0[lo:hi] = _pitch(frames)
    peak = float(np.percentile(energy_db, 98))
    floor = float(np.percentile(energy_db, 5))
    thr = max(peak - 35.0, floor + 10.0)
    speech = energy_db > thr
    # close gaps shorter than 80 ms (stop closures) and drop blips shorter than 50 ms
    for s, e in _runs(~speech):
        if e - s < 0.08 * fps and s > 0 and e < n:
            speech[s:e] = True
    for s, e in _runs(speech):
        if e - s < 0.05 * fps:
            speech[s:e] = False
    f0[~speech] = np.nan
    # accents: level above its 1 s moving average, plus pitch above the speaker's median (in semitones)
    level = np.where(speech, energy_db, thr)
    rel = level - _smooth(level, int(fps))
    voiced = np.isfinite(f0)
    semis = np.zeros(n)
    if voiced.sum() > 5:
        semis[voiced] = 12 * np.log2(f0[voiced] / np.median(f0[voiced]))
    accent = np.clip(rel / 6.0, 0, None) + np.clip(semis / 4.0, 0, None)
    accent = _smooth(np.where(speech, accent, 0.0), max(1, int(0.08 * fps)))
    return SpeechTrack(energy_db, speech, f0, accent)


def predicted_groups(frames: np.ndarray, shape_range: float = 0.08, rotation_deg: float = 0.5) -> set[str]:
    """The groups the source already moves: a shape rising ``shape_range`` above its median (a blink or a brow raise,
    however brief), or a rotation spanning ``rotation_deg``."""
    out: set[str] = set()
    if len(frames) == 0:
        return out
    f = np.asarray(frames, dtype=np.float64)
    rise = f.max(axis=0) - np.median(f, axis=0)
    span = f.max(axis=0) - f.min(axis=0)
    for group, names in GROUPS.items():
        for name in names:
            i = INDEX[name]
            if (span[i] > rotation_deg / 180.0) if i >= 52 else (rise[i] > shape_range):
                out.add(group)
                break
    return out


def _pulse(n: int, fps: float, centre_s: float, rise_s: float, fall_s: float) -> np.ndarray:
    """A smooth bump: raised-cosine rise over ``rise_s`` up to ``centre_s``, fall over ``fall_s`` after it."""
    t = (np.arange(n) + 0.5) / fps - centre_s
    out = np.zeros(n)
    up = (t > -rise_s) & (t <= 0)
    down = (t > 0) & (t < fall_s)
    out[up] = 0.5 - 0.5 * np.cos(np.pi * (t[up] + rise_s) / rise_s)
    out[down] = 0.5 + 0.5 * np.cos(np.pi * t[down] / fall_s)
    return out


def blink_times(track: SpeechTrack, fps: float, rng: np.random.Generator, per_minute: float = 17.0,
                min_gap_s: float = 1.2, snap_s: float = 0.9, start_s: float = 0.0) -> list[float]:
    """Blink times (s from the track's start): a renewal process at ``per_minute`` whose blinks move to the nearest
    pause frame (preferring the start of a pause, i.e. a phrase end) within ``snap_s``. The process runs from time 0
    of the stream; ``start_s`` says where this track starts in it (a segment of a stream)."""
    n = len(track.speech)
    duration = n / fps
    if n == 0 or per_minute <= 0:
        return []
    mean = 60.0 / per_minute
    pause = ~track.speech
    starts = np.array([s for s, e in _runs(pause) if s > 0 and e - s >= 0.15 * fps], dtype=np.float64)
    pause_t = (np.nonzero(pause)[0] + 0.5) / fps
    phrase_end_t = (starts + 0.5) / fps + 0.12
    times: list[float] = []
    t = float(rng.uniform(0.3, min(mean, 2.5))) - float(start_s)
    while t < 0.0:  # blinks of the stream before this segment (their audio is not here: not moved to pauses)
        t += min_gap_s * 0.6 + float(rng.gamma(2.0, (mean - min_gap_s * 0.6) / 2.0))
    while t < duration - 0.1:
        chosen = t
        near_end = phrase_end_t[np.abs(phrase_end_t - t) <= snap_s]
        if near_end.size:
            chosen = float(near_end[np.argmin(np.abs(near_end - t))])
        elif pause_t.size:
            d = np.abs(pause_t - t)
            j = int(np.argmin(d))
            if d[j] <= snap_s * 0.5:
                chosen = float(pause_t[j])
        if times and chosen - times[-1] < min_gap_s:
            chosen = times[-1] + min_gap_s
        if chosen >= duration - 0.1:
            break
        times.append(chosen)
        t = chosen + min_gap_s * 0.6 + float(rng.gamma(2.0, (mean - min_gap_s * 0.6) / 2.0))
    return times


def _blink_curve(n: int, fps: float, times: list[float], rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    for t in times:
        depth = float(rng.uniform(0.9, 1.0))
        out = np.maximum(out, depth * _pulse(n, fps, t, 0.07, 0.16))
    return out


def _slow_noise(n: int, fps: float, rng: np.random.Generator, amp: float, fmin: float = 0.05,
                fmax: float = 0.3, k: int = 3, start_s: float = 0.0) -> np.ndarray:
    """Sum of ``k`` slow sinusoids of absolute time (a stream's segments join without a jump)."""
    t = float(start_s) + (np.arange(n) + 0.5) / fps
    f = rng.uniform(fmin, fmax, k)
    ph = rng.uniform(0, 2 * np.pi, k)
    w = rng.uniform(0.5, 1.0, k)
    x = (w[None, :] * np.sin(2 * np.pi * f[None, :] * t[:, None] + ph[None, :])).sum(axis=1)
    return amp * x / w.sum() * 1.6


def _accent_peaks(track: SpeechTrack, fps: float, min_gap_s: float = 0.6) -> list[tuple[int, float]]:
    """(frame, strength in (0, 1]) of accent peaks, strongest kept first, ``min_gap_s`` apart."""
    a = track.accent
    n = len(a)
    if n < 3 or not track.speech.any():
        return []
    is_peak = np.zeros(n, bool)
    is_peak[1:-1] = (a[1:-1] >= a[:-2]) & (a[1:-1] > a[2:])
    ref = float(np.percentile(a[track.speech], 95)) if track.speech.sum() > 5 else float(a.max())
    if ref <= 1e-6:
        return []
    cand = [(int(i), float(a[i])) for i in np.nonzero(is_peak & (a > 0.35 * ref))[0]]
    cand.sort(key=lambda p: -p[1])
    chosen: list[tuple[int, float]] = []
    for i, v in cand:
        if all(abs(i - j) >= min_gap_s * fps for j, _ in chosen):
            chosen.append((i, min(1.0, v / ref)))
    return sorted(chosen)


def _limit_rate(x: np.ndarray, max_step: float) -> np.ndarray:
    """Follow ``x`` with at most ``max_step`` change per frame (keeps the head smooth after summing motions)."""
    out = np.empty_like(x)
    if len(x) == 0:
        return out
    out[0] = x[0]
    for i in range(1, len(x)):
        out[i] = out[i - 1] + np.clip(x[i] - out[i - 1], -max_step, max_step)
    return out


PAUSE_PHONES = frozenset({"_", "SP", "sp", "SIL", "sil", ",", ".", "!", "?", "…", "-", "'", "…"})


def phone_track(phones: list[str], durations: np.ndarray, num_frames: int, fps: float) -> SpeechTrack:
    """A :class:`SpeechTrack` from phones and their times instead of audio (a synthesis result's face, made before its
    audio exists): speech where a phone is not a pause; an accent at the first phone after each pause (phrase
    onsets, where speakers most often lift their brows and nod)."""
    n = int(num_frames)
    t = (np.arange(n) + 0.5) / fps
    ends = np.cumsum(np.asarray(durations, dtype=np.float64))
    idx = np.minimum(np.searchsorted(ends, t, side="right"), max(0, len(phones) - 1))
    is_pause = np.array([p in PAUSE_PHONES for p in phones] or [True], bool)
    speech = ~is_pause[idx] if len(phones) else np.zeros(n, bool)
    accent = np.zeros(n)
    onsets = [i for i in range(len(phones)) if not is_pause[i] and (i == 0 or is_pause[i - 1])]
    for k, i in enumerate(onsets):
        start = ends[i] - float(durations[i])
        frame = int(start * fps)
        if 0 <= frame < n:
            accent = np.maximum(accent, (1.0 if k == 0 else 0.6) * _pulse(n, fps, start + 0.1, 0.05, 0.15))
    return SpeechTrack(np.where(speech, -20.0, -120.0), speech, np.full(n, np.nan), accent * speech)


def _add_gaze(out: np.ndarray, gaze_yaw: np.ndarray, gaze_pitch: np.ndarray, head_yaw_deg: np.ndarray,
              head_pitch_deg: np.ndarray) -> None:
    """Add the eyes to ``out`` (offline and live alike): the gaze in degrees, partly holding its target while the
    head moves, as eye rotations and the matching EyeLook shapes."""
    eye_yaw = gaze_yaw - 0.6 * head_yaw_deg
    eye_pitch = gaze_pitch - 0.6 * head_pitch_deg
    for side in ("Left", "Right"):
        out[:, INDEX[f"{side}EyeYaw"]] += (eye_yaw / 180.0).astype(np.float32)
        out[:, INDEX[f"{side}EyePitch"]] += (eye_pitch / 180.0).astype(np.float32)
    look_left, look_right = np.clip(eye_yaw / 30.0, 0, 1), np.clip(-eye_yaw / 30.0, 0, 1)
    out[:, INDEX["EyeLookOutLeft"]] += look_left
    out[:, INDEX["EyeLookInRight"]] += look_left
    out[:, INDEX["EyeLookInLeft"]] += look_right
    out[:, INDEX["EyeLookOutRight"]] += look_right
    for side in ("Left", "Right"):
        out[:, INDEX[f"EyeLookDown{side}"]] += np.clip(eye_pitch / 25.0, 0, 1)
        out[:, INDEX[f"EyeLookUp{side}"]] += np.clip(-eye_pitch / 25.0, 0, 1)


def make_alive(frames: np.ndarray, fps: float, audio: np.ndarray | None = None, sample_rate: int = 44100,
               options: AliveOptions | None = None, keep: set[str] | None = None, start_s: float = 0.0,
               track: SpeechTrack | None = None) -> np.ndarray:
    """``frames`` ``[T, 61]`` with blinks, brows, nods and idle head/eye motion where the source is flat.

    ``audio`` (any rate, covering the frames' time span) drives pauses and accents; without it only the idle motion
    and evenly spread blinks are added. ``keep``: groups never to touch (default: the ones the source predicts; pass
    an empty set for a source known not to predict any, e.g. the shipped default head, whose rotations are small
    noise around 0). A filled group becomes the source's median (its resting value) plus the added motion.
    ``start_s``: where these frames start in a longer stream made segment by segment; the idle head and eye motion and
    the blink schedule are functions of the stream's time, so consecutive segments join up. ``track``: the speech
    analysis to use instead of the audio's (:func:`phone_track` for a face made from phones)."""
    opts = options or AliveOptions()
    out = np.array(frames, dtype=np.float32, copy=True)
    if out.ndim != 2 or out.shape[1] != NUM_VALUES:
        raise ValueError(f"make_alive: frames must be [T, {NUM_VALUES}], got {out.shape}")
    n = out.shape[0]
    if n == 0:
        return out
    keep = predicted_groups(out) if keep is None else set(keep)
    if keep:
        log.debug("alive: the source predicts %s; kept", sorted(keep))
    track = track if track is not None else speech_track(audio, sample_rate, n, fps)
    fill = [g for g, on in (("blinks", opts.blinks), ("brows", opts.brows), ("head", opts.head), ("eyes", opts.eyes))
            if on and g not in keep]
    for group in fill:
        idx = [INDEX[name] for name in GROUPS[group]]
        out[:, idx] = np.median(out[:, idx], axis=0, keepdims=True)
    # one generator per group so switching one off never changes the others
    seeds = np.random.SeedSequence(int(opts.seed)).spawn(4)
    rng_blink, rng_brow, rng_head, rng_eye = (np.random.default_rng(s) for s in seeds)
    peaks = _accent_peaks(track, fps)
    # accent gestures fade out at the clip's ends, so segments of a stream join without a jump
    tt = (np.arange(n) + 0.5) / fps
    edge = np.clip(np.minimum(tt, n / fps - tt) / 0.25, 0.0, 1.0)

    if opts.blinks and "blinks" not in keep:
        curve = _blink_curve(n, fps, blink_times(track, fps, rng_blink, opts.blinks_per_minute, start_s=start_s),
                             rng_blink)
        for name in GROUPS["blinks"]:
            out[:, INDEX[name]] = np.maximum(out[:, INDEX[name]], curve)

    if opts.brows and "brows" not in keep:
        raise_ = np.zeros(n)
        for i, s in peaks:
            amp = opts.brow_raise * s * float(rng_brow.uniform(0.7, 1.1))
            if rng_brow.random() < 0.8:  # not every accent lifts the brows
                raise_ = np.maximum(raise_, amp * _pulse(n, fps, (i + 0.5) / fps, 0.15, 0.45))
        raise_ = raise_ * edge
        out[:, INDEX["BrowInnerUp"]] += raise_
        out[:, INDEX["BrowOuterUpLeft"]] += 0.8 * raise_
        out[:, INDEX["BrowOuterUpRight"]] += 0.8 * raise_

    yaw_deg = pitch_deg = np.zeros(n)
    if opts.head and "head" not in keep:
        yaw_deg = _slow_noise(n, fps, rng_head, opts.head_deg, start_s=start_s)
        pitch_deg = _slow_noise(n, fps, rng_head, opts.head_deg * 0.5, start_s=start_s)
        roll_deg = _slow_noise(n, fps, rng_head, opts.head_deg * 0.4, start_s=start_s)
        nods = np.zeros(n)
        for i, s in peaks:
            nods += opts.nod_deg * s * float(rng_head.uniform(0.7, 1.1)) * _pulse(n, fps, (i + 0.5) / fps + 0.03, 0.2, 0.35)
        pitch_deg = pitch_deg + nods * edge
        step = MAX_HEAD_DEG_PER_S / fps
        yaw_deg, pitch_deg, roll_deg = (_limit_rate(x, step) for x in (yaw_deg, pitch_deg, roll_deg))
        for name, deg in (("HeadYaw", yaw_deg), ("HeadPitch", pitch_deg), ("HeadRoll", roll_deg)):
            out[:, INDEX[name]] += (deg / 180.0).astype(np.float32)

    if opts.eyes and "eyes" not in keep:
        gaze_yaw, gaze_pitch = np.zeros(n), np.zeros(n)
        t = float(rng_eye.uniform(0.5, 1.5))
        cur = (0.0, 0.0)
        times = float(start_s) + (np.arange(n) + 0.5) / fps  # gaze shifts on the stream's clock
        while t < float(start_s) + n / fps:
            new = (float(rng_eye.normal(0, 2.5)), float(rng_eye.normal(0, 1.5)))
            ramp = np.clip((times - t) / 0.05, 0, 1)
            ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
            gaze_yaw += (new[0] - cur[0]) * ramp
            gaze_pitch += (new[1] - cur[1]) * ramp
            cur = new
            t += float(rng_eye.uniform(0.8, 3.0))
        _add_gaze(out, gaze_yaw, gaze_pitch, yaw_deg, pitch_deg)

    out[:, :52] = np.clip(out[:, :52], 0.0, 1.0)
    out[:, 52:] = np.clip(out[:, 52:], -1.0, 1.0)
    return out


# --- online (live faces) ------------------------------------------------------------------------------------------


class _Pulses:
    """Bumps (:func:`_pulse` shapes) scheduled on the stream's clock, summed or max-ed frame by frame; finished ones
    are dropped, so the list stays short however long the stream runs."""

    def __init__(self) -> None:
        self.items: list[tuple[float, float, float, float]] = []  # (centre_s, rise_s, fall_s, amplitude)

    def add(self, centre_s: float, rise_s: float, fall_s: float, amp: float) -> None:
        self.items.append((centre_s, rise_s, fall_s, amp))

    def at(self, t: np.ndarray, combine: str = "sum") -> np.ndarray:
        out = np.zeros(len(t))
        for c, r, f, a in self.items:
            d = t - c
            v = np.zeros(len(t))
            up, down = (d > -r) & (d <= 0), (d > 0) & (d < f)
            v[up] = 0.5 - 0.5 * np.cos(np.pi * (d[up] + r) / r)
            v[down] = 0.5 + 0.5 * np.cos(np.pi * d[down] / f)
            out = np.maximum(out, a * v) if combine == "max" else out + a * v
        if len(t):
            self.items = [p for p in self.items if p[0] + p[2] > t[-1]]
        return out


class AliveStream:
    """:func:`make_alive` for a live stream: blinks, brows, nods, idle head and eye motion decided frame by frame from
    the audio heard so far (plus the few ms past each frame's centre that a live face waits for anyway).

    Same rates and limits as offline: blinks about ``blinks_per_minute`` (a renewal process, at least 1.2 s apart,
    moved into a pause that starts within 0.9 s); accents (level above its 1 s running average, pitch above the
    running median) lift the brows and nod the head, starting when the accent peak is heard; the idle head and eye
    motion are the same functions of the stream's time as offline; the head turns at most
    :data:`MAX_HEAD_DEG_PER_S` (0.5 deg per frame at 60 fps). Differences from offline, as the future is unknown: a
    gesture starts at its peak instead of rising to it, the speech threshold and accent scale are running estimates,
    and a filled group rests at neutral (0) instead of the source's median (a live source has no median yet; the
    shipped causal head was not trained on those channels at all).

    :meth:`push_audio` the 44.1 kHz mono samples as they arrive, then :meth:`apply` the next frames (in order)."""

    def __init__(self, fps: float = 60.0, options: AliveOptions | None = None, keep: set[str] | None = None,
                 sample_rate: int = 44100) -> None:
        self.fps = float(fps)
        self.opts = options or AliveOptions()
        self.keep = set(keep or ())
        self.sr = int(sample_rate)
        self.frame = 0  # next frame index
        self.audio = np.zeros(0, np.float32)  # samples audio_start.. (a short tail)
        self.audio_start = 0
        self.audio_total = 0
        self.closed = False
        seeds = np.random.SeedSequence(int(self.opts.seed)).spawn(4)
        self.rng_blink, self.rng_brow, self.rng_head, self.rng_eye = (np.random.default_rng(s) for s in seeds)
        # the idle head: three sums of slow sinusoids, drawn as make_alive draws them
        self.idle = []
        for amp in (self.opts.head_deg, self.opts.head_deg * 0.5, self.opts.head_deg * 0.4):
            f, ph, w = self.rng_head.uniform(0.05, 0.3, 3), self.rng_head.uniform(0, 2 * np.pi, 3), self.rng_head.uniform(0.5, 1.0, 3)
            self.idle.append((amp, f, ph, w))
        self.head_prev: np.ndarray | None = None
        # speech / accent statistics (running)
        self.peak_db, self.floor_db = -60.0, -60.0
        self.level_avg, self.f0_avg, self.accent_ref = None, None, 0.0
        self.acc_hist = [0.0, 0.0]
        self.last_peak_t = -10.0
        self.in_pause_frames = 0
        # blinks
        mean = 60.0 / self.opts.blinks_per_minute if self.opts.blinks_per_minute > 0 else float("inf")
        self.blink_mean = mean
        self.next_blink = float(self.rng_blink.uniform(0.3, min(mean, 2.5))) if np.isfinite(mean) else float("inf")
        self.last_blink = -10.0
        self.blinks, self.brows, self.nods = _Pulses(), _Pulses(), _Pulses()
        # eyes
        self.gaze_t = float(self.rng_eye.uniform(0.5, 1.5))
        self.gaze_from, self.gaze_to, self.gaze_start = (0.0, 0.0), (0.0, 0.0), -1.0

    def push_audio(self, samples: np.ndarray) -> None:
        """More mono samples at ``sample_rate`` (only the last fraction of a second is kept)."""
        a = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.audio = np.concatenate([self.audio, a])
        self.audio_total += len(a)
        keep_from = int(max(0, (self.frame / self.fps - 0.1) * self.sr))
        if keep_from > self.audio_start + self.sr:
            self.audio = self.audio[keep_from - self.audio_start:].copy()
            self.audio_start = keep_from

    def _measure(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(level dB, log2 pitch or nan) at frame centres ``t`` from the audio so far (windows as offline)."""
        half, lhalf = max(1, int(self.sr / self.fps)), int(0.02 * self.sr)
        c = (t * self.sr).astype(np.int64)
        idx = c[:, None] + np.arange(-lhalf, lhalf)[None, :] - self.audio_start
        w = np.zeros(idx.shape, np.float32)
        ok = (idx >= 0) & (idx < len(self.audio))
        w[ok] = self.audio[idx[ok]]
        mid = w[:, lhalf - half: lhalf + half] if half < lhalf else w
        db = 10 * np.log10(np.mean(mid.astype(np.float64) ** 2, axis=1) + 1e-10)
        step = self.sr / _ANALYSIS_SR
        f0 = _pitch(w[:, (np.arange(int(w.shape[1] / step)) * step).astype(np.int64)])
        return db, np.log2(f0)

    def _analyse(self, db: float, lf: float) -> tuple[bool, float]:
        """(speech, accent) of one frame from its level and pitch; updates the running statistics."""
        dt = 1.0 / self.fps
        self.peak_db = max(db, self.peak_db - 3.0 * dt)  # loud level, slowly forgotten
        self.floor_db = min(db, self.floor_db + 1.0 * dt) if db > -100 else self.floor_db
        thr = max(self.peak_db - 35.0, self.floor_db + 10.0)
        speech = db > thr
        level = db if speech else thr
        self.level_avg = level if self.level_avg is None else self.level_avg + (level - self.level_avg) * dt
        accent = max(0.0, (level - self.level_avg) / 6.0)
        if speech and np.isfinite(lf):
            self.f0_avg = lf if self.f0_avg is None else self.f0_avg + (lf - self.f0_avg) * dt * 0.5
            accent += max(0.0, 12 * (lf - self.f0_avg) / 4.0)
        return bool(speech), accent if speech else 0.0

    def _gestures(self, t: float, speech: bool, accent: float) -> None:
        opts = self.opts
        # accents: a local maximum of the (lightly smoothed) accent strength, 0.6 s apart at least
        a = 0.7 * self.acc_hist[-1] + 0.3 * accent
        prev2, prev = self.acc_hist
        self.acc_hist = [prev, a]
        self.accent_ref = max(prev, self.accent_ref * (1.0 - 0.05 / self.fps))
        if (prev >= prev2 and prev > a and self.accent_ref > 1e-6 and prev > 0.35 * self.accent_ref
                and t - self.last_peak_t >= 0.6):
            self.last_peak_t = t
            s = min(1.0, prev / self.accent_ref)
            if opts.brows and "brows" not in self.keep:
                amp = opts.brow_raise * s * float(self.rng_brow.uniform(0.7, 1.1))
                if self.rng_brow.random() < 0.8:
                    self.brows.add(t + 0.15, 0.15, 0.45, amp)
            if opts.head and "head" not in self.keep:
                self.nods.add(t + 0.2, 0.2, 0.35, opts.nod_deg * s * float(self.rng_head.uniform(0.7, 1.1)))
        # blinks: due at next_blink; moved into a pause within 0.9 s (a phrase end first)
        self.in_pause_frames = 0 if speech else self.in_pause_frames + 1
        if opts.blinks and "blinks" not in self.keep and t >= self.last_blink + 1.2:
            pause_start = self.in_pause_frames == int(0.15 * self.fps)  # a pause of 150 ms has begun
            due = t >= self.next_blink
            early = pause_start and self.next_blink - t <= 0.9
            late = due and (not speech or t >= self.next_blink + 0.9)
            if early or late:
                self.blinks.add(t + 0.07, 0.07, 0.16, float(self.rng_blink.uniform(0.9, 1.0)))
                self.last_blink = t
                gap = 1.2 * 0.6 + float(self.rng_blink.gamma(2.0, (self.blink_mean - 1.2 * 0.6) / 2.0))
                self.next_blink = t + max(gap, 1.2)

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """The next ``[n, 61]`` frames of the stream with the alive motion added (groups in ``keep`` untouched)."""
        out = np.array(frames, dtype=np.float32, copy=True)
        n = len(out)
        if n == 0:
            return out
        opts = self.opts
        t = (self.frame + np.arange(n) + 0.5) / self.fps
        fill = [g for g, on in (("blinks", opts.blinks), ("brows", opts.brows), ("head", opts.head),
                                ("eyes", opts.eyes)) if on and g not in self.keep]
        idx = [INDEX[name] for g in fill for name in GROUPS[g]]
        db, lf = self._measure(t)
        out[:, idx] = 0.0  # a filled group rests at neutral (eyes open, brows relaxed, head and eyes straight)
        for j in range(n):
            speech, accent = self._analyse(float(db[j]), float(lf[j]))
            self._gestures(float(t[j]), speech, accent)
        if "blinks" in fill:
            curve = self.blinks.at(t, "max")
            for name in GROUPS["blinks"]:
                out[:, INDEX[name]] = np.maximum(out[:, INDEX[name]], curve)
        if "brows" in fill:
            r = self.brows.at(t, "max")
            out[:, INDEX["BrowInnerUp"]] += r
            out[:, INDEX["BrowOuterUpLeft"]] += 0.8 * r
            out[:, INDEX["BrowOuterUpRight"]] += 0.8 * r
        yaw = pitch = np.zeros(n)
        if "head" in fill:
            deg = [amp * (w[None, :] * np.sin(2 * np.pi * f[None, :] * t[:, None] + ph[None, :])).sum(1) / w.sum() * 1.6
                   for amp, f, ph, w in self.idle]
            deg[1] = deg[1] + self.nods.at(t)
            target = np.stack(deg, 1)
            step = MAX_HEAD_DEG_PER_S / self.fps
            lim = np.empty_like(target)
            prev = target[0] if self.head_prev is None else self.head_prev
            for j in range(n):
                prev = prev + np.clip(target[j] - prev, -step, step)
                lim[j] = prev
            self.head_prev = prev
            yaw, pitch = lim[:, 0], lim[:, 1]
            for k, name in enumerate(("HeadYaw", "HeadPitch", "HeadRoll")):
                out[:, INDEX[name]] += (lim[:, k] / 180.0).astype(np.float32)
        if "eyes" in fill:
            gy, gp = np.zeros(n), np.zeros(n)
            for j in range(n):
                while t[j] >= self.gaze_t:
                    self.gaze_from = self._gaze(self.gaze_t)
                    self.gaze_to = (float(self.rng_eye.normal(0, 2.5)), float(self.rng_eye.normal(0, 1.5)))
                    self.gaze_start = self.gaze_t
                    self.gaze_t += float(self.rng_eye.uniform(0.8, 3.0))
                gy[j], gp[j] = self._gaze(float(t[j]))
            _add_gaze(out, gy, gp, yaw, pitch)
        self.frame += n
        out[:, :52] = np.clip(out[:, :52], 0.0, 1.0)
        out[:, 52:] = np.clip(out[:, 52:], -1.0, 1.0)
        return out

    def _gaze(self, t: float) -> tuple[float, float]:
        ramp = float(np.clip((t - self.gaze_start) / 0.05, 0, 1))
        ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
        return (self.gaze_from[0] + (self.gaze_to[0] - self.gaze_from[0]) * ramp,
                self.gaze_from[1] + (self.gaze_to[1] - self.gaze_from[1]) * ramp)
