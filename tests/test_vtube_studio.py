"""VTube Studio output: the plugin API's message shapes (checked by a local WebSocket stand-in of VTube Studio), the
auth flow with the saved token, the 61 -> VTS parameter table, rate limiting, tts2ue --vts and the server's push."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from motion.arkit import INDEX, NUM_VALUES
from motion.vtube_studio import (
    PLUGIN_DEVELOPER,
    PLUGIN_NAME,
    VTS_PARAMETERS,
    VtsClient,
    VtsError,
    VtsSender,
    parse_address,
    vts_values,
)

pytest.importorskip("websockets")
from websockets.sync.server import serve  # noqa: E402

# VTube Studio's default input parameters this project writes, with the ranges its tracking uses
RANGES = {"MouthOpen": (0, 1), "MouthSmile": (0, 1), "MouthX": (-1, 1), "CheekPuff": (0, 1), "TongueOut": (0, 1),
          "EyeOpenLeft": (0, 1), "EyeOpenRight": (0, 1), "BrowLeftY": (0, 1), "BrowRightY": (0, 1),
          "FaceAngleX": (-30, 30), "FaceAngleY": (-30, 30), "FaceAngleZ": (-30, 30), "EyeLeftX": (-1, 1),
          "EyeLeftY": (-1, 1), "EyeRightX": (-1, 1), "EyeRightY": (-1, 1)}
KNOWN_REQUESTS = {"APIStateRequest", "AuthenticationTokenRequest", "AuthenticationRequest", "InjectParameterDataRequest"}


class FakeVts:
    """A stand-in for VTube Studio's API server that checks every request against the published message shapes and
    answers like VTube Studio (same requestID; APIError for anything malformed or unauthenticated)."""

    def __init__(self, deny: bool = False, token: str = "token-abc-123") -> None:
        self.deny, self.token = deny, token
        self.requests: list[dict] = []
        self.injected: list[tuple[float, dict[str, float]]] = []
        self.problems: list[str] = []
        self.server = serve(self._handle, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)

    def _answer(self, ws, req: dict, message_type: str, data: dict) -> None:
        ws.send(json.dumps({"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0", "timestamp": int(time.time() * 1e3),
                            "requestID": req.get("requestID", ""), "messageType": message_type, "data": data}))

    def _error(self, ws, req: dict, error_id: int, message: str) -> None:
        self.problems.append(message)
        self._answer(ws, req, "APIError", {"errorID": error_id, "message": message})

    def _handle(self, ws) -> None:
        authenticated = False
        for raw in ws:
            req = json.loads(raw)
            self.requests.append(req)
            rid, kind, data = req.get("requestID"), req.get("messageType"), req.get("data") or {}
            if req.get("apiName") != "VTubeStudioPublicAPI" or req.get("apiVersion") != "1.0":
                self._error(ws, req, 1, f"bad apiName/apiVersion in {req}")
            elif not (isinstance(rid, str) and 1 <= len(rid) <= 64 and rid.isascii()):
                self._error(ws, req, 2, f"bad requestID {rid!r}")
            elif kind not in KNOWN_REQUESTS:
                self._error(ws, req, 3, f"unexpected messageType {kind!r}")
            elif kind == "APIStateRequest":
                self._answer(ws, req, "APIStateResponse", {"active": True, "vTubeStudioVersion": "1.28.0",
                                                           "currentSessionAuthenticated": authenticated})
            elif kind == "AuthenticationTokenRequest":
                if not (3 <= len(data.get("pluginName", "")) <= 32 and 3 <= len(data.get("pluginDeveloper", "")) <= 32):
                    self._error(ws, req, 4, "pluginName/pluginDeveloper must be 3-32 characters")
                elif self.deny:
                    self._answer(ws, req, "APIError", {"errorID": 50, "message": "User has denied API access for "
                                                                                  "your plugin."})
                else:
                    self._answer(ws, req, "AuthenticationTokenResponse", {"authenticationToken": self.token})
            elif kind == "AuthenticationRequest":
                authenticated = (data.get("authenticationToken") == self.token and data.get("pluginName") == PLUGIN_NAME
                                 and data.get("pluginDeveloper") == PLUGIN_DEVELOPER)
                self._answer(ws, req, "AuthenticationResponse", {"authenticated": authenticated, "reason": "checked"})
            elif not authenticated:
                self._error(ws, req, 8, "request needs an authenticated session")
            else:
                values = data.get("parameterValues")
                if data.get("mode") != "set" or data.get("faceFound") is not True or not isinstance(values, list):
                    self._error(ws, req, 450, f"bad InjectParameterDataRequest data {data}")
                    continue
                got = {}
                for item in values:
                    lo, hi = RANGES.get(item.get("id"), (None, None))
                    v = item.get("value")
                    if lo is None or set(item) != {"id", "value"} or not isinstance(v, float) or not lo <= v <= hi:
                        self._error(ws, req, 453, f"bad parameter value {item}")
                        break
                    got[item["id"]] = v
                else:
                    self.injected.append((time.monotonic(), got))
                    self._answer(ws, req, "InjectParameterDataResponse", {})


@pytest.fixture()
def vts():
    server = FakeVts()
    yield server
    server.close()


def _types(server: FakeVts) -> list[str]:
    return [r["messageType"] for r in server.requests]


def test_table_maps_the_face_into_vts_ranges():
    neutral = vts_values(np.zeros(NUM_VALUES))
    assert set(neutral) == set(RANGES) == {p.id for p in VTS_PARAMETERS}
    assert neutral["MouthOpen"] == 0 and neutral["EyeOpenLeft"] == 1 and neutral["EyeOpenRight"] == 1
    assert neutral["BrowLeftY"] == neutral["MouthSmile"] == 0.5 and neutral["FaceAngleX"] == 0
    face = np.zeros(NUM_VALUES)
    face[[INDEX["JawOpen"], INDEX["EyeBlinkLeft"], INDEX["MouthSmileLeft"], INDEX["MouthSmileRight"]]] = 0.7, 1, 1, 1
    face[INDEX["HeadYaw"]], face[INDEX["HeadPitch"]] = 10 / 180, -5 / 180  # toward the avatar's right, looking up
    face[INDEX["BrowInnerUp"]] = face[INDEX["BrowOuterUpLeft"]] = 1.0
    v = vts_values(face)
    assert v["MouthOpen"] == pytest.approx(0.7) and v["EyeOpenLeft"] == 0 and v["EyeOpenRight"] == 1
    assert v["MouthSmile"] == 1 and v["BrowLeftY"] == 1 and v["BrowRightY"] == 0.75
    assert v["FaceAngleX"] == pytest.approx(-10) and v["FaceAngleY"] == pytest.approx(5)
    rng = np.random.default_rng(0)
    for _ in range(50):  # anything in the documented Live Link ranges stays inside VTS's ranges
        f = np.concatenate([rng.uniform(0, 1, 52), rng.uniform(-1, 1, 9)])
        assert all(RANGES[k][0] <= x <= RANGES[k][1] for k, x in vts_values(f).items())
    with pytest.raises(ValueError, match="61 values"):
        vts_values(np.zeros(52))


@pytest.mark.parametrize("text, expected", [("", ("127.0.0.1", 8001)), ("9001", ("127.0.0.1", 9001)),
                                            ("10.0.0.5:8002", ("10.0.0.5", 8002)), ("vts-pc", ("vts-pc", 8001))])
def test_parse_address(text, expected):
    assert parse_address(text) == expected


def test_parse_address_errors():
    with pytest.raises(ValueError, match="out of range"):
        parse_address("host:70000")
    with pytest.raises(ValueError, match="must be a number"):
        parse_address("host:abc")


def test_first_run_asks_for_a_token_and_later_runs_reuse_it(vts, tmp_path):
    tokens = tmp_path / "cfg" / "tokens.json"
    with VtsClient("127.0.0.1", vts.port, token_file=tokens) as client:
        client.inject(vts_values(np.zeros(NUM_VALUES)))
    assert _types(vts) == ["APIStateRequest", "AuthenticationTokenRequest", "AuthenticationRequest",
                           "InjectParameterDataRequest"]
    assert json.loads(tokens.read_text()) == {f"127.0.0.1:{vts.port}": vts.token}
    assert vts.problems == [] and len(vts.injected) == 1 and vts.injected[0][1]["EyeOpenLeft"] == 1.0
    vts.requests.clear()
    with VtsClient("127.0.0.1", vts.port, token_file=tokens):
        pass
    assert _types(vts) == ["APIStateRequest", "AuthenticationRequest"]  # the user is not asked again


def test_revoked_token_is_replaced(vts, tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({f"127.0.0.1:{vts.port}": "revoked", "other:8001": "keep"}))
    with VtsClient("127.0.0.1", vts.port, token_file=tokens):
        pass
    assert _types(vts) == ["APIStateRequest", "AuthenticationRequest", "AuthenticationTokenRequest",
                           "AuthenticationRequest"]
    assert json.loads(tokens.read_text()) == {f"127.0.0.1:{vts.port}": vts.token, "other:8001": "keep"}


def test_denied_and_unreachable_are_one_line_errors(tmp_path):
    server = FakeVts(deny=True)
    try:
        with pytest.raises(VtsError, match=r"refused AuthenticationTokenRequest: User has denied .* \(error 50\)"):
            VtsClient("127.0.0.1", server.port, token_file=tmp_path / "t.json").open()
    finally:
        server.close()
    assert not (tmp_path / "t.json").exists()
    with pytest.raises(VtsError, match="cannot reach VTube Studio at ws://127.0.0.1:1 .*Allow Plugin API access"):
        VtsClient("127.0.0.1", 1, token_file=tmp_path / "t.json", timeout_s=2).open()


def test_sender_is_rate_limited_to_the_face_fps(vts, tmp_path):
    now = [0.0]
    sender = VtsSender(max_fps=30.0, client=VtsClient("127.0.0.1", vts.port, token_file=tmp_path / "t.json"),
                       clock=lambda: now[0])
    with sender:
        for k in range(120):  # 120 fps offered for 1 s: 30 go out (+ the 0.1 s burst allowance)
            now[0] = k / 120.0
            sender.send(np.zeros(NUM_VALUES))
    assert sender.sent == len(vts.injected) and 30 <= sender.sent <= 30 + sender.capacity
    assert sender.sent + sender.skipped == 120


def _clip(tmp_path, seconds=0.5, fps=60.0):
    n = int(seconds * fps)
    frames = np.zeros((n, NUM_VALUES), np.float32)
    frames[:, INDEX["JawOpen"]] = np.linspace(0, 1, n)
    np.save(tmp_path / "c.npy", frames)
    sf.write(tmp_path / "c.wav", np.zeros(int(seconds * 16000), np.float32), 16000)
    return frames


def test_tts2ue_drives_vts(vts, tmp_path, monkeypatch):
    from motion import tts2ue

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    frames = _clip(tmp_path)
    argv = ["--bs_npy_file", str(tmp_path / "c.npy"), "--wav_file", str(tmp_path / "c.wav"), "--fps", "60",
            "--no-audio", "--port", "9", "--vts", f"127.0.0.1:{vts.port}"]
    assert tts2ue.main(argv) == 0
    assert vts.problems == []
    assert len(frames) * 0.8 <= len(vts.injected) <= len(frames)
    times = np.array([t for t, _ in vts.injected])
    assert len(times) / (times[-1] - times[0] + 1 / 60) <= 60 * 1.2  # about the face's rate, not a burst
    opened = [v["MouthOpen"] for _, v in vts.injected]
    assert opened == sorted(opened) and opened[-1] > 0.9  # in order, to the end of the clip
    assert (tmp_path / "config" / "bert-vits2-face" / "vtube_studio_tokens.json").is_file()


def test_tts2ue_vts_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from motion import tts2ue

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    _clip(tmp_path)
    base = ["--bs_npy_file", str(tmp_path / "c.npy"), "--fps", "60", "--no-audio"]
    assert tts2ue.main(base + ["--vts", "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach VTube Studio" in err and "Traceback" not in err
    assert tts2ue.main(base + ["--vts", "127.0.0.1:8001", "--dry-run", str(tmp_path / "o.jsonl")]) == 1
    assert "drop --dry-run or --vts" in capsys.readouterr().err


def test_server_push_drives_vts(vts, tmp_path, monkeypatch):
    from motion.server.params import ws_options
    from motion.server.push import FacePusher

    assert ws_options({"text": "hi", "push": {"vts": f"127.0.0.1:{vts.port}"}}).push == {
        "vts": f"127.0.0.1:{vts.port}"}
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    pusher = FacePusher(60.0, vts=("127.0.0.1", vts.port))
    pusher.start()
    face = np.zeros((12, NUM_VALUES), np.float32)
    face[:, INDEX["JawOpen"]] = 0.5
    pusher.add(0, face)
    pusher.playing(0.0)
    pusher.finish()
    pusher.join(5)
    assert pusher.stats.error == "" and pusher.stats.sent == 12
    assert vts.problems == [] and len(vts.injected) >= 10
    assert all(v["MouthOpen"] == 0.5 for _, v in vts.injected)
