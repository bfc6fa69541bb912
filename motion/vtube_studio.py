"""Drive a Live2D model in VTube Studio with the face, through VTube Studio's public plugin API (a WebSocket).

The API (``ws://127.0.0.1:8001`` by default; the user ticks "Allow Plugin API access" in VTube Studio) takes JSON
messages ``{"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0", "requestID", "messageType", "data"}`` and answers
each with one message of the same ``requestID`` (``APIError`` when it fails). A plugin authenticates once per session:

1. ``APIStateRequest`` (is this session already authenticated?),
2. ``AuthenticationRequest`` with the token saved from an earlier run, or, when there is none or VTube Studio refuses
   it, ``AuthenticationTokenRequest`` (VTube Studio asks the user to allow the plugin) and then the new token,
3. ``InjectParameterDataRequest`` with ``{"faceFound": true, "mode": "set", "parameterValues": [{"id", "value"}]}``
   for every frame; VTube Studio drops a parameter that gets no value for a second.

Tokens are kept per VTube Studio address in a user file (:func:`default_token_file`), written atomically, so the
user is asked only once. :data:`VTS_PARAMETERS` is the one table from the 61 Live Link values to VTube Studio's default
input parameters. Frames are sent at most at ``max_fps`` (the face's rate) by :class:`VtsSender`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bert_vits2.fileio import write_json_atomic
from motion.arkit import INDEX, NUM_VALUES

log = logging.getLogger(__name__)

API_NAME = "VTubeStudioPublicAPI"
API_VERSION = "1.0"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001
PLUGIN_NAME = "Bert-VITS2 Face"  # 3-32 characters, and the same in the token and authentication requests
PLUGIN_DEVELOPER = "bert-vits2-face"
MAX_VALUE = 1_000_000.0  # the API refuses values outside ±1e6


@dataclass(frozen=True)
class VtsParameter:
    """One VTube Studio input parameter: ``offset + sum(weight * value)`` over Live Link values, clipped to
    ``[low, high]``."""

    id: str
    weights: tuple[tuple[str, float], ...]
    offset: float = 0.0
    low: float = 0.0
    high: float = 1.0


_DEG = 180.0  # Live Link rotations are degrees / 180
VTS_PARAMETERS: tuple[VtsParameter, ...] = (
    VtsParameter("MouthOpen", (("JawOpen", 1.0),)),
    VtsParameter("MouthSmile", (("MouthSmileLeft", 0.25), ("MouthSmileRight", 0.25), ("MouthFrownLeft", -0.25),
                                ("MouthFrownRight", -0.25)), offset=0.5),
    VtsParameter("MouthX", (("MouthLeft", -1.0), ("MouthRight", 1.0)), low=-1.0),
    VtsParameter("CheekPuff", (("CheekPuff", 1.0),)),
    VtsParameter("TongueOut", (("TongueOut", 1.0),)),
    VtsParameter("EyeOpenLeft", (("EyeBlinkLeft", -1.0),), offset=1.0),
    VtsParameter("EyeOpenRight", (("EyeBlinkRight", -1.0),), offset=1.0),
    VtsParameter("BrowLeftY", (("BrowOuterUpLeft", 0.25), ("BrowInnerUp", 0.25), ("BrowDownLeft", -0.5)), offset=0.5),
    VtsParameter("BrowRightY", (("BrowOuterUpRight", 0.25), ("BrowInnerUp", 0.25), ("BrowDownRight", -0.5)),
                 offset=0.5),
    # head in degrees (VTube Studio's default range ±30); eyes -1..1 for ±30° yaw / ±25° pitch
    VtsParameter("FaceAngleX", (("HeadYaw", -_DEG),), low=-30.0, high=30.0),
    VtsParameter("FaceAngleY", (("HeadPitch", -_DEG),), low=-30.0, high=30.0),
    VtsParameter("FaceAngleZ", (("HeadRoll", _DEG),), low=-30.0, high=30.0),
    VtsParameter("EyeLeftX", (("LeftEyeYaw", -_DEG / 30.0),), low=-1.0),
    VtsParameter("EyeLeftY", (("LeftEyePitch", -_DEG / 25.0),), low=-1.0),
    VtsParameter("EyeRightX", (("RightEyeYaw", -_DEG / 30.0),), low=-1.0),
    VtsParameter("EyeRightY", (("RightEyePitch", -_DEG / 25.0),), low=-1.0),
)
"""Live Link values -> VTube Studio's default parameters. Signs: Live Link yaw > 0 turns toward the ARKit "Right" side
(the avatar's right: the viewer's left), pitch > 0 looks down, roll > 0 tilts toward the "Left" side; VTube Studio's
FaceAngleX/EyeX > 0 face the viewer's right and FaceAngleY/EyeY > 0 look up. A model rigged the other way round is
fixed with the parameter's "invert" switch in VTube Studio. Brows and MouthSmile rest at 0.5 (neutral)."""

