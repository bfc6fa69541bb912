"""A clear 2D face drawn from the 61 Live Link values, and MP4 export of a face animation with its audio.

The face is a set of flat shapes (outline, cheeks, eyes with lids and irises, brows, nose, lips, mouth opening, teeth,
tongue) whose geometry follows the values: eyes (``EyeBlink``, ``EyeSquint``, ``EyeWide``, gaze from the eye rotations
or the ``EyeLook*`` shapes), brows (``BrowInnerUp``, ``BrowOuterUp*``, ``BrowDown*``), jaw (``JawOpen`` lowers chin and
mouth, ``JawLeft/Right``), lips (the opening is ``JawOpen - MouthClose``; smile, frown, stretch, pucker, funnel, roll,
press, upper-up/lower-down, left/right), cheeks (``CheekPuff``, ``CheekSquint*``), nose (``NoseSneer*``), tongue, and the
head rotation (roll turns the face, yaw/pitch move it with a little parallax).

:func:`face_shapes` gives the shapes in pixels; :func:`draw_face` paints them with PIL; :func:`render_video` pipes the
frames to ffmpeg with the audio. The web page's canvas preview (``motion/webui/preview.py``) draws the same geometry in
JavaScript; keep the two in step.

Conventions: viewer's view (the subject's left is on the right of the picture); rotations are degrees / 180.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

from bert_vits2.audio import TTS_SAMPLE_RATE, load_audio, write_wav_pcm16
from bert_vits2.fileio import same_file
from motion.arkit import INDEX, NUM_VALUES
from motion.face.postprocess import shift_frames
from motion.frames import num_frames_for, resample_curves
from motion.livelink.take import TakeError, load_take

log = logging.getLogger(__name__)

__all__ = ["COLORS", "FaceCurves", "RenderError", "Shape", "draw_face", "face_shapes", "load_curves",
           "render_face_file", "render_frames", "render_video"]


class RenderError(ValueError):
    """A video cannot be written; the message says why (ffmpeg missing or failing, bad inputs)."""

COLORS: dict[str, str] = {
    "background": "#1f232b", "neck": "#d9a878", "skin": "#f2cda6", "outline": "#b7835c", "cheek": "#f1ad9c",
    "white": "#fbfbf8", "iris": "#3d6fa8", "pupil": "#10141c", "lid": "#5a3a2a", "brow": "#4b3122",
    "nose": "#c8916c", "lip": "#c75b5e", "lipline": "#7c2a31", "mouth": "#5c0f1c", "teeth": "#f5f1e6",
    "tongue": "#d8727c", "text": "#e8e8e8",
}


@dataclass(frozen=True)
class Shape:
    """One drawing operation in pixels: ``poly`` (filled), ``line`` (polyline of ``width``) or ``circle``."""

    kind: str
    points: tuple[tuple[float, float], ...]
    color: str
    width: float = 0.0  # line width, or circle radius


def _v(values: np.ndarray, name: str) -> float:
    return float(values[INDEX[name]])


def face_shapes(values: Sequence[float] | np.ndarray, width: int, height: int) -> list[Shape]:
    """The face for one frame of 61 values, as shapes in pixel coordinates of a ``width`` × ``height`` picture."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size != NUM_VALUES:
        raise ValueError(f"face_shapes: need {NUM_VALUES} values, got {v.size}")
    v = np.nan_to_num(v)
    g = lambda n: _v(v, n)  # noqa: E731
    u = float(min(width, height))  # face units -> pixels
    cx, cy = width / 2.0, height / 2.0 - 0.02 * u
    roll = g("HeadRoll") * math.pi  # radians
    yaw_s, pitch_s = math.sin(g("HeadYaw") * math.pi), math.sin(g("HeadPitch") * math.pi)
    cr, sr = math.cos(roll), math.sin(roll)

    def tf(points: list[tuple[float, float]], parallax: float) -> tuple[tuple[float, float], ...]:
        dx, dy = -yaw_s * 0.6 * parallax, pitch_s * 0.6 * parallax
        return tuple((cx + u * (x * cr - y * sr + dx), cy + u * (x * sr + y * cr + dy)) for x, y in points)

    shapes: list[Shape] = []
    poly = lambda pts, par, color: shapes.append(Shape("poly", tf(pts, par), color))  # noqa: E731
    line = lambda pts, par, color, w: shapes.append(Shape("line", tf(pts, par), color, w * u))  # noqa: E731

    def circle(x: float, y: float, r: float, par: float, color: str) -> None:
        shapes.append(Shape("circle", tf([(x, y)], par), color, r * u))

    jaw = g("JawOpen")
    # neck and face outline (the chin drops with the jaw; cheeks puff out)
    poly([(-0.12, 0.25), (0.12, 0.25), (0.15, 0.6), (-0.15, 0.6)], 0.15, COLORS["neck"])
    rx = 0.30 + 0.02 * g("CheekPuff")
    ry_top, ry_bot = 0.37, 0.38 + 0.06 * jaw
    outline = []
    for k in range(64):
        a = 2 * math.pi * k / 64
        s = math.sin(a)
        outline.append((rx * math.cos(a) * (1.0 - 0.12 * max(s, 0.0) ** 2), (ry_bot if s > 0 else ry_top) * s))
    poly(outline, 0.4, COLORS["skin"])
    # cheeks
    for side, sg in (("Left", 1.0), ("Right", -1.0)):
        r = 0.045 + 0.025 * g("CheekPuff")
        circle(sg * (0.17 + 0.02 * g("CheekPuff")), 0.10 - 0.02 * g(f"CheekSquint{side}"), r, 0.8, COLORS["cheek"])
    # eyes
    for side, sg in (("Left", 1.0), ("Right", -1.0)):
        ex, ey = sg * 0.11, -0.04
        wide, squint = g(f"EyeWide{side}"), g(f"EyeSquint{side}")
        erx, ery = 0.055, 0.032 * (1.0 + 0.6 * wide - 0.25 * squint)
        close = min(1.0, max(0.0, g(f"EyeBlink{side}") + 0.3 * squint))
        xs = [erx * math.cos(math.pi - math.pi * k / 16) for k in range(17)]
        hs = [ery * math.sqrt(max(0.0, 1.0 - (x / erx) ** 2)) for x in xs]
        upper = [(ex + x, ey - h + close * 1.85 * h) for x, h in zip(xs, hs)]
        lower = [(ex + x, ey + h) for x, h in zip(xs, hs)]
        poly(upper + lower[::-1], 1.0, COLORS["white"])
        yaw_deg, pitch_deg = g(f"{side}EyeYaw") * 180.0, g(f"{side}EyePitch") * 180.0
        if abs(yaw_deg) < 1e-3 and abs(pitch_deg) < 1e-3:  # no rotations: read the EyeLook shapes
            out_, in_ = g(f"EyeLookOut{side}"), g(f"EyeLookIn{side}")
            yaw_deg = 30.0 * ((out_ - in_) if side == "Left" else (in_ - out_))
            pitch_deg = 25.0 * (g(f"EyeLookDown{side}") - g(f"EyeLookUp{side}"))
        gx = max(-0.032, min(0.032, yaw_deg / 30.0 * 0.03))
        gy = max(-0.02, min(0.02, pitch_deg / 25.0 * 0.02))
        circle(ex + gx, ey + gy, 0.021, 1.0, COLORS["iris"])
        circle(ex + gx, ey + gy, 0.009, 1.0, COLORS["pupil"])
        box = 0.032 * 1.6 + 0.02
        poly(upper + [(ex + erx + 0.01, ey - box), (ex - erx - 0.01, ey - box)], 1.0, COLORS["skin"])
        poly(lower + [(ex + erx + 0.01, ey + box), (ex - erx - 0.01, ey + box)], 1.0, COLORS["skin"])
        line(upper, 1.0, COLORS["lid"], 0.007)
        line(lower, 1.0, COLORS["outline"], 0.003)
    # brows
    for side, sg in (("Left", 1.0), ("Right", -1.0)):
        inner, outer, down = g("BrowInnerUp"), g(f"BrowOuterUp{side}"), g(f"BrowDown{side}")
        pts = [
            (sg * (0.05 - 0.012 * down), -0.115 - 0.05 * inner + 0.035 * down),
            (sg * 0.11, -0.135 - 0.03 * (0.5 * inner + outer) + 0.02 * down),
            (sg * 0.165, -0.115 - 0.05 * outer + 0.01 * down),
        ]
        line(pts, 1.0, COLORS["brow"], 0.018)
    # nose
    line([(0.0, -0.01), (0.012, 0.07), (0.0, 0.085)], 1.1, COLORS["nose"], 0.006)
    for side, sg in (("Left", 1.0), ("Right", -1.0)):
        circle(sg * (0.02 + 0.004 * g(f"NoseSneer{side}")), 0.088 - 0.02 * g(f"NoseSneer{side}"), 0.008, 1.1,
               COLORS["nose"])
    # mouth
    avg = lambda n: 0.5 * (g(n + "Left") + g(n + "Right"))  # noqa: E731
    pucker, funnel = g("MouthPucker"), g("MouthFunnel")
    mx = 0.03 * (g("MouthLeft") - g("MouthRight")) + 0.015 * (g("JawLeft") - g("JawRight"))
    yc = 0.19 + 0.035 * jaw
    aperture = max(0.0, jaw - g("MouthClose")) * 0.16 + 0.02 * funnel + 0.012 * (avg("MouthUpperUp") + avg("MouthLowerDown"))
    if jaw - g("MouthClose") <= 0.0 and funnel < 0.05:
        aperture = 0.0
    press = avg("MouthPress")
    t_up = 0.016 * (1.0 - 0.7 * g("MouthRollUpper") + 0.3 * pucker - 0.4 * press + 0.3 * g("MouthShrugUpper"))
    t_lo = 0.02 * (1.0 - 0.7 * g("MouthRollLower") + 0.3 * pucker - 0.4 * press + 0.3 * g("MouthShrugLower"))
    half_w, corner_y = {}, {}
    for side in ("Left", "Right"):
        half_w[side] = 0.085 * max(0.3, 1.0 + 0.35 * g(f"MouthSmile{side}") + 0.35 * g(f"MouthStretch{side}")
                                   + 0.1 * g(f"MouthDimple{side}") - 0.45 * pucker - 0.3 * funnel)
        corner_y[side] = yc - 0.04 * g(f"MouthSmile{side}") + 0.04 * g(f"MouthFrown{side}")

    def curve(mid: float, shrink: float = 1.0) -> list[tuple[float, float]]:
        pts = []
        for k in range(17):
            s = -1.0 + 2.0 * k / 16
            side = "Left" if s > 0 else "Right"
            x = mx + s * half_w[side] * shrink
            pts.append((x, corner_y[side] + (mid - corner_y[side]) * (1.0 - s * s)))
        return pts

    up_in, lo_in = yc - 0.35 * aperture - 0.025 * avg("MouthUpperUp"), yc + 0.65 * aperture  # a sneer lifts the lip
    poly(curve(up_in - t_up) + curve(lo_in + t_lo)[::-1], 1.0, COLORS["lip"])
    if aperture > 0.002:
        poly(curve(up_in) + curve(lo_in)[::-1], 1.0, COLORS["mouth"])
        if aperture > 0.012:
            teeth = min(0.3 * aperture, 0.012)
            poly(curve(up_in, 0.75) + curve(up_in + teeth, 0.75)[::-1], 1.0, COLORS["teeth"])
        if g("TongueOut") > 0.05:
            circle(mx, lo_in - 0.004 + 0.02 * g("TongueOut"), 0.02 + 0.012 * g("TongueOut"), 1.0, COLORS["tongue"])
    else:
        line(curve(up_in), 1.0, COLORS["lipline"], 0.004)
    return shapes


