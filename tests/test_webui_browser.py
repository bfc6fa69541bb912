"""The web UI in headless Chromium: demo voice and a tiny random Bert-VITS2 voice, Chinese and English, end to end.

Starts two UIs in this process on free ports (one with no model -> demo voice, one on a tiny voice folder made here),
types text, picks the language, waits for the audio and the plot, checks the status text, downloads the CSV and
checks it, and saves screenshots (``WEBUI_SCREENSHOT_DIR`` keeps copies for a human to look at).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import BROWSER_MARKS, chromium_page, start_on_free_port

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def servers(bv2_ref, tmp_path_factory):
    from webui_helpers import make_tiny_voice

    from motion.webui.app import WebUIConfig, build_app, launch

    root = tmp_path_factory.mktemp("webui")
    voice_dir = make_tiny_voice(bv2_ref, root / "voice")
    apps, urls = [], {}
    empty = root / "no_model"
    empty.mkdir()
    for name, cfg in (
        ("demo", WebUIConfig(model_dir=str(empty), bert_dir=str(empty), outputs_dir=str(root / "out_demo"))),
        # the tiny random voice speaks noise, which the default (audio) head rightly leaves closed: use the phone timings
        ("bv2", WebUIConfig(model_dir=str(voice_dir), outputs_dir=str(root / "out_bv2"), use_default_head=False)),
    ):
        app = build_app(cfg)
        port = start_on_free_port(lambda p, app=app: launch(app, "127.0.0.1", p, block=False))
        apps.append(app)
        urls[name] = (f"http://127.0.0.1:{port}/", app.webui_state)
    yield urls
    for app in apps:
        app.close()


@pytest.fixture(scope="module")
def page():
    with chromium_page(viewport={"width": 1400, "height": 1500}, accept_downloads=True) as pg:
        yield pg


def _pick(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(value)
    page.get_by_role("option", name=value, exact=True).click()


def _synthesise(page, text: str, language: str, tmp_path: Path, tag: str) -> tuple[str, Path]:
    status = page.locator("#tts-status .prose").first
    before = status.inner_text() if status.count() else ""
    page.locator("#tts-text textarea").fill(text)
    _pick(page, "tts-language", language)
    page.locator("#tts-go").click()
    page.wait_for_function(
        "([sel, old]) => { const e = document.querySelector(sel); return e && e.innerText.includes('files in') "
        "&& !e.innerText.includes('processing') && e.innerText !== old; }", arg=["#tts-status .prose", before],
    )
    page.locator("#tts-plot img").wait_for(state="visible")
    page.locator("#tts-audio a[download$='.wav']").first.wait_for(state="attached")  # the audio player got the wav
    text_now = status.inner_text()
    link = page.locator("#tts-files a[download='speech.csv']").first
    with page.expect_download() as dl:
        link.click()
    csv_path = tmp_path / f"{tag}.csv"
    dl.value.save_as(csv_path)
    shot = tmp_path / f"{tag}.png"
    page.screenshot(path=str(shot), full_page=True)
    keep = os.environ.get("WEBUI_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    return text_now, csv_path


def _check_csv(csv_path: Path, status: str) -> None:
    from motion.livelink.app_csv import read_csv

    frames, fps = read_csv(csv_path)
    assert fps == pytest.approx(60.0)
    assert frames.shape[1] == 61 and len(frames) > 10
    assert f"{len(frames)} frames at 60 fps" in status
    seconds = float(status.split(" s at ")[0].split("—")[-1])
    assert abs(len(frames) - seconds * 60) <= 1.0  # face covers the audio
    from motion.arkit import INDEX

    assert frames[:, INDEX["JawOpen"]].max() > 0.05  # the mouth moves


@pytest.mark.parametrize("which", ["demo", "bv2"])
def test_ui_end_to_end(servers, page, which, tmp_path):
    url, state = servers[which]
    page.goto(url)
    page.locator("#tts-go").wait_for()
    body = page.inner_text("body")
    if which == "demo":
        assert "Using the demo voice (eSpeak NG)" in body
    else:
        assert "Using the demo voice" not in body
        assert "Bert-VITS2: G_10.pth" in page.locator("#tts-voice input").input_value()
    for lang, text in (("ZH", "你好，今天天气很好。"), ("EN", "Hello world, this is a test.")):
        status, csv_path = _synthesise(page, text, lang, tmp_path, f"{which}_{lang}")
        expected = "Demo voice" if which == "demo" else "Bert-VITS2"
        assert status.startswith(expected), status
        # no --head: a synthesis result's face comes from its phones and their times (issue 27: ready before the audio)
        assert "rule-based lip-sync from phone durations" in status
        _check_csv(csv_path, status)
        folder = Path(status.split("files in")[-1].strip())
        assert folder.parent == state.outputs  # per-request folder under the configured outputs dir
        assert {p.name for p in folder.iterdir()} >= {"speech.wav", "speech.npy", "speech.csv", "speech.json", "speech.png"}
        npy = np.load(folder / "speech.npy")
        assert npy.shape[1] == 61
    # settings panel says what was found / what is missing and how to switch
    page.get_by_role("tab", name="Settings").click()
    settings = page.locator("#settings").inner_text()
    assert "--model-dir" in settings
    if which == "demo":
        assert "generator checkpoint (G_*.pth): missing" in settings
        assert "demo voice" in settings
    else:
        assert "generator checkpoint (G_*.pth): found" in settings and "G_10.pth" in settings
        assert "JP BERT (deberta-v2-large-japanese-char-wwm): missing" in settings
