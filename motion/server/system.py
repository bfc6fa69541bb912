"""The machine the server runs on: which devices it can use (an upstream ``config.yml`` or client asking for ``cuda``
on a CPU machine gets the CPU with a warning, as upstream users expect rather than a crash) and upstream's ``/status``
figures (``devices``, CPU and memory use, GPUs)."""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["available_devices", "machine_status", "usable_device"]

_DEVICE = re.compile(r"(cpu|mps|cuda)(?::(\d+))?")


def _cuda_count() -> int:
    import torch  # already loaded by the voices; imported here so that this module stays light

    try:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # a broken driver counts as no GPU
        return 0


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Upstream's ``/status`` ``devices``: ``cpu`` first, then ``cuda:0``, ``cuda:1``, ... (and ``mps`` on a Mac)."""
    devices = ["cpu"] + [f"cuda:{i}" for i in range(_cuda_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def usable_device(device: str | None, what: str = "device") -> tuple[str, str]:
    """``(device to use, warning or "")``: ``device`` when this machine has it; otherwise ``cpu`` and a one-line
    warning naming ``what`` (also logged). Empty or None (Bert-VITS2-UI sends ``device=''`` before it knows the
    devices) means ``cpu`` too. Raises ValueError for a name that is no device at all."""
    name = "" if device is None else str(device).strip().lower()
    if not name:
        warning = f"{what} is empty: using cpu"
    else:
        m = _DEVICE.fullmatch(name)
        if m is None:
            raise ValueError(f"{what}={device!r}: use cpu, cuda, cuda:N or mps")
        kind, index = m.group(1), int(m.group(2) or 0)
        if kind == "cpu":
            return "cpu", ""
        if kind == "mps" and _mps_available():
            return "mps", ""
        count = _cuda_count() if kind == "cuda" else 0
        if kind == "cuda" and index < count:
            return name, ""
        have = f"{count} CUDA device(s)" if kind == "cuda" else "no MPS"
        warning = f"{what}={device!r} is not available on this machine ({have}): using cpu"
    log.warning("%s", warning)
    return "cpu", warning


def _gpus() -> list[dict[str, Any]]:
    """Upstream's ``gpu`` entries (GPUtil's figures: load 0..1, memory in MiB) from torch."""
    import torch

    out = []
    for i in range(_cuda_count()):
        try:
            free, total = torch.cuda.mem_get_info(i)
        except Exception:
            free, total = 0, 0
        try:
            load = float(torch.cuda.utilization(i)) / 100.0  # needs NVML; absent -> unknown (0)
        except Exception:
            load = 0.0
        mib = 2**20
        out.append({"gpu_id": i, "gpu_load": load,
                    "gpu_memory": {"total": total / mib, "used": (total - free) / mib, "free": free / mib}})
    return out


def machine_status() -> dict[str, Any]:
    """Upstream's ``/status`` keys: ``devices``, ``cpu_percent`` (since the previous call: no 1 s wait as upstream),
    ``memory_total`` / ``memory_available`` / ``memory_used`` (bytes), ``memory_percent`` and ``gpu``."""
    try:
        import psutil
    except ImportError:
        raise ModuleNotFoundError("/status needs the package psutil (in requirements.txt and the [server] extra): "
                                  "pip install psutil") from None
    memory = psutil.virtual_memory()
    return {"devices": available_devices(), "cpu_percent": float(psutil.cpu_percent(interval=None)),
            "memory_total": int(memory.total), "memory_available": int(memory.available),
            "memory_used": int(memory.used), "memory_percent": float(memory.percent), "gpu": _gpus()}
