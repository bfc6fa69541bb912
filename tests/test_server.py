"""The server (server_fastapi.py / motion.server): a real uvicorn on a free 127.0.0.1 port with a tiny random voice and
the demo voice, driven by real HTTP (httpx) and WebSocket (websockets) clients."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
websockets = pytest.importorskip("websockets")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from motion.server import ServerConfig, create_app  # noqa: E402

TOL = 1e-4
PCM_STEP = 1.0 / 32767
# Faces made by the server vs faces made here from a synthesize() in this thread: the audio of the two differs by float
# rounding (the server computes on its worker threads), and the default mel head turns that into up to ~1.2e-4 on a curve
# (measured). The 1e-4 stream-vs-whole face bound itself is asserted in-process in tests/test_streaming.py.
FACE_TOL = 1e-3


class Running:
    """uvicorn serving ``create_app(config)`` in a thread."""

    def __init__(self, config: ServerConfig) -> None:
        # the port comes from the OS and the socket is kept open until uvicorn serves on it (no bind-close-rebind race)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        config.port = self.sock.getsockname()[1]
        self.app = create_app(config)
        self.config = config
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", ws="websockets-sansio"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        t0 = time.time()
        while not self.server.started:
            assert time.time() - t0 < 30, "server did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{config.port}"
        self.ws = f"ws://127.0.0.1:{config.port}"

    @property
    def state(self):
        return self.app.state.bv2

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def roots(bv2_ref, tmp_path_factory) -> Path:
    from webui_helpers import make_tiny_voice

    root = tmp_path_factory.mktemp("voices")
    make_tiny_voice(bv2_ref, root / "voice1")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "G_1.pth").write_bytes(b"not a model")
    os.symlink(outside, root / "escape")  # a symlink out of the root must not let a request out
    return root


@pytest.fixture(scope="module")
def server(roots):
    run = Running(ServerConfig(model_dirs=[str(roots / "voice1")], demo_voice=True, workers=2, max_queue=4,
                               max_chars=200, max_audio_s=30))
    yield run
    run.stop()


@pytest.fixture(scope="module")
def voice(server):
    return server.state.registry.get(0).voice


def _get(server, path, **kw):
    return httpx.get(server.url + path, timeout=120, **kw)


def _wait_idle(server, timeout=60.0) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = server.state.admission.snapshot()
        if st["running"] == 0 and st["queued"] == 0:
            return st
        time.sleep(0.05)
    raise AssertionError(f"jobs still running: {server.state.admission.snapshot()}")


# --- upstream endpoints -------------------------------------------------------------------------------------------


def test_voice_get_and_post_answer_wav(server, voice):
    import soundfile as sf

    params = {"text": "你好。天气很好。", "model_id": 0, "speaker_name": "bob", "sdp_ratio": 0.2, "noise": 0.2,
              "noisew": 0.9, "length": 1.0, "language": "ZH", "auto_split": "true", "seed": 4}
    r = _get(server, "/voice", params=params)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav" and r.content[:4] == b"RIFF"
    audio, sr = sf.read(io.BytesIO(r.content), dtype="float32")
    ref = voice.synthesize("你好。天气很好。", "bob", "ZH", 0.2, 0.2, 0.9, 1.0, split_sentences=True, seed=4)
    assert sr == ref.sample_rate and len(audio) == len(ref.audio)
    assert np.abs(audio - np.clip(ref.audio, -1, 1)).max() < TOL + PCM_STEP
    # POST: text as a form field (upstream), speaker by id
    r2 = httpx.post(server.url + "/voice", params={k: v for k, v in params.items() if k not in ("text", "speaker_name")}
                    | {"speaker_id": 1}, data={"text": "你好。天气很好。"}, timeout=120)
    assert r2.status_code == 200 and r2.content == r.content


def test_json_errors(server):
    r = _get(server, "/voice", params={"text": "你好", "model_id": 9})
    assert r.status_code == 404 and r.json()["status"] == 404 and "model_id=9" in r.json()["detail"]
    r = _get(server, "/voice", params={"text": "你好", "speaker_name": "nobody"})
    assert r.status_code == 404 and "alice" in r.json()["detail"]
    r = _get(server, "/voice", params={"model_id": 0})
    assert r.status_code == 422 and "text" in r.json()["detail"]
    r = _get(server, "/voice", params={"text": "好" * 201})
    assert r.status_code == 413 and "200" in r.json()["detail"]
    r = _get(server, "/voice", params={"text": "你好", "sdp_ratio": 5})
    assert r.status_code == 400 and "sdp_ratio" in r.json()["detail"]


def test_models_endpoints_confine_paths(server, roots):
    info = _get(server, "/models/info").json()
    assert set(info) == {"0", "1"} and info["0"]["spk2id"] == {"alice": 0, "bob": 1} and info["1"]["kind"] == "demo"
    local = _get(server, "/models/get_local").json()
    assert local["voice1"] == ["G_5.pth", "G_10.pth"]
    assert "escape" not in local  # a symlink out of the root is not listed
    unloaded = _get(server, "/models/get_unloaded").json()
    assert unloaded["voice1"] == ["G_5.pth"]  # G_10 is loaded as model 0
    outside_g = str((roots / "escape" / "G_1.pth").resolve())
    for bad in ("../../../../etc/passwd", "/etc/passwd", "voice1/../../G_10.pth", "escape/G_1.pth", outside_g):
        r = _get(server, "/models/add", params={"model_path": bad})
        assert r.status_code == 403, (bad, r.text)
        assert "outside the model roots" in r.json()["detail"]
    for bad_root in ("..", "/", "escape"):
        assert _get(server, "/models/get_local", params={"root_dir": bad_root}).status_code == 403
    r = _get(server, "/models/add", params={"model_path": "voice1/G_5.pth", "config_path": "/etc/passwd"})
    assert r.status_code == 403
    r = _get(server, "/models/add", params={"model_path": "voice1/G_5.pth", "language": "ZH"})
    assert r.status_code == 200 and r.json()["status"] == 0
    mid = r.json()["Data"]["model_id"]
    assert mid == 2 and str(mid) in _get(server, "/models/info").json()
    assert _get(server, "/models/delete", params={"model_id": mid}).json()["status"] == 0
    assert _get(server, "/models/delete", params={"model_id": mid}).status_code == 404


# --- speech with a face, streams ----------------------------------------------------------------------------------


def test_voice_face_one_response(server, voice):
    from motion.face.streaming import piecewise_face

    params = {"text": "你好。天气很好。", "speaker_name": "alice", "auto_split": "true", "seed": 2}
    r = _get(server, "/voice/face", params=params | {"format": "json"})
    assert r.status_code == 200
    body = r.json()
    curves = np.asarray(body["curves"])
    assert curves.shape[1] == 61 and len(body["names"]) == 61 and body["fps"] == 60.0
    ref = voice.synthesize("你好。天气很好。", "alice", "ZH", 0.2, 0.2, 0.9, 1.0, split_sentences=True, seed=2)
    face = piecewise_face(server.state.face_maker, ref)
    assert curves.shape == face.frames.shape and np.abs(curves - face.frames).max() < FACE_TOL
    r = _get(server, "/voice/face", params=params | {"format": "npy"})
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert set(zf.namelist()) == {"speech.wav", "face.npy", "meta.json"}
    assert np.load(io.BytesIO(zf.read("face.npy"))).shape == curves.shape
    r = _get(server, "/voice/face", params=params | {"format": "csv"})
    assert "face.csv" in zipfile.ZipFile(io.BytesIO(r.content)).namelist()


def test_http_stream_equals_synthesize(server, voice):
    text = "你好。今天天气很好。"
    ref = voice.synthesize(text, "bob", "ZH", 0.2, 0.2, 0.9, 1.0, split_sentences=True, seed=9)
    with httpx.stream("GET", server.url + "/voice/stream", timeout=120,
                      params={"text": text, "speaker_name": "bob", "auto_split": "true", "seed": 9, "format": "f32"}) as r:
        assert r.status_code == 200 and r.headers["x-sample-rate"] == str(ref.sample_rate)
        parts = list(r.iter_bytes())
    audio = np.frombuffer(b"".join(parts), dtype="<f4")
    assert len(audio) == len(ref.audio)
    err = float(np.abs(audio - ref.audio).max())
    assert err < TOL, err
    r = _get(server, "/voice/stream", params={"text": text, "speaker_name": "bob", "auto_split": "true", "seed": 9,
                                              "format": "wav"})
    assert r.content[:4] == b"RIFF" and len(r.content) == 44 + 2 * len(ref.audio)


async def _ws_voice(url, request, *, read=True):
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps(request))
        msgs, audio, faces = [], [], []
        while read:
            msg = await ws.recv()
            if isinstance(msg, bytes):
                audio.append(msg)
                continue
            m = json.loads(msg)
            msgs.append(m)
            if m["type"] == "face":
                faces.append(m)
            if m["type"] in ("end", "error"):
                break
        return msgs, audio, faces


def test_websocket_stream_audio_and_face(server, voice):
    from motion.face.streaming import piecewise_face

    text = "你好。今天天气很好。"
    req = {"text": text, "model_id": 0, "speaker_name": "alice", "auto_split": True, "seed": 5, "audio_format": "f32"}
    msgs, audio, faces = asyncio.run(_ws_voice(server.ws + "/ws/voice", req))
    assert msgs[0]["type"] == "start" and msgs[0]["sample_rate"] == 44100 and len(msgs[0]["names"]) == 61
    assert msgs[-1]["type"] == "end"
    ref = voice.synthesize(text, "alice", "ZH", 0.2, 0.2, 0.9, 1.0, split_sentences=True, seed=5)
    joined = np.frombuffer(b"".join(audio), dtype="<f4")
    assert len(joined) == len(ref.audio) == msgs[-1]["samples"]
    assert np.abs(joined - ref.audio).max() < TOL
    audio_msgs = [m for m in msgs if m["type"] == "audio"]
    assert [m["start_sample"] for m in audio_msgs] == list(np.cumsum([0] + [m["samples"] for m in audio_msgs[:-1]]))
    frames = np.concatenate([np.asarray(f["frames"]) for f in faces])
    assert [f["start"] for f in faces] == list(np.cumsum([0] + [len(f["frames"]) for f in faces[:-1]]))
    whole = piecewise_face(server.state.face_maker, ref).frames
    assert frames.shape == whole.shape and np.abs(frames - whole).max() < FACE_TOL


def test_websocket_disconnect_cancels_work(server):
    _wait_idle(server)
    before = server.state.admission.snapshot()["cancelled"]
    text = "。".join(["今天天气很好"] * 12) + "。"

    async def go():
        async with websockets.connect(server.ws + "/ws/voice", max_size=None) as ws:
            await ws.send(json.dumps({"text": text, "auto_split": True, "face": False}))
            while True:
                m = await ws.recv()
                if isinstance(m, bytes):
                    return  # first audio chunk: hang up

    asyncio.run(go())
    st = _wait_idle(server, 60)
    assert st["cancelled"] == before + 1
    # the chunked HTTP stream too
    with httpx.stream("GET", server.url + "/voice/stream", params={"text": text, "auto_split": "true"}, timeout=60) as r:
        next(r.iter_bytes())
    st = _wait_idle(server, 60)
    assert st["cancelled"] == before + 2
    # and a plain /voice whose client gives up waiting (the voice is held so that the request cannot finish first)
    lock = server.state.registry.get(0).voice._lock
    lock.acquire()
    try:
        with pytest.raises(httpx.TimeoutException):
            httpx.get(server.url + "/voice", params={"text": text, "auto_split": "true"}, timeout=1.0)
        t0 = time.time()
        while server.state.admission.snapshot()["cancelled"] < before + 3 and time.time() - t0 < 10:
            time.sleep(0.05)
    finally:
        lock.release()
    st = _wait_idle(server, 60)
    assert st["cancelled"] == before + 3


def test_demo_voice_websocket_and_audio_to_face(server):
    from motion.face.streaming import face_for_audio_segmented

    msgs, audio, faces = asyncio.run(_ws_voice(server.ws + "/ws/voice", {"text": "Hello there. Good day!",
                                                                         "model_id": 1, "auto_split": True}))
    assert msgs[-1]["type"] == "end" and audio and faces
    pcm = np.frombuffer(b"".join(audio), dtype="<i2")

    async def face_stream():
        async with websockets.connect(server.ws + "/ws/face", max_size=None) as ws:
            await ws.send(json.dumps({"sample_rate": msgs[0]["sample_rate"], "audio_format": "s16", "mode": "segments"}))
            assert json.loads(await ws.recv())["type"] == "start"
            for i in range(0, len(pcm), 3000):
                await ws.send(pcm[i:i + 3000].tobytes())
            await ws.send(json.dumps({"type": "end"}))
            out = []
            while True:
                m = json.loads(await ws.recv())
                if m["type"] == "end":
                    return out
                out.append(m)

    got = asyncio.run(face_stream())
    frames = np.concatenate([np.asarray(m["frames"]) for m in got])
    ref = face_for_audio_segmented(server.state.face_maker, pcm, msgs[0]["sample_rate"])
    assert frames.shape == ref.frames.shape and np.abs(frames - ref.frames).max() < TOL


def test_push_to_livelink_after_playing(server):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(1)
    port = rx.getsockname()[1]

    async def go():
        async with websockets.connect(server.ws + "/ws/voice", max_size=None) as ws:
            await ws.send(json.dumps({"text": "Hi.", "model_id": 1, "push": {"livelink": f"127.0.0.1:{port}"}}))
            end, playing = None, False
            while end is None:
                m = await ws.recv()
                if isinstance(m, bytes):
                    if not playing:  # the client starts playing the first chunk as it arrives
                        await ws.send(json.dumps({"type": "playing", "offset_ms": 0}))
                        playing = True
                    continue
                m = json.loads(m)
                if m["type"] == "push_done":
                    end = m
            return end

    t0 = time.time()
    done = asyncio.run(go())
    assert done["sent"] > 10 and done["skipped"] <= 2 and done["error"] == ""
    got = 0
    try:
        while True:
            rx.recv(4096)
            got += 1
    except socket.timeout:
        pass
    rx.close()
    assert got > 10 and time.time() - t0 > 0.3  # frames went out, paced in real time

    async def refused():
        return await _ws_voice(server.ws + "/ws/voice", {"text": "Hi.", "model_id": 1,
                                                         "push": {"vmc": "203.0.113.9:39539"}})
    msgs, _, _ = asyncio.run(refused())
    assert msgs[-1]["type"] == "error" and msgs[-1]["status"] == 403


# --- token, queue -------------------------------------------------------------------------------------------------


def test_token_and_queue_limits():
    run = Running(ServerConfig(demo_voice=True, token="s3cret", workers=1, max_queue=1))
    try:
        r = httpx.get(run.url + "/voice", params={"text": "Hello"}, timeout=30)
        assert r.status_code == 401 and "token" in r.json()["detail"]
        assert httpx.get(run.url + "/models/info", timeout=30).status_code == 401
        r = httpx.get(run.url + "/voice", params={"text": "Hello"}, headers={"Authorization": "Bearer s3cret"},
                      timeout=30)
        assert r.status_code == 200 and r.content[:4] == b"RIFF"
        assert httpx.get(run.url + "/voice", params={"text": "Hello"}, headers={"Authorization": "Bearer nope"},
                         timeout=30).status_code == 401
        assert httpx.get(run.url + "/docs", timeout=30).status_code == 200

        async def ws_no_token():
            async with websockets.connect(run.ws + "/ws/voice") as ws:  # the server speaks first: no request needed
                msg = json.loads(await ws.recv())
                with pytest.raises(websockets.ConnectionClosed):
                    await ws.recv()
                return msg, ws.close_code
        msg, code = asyncio.run(ws_no_token())
        assert msg["type"] == "error" and msg["status"] == 401 and code == 4401

        # queue (1 worker, 1 place): while the voice is held, one stream runs (blocked), one waits, a third gets 503
        demo_lock = run.state.registry.get(0).voice._lock

        async def hold_two_then_ask():
            url = run.ws + "/ws/voice?token=s3cret"
            a = await websockets.connect(url, max_size=None)
            b = await websockets.connect(url, max_size=None)
            for ws in (a, b):
                await ws.send(json.dumps({"text": "Hello there.", "face": False}))
            t0 = time.time()
            while run.state.admission.snapshot()["queued"] < 1 and time.time() - t0 < 20:
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient() as client:
                r = await client.get(run.url + "/voice", params={"text": "Hello", "token": "s3cret"}, timeout=30)
            demo_lock.release()
            ends = []
            for ws in (a, b):  # both held requests complete once the voice is free
                while True:
                    m = await ws.recv()
                    if isinstance(m, str) and json.loads(m)["type"] in ("end", "error"):
                        ends.append(json.loads(m)["type"])
                        break
                await ws.close()
            return r, ends

        demo_lock.acquire()
        r, ends = asyncio.run(hold_two_then_ask())
        assert r.status_code == 503 and "busy" in r.json()["detail"]
        assert ends == ["end", "end"]
        st = _wait_idle(run, 30)
        assert st["rejected"] == 1
    finally:
        run.stop()


def test_non_loopback_bind_needs_token():
    from motion.server import ServerConfigError

    with pytest.raises(ServerConfigError, match="token"):
        ServerConfig(host="0.0.0.0", demo_voice=True, token=None).check()
    ServerConfig(host="0.0.0.0", token="x").check()
    from server_fastapi import main

    assert main(["--host", "0.0.0.0", "--port", "5999", "-y", "/nonexistent.yml"]) == 1


def test_config_yml_server_section(tmp_path):
    from server_fastapi import build_parser, config_from_args

    yml = tmp_path / "config.yml"
    yml.write_text("server:\n  port: 5123\n  max_queue: 3\n  models:\n    - model: Data/a/models/G_100.pth\n"
                   "      config: Data/a/config.json\n      device: cpu\n      language: ZH\n")
    cfg = config_from_args(build_parser().parse_args(["-y", str(yml), "--max-chars", "50"]))
    assert cfg.port == 5123 and cfg.max_queue == 3 and cfg.max_chars == 50 and cfg.host == "127.0.0.1"
    assert cfg.model_dirs == ["Data/a/models"]


@pytest.mark.slow
def test_memory_flat_over_many_requests():
    """1,000 demo-voice requests: RSS after them stays within 25 MiB of RSS after the first 50 (benchmarks/bench_server.py
    measures the full-size voice)."""
    from motion.server.app import rss_mb

    run = Running(ServerConfig(demo_voice=True, workers=2, max_queue=8))
    try:
        with httpx.Client(timeout=30) as client:
            for i in range(50):
                assert client.get(run.url + "/voice", params={"text": f"Hello number {i}."}).status_code == 200
            base = rss_mb()
            for i in range(950):
                assert client.get(run.url + "/voice", params={"text": f"Hello number {i}."}).status_code == 200
            grown = rss_mb() - base
        assert grown < 25, grown
    finally:
        run.stop()


# --- text streamed in (an LLM answering token by token) -----------------------------------------------------------


def test_websocket_text_stream_starts_before_end_text_and_equals_whole_text(server, voice):
    """``text_stream``: the text comes in pieces; audio starts before ``end_text``; the joined audio equals the whole
    text synthesised with auto_split (same sentences, same pauses, same seed)."""
    text = "你好。今天天气很好！我们去公园散步吧。"
    ref = voice.synthesize(text, "bob", "ZH", 0.2, 0.2, 0.9, 1.0, split_sentences=True, seed=6)

    async def go():
        async with websockets.connect(server.ws + "/ws/voice", max_size=None) as ws:
            await ws.send(json.dumps({"text_stream": True, "speaker_name": "bob", "seed": 6, "audio_format": "f32",
                                      "face": False}))
            assert json.loads(await ws.recv())["type"] == "start"
            for i in range(0, 4, 2):  # the first sentence, in two pieces
                await ws.send(json.dumps({"type": "text", "text": text[i:i + 2]}))
            audio, before_end = [], False
            while not audio:  # the first audio arrives while the rest of the text is still to come
                m = await ws.recv()
                if isinstance(m, bytes):
                    audio.append(m)
                    before_end = True
            for i in range(4, len(text), 3):
                await ws.send(json.dumps({"type": "text", "text": text[i:i + 3]}))
            await ws.send(json.dumps({"type": "end_text"}))
            while True:
                m = await ws.recv()
                if isinstance(m, bytes):
                    audio.append(m)
                elif json.loads(m)["type"] in ("end", "error"):
                    return before_end, np.frombuffer(b"".join(audio), dtype="<f4"), json.loads(m)

    before_end, audio, last = asyncio.run(go())
    assert before_end and last["type"] == "end"
    assert len(audio) == len(ref.audio) and np.abs(audio - ref.audio).max() < TOL


def test_websocket_text_stream_cancel_mid_text(server):
    _wait_idle(server)
    before = server.state.admission.snapshot()["cancelled"]

    async def go():
        async with websockets.connect(server.ws + "/ws/voice", max_size=None) as ws:
            await ws.send(json.dumps({"text_stream": True, "face": False}))
            await ws.send(json.dumps({"type": "text", "text": "你好。今天"}))
            while not isinstance(await ws.recv(), bytes):
                pass
            await ws.send(json.dumps({"type": "cancel"}))
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await ws.recv()

    asyncio.run(go())
    assert _wait_idle(server, 60)["cancelled"] == before + 1
    # a request that also sends 'text' is refused, as is text after end_text
    msgs, _, _ = asyncio.run(_ws_voice(server.ws + "/ws/voice", {"text_stream": True, "text": "你好"}))
    assert msgs[-1]["type"] == "error" and msgs[-1]["status"] == 400
