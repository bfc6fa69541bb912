"""The face preview in real Chromium: the canvas face follows the audio player (play, pause, seek) and shows the mouth
open where JawOpen is high and closed in silence; the JavaScript port draws what ``motion.face.render`` draws.

Starts the web UI with the demo voice (no model) on a free port, synthesises a sentence with a pause, plays it, then
seeks to a high-JawOpen time and to a silent time and measures the mouth in screenshots of the canvas (pixels of the
mouth-interior colour inside the mouth region). ``WEBUI_SCREENSHOT_DIR`` keeps the screenshots.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import AUTOPLAY_ARGS, BROWSER_MARKS, chromium_page, start_on_free_port

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from motion.webui.app import WebUIConfig, build_app, launch

    root = tmp_path_factory.mktemp("preview")
    empty = root / "no_model"
    empty.mkdir()
    app = build_app(WebUIConfig(model_dir=str(empty), bert_dir=str(empty), outputs_dir=str(root / "out")))
    port = start_on_free_port(lambda p: launch(app, "127.0.0.1", p, block=False))
    yield f"http://127.0.0.1:{port}/", app.webui_state
    app.close()


@pytest.fixture(scope="module")
def page():
    with chromium_page(args=AUTOPLAY_ARGS, viewport={"width": 1400, "height": 1600}, device_scale_factor=1) as pg:
        yield pg


def _rgb(hex_color: str) -> np.ndarray:
    c = hex_color.lstrip("#")
    return np.array([int(c[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.int16)


def _mouth_pixels(img: np.ndarray) -> int:
    """Pixels of the mouth-interior colour in the lower middle of the face (where the mouth is drawn)."""
    from motion.face.render import COLORS

    h, w = img.shape[:2]
    region = img[int(0.55 * h): int(0.85 * h), int(0.3 * w): int(0.7 * w), :3].astype(np.int16)
    return int((np.abs(region - _rgb(COLORS["mouth"])).max(axis=2) <= 18).sum())


def _shot(locator, keep_as: str) -> np.ndarray:
    from PIL import Image

    png = locator.screenshot()
    keep = os.environ.get("WEBUI_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / keep_as).write_bytes(png)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _seek(page, t: float, prefix: str = "tts") -> int:
    """Seek the preview's audio player to ``t`` seconds; returns the frame the canvas then shows."""
    page.evaluate(
        """([t, sel]) => new Promise((done) => { const a = document.querySelector(sel);
        a.addEventListener('seeked', () => requestAnimationFrame(() => requestAnimationFrame(done)), {once: true});
        a.currentTime = t; })""", [t, f"#{prefix}-preview .bvf-preview audio"])
    return int(page.locator(f"#{prefix}-preview .bvf-preview").get_attribute("data-frame"))