def _rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def draw_face(values: Sequence[float] | np.ndarray, size: tuple[int, int] = (480, 480), label: str = "",
              supersample: int = 2) -> Any:
    """A PIL RGB image of the face for one frame (drawn at ``supersample`` × the size, then reduced)."""
    w, h = int(size[0]), int(size[1])
    ss = max(1, int(supersample))
    img = Image.new("RGB", (w * ss, h * ss), _rgb(COLORS["background"]))
    d = ImageDraw.Draw(img)
    for sh in face_shapes(values, w * ss, h * ss):
        color = _rgb(sh.color)
        if sh.kind == "poly":
            d.polygon(sh.points, fill=color)
        elif sh.kind == "line":
            d.line(sh.points, fill=color, width=max(1, int(round(sh.width))), joint="curve")
        else:
            (x, y), r = sh.points[0], sh.width
            d.ellipse((x - r, y - r, x + r, y + r), fill=color)
    if ss > 1:
        img = img.resize((w, h), Image.LANCZOS)
    if label:
        ImageDraw.Draw(img).text((8, 6), label, fill=_rgb(COLORS["text"]))
    return img


def render_frames(curves: Sequence[np.ndarray], size: tuple[int, int] = (480, 480),
                  labels: Sequence[str] = ()) -> Iterator[np.ndarray]:
    """RGB frames ``[H, W·len(curves), 3]`` uint8: one face per curve set, side by side (all at the same rate)."""
    n = max(len(c) for c in curves)
    for i in range(n):
        tiles = []
        for k, c in enumerate(curves):
            row = c[min(i, len(c) - 1)] if len(c) else np.zeros(NUM_VALUES, np.float32)
            tiles.append(np.asarray(draw_face(row, size, labels[k] if k < len(labels) else "")))
        yield np.concatenate(tiles, axis=1)


