"""Prepare recorded takes for expression-head training: ``python ./motion/prepare_visemes.py``.

For every take in records/ (wav + npy + json): log-mel features (mel head) and, when a G checkpoint is found, z from
its posterior encoder (z head), face frames on a 60 fps grid with the audio<->face offset estimated and applied, and
filelists/train_visemes.list + val_visemes.list. Then: ``python train_ms.py -m MODEL --config CONFIG --visemes``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def find_generator(model: str) -> Path | None:
    """A G checkpoint: the file itself, or the newest G_*.pth in MODEL or MODEL/models."""
    from bert_vits2.checkpoint import latest_checkpoint_path

    p = Path(model)
    if p.is_file():
        return p
    for d in (p / "models", p):
        if d.is_dir():
            found = latest_checkpoint_path(d, "G_*.pth")
            if found:
                return Path(found)
    return None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("-m", "--model", default="OUTPUT_MODEL",
                    help="TTS model folder (newest G_*.pth in it or in its models/) or a G_*.pth file, for z features; "
                         "when none is found only mel features are made")
    ap.add_argument("-c", "--config", default="./configs/config.json", help="Bert-VITS2 config of that G checkpoint")
    ap.add_argument("--posterior", default=None, help="an exported post_enc.pth to use instead of a G checkpoint")
    ap.add_argument("--records", default="./records", help="folder of takes (<take>.wav + .npy + .json)")
    ap.add_argument("-o", "--output", default="./filelists", help="folder for train_visemes.list / val_visemes.list")
    ap.add_argument("--no-mel", action="store_true", help="do not compute mel features (z head only)")
    ap.add_argument("--no-z", action="store_true", help="do not compute z even if a G checkpoint exists")
    ap.add_argument("--n-mels", type=int, default=80, help="mel bands of the mel-head features (divisible by 4)")
    ap.add_argument("--z-mode", choices=("mean", "sample"), default="mean",
                    help="z = posterior mean m (deterministic) or a sample m + eps*exp(logs) (the original; augmentation)")
    ap.add_argument("--speaker", default=None, help="condition the posterior encoder on this speaker (name or id); "
                    "default none, as the original")
    ap.add_argument("--offset-ms", type=float, default=None,
                    help="audio->face offset to apply instead of the estimate (positive: the face lags the audio)")
    ap.add_argument("--max-offset-ms", type=float, default=300.0, help="search range of the offset estimate")
    ap.add_argument("--val-size", type=int, default=5, help="number of takes held out for validation")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the train/validation split")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from motion.features import PosteriorEncoderError, load_exported_posterior, load_posterior_from_checkpoint
    from motion.visemes_data import PrepareError, prepare

    posterior = None
    try:
        if not args.no_z:
            if args.posterior:
                posterior = load_exported_posterior(args.posterior)
            else:
                g = find_generator(args.model)
                if g is not None:
                    if not Path(args.config).is_file():
                        print(f"prepare_visemes: {args.config}: config not found (needed with the G checkpoint {g}); "
                              "pass -c/--config", file=sys.stderr)
                        return 1
                    print(f"posterior encoder from {g}")
                    posterior = load_posterior_from_checkpoint(args.config, g, args.speaker)
                else:
                    print(f"no G checkpoint at {args.model}: making mel features only (mel head)")
        if posterior is None and args.no_mel:
            print("prepare_visemes: --no-mel needs z features: give -m MODEL with a G checkpoint or --posterior",
                  file=sys.stderr)
            return 1
        report = prepare(
            args.records, args.output, posterior=posterior, mel=not args.no_mel, n_mels=args.n_mels,
            sample_z=args.z_mode == "sample", offset_ms=args.offset_ms, max_offset_s=args.max_offset_ms / 1000.0,
            val_size=args.val_size, seed=args.seed, progress=not args.quiet,
        )
    except (PrepareError, PosteriorEncoderError) as err:
        print(f"prepare_visemes: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # checkpoint/config errors from bert_vits2 carry their own clear messages
        name = type(err).__name__
        if name in ("CheckpointError", "CheckpointNotFoundError", "ConfigError", "ConfigNotFoundError", "TakeError"):
            print(f"prepare_visemes: {err}", file=sys.stderr)
            return 1
        raise
    for t in report.takes:
        est = "n/a" if t.offset_s is None else f"{t.offset_s * 1000:+.1f} ms"
        print(f"  {t.stem.name}: {t.duration_s:.1f} s, offset estimate {est}, dropped frames {t.gaps}")
    print(f"audio->face offset: {report.offset_s * 1000:+.1f} ms ({report.offset_source}); applied to all takes")
    print(f"{len(report.train)} training / {len(report.val)} validation takes -> {Path(args.output) / 'train_visemes.list'}, "
          f"{Path(args.output) / 'val_visemes.list'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