def test_preview_follows_the_audio_and_shows_the_mouth(server, page, tmp_path):
    from bert_vits2.audio import load_audio
    from motion.arkit import INDEX
    from motion.face.render import draw_face

    url, state = server
    page.goto(url)
    page.locator("#tts-go").wait_for()
    page.locator("#tts-text textarea").fill("Papa, how are you? ... I am fine. Hello.")
    box = page.locator("#tts-language input")
    box.click()
    box.fill("EN")
    page.get_by_role("option", name="EN", exact=True).click()
    page.locator("#tts-go").click()
    page.wait_for_function("() => { const e = document.querySelector('#tts-status .prose'); "
                           "return e && e.innerText.includes('files in'); }")
    page.locator("#tts-preview .bvf-preview[data-loaded='1']").wait_for(state="attached")
    folder = Path(page.locator("#tts-status .prose").first.inner_text().split("files in")[-1].strip())
    assert folder.parent == state.outputs
    frames = np.load(folder / "speech.npy")
    fps = 60.0
    audio, sr = load_audio(folder / "speech.wav", sample_rate=None)
    assert (folder / "speech.face.json").is_file()

    # times to look at: the widest open mouth, and a silent frame with the lips together
    aperture = frames[:, INDEX["JawOpen"]] - frames[:, INDEX["MouthClose"]]
    hop = sr / fps
    rms = np.array([np.sqrt(np.mean(audio[int(i * hop): int((i + 1) * hop)] ** 2) + 1e-12) for i in range(len(frames))])
    silent = np.nonzero((rms < 0.01 * rms.max()) & (aperture <= 0.0))[0]
    silent = silent[(silent > 3) & (silent < len(frames) - 3)]
    assert silent.size, "the result has no silent frame with closed lips to look at"
    i_open = int(np.argmax(aperture))
    i_closed = int(silent[len(silent) // 2])
    assert aperture[i_open] > 0.2

    # play: the canvas follows the clock while playing, then stops with it
    canvas = page.locator("#tts-preview canvas")
    page.evaluate("() => document.querySelector('#tts-preview .bvf-preview audio').play()")
    page.wait_for_function("() => document.querySelector('#tts-preview .bvf-preview audio').currentTime > 0.5")
    state_now = page.evaluate("""() => { const b = document.querySelector('#tts-preview .bvf-preview');
        const a = b.querySelector('audio'); return [a.currentTime, Number(b.dataset.frame), a.paused]; }""")
    assert not state_now[2]
    assert abs(state_now[1] - int(state_now[0] * fps)) <= 3, state_now  # drawn frame ≈ the audio's time
    page.evaluate("() => document.querySelector('#tts-preview .bvf-preview audio').pause()")

    # seek to the open mouth and to the silence: the drawn frame and the mouth follow
    t_open, t_closed = (i_open + 0.5) / fps, (i_closed + 0.5) / fps
    assert _seek(page, t_open) == i_open
    img_open = _shot(canvas, "preview_open.png")
    assert _seek(page, t_closed) == i_closed
    img_closed = _shot(canvas, "preview_closed.png")
    open_px, closed_px = _mouth_pixels(img_open), _mouth_pixels(img_closed)
    assert open_px > 150, f"mouth not drawn open at JawOpen {frames[i_open, INDEX['JawOpen']]:.2f}: {open_px} px"
    assert closed_px < 10, f"mouth drawn open in silence: {closed_px} px"
    diff = np.abs(img_open.astype(np.int16) - img_closed.astype(np.int16)).max(axis=2)
    assert (diff > 40).sum() > 200  # seeking moved the face
    # replay from the start after the end keeps following
    assert _seek(page, 0.0) == 0

    # the page draws the same face as the MP4 renderer (same geometry, different anti-aliasing)
    ref = np.asarray(draw_face(frames[i_open], size=img_open.shape[1::-1]))
    mad = float(np.abs(ref.astype(np.int16) - img_open.astype(np.int16)).mean())
    assert mad < 6.0, f"canvas and Python renderer differ: mean abs diff {mad:.1f}"
    print(f"\nbrowser preview: mouth pixels open {open_px} (JawOpen {frames[i_open, INDEX['JawOpen']]:.2f}) vs silent "
          f"{closed_px}; canvas vs Python renderer mean abs diff {mad:.2f} levels")
    keep = os.environ.get("WEBUI_SCREENSHOT_DIR")
    if keep:
        shutil.copy(folder / "speech.npy", Path(keep) / "preview_speech.npy")

    # the MP4 button writes the video beside the result
    page.locator("#tts-video-go").click()
    page.locator("#tts-video a[download$='.mp4']").first.wait_for(state="attached")
    assert (folder / "speech.mp4").stat().st_size > 1000


def test_any_take_can_be_previewed(server, page, tmp_path):
    """Preview a take tab: upload a wav + [T, 61] npy; the face loads and follows seeking."""
    from bert_vits2.audio import TTS_SAMPLE_RATE, write_wav_pcm16
    from motion.arkit import INDEX, NUM_VALUES

    seconds, fps = 2.0, 60.0
    n = int(seconds * fps)
    frames = np.zeros((n, NUM_VALUES), np.float32)
    frames[60:90, INDEX["JawOpen"]] = 0.7  # mouth open from 1.0 to 1.5 s
    # poses that exercise every part of the drawing (compared with the Python renderer below)
    rng = np.random.default_rng(3)
    poses = {100 + 3 * k: np.concatenate([rng.uniform(0, 0.8, 52), rng.uniform(-12, 12, 9) / 180]).astype(np.float32)
             for k in range(5)}
    for i, v in poses.items():
        frames[i] = v
    np.save(tmp_path / "take.npy", frames)
    write_wav_pcm16(tmp_path / "take.wav", np.zeros(int(seconds * TTS_SAMPLE_RATE), np.float32), TTS_SAMPLE_RATE)
    url, _ = server
    page.goto(url)
    page.get_by_role("tab", name="Preview a take").click()
    page.locator("#take-wav input[type=file]").set_input_files(str(tmp_path / "take.wav"))
    page.locator("#take-curves input[type=file]").set_input_files(str(tmp_path / "take.npy"))
    page.locator("#take-go").click()
    page.locator("#take-preview .bvf-preview[data-loaded='1']").wait_for(state="attached")
    canvas = page.locator("#take-preview canvas")
    assert _seek(page, 1.25, "take") == 75
    open_px = _mouth_pixels(_shot(canvas, "take_open.png"))
    assert _seek(page, 0.5, "take") == 30
    closed_px = _mouth_pixels(_shot(canvas, "take_closed.png"))
    assert open_px > 150 and closed_px < 10, (open_px, closed_px)
    from motion.face.render import draw_face

    for i, v in poses.items():  # the JavaScript port draws what motion.face.render draws, for any values
        assert _seek(page, (i + 0.5) / fps, "take") == i
        img = _shot(canvas, f"take_pose{i}.png")
        mad = float(np.abs(np.asarray(draw_face(v, size=img.shape[1::-1]), np.int16) - img.astype(np.int16)).mean())
        assert mad < 6.0, f"frame {i}: canvas and Python renderer differ by {mad:.1f} levels on average"
