"""Which Bert-VITS2 versions this toolkit runs: v2.3 networks only; a 1.x-2.2 config or checkpoint is refused with one
line naming the version and what to do (``UnsupportedVersionError``).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from bert_vits2.checkpoint import CheckpointError

__all__ = ["UnsupportedVersionError", "check_model_version"]


class UnsupportedVersionError(CheckpointError):
    """A Bert-VITS2 1.x-2.2 model: its networks differ from v2.3's in ways this toolkit does not implement."""


# Networks of older releases differ from v2.3 (spec section 0): their text encoder has other layers.
_OLD_VERSION_KEYS = (
    ("enc_p.in_feature_net.", "2.2", "its text encoder has the CLAP emotion layers (in_feature_net/emo_vq)"),
    ("enc_p.emo_vq.", "2.2", "its text encoder has the CLAP emotion layers (in_feature_net/emo_vq)"),
    ("enc_p.emo_proj.", "2.1", "its text encoder has the emotion layers (emo_proj/emo_quantizer)"),
    ("enc_p.emo_quantizer.", "2.1", "its text encoder has the emotion layers (emo_proj/emo_quantizer)"),
)
_OLD_VERSION_WHY = {
    "2.2": "its text encoder has the CLAP emotion layers (in_feature_net/emo_vq)",
    "2.1": "its text encoder has the emotion layers (emo_proj/emo_quantizer)",
}


def _version_tuple(version: str) -> tuple[int, ...] | None:
    match = re.match(r"^\s*v?(\d+)(?:\.(\d+))?", version)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def _unsupported_version(where: str, version: str, why: str) -> UnsupportedVersionError:
    return UnsupportedVersionError(
        f"{where}: a Bert-VITS2 {version} model, but this toolkit runs only v2.3 networks ({why}); synthesize it with "
        "upstream Bert-VITS2 (infer.py loads old versions), or fine-tune the v2.3 base model on your data")


def check_model_version(hps: Any, where: str = "config.json", state: "dict[str, torch.Tensor] | None" = None) -> None:
    """Refuse a 1.x-2.2 model with one line naming the version and what to do (``UnsupportedVersionError``).

    The version comes from the config's ``version`` field and, when ``state`` is given, from layers only old
    generators have (a 2.2 checkpoint paired with a 2.3 config). A missing or newer version passes.
    """
    if state is not None:
        for prefix, version, why in _OLD_VERSION_KEYS:
            if any(k.startswith(prefix) for k in state):
                raise _unsupported_version(where, version, why)
    version = hps.get("version") if hasattr(hps, "get") else getattr(hps, "version", None)
    if version is None:
        return
    parsed = _version_tuple(str(version))
    if parsed is not None and parsed < (2, 3):
        short = f"{parsed[0]}.{parsed[1]}"
        why = _OLD_VERSION_WHY.get(short, "its text encoder, symbol set and BERT inputs differ")
        raise _unsupported_version(f"{where} (version {str(version)!r})", short if parsed[0] == 2 else str(version),
                                   why)
