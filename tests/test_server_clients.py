"""Issue 23: the apps people already use with upstream Bert-VITS2 servers work unchanged against server_fastapi.py.

Each test replays the requests a real client makes (its lines are quoted as comments) against the real server (uvicorn
on an OS-given port, :class:`test_server.Running`), started the way an upstream user starts it: from a folder holding
upstream's layout, with only ``--model-dir`` and ``--bert-dir``::

    Data/voice/config.json, Data/voice/models/G_5.pth, G_7.pth, G_10.pth     (a tiny random v2.3 voice)
    Data/packed/config.json, Data/packed/models/G_10_release.pth             (compress_model.py's release form)
    bert/<ZH and EN BERT folders>                                             (no JP BERT: the missing-folder case)
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from conftest import CHROMIUM, chromium_page  # noqa: E402
from test_server import Running  # noqa: E402

ERROR_CODES = ("400", "401", "403", "404", "413", "422", "500", "503")  # 408: WebSockets only


class _Records(logging.Handler):
    """The log records of a block (the module's server starts outside any test, so caplog cannot see it)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == logging.WARNING]


def _upstream_folder(bv2_ref: Path, home: Path) -> Path:
    """An upstream user's folder (see the module docstring); returns ``home``."""
    from webui_helpers import make_tiny_voice

    from bert_vits2.release import make_release_checkpoint

    built = make_tiny_voice(bv2_ref, home / "build")
    voice = home / "Data" / "voice"
    (voice / "models").mkdir(parents=True)
    shutil.copy(built / "config.json", voice / "config.json")
    for step in (5, 10):
        shutil.copy(built / f"G_{step}.pth", voice / "models" / f"G_{step}.pth")
    shutil.copy(built / "G_5.pth", voice / "models" / "G_7.pth")  # not the newest: config.yml names it
    packed = home / "Data" / "packed"
    (packed / "models").mkdir(parents=True)
    shutil.copy(built / "config.json", packed / "config.json")
    make_release_checkpoint(packed / "config.json", built / "G_10.pth", packed / "models" / "G_10_release.pth")
    shutil.move(str(built / "bert"), str(home / "bert"))  # the BERT folders live apart (upstream's bert/)
    shutil.rmtree(built)
    return home


@pytest.fixture(scope="module")
def home(bv2_ref, tmp_path_factory) -> Path:
    return _upstream_folder(bv2_ref, tmp_path_factory.mktemp("upstream_user"))


@pytest.fixture(scope="module")
def started(home):
    """``cd home && python server_fastapi.py --model-dir Data/voice --bert-dir bert`` (and the log of its start)."""
    from server_fastapi import build_parser, config_from_args

    records = _Records()
    logging.getLogger("motion.server").addHandler(records)
    old = os.getcwd()
    os.chdir(home)
    run = None
    try:
        config = config_from_args(build_parser().parse_args(["--model-dir", "Data/voice", "--bert-dir", "bert"]))
        run = Running(config)
        yield run, records
    finally:
        logging.getLogger("motion.server").removeHandler(records)
        if run is not None:
            run.stop()
        os.chdir(old)


@pytest.fixture(scope="module")
def server(started):
    return started[0]


def _get(server, path, **kw):
    return httpx.get(server.url + path, timeout=120, **kw)


def _wav(content: bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf

    audio, sr = sf.read(io.BytesIO(content), dtype="float32")
    return audio, sr


# --- a model folder without its BERT folder --------------------------------------------------------------------------


def test_missing_bert_folder_warned_at_start(started, home):
    server, records = started
    warnings = [w for w in records.warnings() if "BERT" in w]
    assert len(warnings) == 1, records.warnings()  # one line per model that lacks a BERT folder
    line = warnings[0]
    assert line.startswith("model 0 ") and "\n" not in line
    assert "JP BERT folder" in line and "deberta-v2-large-japanese-char-wwm" in line
    assert "huggingface-cli download ku-nlp/deberta-v2-large-japanese-char-wwm" in line
    assert "ZH BERT" not in line and "EN BERT" not in line  # those are in bert/


def test_request_needing_the_missing_bert_answers_503(server):
    # SillyTavern's SBVits2 defaults to Japanese:  language: "JP",
    r = httpx.post(server.url + "/voice", params={"text": "こんにちは。", "model_id": 0, "speaker_id": 0,
                                                  "language": "JP"}, timeout=120)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == 503 and "Traceback" not in r.text
    assert "deberta-v2-large-japanese-char-wwm" in body["detail"] and "huggingface-cli download" in body["detail"]
    # the server stays healthy: the same model still speaks Chinese
    assert _get(server, "/voice", params={"text": "你好。", "language": "ZH"}).status_code == 200


# --- SillyTavern: public/scripts/extensions/tts/sbvits2.js ("SBVits2" provider) ------------------------------------------


def _sbvits2_voices(data: dict) -> list[dict]:
    """fetchTtsVoiceObjects():
        const voices = Object.keys(data).flatMap((key) => {
            const config = data[key];
            const spk2id = config.spk2id;
            const style2id = config.style2id;
            return Object.entries(spk2id).flatMap(([speaker, speaker_id]) => {
                return Object.entries(style2id).map(([style, styleId]) => {
                    return { name: `${speaker} (${style})`, voice_id: `${key}-${speaker_id}-${style}`, ...
    """
    return [{"name": f"{speaker} ({style})", "voice_id": f"{key}-{speaker_id}-{style}"}
            for key, config in data.items() for speaker, speaker_id in config["spk2id"].items()
            for style in config["style2id"]]


def _sbvits2_generate(server, text: str, voice_id: str, **settings) -> httpx.Response:
    """fetchTtsGeneration(): every setting in the query of a POST without a body:
        const [model_id, speaker_id, ...rest] = voiceId.split("-");
        params.append("text", inputText); params.append("model_id", model_id); params.append("speaker_id", speaker_id);
        params.append("sdp_ratio", ...); ("noise", ...); ("noisew", ...); ("length", ...); ("language", ...);
        params.append("auto_split", ...); params.append("split_interval", ...);
        params.append("style", style); params.append("style_weight", this.settings.style_weight);
        const response = await fetch(url, { method: "POST", headers: {} });
    defaultSettings: sdp_ratio: 0.2, noise: 0.6, noisew: 0.8, length: 1, language: "JP", auto_split: true,
                     split_interval: 0.5, style_weight: 1 (its slider: min="0.0" max="20")
    """
    model_id, speaker_id, *rest = voice_id.split("-")
    params = {"text": text.replace("<br>", "\n"), "model_id": model_id, "speaker_id": speaker_id, "sdp_ratio": 0.2,
              "noise": 0.6, "noisew": 0.8, "length": 1, "language": "JP", "auto_split": "true",
              "split_interval": 0.5, "style": "-".join(rest), "style_weight": 1}
    params.update(settings)
    return httpx.post(server.url + "/voice", params=params, headers={}, timeout=120)


def test_sillytavern_sbvits2_lists_voices_and_speaks(server):
    r = _get(server, "/models/info")  # const response = await fetch(`${this.settings.provider_endpoint}/models/info`);
    assert r.status_code == 200
    voices = _sbvits2_voices(r.json())
    assert [v["name"] for v in voices] == ["alice (Neutral)", "bob (Neutral)"]
    assert [v["voice_id"] for v in voices] == ["0-0-Neutral", "0-1-Neutral"]
    # the user picks Chinese in the provider's language list (languageLabels: Chinese: "ZH")
    r = _sbvits2_generate(server, "你好。<br>天气很好。", voices[1]["voice_id"], language="ZH")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    audio, sr = _wav(r.content)
    assert sr == 44100 and len(audio) > 0.2 * sr


def test_sillytavern_style_weight_slider_is_accepted_and_ignored(server):
    """The slider runs 0..20; without a style text the weight means nothing for a v2.3 voice: the same audio."""
    bodies = []
    for weight in (0, 1, 7.5, 20):
        r = _sbvits2_generate(server, "你好。", "0-0-Neutral", language="ZH", style_weight=weight, seed=11)
        assert r.status_code == 200, (weight, r.text)
        bodies.append(r.content)
    assert all(b == bodies[0] for b in bodies)
    # upstream's other unused parameters are accepted and ignored too (infer.vue sends auto_translate)
    r = _sbvits2_generate(server, "你好。", "0-0-Neutral", language="ZH", seed=11, emotion="Happy",
                          auto_translate="false", assist_text="", reference_audio_path="")
    assert r.status_code == 200 and r.content == bodies[0]
    # with a style text the weight matters, and is checked
    r = _sbvits2_generate(server, "你好。", "0-0-Neutral", language="ZH", style_text="天气很好", style_weight=20)
    assert r.status_code == 400 and "style_weight" in r.json()["detail"]


# --- Bert-VITS2-UI (jiangyuxiaoxiao): select_model.vue, infer.vue, status_card.vue -------------------------------------


def _ui_device(status: dict) -> str:
    """select_model.vue get_devices():
        this.devices = data.devices
        if (this.devices.length >= 2) { this.device = this.devices[1] } else { this.device = this.devices[0] }
    """
    devices = status["devices"]
    return devices[1] if len(devices) >= 2 else devices[0]


def _ui_tree(rootdir: str, data: dict) -> list[str]:
    """select_model.vue get_local_models():
        for (let dataset_name in data) { ... dataset_node.children.push({
            label: `${dataset_name}/${data[dataset_name][i]}`,
            value: `${this.rootDir}/${dataset_name}/${data[dataset_name][i]}` })
    """
    return [f"{rootdir}/{name}/{file}" for name, files in data.items() for file in files]


def test_bert_vits2_ui_status(server):
    import torch

    # status_card.vue: data["cpu_percent"], data["memory_total"], data["memory_used"], data["gpu"][i]["gpu_load"],
    #                  data["gpu"][i]["gpu_memory"]["used"] / ["total"], data["gpu"][i]["gpu_id"]
    r = _get(server, "/status")
    assert r.status_code == 200
    st = r.json()
    assert st["devices"][0] == "cpu"
    assert len(st["devices"]) == 1 + (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert 0 <= st["cpu_percent"] <= 100 and 0 <= st["memory_percent"] <= 100
    assert 0 < st["memory_used"] < st["memory_total"] and 0 < st["memory_available"] <= st["memory_total"]
    assert isinstance(st["gpu"], list)
    for gpu in st["gpu"]:
        assert {"gpu_id", "gpu_load", "gpu_memory"} <= set(gpu) and {"total", "used", "free"} <= set(gpu["gpu_memory"])
    assert st["models"] == [0] and "queue" in st  # this server's own keys stay
    assert _ui_device(st) == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_bert_vits2_ui_lists_and_loads_upstream_layout(server, home):
    import torch

    # let params = {"root_dir": this.rootDir}  (rootDir: "Data"); axios.get(`/models/get_local`, {params})
    r = _get(server, "/models/get_local", params={"root_dir": "Data"})
    assert r.status_code == 200
    local = r.json()
    assert local == {"packed": ["models/G_10_release.pth"],
                     "voice": ["models/G_5.pth", "models/G_7.pth", "models/G_10.pth"]}
    assert _get(server, "/models/get_local").json() == local  # upstream's default root_dir=Data
    unloaded = _get(server, "/models/get_unloaded", params={"root_dir": "Data"}).json()
    assert unloaded == {"packed": ["models/G_10_release.pth"], "voice": ["models/G_5.pth", "models/G_7.pth"]}

    tree = _ui_tree("Data", local)
    assert "Data/packed/models/G_10_release.pth" in tree
    # load_model(): let params = {model_path: model_path, device: device, language: language}; axios.get(`/models/add`)
    device = _ui_device(_get(server, "/status").json())
    r = _get(server, "/models/add", params={"model_path": "Data/packed/models/G_10_release.pth", "device": device,
                                            "language": "ZH"})
    assert r.status_code == 200 and r.json()["status"] == 0, r.text
    mid = r.json()["Data"]["model_id"]
    info = r.json()["Data"]["model_info"]
    assert info["model_path"] == str((home / "Data/packed/models/G_10_release.pth").resolve())
    assert info["config_path"] == str((home / "Data/packed/config.json").resolve())
    assert "Data/packed/models/G_10_release.pth" not in _ui_tree(
        "Data", _get(server, "/models/get_unloaded", params={"root_dir": "Data"}).json())

    # infer.vue infer_audio(): params = {text, model_id: parseInt(model.id), speaker_name: model.speaker_name,
    #   sdp_ratio: model.sdp_ratio, noise, noisew, length, language: model.language, auto_translate, auto_split}
    #   (model.language = data[model_id]["language"], model.speaker_name = speakers[0] from spk2id)
    models = _get(server, "/models/info").json()
    assert set(models) == {"0", str(mid)}
    outs = []
    for model_id in ("0", str(mid)):
        model = models[model_id]
        params = {"text": "你好。天气很好。", "model_id": int(model_id), "speaker_name": next(iter(model["spk2id"])),
                  "sdp_ratio": 0.2, "noise": 0.2, "noisew": 0.9, "length": 1, "language": model["language"],
                  "auto_translate": "false", "auto_split": "true", "seed": 5}
        r = _get(server, "/voice", params=params)
        assert r.status_code == 200, r.text
        outs.append(_wav(r.content)[0])
    # the release file is G_10 without the posterior encoder: the same speech as G_10.pth
    assert len(outs[0]) == len(outs[1]) and np.abs(outs[0] - outs[1]).max() < 2e-4

    # device '' (the UI before /status answered) and cuda on a machine without one: the CPU, with a warning
    for dev in ("", "cuda"):
        r = _get(server, "/models/add", params={"model_path": "Data/voice/models/G_5.pth", "device": dev,
                                                "language": "JP"})
        assert r.status_code == 200, r.text
        body = r.json()
        if dev == "cuda" and torch.cuda.is_available():
            assert body["Data"]["model_info"]["device"] == "cuda"
        else:
            assert body["Data"]["model_info"]["device"] == "cpu" and "using cpu" in body["detail"]
        assert body["Data"]["model_info"]["language"] == "JP"
        assert _get(server, "/models/delete", params={"model_id": body["Data"]["model_id"]}).json()["status"] == 0
    # SHOW_PARENT: a whole dataset ticked sends its name: its newest checkpoint
    r = _get(server, "/models/add", params={"model_path": "voice", "device": "cpu", "language": "ZH"})
    assert r.status_code == 200 and r.json()["Data"]["model_info"]["model_path"].endswith("G_10.pth")
    for extra in (mid, r.json()["Data"]["model_id"]):
        assert _get(server, "/models/delete", params={"model_id": extra}).json()["status"] == 0


def test_paths_stay_inside_the_server_folder_and_roots(server, home):
    outside = home.parent / "outside_voice"
    outside.mkdir(exist_ok=True)
    (outside / "G_1.pth").write_bytes(b"x")
    for bad in ("..", "../outside_voice", str(outside), "/"):
        r = _get(server, "/models/get_local", params={"root_dir": bad})
        assert r.status_code == 403 and "outside" in r.json()["detail"], (bad, r.text)
    for bad in ("../outside_voice/G_1.pth", str(outside / "G_1.pth"), "Data/../../outside_voice/G_1.pth"):
        r = _get(server, "/models/add", params={"model_path": bad})
        assert r.status_code == 403, (bad, r.text)
    r = _get(server, "/models/add", params={"model_path": "Data/voice/models/G_99.pth"})
    assert r.status_code == 404 and "G_99" in r.json()["detail"]
    r = _get(server, "/models/add", params={"model_path": "Data/voice/models/G_5.pth", "device": "tpu"})
    assert r.status_code == 400 and "tpu" in r.json()["detail"]


# --- an upstream user's config.yml server section ------------------------------------------------------------------------


UPSTREAM_YML = """\
server:
  port: 5000
  device: "cuda"
  models:
    - model: "Data/voice/models/G_7.pth"
      config: "Data/voice/config.json"
      device: "cuda"
      language: "JP"
    - model: "Data/voice"
      config: ""
      device: "cpu"
      language: "EN"
    - model: ""
      config: ""
      device: "cuda"
      language: "ZH"
"""


def test_upstream_config_yml_models(home, caplog, monkeypatch):
    import torch

    from server_fastapi import build_parser, config_from_args

    monkeypatch.chdir(home)
    (home / "upstream.yml").write_text(UPSTREAM_YML)
    config = config_from_args(build_parser().parse_args(["-y", "upstream.yml", "--bert-dir", "bert"]))
    caplog.set_level(logging.WARNING, logger="motion.server")
    run = Running(config)
    try:
        info = _get(run, "/models/info").json()
    finally:
        run.stop()
    assert set(info) == {"0", "1"}  # the entry with an empty model is skipped, as upstream's default file has one
    assert info["0"]["model_path"] == str((home / "Data/voice/models/G_7.pth").resolve())
    assert info["0"]["language"] == "JP" and info["1"]["language"] == "EN"
    assert info["1"]["model_path"].endswith("G_10.pth") and info["1"]["device"] == "cpu"
    if not torch.cuda.is_available():
        assert info["0"]["device"] == "cpu"
        fallbacks = [r.getMessage() for r in caplog.records if "using cpu" in r.getMessage()]
        assert len(fallbacks) == 1 and "G_7.pth" in fallbacks[0] and "'cuda'" in fallbacks[0]
    # --model-dir on the command line replaces the file's models
    cli = config_from_args(build_parser().parse_args(["-y", "upstream.yml", "--model-dir", "Data/packed"]))
    assert [s.model for s in cli.model_specs()] == ["Data/packed"]


def test_config_yml_bad_entries_are_one_line(home, monkeypatch):
    from server_fastapi import main

    monkeypatch.chdir(home)
    (home / "bad.yml").write_text("server:\n  models:\n    - model: Data/voice/models/G_404.pth\n      language: JP\n")
    assert main(["-y", "bad.yml"]) == 1
    (home / "bad.yml").write_text("server:\n  models:\n    - model: Data/voice/models/G_7.pth\n      language: FR\n")
    assert main(["-y", "bad.yml"]) == 1


# --- /docs offline, the OpenAPI schema matching the responses ----------------------------------------------------------


def _local_assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)


def test_docs_pages_need_no_network(server):
    for page in ("/docs", "/redoc"):
        r = _get(server, page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert not re.search(r"https?://", r.text), re.findall(r"https?://[^\"' ]+", r.text)
        assets = _local_assets(r.text)
        assert assets and all(a.startswith("/") for a in assets), assets
        for asset in assets:
            got = _get(server, asset)
            assert got.status_code == 200 and len(got.content) > 100, asset
    js = _get(server, "/docs-static/swagger-ui-bundle.js").text
    assert re.search(r'"5\.\d+\.\d+"', js)  # Swagger UI 5: it shows OpenAPI 3.1, which FastAPI writes


def test_openapi_documents_the_real_responses(server):
    spec = _get(server, "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ErrorBody"]["properties"]) == {"status", "detail"}
    assert set(schemas["ErrorBody"]["required"]) == {"status", "detail"}
    seen = set()
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            codes = [c for c in op["responses"] if c[0] in "45"]
            assert path == "/live" or {"401", "500"} <= set(codes), (path, method)  # the token, an internal error
            for code in codes:
                ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorBody"), (path, method, code)
            seen.update(codes)
    assert seen == set(ERROR_CODES)
    assert {"400", "404", "413", "422", "503"} <= set(spec["paths"]["/voice"]["post"]["responses"])
    assert {"400", "403", "404", "503"} <= set(spec["paths"]["/models/add"]["get"]["responses"])
    assert "403" in spec["paths"]["/models/get_local"]["get"]["responses"]
    # the real bodies of 422, 400, 404, 413 have exactly that shape
    for params, code in (({"model_id": 0}, 422), ({"text": "你好", "sdp_ratio": 5}, 400),
                         ({"text": "你好", "model_id": 9}, 404), ({"text": "好" * 1001}, 413)):
        r = _get(server, "/voice", params=params)
        assert r.status_code == code and set(r.json()) == {"status", "detail"} and r.json()["status"] == code
    # /voice/face: the zip, as documented
    face = spec["paths"]["/voice/face"]["get"]["responses"]["200"]["content"]
    assert face["application/zip"]["schema"] == {"type": "string", "format": "binary"}
    r = _get(server, "/voice/face", params={"text": "你好。", "format": "csv"})
    assert r.headers["content-type"] in face and "face.csv" in zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    r = _get(server, "/voice/face", params={"text": "你好。", "format": "json"})
    documented = set(face["application/json"]["schema"]["properties"])
    assert r.headers["content-type"] in face and documented <= set(r.json())
    # /voice/stream: chunked audio in each documented type, the sample rate in a documented header
    stream = spec["paths"]["/voice/stream"]["get"]["responses"]["200"]
    assert "X-Sample-Rate" in stream["headers"] and "chunked" in stream["description"]
    for fmt in ("wav", "pcm", "f32"):
        with httpx.stream("GET", server.url + "/voice/stream", params={"text": "你好。", "format": fmt},
                          timeout=120) as r:
            assert r.status_code == 200 and r.headers.get("transfer-encoding") == "chunked"
            assert r.headers["content-type"].split(";")[0] in stream["content"], r.headers["content-type"]
            assert int(r.headers["x-sample-rate"]) == 44100
            r.read()
    wav = spec["paths"]["/voice"]["get"]["responses"]["200"]["content"]
    assert set(wav) == {"audio/wav"}


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium at /usr/bin/chromium")
def test_swagger_ui_renders_offline(server):
    """Headless Chromium with every request off 127.0.0.1 refused: the docs still show the routes."""
    refused = []
    with chromium_page(timeout_ms=60_000) as page:
        def route(r):
            if r.request.url.startswith(server.url):
                return r.continue_()
            refused.append(r.request.url)
            return r.abort()
        page.route("**/*", route)
        page.goto(server.url + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=60_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert refused == []
    assert "/voice/face" in " ".join(paths) and "/models/get_local" in " ".join(paths)


def test_missing_optional_packages_are_named(server, monkeypatch):
    """Without psutil /status says what to install; without the docs files /docs does (never a traceback)."""
    import sys

    from fastapi.testclient import TestClient

    from motion.server import ServerConfig, create_app, docs

    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` now raises ImportError
    r = _get(server, "/status")
    assert r.status_code == 503 and "pip install psutil" in r.json()["detail"]
    monkeypatch.setattr(docs, "docs_assets", lambda: None)
    with TestClient(create_app(ServerConfig(demo_voice=True))) as client:
        r = client.get("/docs")
        assert r.status_code == 503 and "pip install fastapi-offline" in r.text
        assert client.get("/openapi.json").status_code == 200
