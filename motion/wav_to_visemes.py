"""Speech -> Live Link Face curves: ``python ./motion/wav_to_visemes.py FILE [FILE|FOLDER ...]``.

Any audio (wav/flac/mp3/ogg/m4a/video, any rate, any channels) is made mono 44.1 kHz and run through an expression
head: by default the shipped mel head (works on a fresh machine), or a trained ``V_*.pth`` (``--head``); a z head also
needs the TTS model's posterior encoder (``--g-checkpoint`` + ``--config``, or an exported ``--posterior post_enc.pth``).
For each input it writes ``<name>.v.npy`` ([T, 61] float32, Live Link order), ``<name>.v.csv`` (the Live Link Face
app's CSV format) and ``<name>.v.json`` (names, fps, frame count, model, offset), beside the input or in --out-dir.
``--export-posterior post_enc.pth`` writes the posterior encoder of a G checkpoint alone (for other TTS engines).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".mp4", ".mov", ".mkv", ".webm")


def collect_inputs(paths: list[str]) -> list[Path]:
    """Files as given; folders expanded to their audio/video files (sorted, not recursive, skipping our outputs)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
        else:
            out.append(p)
    return out


def outputs_for(src: Path, out_dir: Path | None) -> tuple[Path, Path, Path]:
    base = (out_dir or src.parent) / src.stem
    return (base.with_name(base.name + ".v.npy"), base.with_name(base.name + ".v.csv"), base.with_name(base.name + ".v.json"))


def shift_frames(frames: np.ndarray, delay_s: float, fps: float) -> np.ndarray:
    """Delay (positive) or advance (negative) the curves by ``delay_s``, holding the edge frames."""
    if abs(delay_s) < 1e-9:
        return frames
    from motion.visemes_data import shift_face

    shifted, _ = shift_face(frames, np.ones(len(frames), bool), -delay_s, fps)
    return shifted


def convert_file(model, src: Path, out_dir: Path | None, fps: float, delay_ms: float, post: dict) -> tuple[Path, int]:
    from motion.features import load_tts_audio
    from motion.llf_csv import write_csv
    from motion.postprocess import postprocess

    audio = load_tts_audio(src)
    frames = model.audio_to_frames(audio, fps=fps)
    frames = shift_frames(frames, delay_ms / 1000.0, fps)
    frames = postprocess(frames, fps, **post)
    npy, csv, js = outputs_for(src, out_dir)
    npy.parent.mkdir(parents=True, exist_ok=True)
    tmp = npy.with_name(npy.name + ".part")
    with open(tmp, "wb") as f:
        np.save(f, frames.astype(np.float32))
    os.replace(tmp, npy)
    csv_written = abs(fps - round(fps)) < 1e-6
    if csv_written:
        write_csv(csv, frames, fps=int(round(fps)))
    else:
        logging.getLogger(__name__).warning("%s: no Live Link Face CSV at %g fps (its timecodes need a whole rate)", src, fps)
    from motion.arkit import NAMES

    meta = {
        "names": list(NAMES), "fps": fps, "num_frames": int(len(frames)), "duration_s": round(len(audio) / 44100, 6),
        "source": str(src), "model": str(model.path), "head": model.kind,
        "offset_s": {"training": model.offset_s, "applied_delay": delay_ms / 1000.0},
        "postprocess": post, "csv": csv.name if csv_written else None,
    }
    tmp = js.with_name(js.name + ".part")
    tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    os.replace(tmp, js)
    return npy, len(frames)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", help="audio/video files or folders of them")
    ap.add_argument("--head", default=None, help="head checkpoint (V_best.pth from train_ms.py --visemes); "
                    "default: the shipped mel head")
    ap.add_argument("--g-checkpoint", default=None, help="G_*.pth whose posterior encoder makes z (z heads)")
    ap.add_argument("-c", "--config", default="./configs/config.json", help="config of --g-checkpoint")
    ap.add_argument("--posterior", default=None, help="exported post_enc.pth instead of --g-checkpoint (z heads)")
    ap.add_argument("--speaker", default=None, help="speaker conditioning of the posterior encoder (as in training)")
    ap.add_argument("--fps", type=float, default=60.0, help="output frame rate (default 60)")
    ap.add_argument("-o", "--out-dir", default=None, help="output folder (default: beside each input)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="shift the curves later (positive) or earlier")
    ap.add_argument("--mirror", action="store_true", help="make left/right shapes symmetric")
    ap.add_argument("--blink", action="store_true", help="inject periodic blinks")
    ap.add_argument("--zero-rotations", action="store_true", help="set head/eye rotations to 0")
    ap.add_argument("--export-posterior", default=None, metavar="POST_ENC_PTH",
                    help="write the posterior encoder of --g-checkpoint to this file and exit")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from motion.audio import AudioLoadError
    from motion.expression import ExpressionModel

    try:
        if args.export_posterior:
            if not args.g_checkpoint:
                print("wav_to_visemes: --export-posterior needs --g-checkpoint G_*.pth (and --config)", file=sys.stderr)
                return 1
            from bert_vits2.hparams import load_hparams
            from motion.features import export_posterior, load_posterior_from_checkpoint

            enc = load_posterior_from_checkpoint(args.config, args.g_checkpoint, args.speaker)
            export_posterior(enc, args.export_posterior, dict(load_hparams(args.config).model))
            print(f"wrote {args.export_posterior}")
            return 0
        if not args.inputs:
            print("wav_to_visemes: give at least one audio file or folder", file=sys.stderr)
            return 1
        model = ExpressionModel.load(args.head, g_checkpoint=args.g_checkpoint, config=args.config,
                                     posterior=args.posterior, speaker=args.speaker)
        if model.kind == "z" and model.posterior is None:
            print("wav_to_visemes: this is a z head; give --g-checkpoint G_*.pth (+ --config) or --posterior post_enc.pth",
                  file=sys.stderr)
            return 1
        files = collect_inputs(args.inputs)
        if not files:
            print("wav_to_visemes: no audio files found in the given folders", file=sys.stderr)
            return 1
        post = {"do_mirror": args.mirror, "blink": args.blink, "zero_rotations": args.zero_rotations}
        out_dir = Path(args.out_dir) if args.out_dir else None
        failed = 0
        for src in files:
            try:
                npy, n = convert_file(model, src, out_dir, args.fps, args.delay_ms, post)
                print(f"{src} -> {npy} ({n} frames at {args.fps:g} fps)")
            except AudioLoadError as err:
                print(f"wav_to_visemes: {err}", file=sys.stderr)
                failed += 1
        return 1 if failed else 0
    except (FileNotFoundError, ValueError) as err:
        print(f"wav_to_visemes: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # errors from bert_vits2 / the head loader carry clear messages
        if type(err).__name__ in ("CheckpointError", "CheckpointNotFoundError", "ConfigError", "ConfigNotFoundError",
                                  "TrainError", "PosteriorEncoderError"):
            print(f"wav_to_visemes: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
