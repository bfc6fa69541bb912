"""``GET /live``: the server's own page that speaks through ``/ws/voice`` and draws the streamed face.

A real uvicorn (tests/test_server.py's ``Running``) with the tiny random voice (model 0), the eSpeak NG demo voice
(model 1) and a token: the page must be self-contained (offline), public without leaking the token, and work in real
Chromium when opened as ``/live?token=...`` (audio received and played, every face frame received, the canvas moving).
"""

from __future__ import annotations

import math
import re
import time

import pytest
from conftest import AUTOPLAY_ARGS, BROWSER_MARKS, chromium_page

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from test_server import Running  # noqa: E402

from motion.server import ServerConfig  # noqa: E402

TOKEN = "live-s3cret"


@pytest.fixture(scope="module")
def server(bv2_ref, tmp_path_factory):
    from webui_helpers import make_tiny_voice

    root = tmp_path_factory.mktemp("voices")
    make_tiny_voice(bv2_ref, root / "voice1")
    run = Running(ServerConfig(model_dirs=[str(root / "voice1")], demo_voice=True, token=TOKEN, workers=1,
                               max_queue=2, max_chars=200, max_audio_s=30))
    yield run
    run.stop()


def test_live_page_is_offline_public_and_keeps_auth(server):
    """The page loads nothing from elsewhere, carries the face drawing, never echoes the token; other routes still
    need the token."""
    r = httpx.get(server.url + "/live", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "function drawFace(ctx, v, I, W, H)" in page and "function faceShapes(" in page
    assert "here('ws/voice')" in page  # the socket: same host, path relative to the page
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I), "external resource"
    assert not re.search(r"""@import|import\s*\(|<link\b|<iframe\b""", page, re.I)
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer"
    r2 = httpx.get(server.url + "/live", params={"token": TOKEN}, timeout=30)
    assert r2.text == page and TOKEN not in r2.text  # nothing request-specific, the token is read by the script
    assert httpx.get(server.url + "/status", timeout=30).status_code == 401
    assert httpx.get(server.url + "/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).status_code == 200


# the page's state and a signature of the canvas's mouth region (rows 55-85 %, columns 30-70 %): a weighted pixel sum
# and the number of pixels of the mouth-interior colour
_PROBE = """(mouth) => { const root = document.getElementById('live'), c = document.getElementById('face');
  const w = c.width, h = c.height, x0 = Math.floor(0.3 * w), y0 = Math.floor(0.55 * h);
  const d = c.getContext('2d').getImageData(x0, y0, Math.floor(0.4 * w), Math.floor(0.3 * h)).data;
  let sig = 0, open = 0;
  for (let i = 0; i < d.length; i += 4) {
    sig = (sig * 31 + d[i] * 7 + d[i + 1] * 3 + d[i + 2]) % 1000000007;
    if (Math.abs(d[i] - mouth[0]) <= 18 && Math.abs(d[i + 1] - mouth[1]) <= 18 && Math.abs(d[i + 2] - mouth[2]) <= 18) open++;
  }
  return {state: root.dataset.state, frame: Number(root.dataset.frame), time: Number(root.dataset.time), sig, open,
          status: document.getElementById('status').textContent}; }"""


def browser_test(fn):
    """The marks every browser test carries (tests/conftest.py)."""
    for mark in BROWSER_MARKS:
        fn = mark(fn)
    return fn


@pytest.fixture(scope="module")
def page():
    with chromium_page(args=AUTOPLAY_ARGS, timeout_ms=60_000, viewport={"width": 900, "height": 700},
                       device_scale_factor=1) as pg:
        yield pg


def _speak(page, text: str, model_id: int = 1, language: str = "EN", timeout: float = 120.0) -> list[dict]:
    """Type ``text``, press Speak and sample the page (state, drawn frame, mouth region) until done or error."""
    from motion.face.render import COLORS

    mouth = [int(COLORS["mouth"].lstrip("#")[i:i + 2], 16) for i in (0, 2, 4)]
    page.locator("#text").fill(text)
    page.locator("#model").fill(str(model_id))
    page.locator("#language").fill(language)
    samples = [page.evaluate(_PROBE, mouth)]
    page.locator("#speak").click()
    t0 = time.time()
    while samples[-1]["state"] not in ("done", "error"):
        assert time.time() - t0 < timeout, f"no end after {timeout} s: {samples[-1]}"
        page.wait_for_timeout(40)
        samples.append(page.evaluate(_PROBE, mouth))
    return samples


@browser_test
def test_live_page_speaks_and_moves_the_face(server, page):
    """Opened with the token: the streamed audio and every face frame arrive, the audio plays and the canvas follows it."""
    page.goto(server.url + "/live?token=" + TOKEN)
    samples = _speak(page, "Hello there. How are you today? I am fine, thank you.")
    root = page.locator("#live")
    last = samples[-1]
    assert last["state"] == "done", last["status"]
    n_frames, n_samples = int(root.get_attribute("data-frames")), int(root.get_attribute("data-samples"))
    rate = int(root.get_attribute("data-rate"))
    assert n_samples > 0 and n_samples == int(root.get_attribute("data-end-samples"))
    assert n_frames > 0 and n_frames == int(root.get_attribute("data-end-frames"))
    assert n_frames == math.ceil(n_samples * 60 / rate)  # the frames tile the whole utterance at 60 fps
    assert samples[0]["frame"] == -1 and samples[0]["open"] == 0  # neutral face before start, lips together
    playing = [s for s in samples if s["frame"] >= 0 and s["state"] == "streaming"]
    assert len(playing) >= 5, f"too few samples while playing: {len(playing)} of {len(samples)}"
    for s in playing:  # the drawn frame is the audio clock's, or the last one received before it
        assert s["frame"] <= math.floor(s["time"] * 60) + 1, s
    assert len({s["frame"] for s in playing}) >= 3, "the drawn frame did not advance with the audio"
    assert len({s["sig"] for s in playing}) >= 2, "the mouth region of the canvas never changed while playing"
    assert max(s["open"] for s in playing) > 50, "the mouth was never drawn open while speaking"
    assert abs(last["time"] - n_samples / rate) < 0.5, (last["time"], n_samples / rate)  # done once played out
    print(f"\nlive page: {n_samples / rate:.2f} s, {n_frames} frames, {len(playing)} samples while playing, "
          f"{len({s['frame'] for s in playing})} distinct frames drawn, max open-mouth pixels "
          f"{max(s['open'] for s in playing)}; {last['status']}")


@browser_test
def test_live_page_without_token_shows_the_refusal(server, page):
    """The page is public but the socket is not: without the token the server's 401 is shown and nothing plays."""
    page.goto(server.url + "/live")
    last = _speak(page, "Hello.")[-1]
    assert last["state"] == "error" and "401" in last["status"] and "token" in last["status"], last
    assert page.locator("#live").get_attribute("data-samples") == "0"
