"""The server's settings: command line, ``config.yml``'s ``server`` section, environment (token)."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TOKEN_ENV = "BV2_SERVER_TOKEN"
LOOPBACK_NAMES = ("localhost", "ip6-localhost")


class ServerConfigError(ValueError):
    """A setting that cannot work (the message names it and what to do)."""


@dataclass
class ModelSpec:
    """One voice to load at start, as an upstream ``config.yml`` ``server.models`` entry names it: ``model`` (a
    ``G_*.pth`` file, or a folder: its newest one), ``config`` (default: ``config.json`` next to it or one folder up),
    ``language`` and ``device`` (default: the server's)."""

    model: str
    config: str | None = None
    language: str | None = None
    device: str | None = None
    source: str = "--model-dir"  # where the entry came from, for error messages

    @property
    def folder(self) -> str:
        path = Path(self.model)
        return str(path.parent if path.suffix == ".pth" else path)

    @property
    def checkpoint(self) -> str | None:
        return self.model if Path(self.model).suffix == ".pth" else None


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: ``bert_precision`` values (``Voice.load``): auto = the generator's precision
BERT_PRECISION_CHOICES = ("auto", "fp32", "bf16", "int8")


@dataclass
class ServerConfig:
    """Everything :func:`motion.server.create_app` needs. Paths the clients name are confined to ``model_roots``."""

    model_dirs: list[str] = field(default_factory=list)  # voices loaded at start (model ids 0, 1, ... in this order)
    models: list[ModelSpec] = field(default_factory=list)  # per-model entries (config.yml); loaded instead of model_dirs
    model_roots: list[str] = field(default_factory=list)  # where /models/add and /models/get_local may look
    bert_dir: str | None = None
    language: str = "ZH"  # default language of the voices loaded at start (upstream: per model)
    device: str = "cpu"
    precision: str = "auto"  # bf16 where the hardware has it natively and it decodes faster (measured at load), else fp32
    bert_precision: str = "auto"  # the generator's; int8: about half the BERT time, not bit-equal (Voice.load)
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
    base_dir: str = ""  # the folder the server runs in (default: the current one): upstream's root_dir=Data is in it

    def __post_init__(self) -> None:
        self.base_dir = str(Path(self.base_dir or os.getcwd()).resolve())
        self.models = [m if isinstance(m, ModelSpec) else ModelSpec(**m) for m in self.models]
        if self.models:
            self.model_dirs = [m.folder for m in self.models]
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
        bert_precision = str(self.bert_precision).lower()
        if bert_precision not in BERT_PRECISION_CHOICES:
            raise ServerConfigError(f"bert_precision {self.bert_precision!r}: use {', '.join(BERT_PRECISION_CHOICES)}")
        if bert_precision == "int8" and str(self.device or "cpu") != "cpu":
            raise ServerConfigError("--bert-precision int8 runs on the CPU only: use bf16 or auto with a GPU")
        if not re.fullmatch(r"(cpu|cuda(:\d+)?|mps)?", str(self.device or "")):
            raise ServerConfigError(f"device {self.device!r}: use cpu, cuda, cuda:N or mps")
        for host in self.livelink_hosts:
            if not _is_host(host):
                raise ServerConfigError(f"--push-host {host!r} is not an IP address or host name")
        for spec in self.model_specs():
            _check_spec(spec)

    def model_specs(self) -> list[ModelSpec]:
        """What :meth:`ServerState.load_initial` loads: the ``models`` entries, or one per ``model_dirs`` folder."""
        return list(self.models) or [ModelSpec(d) for d in self.model_dirs]


def _check_spec(spec: ModelSpec) -> None:
    path = Path(spec.model)
    if spec.source == "--model-dir" and not path.is_dir():
        raise ServerConfigError(f"--model-dir {spec.model}: no such folder")
    if not path.exists():
        raise ServerConfigError(f"{spec.source}.model {spec.model!r}: no such file or folder; fix the path or "
                                "remove the entry")
    if spec.config and not Path(spec.config).is_file():
        raise ServerConfigError(f"{spec.source}.config {spec.config!r}: no such file; fix the path or leave it "
                                "empty (config.json next to the model or one folder up)")
    if spec.language:
        _check_language(spec.language, f"{spec.source}.language")
    if spec.device and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", str(spec.device)):
        raise ServerConfigError(f"{spec.source}.device {spec.device!r}: use cpu, cuda, cuda:N or mps")


def _check_language(language: str, what: str = "--language") -> None:
    if str(language).strip().lower() in ("mix", "auto"):
        return
    from bert_vits2.text.bert import normalize_language  # torch (~2 s): the settings stay light for --help

    try:
        normalize_language(language)
    except ValueError:
        raise ServerConfigError(f"{what} {language!r}: use ZH, JP, EN, mix or auto") from None


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
    ``max_audio_s``, ``model_roots``, ``language``, and ``models`` (upstream's list of ``{model, config, device,
    language}``: each entry's own file, config, language and device; entries with an empty ``model`` are skipped, as
    upstream's default file has one). ``device: cuda`` on a machine without CUDA falls back to the CPU with a warning
    when the model is loaded."""
    p = Path(path)
    if not p.is_file():
        return {}
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
    specs = _model_specs(section.get("models"), p)
    if specs:
        out["models"] = specs
        out["model_dirs"] = [s.folder for s in specs]
    return out


def _model_specs(models: Any, path: Path) -> list[ModelSpec]:
    if models is not None and not isinstance(models, list):
        raise ServerConfigError(f"{path}: 'server.models' must be a list of {{model, config, language, device}}")
    specs = []
    for i, m in enumerate(models or []):
        if not isinstance(m, dict):
            raise ServerConfigError(f"{path}: server.models[{i}] must be a mapping with model, config, language, "
                                    "device")
        if not m.get("model"):
            continue
        text = {k: (str(m[k]).strip() or None) if m.get(k) is not None else None
                for k in ("config", "language", "device")}
        specs.append(ModelSpec(str(m["model"]), source=f"{path.name} server.models[{i}]", **text))
    return specs


__all__ = ["ModelSpec", "ServerConfig", "ServerConfigError", "TOKEN_ENV", "is_loopback", "read_yaml_section"]
