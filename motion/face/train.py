"""Training the expression head (``python train_ms.py -m MODEL --config CONFIG --visemes``); the TTS stays frozen.

Data: the filelists written by ``motion/prepare_visemes.py`` (features [C, T] at 86.13 fps + face frames on a 60 fps
grid with a validity mask). Training crops random windows (batches > 1, padded, masked); predictions are interpolated
to the label frame centres; loss = masked, per-channel-weighted MSE (+ optional velocity term on frame differences).
Validation runs on EVERY validation take at full length and reports per-channel MAE and Pearson r for the mouth shapes.

Checkpoints ``V_{epoch}.pth`` and ``V_best.pth`` in the model folder hold ``model``, ``head_config``, ``optimizer``,
``step``, ``epoch``, ``learning_rate``, ``best_val``, ``feature`` (kind, n_mels, fps) and ``offset_s``; written
atomically and loadable with ``torch.load(weights_only=True)``. Training resumes from the newest ``V_*.pth`` and stops
early when validation has not improved for ``patience`` evaluations.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from bert_vits2.checkpoint import CheckpointError, atomic_torch_save, read_checkpoint
from bert_vits2.checkpoint_files import prune_checkpoints
from motion.arkit import INDEX, MOUTH_NAMES, NAMES, NUM_VALUES
from motion.face.evaluation import CLOSED
from motion.face.heads import (
    FEATURE_FPS,
    MAX_LOOKAHEAD_FRAMES,
    build_head,
    count_parameters,
    head_config,
    is_causal,
    lengths_mask,
)
from motion.face.model import latest_head_checkpoint
from motion.face.prepare import read_filelist

log = logging.getLogger(__name__)

HEAD_CHANNELS = [INDEX[n] for n in ("HeadYaw", "HeadPitch", "HeadRoll")]
_JAW, _CLOSE = INDEX["JawOpen"], INDEX["MouthClose"]
EVAL_NAMES = ("JawOpen", "MouthClose", "MouthFunnel", "MouthPucker", "MouthSmileLeft", "MouthStretchLeft",
              "MouthLowerDownLeft", "MouthRollLower")


class TrainError(RuntimeError):
    """Training cannot start or continue; the message says what to do."""


class NonFiniteLossError(TrainError):
    """The training loss became NaN/inf: names the step and the clips of the batch (those with non-finite data first)."""

    def __init__(self, step: int, loss: float, clips: Sequence["Clip"]) -> None:
        bad = [c.name for c in clips if not (np.isfinite(c.features).all() and np.isfinite(c.frames[c.valid]).all())]
        if bad:
            why = f"clip(s) {', '.join(bad)} hold NaN/inf features or labels: re-run prepare_visemes.py or remove them"
        else:
            why = (f"clip(s) {', '.join(c.name for c in clips)}: the data is finite, so the run diverged: lower --lr "
                   f"or keep gradient clipping on")
        super().__init__(f"non-finite training loss ({loss}) at step {step}, {why}; stopped without saving")
        self.step, self.loss, self.clips = step, loss, bad or [c.name for c in clips]


#: feature frames a causal head reads before a training crop's first label (0.5 s): its GRU starts warm, as live
CAUSAL_WARMUP_FRAMES = 43


@dataclass
class Clip:
    """One take: features [C, T] at ``FEATURE_FPS``, face [M, 61] at ``label_fps`` and valid [M]."""

    name: str
    features: np.ndarray
    frames: np.ndarray
    valid: np.ndarray
    label_fps: float = 60.0


@dataclass
class TrainOptions:
    epochs: int = 3000
    batch_size: int = 8
    crop_s: float = 4.0
    learning_rate: float | None = None  # None: 1e-3 for the mel head, 2e-4 (the original's) for the z head
    betas: tuple[float, float] = (0.8, 0.99)
    eps: float = 1e-9
    lr_decay: float = 0.99995
    weight_decay: float = 0.01
    eval_interval: int = 10  # epochs
    patience: int = 20  # evaluations without improvement before stopping; 0 = never stop early
    velocity_weight: float = 0.0
    lip_gap_weight: float = 0.0  # extra L1 loss on the lip gap JawOpen - MouthClose (0 = off); see masked_loss
    closure_weight: float = 0.0  # extra loss where the target's lips touch and the prediction's do not; see masked_loss
    head_weight: float = 1.0  # loss weight of head yaw/pitch/roll (0 = off)
    eye_weight: float = 1.0  # loss weight of eye shapes and eye rotations (0 = off)
    seed: int = 1234
    max_minutes: float | None = None
    resume: bool = True
    keep_checkpoints: int = 3
    grad_clip: float = 5.0
    log_interval: int = 1  # epochs between training-loss log lines
    tensorboard: bool = True
    feature_noise: float = 0.0  # std of Gaussian noise added to features in training
    num_threads: int | None = None  # torch intra-op threads (None: leave torch's setting)


def channel_weights(head_weight: float, eye_weight: float) -> torch.Tensor:
    """Per-channel loss weights [61]: 1 for face shapes, the given weights for head and eye channels."""
    w = torch.ones(NUM_VALUES)
    for i, n in enumerate(NAMES):
        if i in HEAD_CHANNELS:
            w[i] = head_weight
        elif n.startswith("Eye") or n.startswith(("LeftEye", "RightEye")):
            w[i] = eye_weight
    return w


# --- data ---------------------------------------------------------------------------------------------------------


def load_clips(filelist: str | Path, kind: str) -> list[Clip]:
    """Clips from a prepared filelist for a head ``kind`` ('z' or 'mel')."""
    path = Path(filelist)
    if not path.is_file():
        raise TrainError(f"{path}: filelist not found; run `python motion/prepare_visemes.py` first")
    clips = []
    for entry in read_filelist(path):
        feat_path = entry["z"] if kind == "z" else entry["mel"]
        if not feat_path:
            need = "a G checkpoint (-m/--model, --config)" if kind == "z" else "mel features (do not pass --no-mel)"
            raise TrainError(f"{path}: a take has no {kind} features; re-run prepare_visemes.py with {need}, or pick "
                             f"the other head with --head {'mel' if kind == 'z' else 'z'}")
        try:
            face = np.load(entry["face"], allow_pickle=False)
            feats = np.load(feat_path, allow_pickle=False)
            clip = Clip(Path(entry["face"]).name.removesuffix(".face.npz"), feats, face["frames"].astype(np.float32),
                        face["valid"].astype(bool), float(face["fps"]))
        except (OSError, KeyError, ValueError) as err:
            raise TrainError(f"{path}: cannot read {entry['face']} / {feat_path} ({err}); re-run prepare_visemes.py") from None
        if clip.features.ndim != 2 or clip.frames.ndim != 2 or clip.frames.shape[1] != NUM_VALUES:
            raise TrainError(f"{feat_path}: unexpected shapes {clip.features.shape} / {clip.frames.shape}; re-run prepare_visemes.py")
        clips.append(clip)
    return clips


def _crop(clip: Clip, crop_s: float, rng: np.random.Generator, left: int = 0,
          right: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random window: features [C, Lf], label frames [K, 61], valid [K], label positions in feature frames [K].

    ``left``/``right``: extra feature frames each side (a causal head's warm-up before the first label and the
    lookahead after the last, so a crop's last frames see the real future as they will live)."""
    m = clip.frames.shape[0]
    k = min(m, max(1, int(round(crop_s * clip.label_fps))))
    k0 = int(rng.integers(0, m - k + 1))
    times = (np.arange(k0, k0 + k) + 0.5) / clip.label_fps
    t_f = clip.features.shape[1]
    f0 = max(0, int(math.floor(times[0] * FEATURE_FPS - 0.5)) - 2 - int(left))
    f1 = min(t_f, int(math.ceil(times[-1] * FEATURE_FPS - 0.5)) + 3 + int(right))
    f0 = min(f0, max(0, f1 - 1))
    pos = times * FEATURE_FPS - 0.5 - f0
    return clip.features[:, f0:f1], clip.frames[k0:k0 + k], clip.valid[k0:k0 + k], pos


