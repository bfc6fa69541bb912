"""The dataset-preparation web UI (webui_preprocess.py) in headless Chromium, step by step like a new user:
config -> resample -> transcription list -> preprocess_text (with bad lines reported in the page) -> bert_gen ->
the training command. Runs the real library functions on three short wavs and a tiny BERT."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import BROWSER_MARKS, chromium_page, start_on_free_port

from bert_vits2.preprocess_ui import PreprocessSteps

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


pytestmark = BROWSER_MARKS

TEXTS = ["你好。", "今天天气很好。", "我们走吧。"]


def _wav(path: Path, seconds: float, sr: int = 22050) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, np.stack([0.3 * np.sin(2 * np.pi * 200 * t)] * 2, axis=1).astype(np.float32), sr)  # stereo


@pytest.fixture()
def served(bv2_ref, repo_root, tmp_path, monkeypatch):
    import time

    import bert_vits2.preprocess as pre
    from bert_vits2.preprocess_ui import build_app, launch

    # a few short files are done faster than gradio sends a progress update: slow each job down so the bars show
    def slowed(job):
        def run(args):
            time.sleep(0.5)
            return job(args)

        return run

    for name in ("_resample_job", "_clean_job", "_bert_job"):
        monkeypatch.setattr(pre, name, slowed(getattr(pre, name)))
    from bert_vits2.text.bert import BERT_MODELS

    bert_root = tmp_path / "bert"
    shutil.copytree(bv2_ref / "bert_tiny_zh", bert_root / BERT_MODELS["ZH"].folder_name)
    dataset = tmp_path / "Data" / "voice"
    for i in range(len(TEXTS)):
        _wav(dataset / "audios" / "raw" / "amy" / f"{i:03d}.wav", 0.4 + 0.1 * i)
    steps = PreprocessSteps(repo_root / "configs" / "config.json", tmp_path / "config.yml")
    app = build_app(steps, "Data/mydata")
    port = start_on_free_port(lambda p: launch(app, "127.0.0.1", p, block=False))
    yield f"http://127.0.0.1:{port}/", dataset, bert_root, tmp_path
    app.close()


def _click_and_wait(page, button: str, out: str, needle: str) -> str:
    page.locator(f"#{button}").click()
    page.wait_for_function("([sel, s]) => { const e = document.querySelector(sel); return e && e.innerText.includes(s); }",
                           arg=[f"#{out}", needle])
    return page.locator(f"#{out}").inner_text()


def test_preprocess_ui_walkthrough(served):
    url, dataset, bert_root, tmp_path = served
    with chromium_page(timeout_ms=120_000, viewport={"width": 1300, "height": 2400}) as page:
        page.goto(url)
        page.locator("#pp-config-go").wait_for()
        page.locator("#pp-dataset input, #pp-dataset textarea").first.fill(str(dataset))
        page.locator("#pp-bert-root input, #pp-bert-root textarea").first.fill(str(bert_root))
        page.locator("#pp-batch input").fill("4")

        # 1. config.json + dataset_path in config.yml
        out = _click_and_wait(page, "pp-config-go", "pp-config-out", "config.json")
        assert "Wrote" in out
        cfg = json.loads((dataset / "config.json").read_text(encoding="utf-8"))
        assert cfg["train"]["batch_size"] == 4
        assert f'dataset_path: "{dataset.as_posix()}"' in (tmp_path / "config.yml").read_text(encoding="utf-8")

        # every progress bar text gradio shows from now on (the tools' tqdm bars, tracked by gr.Progress)
        page.evaluate("""() => { window.__progress = [];
            new MutationObserver(() => document.querySelectorAll('.progress-level').forEach(e => {
                const t = e.innerText.trim(); if (t && !window.__progress.includes(t)) window.__progress.push(t); }))
            .observe(document.body, {subtree: true, childList: true, characterData: true}); }""")

        # 2. resample: stereo 22.05 kHz -> mono 44.1 kHz 16-bit
        out = _click_and_wait(page, "pp-resample-go", "pp-resample-out", "written")
        assert "3 written" in out and "0 failed" in out
        import soundfile as sf

        info = sf.info(dataset / "audios" / "wavs" / "amy" / "000.wav")
        assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")

        # 3. transcription list: lines for the wavs, typed texts, one missing wav and one malformed line
        page.locator("#pp-template-go").click()
        box = page.locator("#pp-list textarea")
        page.wait_for_function("() => document.querySelector('#pp-list textarea').value.includes('|amy|ZH|')")
        lines = [ln + TEXTS[i] for i, ln in enumerate(box.input_value().splitlines())]
        assert len(lines) == 3
        lines += [f"{dataset}/audios/wavs/amy/404.wav|amy|ZH|不存在。", "only|three|fields"]
        box.fill("\n".join(lines))
        out = _click_and_wait(page, "pp-save-go", "pp-list-out", "Saved")
        assert "Saved 5 lines" in out

        # 4. preprocess_text: the bad lines are reported in the page with their line numbers
        page.locator("#pp-val-per-lang input").fill("1")
        out = _click_and_wait(page, "pp-text-go", "pp-text-out", "lines read")
        assert "2 train + 1 val kept" in out and "2 skipped" in out and "amy=0" in out
        assert "esd.list:4" in out and "404.wav" in out and "esd.list:5" in out
        assert json.loads((dataset / "config.json").read_text(encoding="utf-8"))["data"]["spk2id"] == {"amy": 0}

        # 5. bert_gen with the tiny BERT
        out = _click_and_wait(page, "pp-bert-go", "pp-bert-out", "already done")
        assert "3 written" in out and "0 failed" in out
        assert len(list((dataset / "audios" / "wavs" / "amy").glob("*.bert.pt"))) == 3

        seen = page.evaluate("() => window.__progress")
        print("progress texts seen:", seen)
        # the tools' own tqdm bars, shown in the page: resample moving, preprocess_text's "clean text", bert_gen's
        for bar in ("resample", "clean text", "bert_gen"):
            assert any(t.startswith(f"{bar} - ") and t.endswith("%") and not t.endswith(" 0.0%") for t in seen), seen

        # 6. what to run next
        out = _click_and_wait(page, "pp-train-go", "pp-train-out", "train_ms.py")
        assert f"-m {dataset}" in out
        page.screenshot(path=str(tmp_path / "webui_preprocess.png"), full_page=True)
        keep = os.environ.get("WEBUI_SCREENSHOT_DIR")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / "webui_preprocess.png", Path(keep) / "webui_preprocess.png")


def test_steps_without_browser(tmp_path):
    steps = PreprocessSteps(tmp_path / "missing.json", tmp_path / "config.yml")
    assert "template config" in steps.create_config(str(tmp_path / "ds"))
    assert steps.resample("").startswith("**Error:**")
    assert steps.resample(str(tmp_path / "nothing")).startswith("**Error:**")  # no audios/raw folder: said in the page
    assert "Saved 2 lines" in steps.save_list(str(tmp_path / "ds"), "a.wav|s|ZH|你好\n\nb.wav|s|ZH|\n")
    assert steps.load_list(str(tmp_path / "ds")) == "a.wav|s|ZH|你好\nb.wav|s|ZH|\n"
