"""Export a Bert-VITS2 v2.3 voice to ONNX: six graphs (emb, enc_p, sdp, dp, flow, dec) for MoeVoiceStudio-style runtimes.

    python export_onnx.py --model-dir Data/myvoice/models --out onnx --name MyVoice [--check]

Writes <out>/<name>/<name>_<part>.onnx (opset 16, fp32, dynamic lengths). --check runs every graph with onnxruntime
on fresh lengths against the PyTorch model and fails when a graph differs by more than --tolerance.
The library is bert_vits2.onnx_export (input/output names and shapes are in its docstring).
"""

from __future__ import annotations

import argparse
import logging
import sys

from motion.inputs import cli_parser, non_negative_float


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser("export_onnx.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model-dir", help="voice folder with G_<step>.pth (newest is used) and config.json")
    p.add_argument("-c", "--config", help="config.json (default: MODEL_DIR/config.json)")
    p.add_argument("--checkpoint", help="explicit G_*.pth instead of the newest in --model-dir")
    p.add_argument("-o", "--out", default="onnx", help="output root folder (default ./onnx)")
    p.add_argument("-n", "--name", type=_graph_name, default="BertVits2", help="graph file prefix and sub-folder (default BertVits2)")
    p.add_argument("--check", action="store_true", help="compare every graph with PyTorch through onnxruntime")
    p.add_argument("--tolerance", type=non_negative_float, default=1e-4, help="max abs difference allowed by --check (1e-4)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _graph_name(text: str) -> str:
    """A plain file-name prefix: no folder parts, so the graphs stay inside ``--out``."""
    import os

    if not text.strip() or text in (".", "..") or "/" in text or "\\" in text or (os.altsep and os.altsep in text):
        raise argparse.ArgumentTypeError(f"{text!r} must be a plain name without folder parts (e.g. MyVoice); "
                                         f"use --out for the folder")
    return text


def _check_outputs(args: argparse.Namespace, files) -> None:
    """``--out`` is a folder (not a file) and no graph file would replace the checkpoint or config read."""
    from pathlib import Path

    from bert_vits2.fileio import refuse_overwriting_inputs
    from bert_vits2.onnx_export import PARTS

    out = Path(args.out)
    for folder in (out, out / args.name):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--out {folder} is a file, not a folder; give a folder for the graphs")
    graphs = [("output", out / args.name / f"{args.name}_{part}.onnx") for part in PARTS]
    refuse_overwriting_inputs(graphs, [("--checkpoint", files.checkpoint), ("--config", files.config)])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from bert_vits2.inference import load_model_for_inference
    from bert_vits2.onnx_export import check_export, export_onnx, load_sessions
    from bert_vits2.synthesis import find_model_files

    files = find_model_files(args.model_dir, args.config, args.checkpoint)
    if not files.complete:
        print("error: cannot find the voice:\n" + files.describe(), file=sys.stderr)
        return 2
    from bert_vits2.checkpoint import CheckpointError
    from bert_vits2.hparams import ConfigError

    try:
        _check_outputs(args, files)
        model, _ = load_model_for_inference(files.config, files.checkpoint, precision="fp32", fast=False)
    except (ValueError, ConfigError, CheckpointError) as err:  # one line naming the file, not a traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        paths = export_onnx(model, args.out, args.name)
    except OSError as err:  # a read-only or full disk: say where
        print(f"error: cannot write the graphs into {args.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    for part, path in paths.items():
        print(f"{part:6s} {path}")
    if args.check:
        diffs = check_export(model, load_sessions(paths))
        worst = max(diffs.values())
        print("max abs difference onnxruntime vs PyTorch: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
        if worst > args.tolerance:
            print(f"error: a graph differs by {worst:.2e} > {args.tolerance:.0e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