def _full(clip: Clip) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    m = clip.frames.shape[0]
    pos = (np.arange(m) + 0.5) / clip.label_fps * FEATURE_FPS - 0.5
    return clip.features, clip.frames, clip.valid, pos


def collate(items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Pad a list of (features, frames, valid, positions) into a batch."""
    b = len(items)
    c = items[0][0].shape[0]
    tf = max(i[0].shape[1] for i in items)
    k = max(i[1].shape[0] for i in items)
    x = torch.zeros(b, c, tf)
    y = torch.zeros(b, k, NUM_VALUES)
    mask = torch.zeros(b, k, dtype=torch.bool)
    pos = torch.zeros(b, k, dtype=torch.float64)
    lengths = torch.zeros(b, dtype=torch.long)
    for j, (f, fr, v, p) in enumerate(items):
        x[j, :, : f.shape[1]] = torch.from_numpy(f)
        y[j, : fr.shape[0]] = torch.from_numpy(fr)
        mask[j, : fr.shape[0]] = torch.from_numpy(v)
        pos[j, : fr.shape[0]] = torch.from_numpy(p)
        lengths[j] = f.shape[1]
    return {"x": x, "y": y, "mask": mask, "pos": pos, "lengths": lengths}


def sample_predictions(pred: torch.Tensor, pos: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``pred [B, 61, T]`` at fractional feature positions ``pos [B, K]`` -> [B, K, 61]."""
    hi_lim = (lengths - 1).clamp(min=0).to(pos.dtype)[:, None]
    p = torch.minimum(pos.clamp(min=0.0), hi_lim)
    lo = p.floor().long()
    hi = torch.minimum(lo + 1, (lengths - 1).clamp(min=0)[:, None])
    w = (p - lo.to(p.dtype)).to(pred.dtype)[:, :, None]
    pt = pred.transpose(1, 2)  # [B, T, 61]
    g_lo = torch.gather(pt, 1, lo[:, :, None].expand(-1, -1, pt.shape[2]))
    g_hi = torch.gather(pt, 1, hi[:, :, None].expand(-1, -1, pt.shape[2]))
    return g_lo * (1.0 - w) + g_hi * w


def masked_loss(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, velocity_weight: float = 0.0,
                lip_gap_weight: float = 0.0, closure_weight: float = 0.0) -> torch.Tensor:
    """Weighted MSE over valid frames (+ velocity term on consecutive valid frames); all [B, K, 61] / [B, K].

    ``lip_gap_weight`` adds an L1 term on the lip gap ``JawOpen - MouthClose`` (ARKit: the lips touch when it is 0).
    MSE on the two shapes separately is content with a gap of a few hundredths at /p b m/, which reads as lips
    that never quite close; L1 on the gap itself pulls it to the target's exact 0.

    ``closure_weight`` adds, over the frames where the target's lips touch (gap at most ``CLOSED``), the mean amount
    by which the predicted gap is wider than the target's: one-sided, so it only asks for closures the target makes.
    Closures are a few percent of the frames and a miss is what a viewer sees at /p b m/, so a mean over all frames
    (the two terms above) barely feels them."""
    m = mask.to(pred.dtype)[:, :, None]
    wsum = (m * weights[None, None, :]).sum().clamp(min=1.0)
    loss = ((pred - y) ** 2 * m * weights).sum() / wsum
    if lip_gap_weight > 0:
        gap = (pred[..., _JAW] - pred[..., _CLOSE]) - (y[..., _JAW] - y[..., _CLOSE])
        loss = loss + lip_gap_weight * (gap.abs() * m[..., 0]).sum() / m.sum().clamp(min=1.0)
    if closure_weight > 0:
        target_gap = y[..., _JAW] - y[..., _CLOSE]
        closed = m[..., 0] * (target_gap <= CLOSED).to(pred.dtype)
        wider = torch.relu((pred[..., _JAW] - pred[..., _CLOSE]) - target_gap.clamp(min=0.0))
        loss = loss + closure_weight * (wider * closed).sum() / closed.sum().clamp(min=1.0)
    if velocity_weight > 0 and pred.shape[1] > 1:
        mv = (mask[:, 1:] & mask[:, :-1]).to(pred.dtype)[:, :, None]
        dv = (pred[:, 1:] - pred[:, :-1]) - (y[:, 1:] - y[:, :-1])
        loss = loss + velocity_weight * (dv ** 2 * mv * weights).sum() / (mv * weights[None, None, :]).sum().clamp(min=1.0)
    return loss


# --- evaluation ---------------------------------------------------------------------------------------------------


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of prediction ``a`` against target ``b``: nan where the target never moves (r is undefined: the
    shape is constant in this data), 0 where only the prediction is flat."""
    if len(a) < 3 or b.std() < 1e-8:
        return float("nan")
    if a.std() < 1e-8:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def format_r(value: float) -> str:
    """An r for reports: ``0.912``, or "constant in this data" for a shape that never moves in the targets."""
    return f"{value:.3f}" if np.isfinite(value) else "constant in this data"


@torch.no_grad()
def evaluate(model: torch.nn.Module, clips: Sequence[Clip], weights: torch.Tensor) -> dict[str, Any]:
    """Every clip at full length: weighted masked MSE, per-channel MAE (all 61), Pearson r per mouth shape, and the
    share of the frames where the target's lips touch in which the prediction's touch too (``closed_recall``)."""
    model.eval()
    preds, targets = [], []
    loss_sum, n = 0.0, 0
    for clip in clips:
        batch = collate([_full(clip)])
        out = model(batch["x"], batch["lengths"])
        p = sample_predictions(out, batch["pos"], batch["lengths"])
        loss_sum += float(masked_loss(p, batch["y"], batch["mask"], weights)) * int(batch["mask"].sum())
        n += int(batch["mask"].sum())
        v = batch["mask"][0].numpy()
        preds.append(p[0].numpy()[v])
        targets.append(batch["y"][0].numpy()[v])
    if n == 0:
        return {"loss": float("nan"), "mae": {}, "r": {}, "frames": 0}
    pr, tg = np.concatenate(preds), np.concatenate(targets)
    mae = {name: float(np.abs(pr[:, i] - tg[:, i]).mean()) for i, name in enumerate(NAMES)}
    r = {name: pearson(pr[:, INDEX[name]], tg[:, INDEX[name]]) for name in MOUTH_NAMES}
    mouth = [INDEX[nm] for nm in MOUTH_NAMES]
    closed = tg[:, _JAW] - tg[:, _CLOSE] <= CLOSED
    recall = float((pr[closed, _JAW] - pr[closed, _CLOSE] <= CLOSED).mean()) if closed.any() else float("nan")
    return {"loss": loss_sum / n, "mae": mae, "r": r, "frames": int(len(pr)),
            "mouth_mae": float(np.abs(pr[:, mouth] - tg[:, mouth]).mean()), "closed_recall": recall}


# --- checkpoints --------------------------------------------------------------------------------------------------


# --- training -----------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    best_path: Path | None
    best_val: float
    epochs_run: int
    last_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    final_metrics: dict[str, Any] = field(default_factory=dict)
    stopped: str = ""


@dataclass
class _RunState:
    """What a training run carries from epoch to epoch, and what its checkpoints store besides the weights."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    config: dict[str, Any]
    feature: dict[str, Any]
    offset_s: float | None
    start_epoch: int = 1
    step: int = 0
    best_val: float = float("inf")
    bad_evals: int = 0


def _make_optimizer(model: torch.nn.Module, lr: float, options: TrainOptions) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=options.betas, eps=options.eps, weight_decay=options.weight_decay)