@dataclass
class FaceCurves:
    """Curves on a uniform grid at ``fps`` starting at the audio's first sample, plus the audio when known."""

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None = None
    sample_rate: int | None = None


def load_curves(path: str | os.PathLike, fps: float | None = None) -> FaceCurves:
    """Curves from a take (``records/<take>``; frames placed by their arrival times), a ``[T, 61]`` ``.npy`` (rate
    from its JSON, ``fps`` or 60) or a Live Link Face app CSV."""
    p = Path(path)
    try:
        take = load_take(p, fps=fps)
    except TakeError as err:
        if p.suffix.lower() == ".npy" and p.is_file() and "frame rate" in str(err):
            log.warning("%s: no JSON gives the frame rate; assuming 60 fps (pass --fps)", p)
            take = load_take(p, fps=60.0)
        else:
            raise
    frames, rate = take.frames.astype(np.float32), float(take.fps)
    if (take.frame_times is not None or take.frame_numbers is not None) and len(frames) > 1:
        # a recorded or imported take: on the uniform grid from its frame numbers / arrival times, as prepare does
        frames, _ = take.on_grid(rate, take.audio_duration_s)
    return FaceCurves(np.asarray(frames, np.float32), rate, take.audio, take.sample_rate)


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if not exe:
        raise RenderError("ffmpeg is not installed (Debian: apt install ffmpeg); it is needed to write MP4 files")
    return exe


