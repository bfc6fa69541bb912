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

__all__ = ["AliveOptions", "GROUPS", "MAX_HEAD_DEG_PER_S", "SpeechTrack", "blink_times", "make_alive",
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
        eye_yaw = gaze_yaw - 0.6 * yaw_deg  # the eyes partly hold their target while the head moves
        eye_pitch = gaze_pitch - 0.6 * pitch_deg
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

    out[:, :52] = np.clip(out[:, :52], 0.0, 1.0)
    out[:, 52:] = np.clip(out[:, 52:], -1.0, 1.0)
    return out