def _setup_or_resume(config: dict[str, Any], lr: float, model_dir: Path, options: TrainOptions,
                     feature: dict[str, Any], offset_s: float | None) -> _RunState:
    """A fresh head of ``config`` and its optimizer; with ``options.resume``, the newest ``V_*.pth`` restored."""
    model = build_head(config)
    state = _RunState(model, _make_optimizer(model, lr, options), config, feature, offset_s)
    latest = latest_head_checkpoint(model_dir) if options.resume else None
    if latest is None:
        return state

    try:  # safe load with a one-line reason (not weights, truncated, a pickle that runs code)
        ckpt = read_checkpoint(latest)
    except CheckpointError as err:
        raise TrainError(f"{err}; move it out of {model_dir} or pass --no-resume") from None
    head_config = ckpt.get("head_config")
    if not isinstance(head_config, dict):
        raise TrainError(f"{latest}: not a head checkpoint of train_ms.py --visemes (no head_config); move it out of "
                         f"{model_dir} or pass --no-resume")
    if head_config.get("type") != config["type"]:
        raise TrainError(f"{latest}: holds a {head_config.get('type')} head but a {config['type']} "
                         "head was asked for; use another -m folder or pass --no-resume")
    if bool(head_config.get("causal")) != bool(config.get("causal")):
        have, want = (("a causal" if c else "an offline") for c in (head_config.get("causal"), config.get("causal")))
        raise TrainError(f"{latest}: holds {have} head but {want} head was asked for (--causal); use another -m "
                         "folder or pass --no-resume")
    try:
        model = build_head(head_config)
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise TrainError(f"{latest}: its weights do not fit the head it declares ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:120]}); move it out of {model_dir} or pass --no-resume") from None
    state.model, state.opt = model, _make_optimizer(model, lr, options)
    try:
        state.opt.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as err:
        log.warning("%s: optimizer state not restored (%s)", latest, err)
    state.start_epoch = int(ckpt["epoch"]) + 1
    state.step = int(ckpt.get("step", 0))
    state.best_val = float(ckpt.get("best_val", float("inf")))
    state.bad_evals = int(ckpt.get("bad_evals", 0))
    log.info("resuming from %s (epoch %d, step %d)", latest, state.start_epoch - 1, state.step)
    return state


