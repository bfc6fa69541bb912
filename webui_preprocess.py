"""Dataset-preparation web UI (upstream's ``webui_preprocess.py``): config -> resample -> transcription list ->
preprocess_text -> bert_gen -> the training command, with progress bars and the tools' reports in the page.

    python webui_preprocess.py                       # http://127.0.0.1:7861, dataset folder Data/mydata
    python webui_preprocess.py --dataset Data/myvoice --bert-dir bert

Serves on 127.0.0.1 only (--host 0.0.0.0 to expose it; --share for a public gradio link).
"""

from __future__ import annotations

import argparse
import os
import sys

from motion.inputs import cli_parser, port_number


def build_parser() -> argparse.ArgumentParser:
    p = cli_parser("webui_preprocess.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="Data/mydata", help="dataset folder shown first (default: %(default)s)")
    p.add_argument("--template-config", default=None,
                   help="config.json a new dataset starts from (default: this project's configs/config.json)")
    p.add_argument("-y", "--yml_config", "--yml-config", dest="yml_config", default="config.yml",
                   help="config.yml whose dataset_path step 1 sets (default: %(default)s)")
    p.add_argument("--bert-dir", default=None, help="folder holding the BERT folders (default: bert/)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, local only)")
    p.add_argument("--port", type=port_number, default=7861, help="port (default 7861)")
    p.add_argument("--share", action="store_true", help="create a public gradio share link (off by default)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from motion.cli import check_bind_host

    try:
        check_bind_host(args.host)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from bert_vits2.preprocess_ui import PreprocessSteps, build_app, launch

    steps = PreprocessSteps(args.template_config, args.yml_config, args.bert_dir)
    app = build_app(steps, args.dataset)
    print(f"dataset preparation UI on http://{args.host}:{args.port}")
    launch(app, args.host, args.port, args.share, block=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