@functools.lru_cache(maxsize=1)
def _table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:data:`VTS_PARAMETERS` as arrays: weights [61, P], offsets, lows, highs."""
    matrix = np.zeros((NUM_VALUES, len(VTS_PARAMETERS)), dtype=np.float64)
    for j, param in enumerate(VTS_PARAMETERS):
        for name, weight in param.weights:
            matrix[INDEX[name], j] = weight
    return (matrix, np.array([p.offset for p in VTS_PARAMETERS]), np.array([p.low for p in VTS_PARAMETERS]),
            np.array([p.high for p in VTS_PARAMETERS]))


def vts_values(frame: np.ndarray) -> dict[str, float]:
    """One face frame (61 Live Link values, wire order) -> ``{VTube Studio parameter id: value}`` (clipped)."""
    v = np.nan_to_num(np.asarray(frame, dtype=np.float64).reshape(-1))
    if v.size != NUM_VALUES:
        raise ValueError(f"a face frame has {NUM_VALUES} values, got {v.size}")
    matrix, offsets, low, high = _table()
    out = np.clip(offsets + v @ matrix, low, high)
    return {p.id: round(float(x), 5) for p, x in zip(VTS_PARAMETERS, out)}


class VtsError(RuntimeError):
    """VTube Studio cannot be reached or refused a request; the message says what to do."""


def default_token_file() -> Path:
    """Where plugin tokens are kept: ``$XDG_CONFIG_HOME/bert-vits2-face/vtube_studio_tokens.json``
    (``~/.config/...``; ``%APPDATA%`` on Windows)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.environ.get("APPDATA") or str(Path.home() / ".config")
    return Path(base) / "bert-vits2-face" / "vtube_studio_tokens.json"


def parse_address(text: str | None) -> tuple[str, int]:
    """``HOST:PORT`` / ``HOST`` / ``PORT`` / empty -> ``(host, port)`` (defaults 127.0.0.1 and 8001)."""
    text = (text or "").strip()
    host, port = DEFAULT_HOST, DEFAULT_PORT
    if text.isdigit():
        port = int(text)
    elif text:
        host, sep, p = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
        if not sep:
            host = text
        elif p:
            if not p.isdigit():
                raise ValueError(f"VTube Studio address {text!r}: the port must be a number, e.g. 127.0.0.1:8001")
            port = int(p)
        host = host or DEFAULT_HOST
    if not 1 <= port <= 65535:
        raise ValueError(f"VTube Studio port {port} is out of range (1-65535)")
    return host, port


