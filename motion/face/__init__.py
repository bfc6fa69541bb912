"""Faces from speech: audio features (``features``), the z head and mel CRNN (``heads``), loading trained heads
(``model``), rule-based lip-sync (``lipsync``), the alive layer (``alive``: blinks, brows, nods, idle head/eye motion),
the 2D face and MP4 export (``render``), post-processing (``postprocess``), training data (``prepare``,
``synth_data``) and training (``train``), result files (``outputs``) — and the one speech → face API (``api``):
``FaceMaker``. Names are imported lazily so that ``import motion.face`` loads nothing heavy."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FaceMaker": "motion.face.api", "FaceResult": "motion.face.api", "FaceError": "motion.face.api",
    "PostOptions": "motion.face.api", "rule_based_face": "motion.face.api",
    "ExpressionModel": "motion.face.model", "HeadLoadError": "motion.face.model",
    "new_request_dir": "motion.face.outputs", "write_outputs": "motion.face.outputs",
    "write_curve_files": "motion.face.outputs", "plot_curves": "motion.face.outputs",
    "AliveOptions": "motion.face.alive", "make_alive": "motion.face.alive",
    "draw_face": "motion.face.render", "render_video": "motion.face.render",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'motion.face' has no attribute {name!r}")
