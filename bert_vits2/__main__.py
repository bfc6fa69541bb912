"""``python -m bert_vits2``: list the text-to-speech tools, or run one (``python -m bert_vits2 resample --help``).

The tools are the top-level scripts (installed as modules by ``pip install``); this menu only names and starts them.
``python -m motion`` does the same for the face, Live Link, VMC, web UI and server tools.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from typing import Mapping, Sequence

DISTRIBUTION = "bert-vits2-face"

TOOLS: dict[str, tuple[str, str]] = {
    "train": ("train_ms", "train or fine-tune a voice (--visemes: the expression head)"),
    "preprocess_text": ("preprocess_text", "transcription list -> training lists, speakers into the config"),
    "resample": ("resample", "a folder of audio -> 44.1 kHz mono 16-bit wav"),
    "bert_gen": ("bert_gen", "cache the BERT features of the training lists"),
    "webui_preprocess": ("webui_preprocess", "the dataset-preparation web UI"),
    "compress_model": ("compress_model", "write a release (inference-only) checkpoint"),
    "export_onnx": ("export_onnx", "export a voice to ONNX"),
}
"""Tool name -> (module with ``main()``, what it does)."""

ALIASES: dict[str, str] = {"train_ms": "train"}


def version() -> str:
    """The project's version, from the package metadata (the one place it is set: ``pyproject.toml``)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: run pip install -e .)"


def _usage(package: str, tools: Mapping[str, tuple[str, str]]) -> str:
    width = max(len(name) for name in tools)
    lines = [f"usage: python -m {package} TOOL [ARGS...]   (python -m {package} TOOL --help for its options)", "",
             "tools:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in tools.items()]
    return "\n".join(lines)


def run_menu(package: str, tools: Mapping[str, tuple[str, str]], aliases: Mapping[str, str],
             argv: Sequence[str] | None = None) -> int:
    """List ``tools`` (no argument, ``-h``), print the version (``--version``) or run ``TOOL ARGS...``.

    The tool sees ``sys.argv = ["python -m PACKAGE TOOL", *ARGS]``, so its usage line names the command as typed.
    Names may be given with dashes or a ``.py`` suffix (``wav-to-visemes``, ``tts2ue.py``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage(package, tools))
        return 0
    if args[0] == "--version":
        print(f"{package} {version()}")
        return 0
    name = args[0].removesuffix(".py").replace("-", "_")
    name = aliases.get(name, name)
    if name not in tools:
        print(f"python -m {package}: unknown tool {args[0]!r}; choose one of: {', '.join(tools)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(tools[name][0])
    except ModuleNotFoundError as err:
        if err.name == tools[name][0]:
            print(f"python -m {package}: the tool {name} ({err.name}.py) is not installed here; run it from the "
                  f"repository folder, or reinstall: pip install -e .", file=sys.stderr)
        else:  # one of the tool's optional dependencies (e.g. the server's fastapi)
            print(f"python -m {package} {name}: needs the Python package {err.name!r}; install the project's extras "
                  f"(pip install -e \".[all]\") or that package", file=sys.stderr)
        return 2
    sys.argv = [f"python -m {package} {name}", *args[1:]]
    return int(module.main() or 0)


def main(argv: Sequence[str] | None = None) -> int:
    return run_menu("bert_vits2", TOOLS, ALIASES, argv)


if __name__ == "__main__":
    sys.exit(main())
