"""The server's settings: command line, ``config.yml``'s ``server`` section, environment (token)."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bert_vits2.text.bert import normalize_language

TOKEN_ENV = "BV2_SERVER_TOKEN"
LOOPBACK_NAMES = ("localhost", "ip6-localhost")


class ServerConfigError(ValueError):
    """A setting that cannot work (the message names it and what to do)."""


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServerConfig:
    """Everything :func:`motion.server.create_app` needs. Paths the clients name are confined to ``model_roots``."""

    model_dirs: list[str] = field(default_factory=list)  # voices loaded at start (model ids 0, 1, ... in this order)
    model_roots: list[str] = field(default_factory=list)  # where /models/add and /models/get_local may look
    bert_dir: str | None = None
    language: str = "ZH"  # default language of the voices loaded at start (upstream: per model)
    device: str = "cpu"
    precision: str = "fp32"
    demo_voice: bool = False  # serve the eSpeak NG demo voice (always when no model folder is given)
    head: str | None = None  # a trained V_*.pth for the faces (default: the shipped default head)
    face_alive: bool = True
    face_seed: int = 0
    host: str = "127.0.0.1"
    port: int = 5000
    token: str | None = None
    max_queue: int = 8  # requests waiting for a worker; more get 503
    workers: int = 2  # requests synthesised at the same time
    max_chars: int = 1000  # characters of text (plus style text) per request
    max_audio_s: float = 120.0  # seconds of speech one request may produce
    livelink_hosts: list[str] = field(default_factory=lambda: ["127.0.0.1"])  # where a push may go
    ws_idle_s: float = 60.0  # a WebSocket the server waits on that sends nothing for this long is closed
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not self.model_roots:
            self.model_roots = sorted({str(Path(d).resolve().parent) for d in self.model_dirs})
        if self.token is None:
            self.token = os.environ.get(TOKEN_ENV) or None

    def check(self) -> None:
        """Refuse settings that cannot work or would expose the server (a non-loopback bind needs a token), each
        with one line naming the setting."""
        if self.token is not None and not str(self.token).strip():
            raise ServerConfigError("the API token is blank: give a real token with --token (or "
                                    f"{TOKEN_ENV}), or none at all on a loopback address")
        if not is_loopback(self.host) and not self.token:
            raise ServerConfigError(
                f"binding {self.host} makes the server reachable from other machines: give an API token with "
                f"--token TOKEN or the {TOKEN_ENV} environment variable (or bind 127.0.0.1)")
        for name, low in (("max_queue", 0), ("workers", 1), ("max_chars", 1)):
            if int(getattr(self, name)) < low:
                raise ServerConfigError(f"{name} must be {low} or more, got {getattr(self, name)}")
        for name in ("max_audio_s", "ws_idle_s"):
            if not float(getattr(self, name)) > 0:
                raise ServerConfigError(f"{name} must be positive, got {getattr(self, name)}")
        _check_language(self.language)
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", str(self.device)):
            raise ServerConfigError(f"device {self.device!r}: use cpu, cuda, cuda:N or mps")
        for host in self.livelink_hosts:
            if not _is_host(host):
                raise ServerConfigError(f"--push-host {host!r} is not an IP address or host name")
        for d in self.model_dirs:
            if not Path(d).is_dir():
                raise ServerConfigError(f"--model-dir {d}: no such folder")


def _check_language(language: str) -> None:
    if str(language).strip().lower() in ("mix", "auto"):
        return
    try:
        normalize_language(language)
    except ValueError:
        raise ServerConfigError(f"--language {language!r}: use ZH, JP, EN, mix or auto") from None


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(str(host).strip("[]"))
        return True
    except ValueError:
        return bool(_HOSTNAME.fullmatch(str(host)))


_HOSTNAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*")


def read_yaml_section(path: str | os.PathLike) -> dict[str, Any]:
    """The ``server`` section of a ``config.yml`` (``{}`` when the file or the section is absent).

    Keys used: ``port``, ``host``, ``device``, ``token``, ``max_queue``, ``workers``, ``max_chars``,
    ``max_audio_s``, ``model_roots``, and ``models`` (upstream's list of ``{model, config, device, language}``: the
    folder of each ``model`` file is loaded)."""
    p = Path(path)
    if not p.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ServerConfigError(f"{p}: not valid YAML ({err})") from err
    section = data.get("server") if isinstance(data, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ServerConfigError(f"{p}: the 'server' section must be a mapping")
    out = {k: section[k] for k in ("port", "host", "device", "token", "max_queue", "workers", "max_chars",
                                   "max_audio_s", "model_roots", "language") if k in section}
    models = section.get("models") or []
    dirs = []
    for m in models if isinstance(models, list) else []:
        if isinstance(m, dict) and m.get("model"):
            mp = Path(str(m["model"]))
            dirs.append(str(mp.parent if mp.suffix == ".pth" else mp))
    if dirs:
        out["model_dirs"] = dirs
    return out


__all__ = ["ServerConfig", "ServerConfigError", "TOKEN_ENV", "is_loopback", "read_yaml_section"]
