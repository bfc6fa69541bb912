"""Speech -> Live Link Face curves: ``python ./motion/wav_to_visemes.py FILE [FILE|FOLDER ...]``.

Any audio (wav/flac/mp3/ogg/m4a/video, any rate, any channels) is made mono 44.1 kHz and run through an expression
head: by default the shipped mel head (works on a fresh machine), or a trained ``V_*.pth`` (``--head``); a z head also
needs the TTS model's posterior encoder (``--g-checkpoint`` + ``--config``, or an exported ``--posterior post_enc.pth``).
For each input it writes ``<name>.v.npy`` ([T, 61] float32, Live Link order), ``<name>.v.csv`` (the Live Link Face
app's CSV format) and ``<name>.v.json`` (names, fps, frame count, model, offset), beside the input or in --out-dir
(``<name>.<ext>.v.*`` when two inputs share a name). The web UI's Audio → face tab gives the same curves.
``--emotion joy:0.7`` (or ``joy:0.5,surprise:0.3``) puts an emotion on the face (``motion.face.emotion``: joy, sadness,
anger, surprise, fear, disgust; lips still close on /p b m/).
``--export-posterior post_enc.pth`` writes the posterior encoder of a G checkpoint alone (for other TTS engines).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bert_vits2.fileio import refuse_overwriting_inputs
from motion.cli import run_cli
from motion.face.api import FaceMaker
from motion.face.convert import collect_inputs, convert_files, outputs_for
from motion.face.emotion import EMOTIONS, EmotionError, parse_emotion
from motion.inputs import cli_parser, finite_float, positive_float


def emotion_arg(text: str) -> str:
    """``joy``, ``joy:0.7`` or ``joy:0.5,surprise:0.3`` (checked here, so a typo is a usage error, not a traceback)."""
    try:
        parse_emotion(text)
    except EmotionError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    ap = cli_parser("wav_to_visemes.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", help="audio/video files or folders of them")
    ap.add_argument("--head", default=None, help="head checkpoint (V_best.pth from train_ms.py --visemes); "
                    "default: the shipped mel head")
    ap.add_argument("--g-checkpoint", default=None, help="G_*.pth whose posterior encoder makes z (z heads)")
    ap.add_argument("-c", "--config", default="./configs/config.json", help="config of --g-checkpoint")
    ap.add_argument("--posterior", default=None, help="exported post_enc.pth instead of --g-checkpoint (z heads)")
    ap.add_argument("--speaker", default=None, help="speaker conditioning of the posterior encoder (as in training)")
    ap.add_argument("--fps", type=positive_float, default=60.0, help="output frame rate (default 60)")
    ap.add_argument("-o", "--out-dir", default=None, help="output folder (default: beside each input)")
    ap.add_argument("--delay-ms", type=finite_float, default=0.0, help="shift the curves later (positive) or earlier")
    ap.add_argument("--mirror", action="store_true", help="make left/right shapes symmetric")
    ap.add_argument("--blink", action=argparse.BooleanOptionalAction, default=True,
                    help="add natural blinks where the head predicts none (default on)")
    ap.add_argument("--alive", action=argparse.BooleanOptionalAction, default=True,
                    help="blinks at pauses, brow raises and nods on accents, idle head and eye motion, where the head "
                         "predicts none (default on; --no-alive: only what the head predicts)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the alive motion (default 0: same input, same face)")
    ap.add_argument("--zero-rotations", action="store_true", help="set head/eye rotations to 0")
    ap.add_argument("--bilabial-finder", action=argparse.BooleanOptionalAction, default=True,
                    help="with the default head: seal the lips where a phone recogniser (PocketSphinx, if installed) "
                         "hears /p b m/ and the head's lips are nearly closed (default on; it closes most of the "
                         "bilabials of voices the head never heard: motion/assets/README.md)")
    ap.add_argument("--emotion", type=emotion_arg, default=None, metavar="NAME[:WEIGHT][,NAME:WEIGHT]",
                    help=f"an emotion on the face: {', '.join(EMOTIONS)}; weights 0..1, e.g. joy:0.7 (default none)")
    ap.add_argument("--emotion-intensity", type=finite_float, default=1.0,
                    help="scales the emotion, 0..2 (default 1)")
    ap.add_argument("--export-posterior", default=None, metavar="POST_ENC_PTH",
                    help="write the posterior encoder of --g-checkpoint to this file and exit")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap


def _refuse_outputs_over_inputs(files: list[Path], out_dir: Path | None, model_files: list) -> None:
    """The curve files of each input (named as :func:`motion.face.convert.convert_files` names them) must not be a
    model file given on the command line or the input itself."""
    stems: dict[tuple[Path, str], int] = {}
    for src in files:
        key = ((out_dir or src.parent).resolve(), src.stem)
        stems[key] = stems.get(key, 0) + 1
    for src in files:
        unique = stems[((out_dir or src.parent).resolve(), src.stem)] > 1
        outs = [("output", p) for p in outputs_for(src, out_dir, unique)]
        refuse_overwriting_inputs(outs, [*model_files, ("file", src)])


def run(args: argparse.Namespace) -> int:
    # features imports torch (~3 s): --help and argument errors need none
    from motion.face.features import export_posterior_from_checkpoint

    model_files = [("--g-checkpoint", args.g_checkpoint), ("--config", args.config), ("--head", args.head),
                   ("--posterior", args.posterior)]
    if args.export_posterior:
        if not args.g_checkpoint:
            raise ValueError("--export-posterior needs --g-checkpoint G_*.pth (and --config)")
        refuse_overwriting_inputs([("--export-posterior", args.export_posterior)], model_files)
        export_posterior_from_checkpoint(args.config, args.g_checkpoint, args.export_posterior, args.speaker)
        print(f"wrote {args.export_posterior}")
        return 0
    if not args.inputs:
        raise ValueError("give at least one audio file or folder")
    maker = FaceMaker(args.head, fps=args.fps, blink=args.blink, mirror=args.mirror,
                      zero_rotations=args.zero_rotations, delay_s=args.delay_ms / 1000.0,
                      alive=args.alive, seed=args.seed, emotion=args.emotion,
                      emotion_intensity=args.emotion_intensity, bilabial_finder=args.bilabial_finder,
                      g_checkpoint=args.g_checkpoint if args.head else None, config=args.config,
                      posterior=args.posterior, speaker=args.speaker)
    if maker.head_kind == "z" and maker.model.posterior is None:
        raise ValueError("this is a z head; give --g-checkpoint G_*.pth (+ --config) or --posterior post_enc.pth")
    if args.out_dir and Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise ValueError(f"--out-dir {args.out_dir}: is a file, not a folder; give a folder for the outputs")
    files = collect_inputs(args.inputs)
    if not files:
        raise ValueError("no audio files found in the given folders")
    _refuse_outputs_over_inputs(files, Path(args.out_dir) if args.out_dir else None, model_files)
    report = convert_files(maker, files, Path(args.out_dir) if args.out_dir else None)
    for src, npy, n in report.done:
        print(f"{src} -> {npy} ({n} frames at {args.fps:g} fps)")
    for src, reason in report.failed:
        print(f"wav_to_visemes: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_cli("wav_to_visemes", run, args)


if __name__ == "__main__":
    sys.exit(main())