def render_video(frames: np.ndarray, fps: float, out_path: str | os.PathLike, *, audio: np.ndarray | None = None,
                 sample_rate: int | None = None, audio_path: str | os.PathLike | None = None,
                 compare: np.ndarray | None = None, labels: Sequence[str] = (), size: tuple[int, int] = (480, 480),
                 crf: int = 20) -> Path:
    """Write the face animation (and ``compare`` beside it, same rate) with its audio as an H.264/AAC MP4.

    The video has ``len(frames)`` frames at ``fps`` (frame i shows time ``(i + 0.5) / fps``); give the audio as an
    array or a file. Returns the path written (atomically: a temp file in the same folder, then renamed)."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 2 or frames.shape[1] != NUM_VALUES or len(frames) == 0:
        raise ValueError(f"render_video: frames must be [T>0, {NUM_VALUES}], got {frames.shape}")
    if size[0] % 2 or size[1] % 2:
        raise ValueError("render_video: width and height must be even (H.264 4:2:0)")
    curves = [frames] + ([np.asarray(compare, np.float32)] if compare is not None else [])
    if compare is not None and len(curves[1]) != len(frames):
        curves[1] = resample_curves(curves[1], fps, fps, len(frames))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    w, h = size[0] * len(curves), size[1]

    rate = Fraction(float(fps)).limit_denominator(1001)
    with tempfile.TemporaryDirectory(prefix="render-face-") as tmp:
        wav = None
        if audio is not None:
            wav = Path(tmp) / "audio.wav"
            write_wav_pcm16(wav, np.asarray(audio, np.float32), int(sample_rate or 44100))
        elif audio_path is not None:
            wav = Path(audio_path)
        part = out.with_name(f".{out.stem}.{os.getpid()}.part.mp4")
        cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", f"{rate.numerator}/{rate.denominator}", "-i", "-"]
        if wav is not None:
            cmd += ["-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "160k"]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(int(crf)), "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", str(part)]
        log.info("rendering %d frames at %g fps to %s", len(frames), fps, out)
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdin is not None
            try:
                for img in render_frames(curves, size, labels):
                    proc.stdin.write(np.ascontiguousarray(img).tobytes())
                proc.stdin.close()
            except BrokenPipeError:  # ffmpeg stopped early: its message follows
                pass
            err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
            if proc.wait() != 0:
                raise RenderError(f"ffmpeg failed writing {out}: {err.strip()[-500:]}")
            os.replace(part, out)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            part.unlink(missing_ok=True)
            raise
    return out


def render_face_file(curves_path: str | os.PathLike, out_path: str | os.PathLike, *, wav: str | os.PathLike | None = None,
                     compare: str | os.PathLike | None = None, labels: Sequence[str] | None = None,
                     fps: float | None = None, delay_s: float = 0.0, size: int = 480) -> Path:
    """``render_face.py``: a take / npy / CSV (+ audio) -> MP4 whose length is the audio's (frames cover it)."""
    out = Path(out_path).resolve()
    for given in (curves_path, compare, wav):
        if given is not None and same_file(given, out):
            raise RenderError(f"{out_path}: the output would overwrite an input; choose another -o")
    if out.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        raise RenderError(f"{out_path}: the video is an MP4; give a file name ending in .mp4")
    main = load_curves(curves_path, fps)
    audio, sr = main.audio, main.sample_rate
    if wav is not None:
        audio, sr = load_audio(wav, TTS_SAMPLE_RATE)
    if audio is None:
        raise RenderError(f"{curves_path}: no audio beside it; give --wav FILE")
    n = num_frames_for(len(audio) / float(sr), main.fps)
    frames = resample_curves(main.frames, main.fps, main.fps, n) if len(main.frames) != n else main.frames
    frames = shift_frames(frames, delay_s, main.fps)
    other = None
    if compare is not None:
        c = load_curves(compare, fps)
        other = shift_frames(resample_curves(c.frames, c.fps, main.fps, n), delay_s, main.fps)
    if labels is None:
        labels = [Path(curves_path).name] + ([Path(compare).name] if compare is not None else [])
    if int(size) % 2:
        raise RenderError(f"--size must be even (H.264), got {size}")
    return render_video(frames, main.fps, out_path, audio=audio, sample_rate=int(sr), compare=other,
                        labels=list(labels), size=(int(size), int(size)))
