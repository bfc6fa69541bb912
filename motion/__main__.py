"""``python -m motion``: list the face, Live Link, VMC, web UI and server tools, or run one
(``python -m motion wav_to_visemes speech.wav``). ``python -m bert_vits2`` lists the text-to-speech tools."""

from __future__ import annotations

import sys
from typing import Sequence

from bert_vits2.__main__ import run_menu

TOOLS: dict[str, tuple[str, str]] = {
    "wav_to_visemes": ("motion.wav_to_visemes", "speech (any audio/video) -> Live Link Face curves"),
    "record": ("motion.record", "record speech + the iPhone's Live Link Face stream into records/"),
    "prepare_visemes": ("motion.prepare_visemes", "recorded takes -> expression-head training data"),
    "plot_take": ("motion.plot_take", "plot a take (waveform, face shapes, gaps)"),
    "render_face": ("motion.render_face", "render a face animation with its audio as an MP4"),
    "tts2ue": ("motion.tts2ue", "stream face curves to Unreal Live Link (or VTube Studio) in sync with audio"),
    "live_face": ("motion.live_face", "microphone (or a wav played live) -> face as you speak -> Live Link / VMC / take"),
    "vmc": ("motion.vmc_cli", "body motion and/or a face to a VMC app (VSeeFace, ...), or BVH"),
    "webui": ("webui", "the web UI: text -> speech + face, send to Unreal / VMC"),
    "server": ("server_fastapi", "the HTTP / WebSocket server (upstream endpoints + faces)"),
}
"""Tool name -> (module with ``main()``, what it does)."""

ALIASES: dict[str, str] = {"vmc_cli": "vmc", "server_fastapi": "server"}


def main(argv: Sequence[str] | None = None) -> int:
    return run_menu("motion", TOOLS, ALIASES, argv)


if __name__ == "__main__":
    sys.exit(main())
