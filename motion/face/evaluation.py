"""How good a face is on speech with known phone timings: the measures the tests, the benchmarks and the default
head's training report share, so a figure means the same thing everywhere.

- lip closure on bilabials (/p b m/) or labiodentals (/f v/): the lips touch when ``JawOpen - MouthClose`` is at most
  ``limit`` on some frame of the phone (widened by half a frame each side);
- JawOpen Pearson r against the rule-based lip-sync targets, pooled over clips and per clip;
- blinks (EyeBlinkLeft crossing 0.5 upwards) per minute, and the largest head rotation step in degrees per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from motion.arkit import INDEX
from motion.face.lipsync import phone_visemes

JAW, CLOSE, BLINK = INDEX["JawOpen"], INDEX["MouthClose"], INDEX["EyeBlinkLeft"]
HEAD = [INDEX[n] for n in ("HeadYaw", "HeadPitch", "HeadRoll")]
#: lips count as closed when JawOpen - MouthClose is at most this (ARKit: MouthClose = JawOpen means lips touching)
CLOSED = 0.02

Events = Sequence[tuple[str, float, float]]


def closure_rate(faces: Sequence[np.ndarray], events: Sequence[Events], viseme: str = "PP", limit: float = CLOSED,
                 fps: float = 60.0, lang: str = "ipa") -> tuple[int, int]:
    """(closed, total) over every phone whose visemes include ``viseme`` (``PP`` bilabials, ``FF`` labiodentals)."""
    total = closed = 0
    for f, ev in zip(faces, events):
        for phone, t0, t1 in ev:
            if viseme not in phone_visemes(phone, lang):
                continue
            i0 = max(0, int(np.floor(t0 * fps - 0.5)))
            i1 = min(len(f) - 1, max(i0, int(np.ceil(t1 * fps - 0.5))))
            if i0 >= len(f):
                continue
            total += 1
            closed += bool((f[i0:i1 + 1, JAW] - f[i0:i1 + 1, CLOSE]).min() <= limit)
    return closed, total


#: the visemes of open vowels (the lips should be apart in the middle of one)
OPEN_VOWELS = frozenset({"aa", "E", "I", "O", "U", "@"})


def closed_on_open_vowels(faces: Sequence[np.ndarray], events: Sequence[Events], limit: float = CLOSED,
                          fps: float = 60.0, lang: str = "ipa") -> tuple[int, int]:
    """(closed, total) over vowels of at least 50 ms: lips closed (gap <= ``limit``) on some frame of the middle half
    of the vowel. The false closures a lip-closing aid could add; the rule lip-sync has a few itself (short vowels
    between bilabials, coarticulation)."""
    total = closed = 0
    for f, ev in zip(faces, events):
        for phone, t0, t1 in ev:
            v = phone_visemes(phone, lang)
            if not v or not set(v) <= OPEN_VOWELS or t1 - t0 < 0.05:
                continue
            i0 = int(round((t0 + 0.25 * (t1 - t0)) * fps))
            i1 = int(round((t1 - 0.25 * (t1 - t0)) * fps))
            if i0 >= len(f):
                continue
            total += 1
            closed += bool((f[i0:i1 + 1, JAW] - f[i0:i1 + 1, CLOSE]).min() <= limit)
    return closed, total


def jaw_r(faces: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> tuple[float, list[float]]:
    """JawOpen Pearson r against the targets: pooled over all clips, and per clip (clips cut to the shorter length)."""
    pairs = [(f[: min(len(f), len(t)), JAW], t[: min(len(f), len(t)), JAW]) for f, t in zip(faces, targets)]
    pooled = float(np.corrcoef(np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs]))[0, 1])
    return pooled, [float(np.corrcoef(a, b)[0, 1]) for a, b in pairs]


def blink_onsets(face: np.ndarray) -> np.ndarray:
    """Frame indices where EyeBlinkLeft rises through 0.5."""
    bl = face[:, BLINK]
    return np.nonzero((bl[1:] >= 0.5) & (bl[:-1] < 0.5))[0] + 1


def max_head_step_deg(face: np.ndarray) -> float:
    """Largest frame-to-frame change of head yaw/pitch/roll, in degrees (Live Link stores rotations / 180°)."""
    return float(np.abs(np.diff(face[:, HEAD] * 180.0, axis=0)).max()) if len(face) > 1 else 0.0


_VOWELS = frozenset({"aa", "E", "I", "O", "U", "@"})


def alignment_shift(clips: Sequence[tuple[np.ndarray, int, Events]], shifts_s: Sequence[float] | None = None,
                    lang: str = "ipa") -> float:
    """The shift (s) of the phone spans that best fits the sound: the one that makes vowels loudest against stop
    closures (p t k b d g), in 5 ms steps. Negative: the sound comes earlier than its spans. Only differences between
    engines mean much (the measure has a bias of its own: eSpeak NG's exact events come out near -35 ms)."""
    shifts = np.arange(-0.12, 0.0601, 0.005) if shifts_s is None else np.asarray(shifts_s, dtype=np.float64)
    scores = np.zeros(len(shifts))
    for audio, sr, events in clips:
        hop = int(sr * 0.005)
        n = len(audio) // hop
        energy = np.log(np.mean(np.asarray(audio[: n * hop], np.float64).reshape(n, hop) ** 2, axis=1) + 1e-8)
        kinds = []
        for phone, a, b in events:
            vis = phone_visemes(phone, lang)
            if vis and all(v in _VOWELS for v in vis):
                kinds.append((1, a, b))
            elif len(vis) == 1 and vis[0] in ("PP", "DD", "kk") and phone[-1:] in "ptkbdgɡ":
                kinds.append((0, a, b))
        for k, s in enumerate(shifts):
            loud: list[np.ndarray] = [np.empty(0)]
            quiet: list[np.ndarray] = [np.empty(0)]
            for kind, a, b in kinds:
                i0, i1 = max(0, int((a + s) / 0.005)), min(n, int((b + s) / 0.005))
                (loud if kind else quiet).append(energy[i0:i1])
            lo, qu = np.concatenate(loud), np.concatenate(quiet)
            scores[k] += (lo.mean() - qu.mean()) if lo.size and qu.size else 0.0
    return float(shifts[int(np.argmax(scores))])


@dataclass
class FaceReport:
    """The measures on one set of clips."""

    minutes: float
    jaw_r: float
    jaw_r_per_clip: list[float]
    bilabials_closed: int
    bilabials: int
    labiodentals_closed: int
    labiodentals: int
    blinks_per_minute: float
    max_head_step_deg: float

    def lines(self) -> list[str]:
        return [
            f"JawOpen r vs rule targets: pooled {self.jaw_r:.3f}, per clip {min(self.jaw_r_per_clip):.3f}-"
            f"{max(self.jaw_r_per_clip):.3f} (mean {np.mean(self.jaw_r_per_clip):.3f})",
            f"bilabial closures (JawOpen - MouthClose <= {CLOSED}): {self.bilabials_closed}/{self.bilabials} "
            f"({self.bilabials_closed / max(1, self.bilabials):.1%}); labiodentals within 0.05: "
            f"{self.labiodentals_closed}/{self.labiodentals}",
            f"blinks {self.blinks_per_minute:.1f}/min; largest head step {self.max_head_step_deg:.3f} deg/frame",
        ]


def face_report(faces: Sequence[np.ndarray], targets: Sequence[np.ndarray], events: Sequence[Events],
                fps: float = 60.0) -> FaceReport:
    """All measures for faces made from clips with known targets and phone events."""
    r, per = jaw_r(faces, targets)
    pp = closure_rate(faces, events, "PP", CLOSED, fps)
    ff = closure_rate(faces, events, "FF", 0.05, fps)
    minutes = sum(len(f) for f in faces) / fps / 60.0
    blinks = sum(len(blink_onsets(f)) for f in faces)
    return FaceReport(minutes, r, per, pp[0], pp[1], ff[0], ff[1], blinks / max(minutes, 1e-9),
                      max(max_head_step_deg(f) for f in faces))


__all__ = ["CLOSED", "FaceReport", "alignment_shift", "blink_onsets", "closure_rate", "face_report", "jaw_r", "max_head_step_deg"]
