"""Bert-VITS2 Face HTTP / WebSocket server (upstream ``server_fastapi.py`` endpoints + faces + streaming).

    python server_fastapi.py --model-dir D [--model-dir D2 ...] --bert-dir ROOT --port 5000

Binds 127.0.0.1 unless told otherwise; any other address needs --token (or BV2_SERVER_TOKEN). Settings also come from
config.yml's ``server`` section (command-line options win). API docs at http://127.0.0.1:5000/docs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from motion.cli import run_cli
from motion.inputs import cli_parser, non_negative_int, port_number, positive_float, positive_int


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser("server_fastapi.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", action="append", default=None, metavar="D",
                   help="a voice folder (G_*.pth + config.json); repeat for more models (ids 0, 1, ...)")
    p.add_argument("--model-root", action="append", default=None, metavar="R",
                   help="folder whose voices /models/add and /models/get_local may use (default: the parents of the "
                        "--model-dir folders); repeatable")
    p.add_argument("--bert-dir", default=None, metavar="ROOT", help="folder holding the BERT model folders")
    p.add_argument("--language", default=None, help="default language of the models (ZH, JP, EN, mix, auto)")
    p.add_argument("--device", default=None, help="cpu (default) or cuda[:N]")
    p.add_argument("--precision", default="auto", choices=("fp32", "bf16", "auto"),
                   help="synthesis precision (BERT follows it): fp32 (exact), bf16 (faster decoder/flow where the CPU "
                        "or GPU has native bf16, same durations), auto (default: bf16 where the hardware has it "
                        "natively and it measured faster at load, else fp32)")
    p.add_argument("--bert-precision", default="auto", choices=("auto", "fp32", "bf16", "int8"),
                   help="the BERT's precision: auto (default: the generator's), fp32, bf16, or int8 (CPU: dynamic int8 "
                        "linears, about half the BERT's time and a shorter wait for the first audio; the features, so "
                        "the audio, differ slightly from fp32: see the README)")
    p.add_argument("--demo-voice", action="store_true", help="also serve the eSpeak NG demo voice (always when no "
                                                             "--model-dir is given)")
    p.add_argument("--head", default=None, help="trained expression head V_*.pth for the faces")
    p.add_argument("--no-alive", action="store_true", help="faces without blinks / head motion")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=None, help="port (default 5000)")
    p.add_argument("--token", default=None, help="API token clients must send (required for a non-loopback host; "
                                                  "or set BV2_SERVER_TOKEN)")
    p.add_argument("--max-queue", type=non_negative_int, default=None, help="requests allowed to wait (default 8)")
    p.add_argument("--workers", type=positive_int, default=None, help="requests synthesised at once (default 2)")
    p.add_argument("--max-chars", type=positive_int, default=None, help="characters per request (default 1000)")
    p.add_argument("--max-seconds", type=positive_float, default=None, help="seconds of speech per request (default 120)")
    p.add_argument("--push-host", action="append", default=None,
                   help="host a WebSocket client may ask the server to push faces to (default 127.0.0.1)")
    p.add_argument("--ws-idle-timeout", type=positive_float, default=None, metavar="S",
                   help="close a WebSocket that sends nothing for S seconds while the server waits for it (default 60)")
    p.add_argument("-y", "--yml-config", default="config.yml", help="config.yml with a 'server' section (optional)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def config_from_args(args: argparse.Namespace):
    from motion.server import ServerConfig, read_yaml_section

    values = read_yaml_section(args.yml_config)
    cli = {
        "model_dirs": args.model_dir, "model_roots": args.model_root, "bert_dir": args.bert_dir,
        "language": args.language, "device": args.device, "host": args.host, "port": args.port, "token": args.token,
        "max_queue": args.max_queue, "workers": args.workers, "max_chars": args.max_chars,
        "max_audio_s": args.max_seconds, "head": args.head, "livelink_hosts": args.push_host,
        "ws_idle_s": args.ws_idle_timeout,
    }
    if args.model_dir is not None:  # --model-dir replaces config.yml's models (each with its own file and language)
        values.pop("models", None)
    values.update({k: v for k, v in cli.items() if v is not None})
    values.update(precision=args.precision, bert_precision=args.bert_precision, demo_voice=args.demo_voice, face_alive=not args.no_alive,
                  log_level=args.log_level)
    return ServerConfig(**values)


def run(args: argparse.Namespace) -> int:
    from motion.server.app import serve

    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(levelname)s %(name)s: %(message)s")
    config = config_from_args(args)
    config.check()
    serve(config)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("server_fastapi.py", run, args)


if __name__ == "__main__":
    sys.exit(main())