def _open_tensorboard(model_dir: Path, options: TrainOptions):
    """A SummaryWriter on ``model_dir/eval_visemes``, or None (off, or TensorBoard unavailable)."""
    if not options.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter  # tensorboard: ~5 s import, only with --tensorboard

        return SummaryWriter(str(model_dir / "eval_visemes"))
    except Exception as err:  # noqa: BLE001 - TensorBoard is optional
        log.warning("TensorBoard logging off (%s)", err)
        return None


def _progress_bar(epochs: range, progress: bool):
    return tqdm(epochs, desc="visemes", disable=not progress)


def _train_one_epoch(state: _RunState, clips: Sequence[Clip], options: TrainOptions, weights: torch.Tensor,
                     rng: np.random.Generator) -> float:
    """One pass over the shuffled clips in batches of random crops; returns the mean batch loss."""
    model, opt = state.model, state.opt
    model.train()
    n_batches = max(1, math.ceil(len(clips) / options.batch_size))
    order = rng.permutation(len(clips))
    total = 0.0
    causal = is_causal(model)
    left, right = (CAUSAL_WARMUP_FRAMES, int(getattr(model, "lookahead", 0))) if causal else (0, 0)
    for bi in range(n_batches):
        idx = order[bi * options.batch_size:(bi + 1) * options.batch_size]
        if len(idx) == 0:
            continue
        batch = collate([_crop(clips[i], options.crop_s, rng, left, right) for i in idx])
        x = batch["x"]
        if options.feature_noise > 0:
            x = x + options.feature_noise * torch.randn_like(x) * lengths_mask(batch["lengths"], x.shape[0], x.shape[2])[:, None]
        out = model(x, batch["lengths"])
        pred = sample_predictions(out, batch["pos"], batch["lengths"])
        loss = masked_loss(pred, batch["y"], batch["mask"], weights, options.velocity_weight, options.lip_gap_weight,
                           options.closure_weight)
        if not torch.isfinite(loss):  # stop before a NaN reaches the weights (and a checkpoint)
            raise NonFiniteLossError(state.step + 1, float(loss.detach()), [clips[i] for i in idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if options.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
        opt.step()
        state.step += 1
        total += float(loss.detach())
    return total / n_batches


def _save_head_checkpoint(state: _RunState, epoch: int, path: Path, metrics: dict[str, Any] | None = None) -> None:
    atomic_torch_save({
        "model": state.model.state_dict(), "head_config": dict(state.model.config), "optimizer": state.opt.state_dict(),
        "step": state.step, "epoch": epoch, "learning_rate": float(state.opt.param_groups[0]["lr"]),
        "best_val": state.best_val, "bad_evals": state.bad_evals, "feature": dict(state.feature),
        "offset_s": state.offset_s, "names": list(NAMES),
        "val_metrics": None if metrics is None else {"loss": metrics["loss"], "r": metrics["r"], "mae": metrics["mae"]},
    }, path)


def _log_metrics(writer, metrics: dict[str, Any], step: int) -> None:
    if writer is None:
        return
    writer.add_scalar("val/loss", metrics["loss"], step)
    writer.add_scalar("val/mouth_mae", metrics.get("mouth_mae", float("nan")), step)
    for name in EVAL_NAMES:
        if np.isfinite(metrics["r"].get(name, float("nan"))):
            writer.add_scalar(f"val_r/{name}", metrics["r"][name], step)


def _evaluate_and_checkpoint(state: _RunState, epoch: int, eval_clips: Sequence[Clip], weights: torch.Tensor,
                             model_dir: Path, options: TrainOptions, writer, result: TrainResult) -> None:
    """Evaluate; save ``V_best.pth`` when the loss improved (else count a bad evaluation), always ``V_{epoch}.pth``
    (pruning old ones); record the metrics in ``result``."""
    metrics = evaluate(state.model, eval_clips, weights)
    result.history.append({"epoch": epoch, "step": state.step, "val_loss": metrics["loss"], "mouth_mae": metrics.get("mouth_mae")})
    _log_metrics(writer, metrics, state.step)
    if metrics["loss"] < state.best_val - 1e-7:
        state.best_val, state.bad_evals = metrics["loss"], 0
        best_path = model_dir / "V_best.pth"
        _save_head_checkpoint(state, epoch, best_path, metrics)
        result.best_path = best_path
    else:
        state.bad_evals += 1
    _save_head_checkpoint(state, epoch, model_dir / f"V_{epoch}.pth", metrics)
    _prune(model_dir, options.keep_checkpoints)
    log.info("epoch %d: val loss %.5f (best %.5f), mouth MAE %.4f, r JawOpen %s, closed frames kept closed %.3f", epoch,
             metrics["loss"], state.best_val, metrics.get("mouth_mae", float("nan")),
             format_r(metrics["r"].get("JawOpen", float("nan"))), metrics.get("closed_recall", float("nan")))
    result.final_metrics = metrics


def train_head(
    train_clips: Sequence[Clip],
    val_clips: Sequence[Clip],
    config: dict[str, Any],
    model_dir: str | Path,
    options: TrainOptions | None = None,
    feature_info: dict[str, Any] | None = None,
    offset_s: float | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a head of ``config`` on clips; checkpoints into ``model_dir``. Returns where the best model is."""
    options = options if options is not None else TrainOptions()
    if not train_clips:
        raise TrainError("no training clips; run prepare_visemes.py (and check filelists/train_visemes.list)")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if options.num_threads:
        torch.set_num_threads(options.num_threads)
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    config = dict(config)
    config["n_mels" if config.get("type") == "mel" else "in_channels"] = train_clips[0].features.shape[0]
    lr = options.learning_rate or (1e-3 if config["type"] == "mel" else 2e-4)
    feature = dict(feature_info or {"kind": config["type"], "fps": FEATURE_FPS})
    state = _setup_or_resume(config, lr, model_dir, options, feature, offset_s)
    weights = channel_weights(options.head_weight, options.eye_weight)
    sched = torch.optim.lr_scheduler.ExponentialLR(state.opt, options.lr_decay)
    for g in state.opt.param_groups:  # restore the decayed rate on resume (one decay per finished epoch)
        g["lr"] = lr * options.lr_decay ** (state.start_epoch - 1)
    log.info("%s head, %d parameters, %d train / %d val takes", config["type"], count_parameters(state.model),
             len(train_clips), len(val_clips))
    writer = _open_tensorboard(model_dir, options)
    t_start = time.monotonic()
    result = TrainResult(None, state.best_val, 0, state.start_epoch - 1)
    if (model_dir / "V_best.pth").is_file():
        result.best_path = model_dir / "V_best.pth"

    for epoch in _progress_bar(range(state.start_epoch, options.epochs + 1), progress):
        try:
            train_loss = _train_one_epoch(state, train_clips, options, weights, rng)
        except NonFiniteLossError as err:
            raise TrainError(f"epoch {epoch}: {err}") from None
        if not all(torch.isfinite(p).all() for p in state.model.parameters()):  # never checkpoint NaN weights
            raise TrainError(f"epoch {epoch}, step {state.step}: the weights became NaN/inf (the run diverged): lower "
                             f"--lr or keep gradient clipping on; stopped without saving")
        sched.step()
        result.epochs_run += 1
        result.last_epoch = epoch
        if writer is not None:
            writer.add_scalar("train/loss", train_loss, state.step)
        if epoch % options.log_interval == 0:
            log.info("epoch %d step %d train loss %.5f", epoch, state.step, train_loss)
        out_of_time = options.max_minutes is not None and (time.monotonic() - t_start) / 60.0 >= options.max_minutes
        if epoch % options.eval_interval == 0 or epoch == options.epochs or out_of_time:
            _evaluate_and_checkpoint(state, epoch, val_clips or train_clips, weights, model_dir, options, writer, result)
            if options.patience and state.bad_evals >= options.patience:
                result.stopped = f"early stop: no improvement for {state.bad_evals} evaluations"
                break
        if out_of_time:
            result.stopped = f"time limit of {options.max_minutes} min reached"
            break
    else:
        result.stopped = result.stopped or "all epochs done"
    if writer is not None:
        writer.close()
    result.best_val = state.best_val
    return result


def _prune(model_dir: Path, keep: int) -> None:
    prune_checkpoints(model_dir, keep, sort_by="step", prefixes=("V",))


# --- train_ms.py --visemes ----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``train_ms.py --visemes`` (beside the shared -m/--model and -c/--config)."""
    g = parser.add_argument_group("expression head (--visemes)")
    g.add_argument("--head", choices=("auto", "z", "mel"), default="auto",
                   help="head type: z (the original, needs z features) or mel (CRNN on log-mel); auto = z if prepared")
    g.add_argument("--train-list", default="filelists/train_visemes.list")
    g.add_argument("--val-list", default="filelists/val_visemes.list")
    g.add_argument("--epochs", type=int, default=3000)
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--crop-s", type=float, default=4.0, help="length of the random training windows in seconds")
    g.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3 mel, 2e-4 z)")
    g.add_argument("--eval-interval", type=int, default=10, help="epochs between evaluations/checkpoints")
    g.add_argument("--patience", type=int, default=20, help="evaluations without improvement before stopping (0 = off)")
    g.add_argument("--velocity-weight", type=float, default=0.0, help="weight of the frame-difference loss term")
    g.add_argument("--lip-gap-weight", type=float, default=0.0,
                   help="weight of an L1 term on JawOpen - MouthClose (helps the lips close fully on /p b m/)")
    g.add_argument("--head-weight", type=float, default=1.0, help="loss weight of head rotations (0 = ignore them)")
    g.add_argument("--eye-weight", type=float, default=1.0, help="loss weight of eye shapes/rotations (0 = ignore them)")
    g.add_argument("--causal", action="store_true",
                   help="a causal mel head for live use (motion/face/live.py, live_face.py): causal convolutions and "
                        "a one-way GRU that waits --lookahead-frames frames (default 4 = 46 ms; 81 ms in all with the "
                        "STFT)")
    g.add_argument("--lookahead-frames", type=int, default=None,
                   help="with --causal: frames of future audio (11.6 ms each, 0-5) a frame waits for")
    g.add_argument("--no-transformer", action="store_true", help="z head without its transformer (1.3 M parameters)")
    g.add_argument("--rnn", choices=("lstm", "gru"), default=None, help="z head recurrent layer (default lstm)")
    g.add_argument("--max-minutes", type=float, default=None, help="stop after this much wall-clock time")
    g.add_argument("--no-resume", action="store_true", help="start fresh even if V_*.pth exist")
    g.add_argument("--seed", type=int, default=1234)
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def model_dir_for(model: str) -> Path:
    """``-m X`` -> ``X/models`` (where upstream keeps G_*.pth; the head's V_*.pth go beside them)."""
    return Path(model) / "models"


def run_from_args(args: argparse.Namespace) -> int:
    """What ``train_ms.py --visemes`` does; returns the exit code."""
    kind = args.head
    causal = bool(getattr(args, "causal", False))
    if causal and kind == "z":
        raise TrainError("--causal needs a mel head (the z head reads whole clips); drop --head z or use --head mel")
    if causal:
        kind = "mel"
    if kind == "auto":
        first = Path(args.train_list)
        if not first.is_file():
            raise TrainError(f"{first}: filelist not found; run `python motion/prepare_visemes.py` first")

        entries = read_filelist(first)
        kind = "z" if entries and all(e["z"] for e in entries) else "mel"
    overrides: dict[str, Any] = {}
    cfg_path = Path(args.config) if args.config else None
    if cfg_path is not None and cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise TrainError(f"{cfg_path}: unreadable config ({err})") from None
        overrides.update(cfg.get("visemes", {}).get(f"{kind}_head", {}))
    if causal:
        look = getattr(args, "lookahead_frames", None)
        if look is not None and not 0 <= look <= MAX_LOOKAHEAD_FRAMES:
            raise TrainError(f"--lookahead-frames must be 0..{MAX_LOOKAHEAD_FRAMES} (at most 100 ms), got {look}")
        overrides.update({"causal": True, "lookahead_frames": look})
    if kind == "z":
        if args.no_transformer:
            overrides["use_transformer"] = False
        if args.rnn:
            overrides["rnn"] = args.rnn
    train = load_clips(args.train_list, kind)
    val = load_clips(args.val_list, kind) if Path(args.val_list).is_file() else []
    if causal:  # a live head reads the level-normalised log-mel of the audio so far: train on the same
        from motion.face.features import online_from_offline

        for clip in (*train, *val):
            clip.features = online_from_offline(clip.features)
    if not val:
        log.warning("no validation takes: evaluating on the training takes (pass --val-size to prepare_visemes.py)")
    prep = Path(args.train_list).with_name("visemes_prepare.json")
    offset = json.loads(prep.read_text())["offset_s"] if prep.is_file() else None
    opts = TrainOptions(
        epochs=args.epochs, batch_size=args.batch_size, crop_s=args.crop_s, learning_rate=args.lr,
        eval_interval=args.eval_interval, patience=args.patience, velocity_weight=args.velocity_weight,
        lip_gap_weight=args.lip_gap_weight,
        head_weight=args.head_weight, eye_weight=args.eye_weight, seed=args.seed, max_minutes=args.max_minutes,
        resume=not args.no_resume, num_threads=args.threads,
    )
    info = {"kind": kind, "fps": FEATURE_FPS, "n_mels": int(train[0].features.shape[0]) if kind == "mel" else None}
    res = train_head(train, val, head_config(kind, **overrides), model_dir_for(args.model), opts, info, offset)
    print(f"expression head training finished ({res.stopped}); best validation loss {res.best_val:.5f}; "
          f"best model: {res.best_path}")
    if res.final_metrics.get("r"):
        r = res.final_metrics["r"]
        print("last evaluation, Pearson r: " + ", ".join(f"{n} {format_r(r[n])}" for n in EVAL_NAMES if n in r))
    return 0


__all__ = [
    "Clip", "TrainError", "TrainOptions", "TrainResult", "add_arguments", "channel_weights", "collate", "evaluate",
    "format_r", "load_clips", "masked_loss", "model_dir_for", "pearson",
    "run_from_args", "sample_predictions", "train_head",
]
