"""``motion/render_face.py``: face animation + audio -> MP4 (duration = the audio's within one frame; open and closed
mouths look different), for a curve file, a recorded take and a side-by-side comparison; the 2D face itself."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from motion.arkit import INDEX, NUM_VALUES

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
FPS = 60.0


def _mouth_pixels(img: np.ndarray, tol: int = 25) -> int:
    from motion.face.render import COLORS

    h, w = img.shape[:2]
    c = COLORS["mouth"].lstrip("#")
    ref = np.array([int(c[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.int16)
    region = img[int(0.55 * h): int(0.85 * h), int(0.3 * w): int(0.7 * w), :3].astype(np.int16)
    return int((np.abs(region - ref).max(axis=2) <= tol).sum())


def test_face_drawing_follows_the_values():
    from motion.face.render import draw_face

    rest = np.zeros(NUM_VALUES, np.float32)
    open_ = rest.copy()
    open_[INDEX["JawOpen"]] = 0.6
    blink = rest.copy()
    blink[INDEX["EyeBlinkLeft"]] = blink[INDEX["EyeBlinkRight"]] = 1.0
    brows = rest.copy()
    brows[INDEX["BrowInnerUp"]] = 1.0
    turned = rest.copy()
    turned[INDEX["HeadRoll"]] = 10 / 180
    imgs = {k: np.asarray(draw_face(v, (240, 240)), dtype=np.int16) for k, v in
            (("rest", rest), ("open", open_), ("blink", blink), ("brows", brows), ("turned", turned))}
    assert _mouth_pixels(imgs["rest"]) == 0 and _mouth_pixels(imgs["open"]) > 100
    closed_mouth = rest.copy()
    closed_mouth[INDEX["JawOpen"]] = closed_mouth[INDEX["MouthClose"]] = 0.3  # jaw down, lips together
    assert _mouth_pixels(np.asarray(draw_face(closed_mouth, (240, 240)), dtype=np.int16)) == 0

    def changed(a: str, rows: slice) -> int:
        return int((np.abs(imgs[a] - imgs["rest"]).max(axis=2)[rows] > 40).sum())

    assert changed("blink", slice(80, 120)) > 100  # the eyes (rows of the eyes) change
    assert changed("blink", slice(150, 240)) == 0  # ... and nothing below them
    assert changed("brows", slice(50, 95)) > 50
    assert changed("turned", slice(0, 240)) > 1000  # head roll turns the whole face


def _speech_with_silence(tmp_path: Path) -> tuple[Path, Path, np.ndarray, float]:
    """Rule-lip-synced eSpeak speech with 0.7 s of silence before and after: wav + npy (+ JSON with the rate)."""
    from bert_vits2.audio import TTS_SAMPLE_RATE, write_wav_pcm16
    from motion.face.lipsync import lipsync_events
    from motion.face.outputs import write_curve_files
    from motion.face.synth_data import make_utterance

    u = make_utterance("Papa bought a map, and a bag of apples.", "en-us", rate=160)
    pad = int(0.7 * TTS_SAMPLE_RATE)
    audio = np.concatenate([np.zeros(pad, np.float32), u.audio, np.zeros(pad, np.float32)])
    duration = len(audio) / TTS_SAMPLE_RATE
    n = int(np.ceil(duration * FPS - 1e-6))
    frames = lipsync_events([(p, a + 0.7, b + 0.7) for p, a, b in u.events], FPS, n)
    wav = write_wav_pcm16(tmp_path / "speech.wav", audio, TTS_SAMPLE_RATE)
    npy = tmp_path / "speech.npy"
    write_curve_files(npy, frames, FPS, {}, json_path=tmp_path / "speech.json")
    return wav, npy, frames, duration


def _probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type,width,height,"
                          "nb_frames,r_frame_rate", "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _frame_at(mp4: Path, t: float, out: Path) -> np.ndarray:
    from PIL import Image

    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", f"{t:.4f}", "-i", str(mp4), "-frames:v", "1", str(out)],
                   check=True)
    return np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)


@pytest.mark.slow
def test_render_face_cli_writes_an_mp4_in_sync_with_the_audio(tmp_path, capsys):
    from motion.render_face import main

    wav, npy, frames, duration = _speech_with_silence(tmp_path)
    mp4 = tmp_path / "out" / "speech.mp4"
    assert main([str(npy), "--wav", str(wav), "-o", str(mp4), "--size", "240", "-q"]) == 0
    assert f"wrote {mp4}" in capsys.readouterr().out
    info = _probe(mp4)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert any(s["codec_type"] == "audio" for s in info["streams"])
    assert (video["width"], video["height"]) == (240, 240) and video["r_frame_rate"] == "60/1"
    assert int(video["nb_frames"]) == len(frames) == int(np.ceil(duration * FPS - 1e-6))
    assert abs(float(info["format"]["duration"]) - duration) <= 1.0 / FPS, (info["format"]["duration"], duration)
    print(f"\nMP4 duration {float(info['format']['duration']):.4f} s, audio {duration:.4f} s, {len(frames)} frames")

    aperture = frames[:, INDEX["JawOpen"]] - frames[:, INDEX["MouthClose"]]
    i_open = int(np.argmax(aperture))
    i_silent = int(0.35 * FPS)  # inside the leading silence
    assert frames[i_open, INDEX["JawOpen"]] > 0.4 and frames[i_silent, INDEX["JawOpen"]] < 0.01
    img_open = _frame_at(mp4, (i_open + 0.5) / FPS, tmp_path / "open.png")
    img_silent = _frame_at(mp4, (i_silent + 0.5) / FPS, tmp_path / "silent.png")
    diff = np.abs(img_open - img_silent).max(axis=2)
    changed = int((diff > 40).sum())
    print(f"pixels differing by > 40 levels between the open and the silent frame: {changed}; mouth pixels "
          f"{_mouth_pixels(img_open)} vs {_mouth_pixels(img_silent)}")
    assert changed > 300
    # (H.264 4:2:0 smears the closed lips' line into a few mouth-coloured pixels: count, not zero)
    assert _mouth_pixels(img_open) > 100 and _mouth_pixels(img_silent) <= max(10, _mouth_pixels(img_open) // 20)


@pytest.mark.slow
def test_render_a_take_and_a_side_by_side_comparison(tmp_path, capsys):
    from motion.face.synth_data import write_take
    from motion.render_face import main

    wav, npy, frames, duration = _speech_with_silence(tmp_path)
    from bert_vits2.audio import load_audio

    audio, _ = load_audio(wav)
    stem = write_take(tmp_path / "records", "take1", audio, frames, offset_s=0.0, drop=3, jitter_s=0.0)
    mp4 = tmp_path / "take.mp4"
    assert main([str(stem), "-o", str(mp4), "--size", "120", "--compare", str(npy), "--labels", "recorded",
                 "predicted", "-q"]) == 0  # the take's own wav
    info = _probe(mp4)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (240, 120)  # two faces side by side
    assert abs(float(info["format"]["duration"]) - duration) <= 1.0 / FPS

    assert main([str(npy), "-o", str(tmp_path / "x.mp4")]) == 0  # speech.wav beside the npy is not a take's wav...
    bare = tmp_path / "bare" / "curves.npy"
    bare.parent.mkdir()
    np.save(bare, frames)
    assert main([str(bare), "-o", str(tmp_path / "y.mp4")]) == 1  # ... but a bare npy without audio is an error
    assert "--wav" in capsys.readouterr().err


def test_render_face_help():
    import sys

    out = subprocess.run([sys.executable, "motion/render_face.py", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0 and "--compare" in out.stdout