class VtsClient:
    """A blocking VTube Studio API client: connect, authenticate (token saved per address), send parameter values.

    ``connect`` is a ``websockets.sync.client.connect``-like callable (tests pass their own).
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token_file: str | os.PathLike | None = None,
                 timeout_s: float = 5.0, auth_timeout_s: float = 60.0,
                 connect: Callable[..., Any] | None = None) -> None:
        self.host, self.port = host, int(port)
        self.url = f"ws://{host}:{self.port}"
        self.token_file = Path(token_file) if token_file else default_token_file()
        self.timeout_s, self.auth_timeout_s = float(timeout_s), float(auth_timeout_s)
        self._connect = connect
        self._ws: Any = None
        self._ids = 0

    # --- connection and requests ---
    def open(self) -> VtsClient:
        """Connect and authenticate; raises :class:`VtsError` with what to check."""
        connect = self._connect
        if connect is None:
            try:
                from websockets.sync.client import connect  # optional: the [server] extra
            except ImportError:
                raise VtsError("VTube Studio output needs the websockets package: pip install websockets") from None
        try:
            self._ws = connect(self.url, open_timeout=self.timeout_s, max_size=2 ** 22)
        except (OSError, TimeoutError) as err:
            raise VtsError(f"cannot reach VTube Studio at {self.url} ({err}); start it, tick 'Allow Plugin API "
                           f"access' in its settings and check the port") from None
        self.authenticate()
        return self

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            finally:
                self._ws = None

    def __enter__(self) -> VtsClient:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, message_type: str, data: dict | None = None, timeout_s: float | None = None) -> dict:
        """Send one request and return the ``data`` of its answer; ``APIError`` raises :class:`VtsError`."""
        if self._ws is None:
            raise VtsError("not connected to VTube Studio")
        self._ids += 1
        request_id = f"bv2face-{self._ids}"
        msg = {"apiName": API_NAME, "apiVersion": API_VERSION, "requestID": request_id, "messageType": message_type}
        if data is not None:
            msg["data"] = data
        try:
            self._ws.send(json.dumps(msg))
            deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
            while True:
                raw = self._ws.recv(timeout=max(0.001, deadline - time.monotonic()))
                answer = json.loads(raw)
                if answer.get("requestID") == request_id or answer.get("messageType") == "APIError":
                    break  # anything else is an event or an answer to an earlier request: skip it
        except TimeoutError:
            raise VtsError(f"VTube Studio did not answer {message_type} in time") from None
        except (OSError, ValueError) as err:  # closed connection, bad JSON
            raise VtsError(f"VTube Studio connection failed during {message_type}: {err}") from None
        except Exception as err:  # websockets' ConnectionClosed (not an OSError)
            if type(err).__name__.startswith("ConnectionClosed"):
                raise VtsError(f"VTube Studio closed the connection during {message_type}") from None
            raise
        body = answer.get("data") or {}
        if answer.get("messageType") == "APIError":
            raise VtsError(f"VTube Studio refused {message_type}: {body.get('message', 'no message')} "
                           f"(error {body.get('errorID', '?')})")
        return body

    # --- authentication ---
    def _load_tokens(self) -> dict[str, str]:
        try:
            data = json.loads(self.token_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.warning("ignoring unreadable VTube Studio token file %s (%s)", self.token_file, err)
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}

    def _save_token(self, token: str) -> None:
        tokens = self._load_tokens()
        tokens[f"{self.host}:{self.port}"] = token
        self.token_file.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.token_file, tokens)

    def _auth(self, token: str) -> bool:
        body = self.request("AuthenticationRequest", {"pluginName": PLUGIN_NAME, "pluginDeveloper": PLUGIN_DEVELOPER,
                                                      "authenticationToken": token})
        return bool(body.get("authenticated"))

    def authenticate(self) -> None:
        """Authenticate this session, asking VTube Studio for a token (the user clicks Allow) only when needed."""
        if self.request("APIStateRequest").get("currentSessionAuthenticated"):
            return
        token = self._load_tokens().get(f"{self.host}:{self.port}")
        if token and self._auth(token):
            return
        log.info("VTube Studio: allow the plugin %r in VTube Studio's pop-up", PLUGIN_NAME)
        body = self.request("AuthenticationTokenRequest", {"pluginName": PLUGIN_NAME,
                                                           "pluginDeveloper": PLUGIN_DEVELOPER},
                            timeout_s=self.auth_timeout_s)
        token = body.get("authenticationToken")
        if not isinstance(token, str) or not token:
            raise VtsError("VTube Studio sent no authentication token")
        self._save_token(token)
        if not self._auth(token):
            raise VtsError("VTube Studio did not accept its own token; allow the plugin again in VTube Studio")

    # --- data ---
    def inject(self, values: dict[str, float], face_found: bool = True) -> None:
        """Set parameters (``InjectParameterDataRequest``, mode ``set``)."""
        params = [{"id": k, "value": float(min(MAX_VALUE, max(-MAX_VALUE, v)))} for k, v in values.items()]
        self.request("InjectParameterDataRequest", {"faceFound": bool(face_found), "mode": "set",
                                                    "parameterValues": params})


class VtsSender:
    """Sends face frames to VTube Studio at no more than ``max_fps`` frames a second on average.

    A token bucket holding ``burst_s`` seconds of frames: a schedule catching up after a stall, or frames a little
    early after a late one, still go out; a caller sending faster than ``max_fps`` for longer has the excess dropped.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, max_fps: float = 60.0,
                 client: VtsClient | None = None, clock: Callable[[], float] = time.monotonic,
                 burst_s: float = 0.1) -> None:
        if max_fps <= 0:
            raise ValueError(f"max_fps must be positive, got {max_fps}")
        self.client = client or VtsClient(host, port)
        self.max_fps = float(max_fps)
        self.capacity = max(1.0, self.max_fps * burst_s)
        self._clock = clock
        self._tokens = self.capacity
        self._last: float | None = None
        self._lock = threading.Lock()
        self.sent = self.skipped = 0

    def open(self) -> VtsSender:
        self.client.open()
        return self

    def send(self, frame: np.ndarray) -> bool:
        """Send one frame unless that would exceed ``max_fps`` (see the class); True when sent."""
        with self._lock:
            now = self._clock()
            if self._last is not None:
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.max_fps)
            self._last = now
            if self._tokens < 1.0:
                self.skipped += 1
                return False
            self._tokens -= 1.0
            self.client.inject(vts_values(frame))
            self.sent += 1
            return True

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> VtsSender:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_sender(address: str | None, fps: float, token_file: str | os.PathLike | None = None) -> VtsSender:
    """Connect to VTube Studio at ``HOST:PORT`` (default 127.0.0.1:8001), authenticate, and return a sender of at
    most ``fps`` frames a second. Raises ``ValueError`` (bad address) or :class:`VtsError` (unreachable, refused)."""
    host, port = parse_address(address)
    sender = VtsSender(max_fps=fps, client=VtsClient(host, port, token_file=token_file))
    sender.open()
    log.info("VTube Studio at %s:%d: authenticated as %r", host, port, PLUGIN_NAME)
    return sender


__all__ = [
    "API_NAME", "API_VERSION", "DEFAULT_HOST", "DEFAULT_PORT", "PLUGIN_DEVELOPER", "PLUGIN_NAME", "VTS_PARAMETERS",
    "VtsClient", "VtsError", "VtsParameter", "VtsSender", "default_token_file", "open_sender", "parse_address",
    "vts_values",
]
