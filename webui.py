"""Web UI: Bert-VITS2 text-to-speech with a face (ARKit / Live Link curves), audio -> face, send to Unreal / VMC.

    python webui.py                               # demo voice (eSpeak NG) when no model is given or found
    python webui.py --model-dir Data/myvoice/models --head Data/myvoice/models/V_best.pth

Serves on http://127.0.0.1:7860 (local only; --host 0.0.0.0 to expose it, --share for a public gradio link).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from bert_vits2.config_yml import YmlError, add_yml_argument, apply_webui_model, apply_yml, first_use
from motion.inputs import bounded_float, bounded_int, cli_parser, port_number, positive_float


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser("webui.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model-dir", help="voice folder with G_<step>.pth (newest is used), config.json and "
                   "optionally bert/<name>/ BERT folders; without it (or when nothing is found) the demo voice is used")
    p.add_argument("-c", "--config", help="config.json of the voice (default: MODEL_DIR/config.json or ../config.json)")
    p.add_argument("--checkpoint", help="explicit G_*.pth instead of the newest in --model-dir")
    p.add_argument("--bert-dir", help="folder holding chinese-roberta-wwm-ext-large/, deberta-v2-large-japanese-char-wwm/, "
                   "deberta-v3-large/ (default: MODEL_DIR/bert, then ./bert or $BV2_BERT_ROOT)")
    for lang in ("zh", "jp", "en"):
        p.add_argument(f"--bert-{lang}", help=f"explicit {lang.upper()} BERT folder")
    p.add_argument("--head", help="trained expression head V_*.pth (train_ms.py --visemes); default: the shipped "
                   "default mel head")
    p.add_argument("--no-default-head", action="store_true", help="without --head, use rule-based lip-sync from the "
                   "phone timings instead of the shipped default head")
    p.add_argument("--fps", type=positive_float, default=60.0, help="face frame rate of the outputs (default 60)")
    p.add_argument("--no-blink", action="store_true", help="do not inject periodic blinks")
    p.add_argument("--no-alive", action="store_true", help="no brows, nods, idle head/eye motion or pause-timed blinks "
                   "(the face then moves only what the head or lip-sync predicts)")
    p.add_argument("--seed", type=int, default=0, help="seed of the idle/alive motion (default 0)")
    p.add_argument("--outputs", help="where per-request output folders go (default: a new temporary folder)")
    p.add_argument("--device", default="cpu", help="torch device for the voice (cpu, cuda)")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="auto",
                   help="synthesis precision (BERT follows it): fp32 (exact), bf16 (faster decoder/flow, same "
                        "durations), auto (default: bf16 where the CPU/GPU has it natively and it measured faster at "
                        "load, else fp32)")
    p.add_argument("--bert-precision", choices=("auto", "fp32", "bf16", "int8"), default="auto",
                   help="the BERT's precision: auto (default: the generator's), fp32, bf16, or int8 (CPU: dynamic int8 "
                        "linears, about half the BERT's time; the audio differs slightly from fp32: see the README)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, local only)")
    p.add_argument("--port", type=port_number, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="create a public gradio share link (off by default)")
    g = p.add_argument_group("limits (one request must not block or fill the server)")
    g.add_argument("--max-chars", type=bounded_int(1, 1_000_000), default=2000,
                   help="characters of text per request (default 2000)")
    g.add_argument("--max-upload-mb", type=bounded_float(0.1, 10_000.0), default=50.0,
                   help="size of one uploaded file in MB (default 50)")
    g.add_argument("--max-audio-s", type=bounded_float(1.0, 86_400.0), default=600.0,
                   help="seconds of uploaded audio or synthesised speech per request (default 600)")
    g.add_argument("--queue-size", type=bounded_int(1, 10_000), default=16,
                   help="requests that may wait; more are told the server is busy (default 16)")
    g.add_argument("--concurrency", type=bounded_int(1, 64), default=1,
                   help="requests processed at once (default 1)")
    g.add_argument("--keep-outputs", type=bounded_float(0.0, 365 * 86_400.0), default=3600.0, metavar="SECONDS",
                   help="remove per-request output folders and gradio's cached files older than this "
                        "(default 3600; 0 keeps everything)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_yml_argument(p)
    return p


def _check_voice_files(args: argparse.Namespace) -> bool:
    """Whether a voice was asked for (--model-dir/--checkpoint/--config); raise ``ValueError`` saying which file is
    wrong when it cannot be one. Named on the command line and unusable is an error: the demo voice is only the
    fallback when no voice was named."""
    from pathlib import Path

    from bert_vits2.synthesis import find_model_files

    for option, value, kind in (("--model-dir", args.model_dir, "dir"), ("--checkpoint", args.checkpoint, "file"),
                                ("--config", args.config, "file")):
        if not value:
            continue
        p = Path(value)
        if not p.exists():
            raise ValueError(f"{option} {p}: no such {'folder' if kind == 'dir' else 'file'}")
        if kind == "dir" and not p.is_dir():
            raise ValueError(f"{option} {p} is a file, not a folder: give the folder holding G_<step>.pth and "
                             f"config.json (or pass a G_*.pth with --checkpoint)")
        if kind == "file" and not p.is_file():
            raise ValueError(f"{option} {p} is a folder, not a file")
    if not (args.model_dir or args.checkpoint or args.config):
        return False
    bert_dirs = {k: v for k, v in (("ZH", args.bert_zh), ("JP", args.bert_jp), ("EN", args.bert_en)) if v}
    files = find_model_files(args.model_dir, args.config, args.checkpoint, args.bert_dir, bert_dirs)
    missing = [s for s in files.status if s.required and not s.found]
    if missing:
        s = missing[0]
        raise ValueError(f"no {s.name} for the voice{f' (looked for {s.path})' if s.path else ''}: {s.how}")
    from bert_vits2.hparams import load_hparams

    load_hparams(files.config)  # a broken config.json is said now (ConfigError is a ValueError naming the file)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    voice_on_command_line = bool(args.model_dir or args.checkpoint or args.config)  # (not config.yml's defaults)
    if args.yml_config and first_use(args.yml_config, argv, "webui.py"):  # bare webui.py never writes config.yml
        return 0
    try:
        apply_yml(parser, args, argv, "webui")  # config.yml's webui section when present; command-line options win
    except (FileNotFoundError, YmlError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    apply_webui_model(args)
    try:
        from motion.cli import check_bind_host

        check_bind_host(args.host)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    explicit_voice = False
    try:
        explicit_voice = _check_voice_files(args) and voice_on_command_line
    except ValueError as err:
        if voice_on_command_line:  # asked for by name and unusable: say which file and why, start nothing
            print(f"error: {err}", file=sys.stderr)
            return 2
        logging.getLogger("webui").warning("the voice of config.yml is not usable: %s", err)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from motion.cli import user_error_types
    from motion.webui.app import WebUIConfig, build_app, launch

    bert_dirs = {k: v for k, v in (("ZH", args.bert_zh), ("JP", args.bert_jp), ("EN", args.bert_en)) if v}
    extra = {"precision": args.precision, "bert_precision": args.bert_precision}
    cfg = WebUIConfig(model_dir=args.model_dir, config=args.config, checkpoint=args.checkpoint, bert_dir=args.bert_dir,
                      bert_dirs=bert_dirs, head=args.head, outputs_dir=args.outputs, device=args.device, fps=args.fps,
                      blink=not args.no_blink, use_default_head=not args.no_default_head, alive=not args.no_alive,
                      seed=args.seed, max_chars=args.max_chars, max_upload_mb=args.max_upload_mb,
                      max_audio_s=args.max_audio_s, queue_size=args.queue_size, concurrency=args.concurrency,
                      keep_outputs_s=args.keep_outputs, **extra)
    try:
        app = build_app(cfg)
    except user_error_types() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    state = app.webui_state
    if explicit_voice and not any(k.startswith("Bert-VITS2") for k in state.voices):  # asked for, not loadable
        print(f"error: cannot load the voice {state.files.checkpoint}: {state.load_error or 'unknown error'}; fix the "
              f"file or start without --checkpoint/--model-dir for the demo voice", file=sys.stderr)
        return 2
    if not any(k.startswith("Bert-VITS2") for k in state.voices):
        logging.getLogger("webui").warning("no Bert-VITS2 voice loaded: using the demo voice (eSpeak NG)%s",
                                           f" ({state.load_error})" if state.load_error else "")
    print(f"outputs go to {state.outputs}")
    launch(app, args.host, args.port, args.share, block=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
