"""Bert-VITS2 v2.3 TTS training (what ``train_ms.py`` runs): full v2.3 objective, DDP, checkpoints, TensorBoard.

One step (spec section 5.3): generator forward with noise-scaled MAS; duration discriminator, multi-period
discriminator and WavLM discriminator updates (LSGAN); generator update with mel L1 x c_mel, KL x c_kl, duration
losses (deterministic + stochastic + v2.3's extra SDP term), adversarial + feature matching, duration-discriminator
adversarial term, WavLM feature loss and WavLM adversarial term. Four AdamW optimizers with ExponentialLR stepped
once per epoch, optional bf16 autocast. Checkpoints ``G_/D_/DUR_/WD_{step}.pth`` in upstream format; ``{step}`` is
the number of optimisation steps done, and resuming continues from it.

Launch single-process (``python train_ms.py ...``, CPU or one GPU) or with ``torchrun`` (the env:// variables of
single- and multi-node launches are used as they are; NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from bert_vits2 import commons
from bert_vits2.checkpoint import CheckpointError, load_checkpoint
from bert_vits2.checkpoint_files import (
    checkpoint_step,
    complete_checkpoint_steps,
    latest_checkpoint_path,
    prune_checkpoints,
    remove_stale_checkpoint_temps,
    save_checkpoint_set,
)
from bert_vits2.data import (
    DEFAULT_BUCKET_BOUNDARIES,
    DataError,
    DistributedBucketSampler,
    TextAudioSpeakerDataset,
    collate_batch,
    preflight_check,
)
from bert_vits2.hparams import HParams, load_hparams, save_hparams
from bert_vits2.losses import discriminator_loss, feature_loss, generator_loss, kl_loss, slm_feature_loss, slm_input
from bert_vits2.mel_processing import mel_spectrogram_torch, spec_to_mel_torch
from bert_vits2.models import DurationDiscriminator, MultiPeriodDiscriminator, SynthesizerTrn, WavLMDiscriminator
from bert_vits2.release import MissingPosteriorEncoderError, require_posterior_encoder
from bert_vits2.slm import DEFAULT_SLM_DIR, SLMMissingError, WavLMFeatures, load_wavlm
from bert_vits2.text.symbols import symbols

__all__ = ["TrainOptions", "TrainError", "run_training", "build_step_runner"]

logger = logging.getLogger(__name__)

_FREEZE = {"freeze_ZH_bert": "bert_proj", "freeze_JP_bert": "ja_bert_proj", "freeze_EN_bert": "en_bert_proj"}


class TrainError(RuntimeError):
    """Training cannot start or go on; the message says what to do."""


@dataclass
class TrainOptions:
    """What ``train_ms.py`` passes in (the rest comes from the config)."""

    config_path: str
    model_dir: str  # checkpoints + TensorBoard logs go here (train_ms.py: MODEL/models)
    num_workers: int | None = None  # DataLoader workers; None: min(4, cpus - 1)
    allow_missing_slm: bool | None = None  # None: the config's train.allow_missing_slm (default false)
    base_model: str | None = None  # folder with G_/D_/DUR_/WD_ checkpoints to fine-tune from
    spec_cache: bool = True
    keep_ckpts: int | None = None  # None: train.keep_ckpts or 8
    max_steps: int | None = None  # stop (and save) after this global step
    progress: bool = True
    check_data: bool = True  # pre-flight check of every list line before step 1
    skip_bad_lines: bool = False  # train without the lines the check found bad instead of stopping


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DDP) else module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _init_distributed() -> tuple[int, int, int, torch.device]:
    """Rank, world size, local rank and device from the torchrun env (single process when it is absent)."""
    if "WORLD_SIZE" not in os.environ:
        os.environ.update(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    backend = "nccl" if use_cuda and os.name != "nt" else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(seconds=300))
    return rank, world, local_rank, device


def _plot_image(matrix: torch.Tensor, xlabel: str = "Frames", ylabel: str = "Channels"):
    """A [H, W] matrix as an HWC uint8 image for TensorBoard."""
    import matplotlib  # matplotlib: ~0.2 s import, only for TensorBoard images

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 2.5))
    im = ax.imshow(matrix.detach().float().cpu().numpy(), aspect="auto", origin="lower", interpolation="none")
    fig.colorbar(im, ax=ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    fig.canvas.draw()
    data = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return data


@contextlib.contextmanager
def _defer_sigint(what: str):
    """Hold Ctrl-C (SIGINT) until the block is done, then raise KeyboardInterrupt once.

    A KeyboardInterrupt inside ``torch.save`` corrupts its zip writer ("unexpected pos"), so a checkpoint save is
    never interrupted: a Ctrl-C during it is noted and acted on after the save. Only the main thread can install
    signal handlers; elsewhere the block runs unguarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def _hold(signum: int, frame: Any) -> None:
        if not received:
            logger.warning("Ctrl-C: %s first, please wait (Ctrl-\\ aborts without saving)", what)
        received.append(signum)

    previous = signal.signal(signal.SIGINT, _hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


class _FirstOnly(logging.Filter):
    """Let a repeating warning through once (the untrained generator's audio leaves [-1, 1] at every step)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix, self.seen = prefix, False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        if self.seen:
            return False
        self.seen = True
        return True


class _Trainer:
    def __init__(self, opts: TrainOptions, hps: HParams, rank: int, world: int, local_rank: int, device: torch.device):
        self.opts, self.hps, self.rank, self.world, self.device = opts, hps, rank, world, device
        self.model_dir = Path(opts.model_dir)
        self.global_step = 0
        self.epoch = 1
        self.last_saved_step = -1
        self.first_eval_step: int | None = None
        self._setup_common()
        t, d, m = hps.train, hps.data, hps.model
        mel_logger = logging.getLogger("bert_vits2.mel_processing")
        if not any(isinstance(f, _FirstOnly) for f in mel_logger.filters):
            mel_logger.addFilter(_FirstOnly("waveform outside [-1, 1]"))

        # --- data
        skip: dict[str, set[int]] = {}
        if opts.check_data:
            report = preflight_check(hps, progress=opts.progress and rank == 0)
            n_bad = len({(p.file, p.line) for p in report.errors})
            if report.errors and not opts.skip_bad_lines:
                raise TrainError(f"{n_bad} bad line(s) in the training data; fix them (or pass "
                                 "--skip-bad-lines to train without them):\n"
                                 + "\n".join(f"  {p}" for p in report.errors))
            if report.errors:
                logger.warning("training without %d bad line(s) (--skip-bad-lines):\n%s", n_bad,
                               "\n".join(f"  {p}" for p in report.errors))
            skip = {name: report.bad_lines(name) for name in (d.training_files, _get(d, "validation_files"))
                    if name}
        boundaries = list(_get(t, "bucket_boundaries", None) or DEFAULT_BUCKET_BOUNDARIES)
        self.train_set = TextAudioSpeakerDataset(d.training_files, hps, spec_cache=opts.spec_cache,
                                                 skip_lines=skip.get(str(d.training_files), set()))
        self.sampler = DistributedBucketSampler(self.train_set.lengths, int(t.batch_size), boundaries,
                                                num_replicas=world, rank=rank, shuffle=True)
        workers = opts.num_workers if opts.num_workers is not None else max(0, min(4, (os.cpu_count() or 1) - 1))
        self.train_loader = DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate_batch,
                                       num_workers=workers, pin_memory=device.type == "cuda",
                                       persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)
        self.val_set = None
        if rank == 0 and _get(d, "validation_files"):
            val_path = Path(d.validation_files)
            if val_path.is_file():
                try:
                    self.val_set = TextAudioSpeakerDataset(val_path, hps, spec_cache=opts.spec_cache, shuffle_seed=None,
                                                           skip_lines=skip.get(str(d.validation_files), set()))
                except DataError as exc:
                    logger.warning("no evaluation audio in TensorBoard: %s", exc)
            else:
                logger.warning("validation list %s not found: no evaluation audio in TensorBoard", val_path)

        slm_cfg = _get(m, "slm", None) or {}
        slm_dir = _get(slm_cfg, "model", DEFAULT_SLM_DIR)
        allow_missing = opts.allow_missing_slm if opts.allow_missing_slm is not None else bool(
            _get(t, "allow_missing_slm", False))
        wavlm = None
        try:
            wavlm = load_wavlm(slm_dir)
        except SLMMissingError as exc:
            if not allow_missing:
                raise TrainError(str(exc)) from None
            logger.warning("%s", exc)
            logger.warning("training WITHOUT the WavLM feature loss and WavLM discriminator (allow_missing_slm)")
        self._build_networks(wavlm, slm_dir)
        self._load_or_init()
        gamma = float(t.lr_decay)
        self.schedulers = {}
        for k, optim in self.optims.items():
            for group in optim.param_groups:
                group["initial_lr"] = self.lr
                group["lr"] = self.lr * gamma ** (self.epoch - 1)
            self.schedulers[k] = torch.optim.lr_scheduler.ExponentialLR(optim, gamma, last_epoch=self.epoch - 2)
        if world > 1:
            ids = [local_rank] if device.type == "cuda" else None
            self.nets = {k: DDP(v, device_ids=ids, bucket_cap_mb=512) for k, v in self.nets.items()}
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.bf16)
        self.writer = self.writer_eval = None
        if rank == 0:
            from torch.utils.tensorboard import SummaryWriter  # tensorboard: ~2 s import, rank 0 only

            self.writer = SummaryWriter(log_dir=str(self.model_dir))
            self.writer_eval = SummaryWriter(log_dir=str(self.model_dir / "eval"))

    def _setup_common(self) -> None:
        hps, device = self.hps, self.device
        t, d, m = hps.train, hps.data, hps.model
        self.bf16 = bool(_get(t, "bf16_run", False))
        if self.bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise TrainError("train.bf16_run is true but this GPU has no bfloat16 support: set it to false")
        self.hop = int(d.hop_length)
        self.segment_size = int(t.segment_size)
        if self.segment_size % self.hop:
            raise TrainError(f"train.segment_size ({self.segment_size}) must be a multiple of data.hop_length ({self.hop})")
        if math.prod(m.upsample_rates) != self.hop:
            raise TrainError(f"model.upsample_rates {list(m.upsample_rates)} multiply to {math.prod(m.upsample_rates)}, "
                             f"not data.hop_length {self.hop}")
        self.segment_frames = self.segment_size // self.hop

    def _build_networks(self, wavlm: nn.Module | None, slm_dir: str = DEFAULT_SLM_DIR) -> None:
        """G, D, DUR (if configured), WD (if a WavLM is given) and their AdamW optimizers, seeded."""
        hps, device = self.hps, self.device
        t, d, m = hps.train, hps.data, hps.model
        torch.manual_seed(int(_get(t, "seed", 42)))

        model_kwargs = dict(m.items())
        model_kwargs.setdefault("mas_noise_scale_initial", 0.01)
        model_kwargs.setdefault("noise_scale_delta", 2e-6)
        net_g = SynthesizerTrn(len(symbols), int(d.filter_length) // 2 + 1, self.segment_frames,
                               n_speakers=int(d.n_speakers), **model_kwargs)
        for flag, attr in _FREEZE.items():
            if _get(t, flag, False):
                for p in getattr(net_g.enc_p, attr).parameters():
                    p.requires_grad_(False)
                logger.info("%s: enc_p.%s is frozen", flag, attr)
        net_d = MultiPeriodDiscriminator(bool(_get(m, "use_spectral_norm", False)))
        net_dur = None
        if _get(m, "use_duration_discriminator", False):
            net_dur = DurationDiscriminator(int(m.hidden_channels), int(m.hidden_channels), 3, 0.1,
                                            gin_channels=int(m.gin_channels))
        slm_cfg = _get(m, "slm", None) or {}
        self.slm = None
        net_wd = None
        if wavlm is not None:
            self.slm = WavLMFeatures(wavlm, int(d.sampling_rate), int(_get(slm_cfg, "sr", 16000))).to(device)
            hidden, layers = int(_get(slm_cfg, "hidden", 768)), int(_get(slm_cfg, "nlayers", 13))
            got_hidden, got_layers = wavlm.config.hidden_size, wavlm.config.num_hidden_layers + 1
            if (hidden, layers) != (got_hidden, got_layers):
                raise TrainError(f"model.slm says hidden {hidden}, nlayers {layers} but the WavLM at {slm_dir} has "
                                 f"hidden {got_hidden} and {got_layers} hidden states: fix model.slm in the config")
            net_wd = WavLMDiscriminator(hidden, layers, int(_get(slm_cfg, "initial_channel", 64)))

        self.lr = float(t.learning_rate)
        adam = dict(lr=self.lr, betas=tuple(t.betas), eps=float(t.eps))
        nets = {"G": net_g, "D": net_d, "DUR": net_dur, "WD": net_wd}
        self.nets = {k: v.to(device) for k, v in nets.items() if v is not None}
        # fused AdamW (one kernel over all tensors) computes the same update, several times faster on CPU
        adam["fused"] = device.type in ("cpu", "cuda")
        self.optims = {k: torch.optim.AdamW([p for p in v.parameters() if p.requires_grad], **adam)
                       for k, v in self.nets.items()}

    # ------------------------------------------------------------------------------------------ checkpoints
    def _load_or_init(self) -> None:
        """Resume from the newest complete checkpoint set in model_dir, else fine-tune from --base-model, else start.

        A set is complete when every network of this run has its ``{prefix}_{step}.pth``; a newer incomplete set
        (an old crash) is reported and left alone, so the discriminators are never silently re-initialised while a
        complete earlier set exists. Temp files of an interrupted save are removed first.
        """
        prefixes = tuple(self.nets)
        if self.rank == 0 and self.model_dir.is_dir():
            remove_stale_checkpoint_temps(self.model_dir)
        latest = latest_checkpoint_path(self.model_dir, "G_*.pth") if self.model_dir.is_dir() else None
        complete = complete_checkpoint_steps(self.model_dir, prefixes) if latest is not None else []
        if complete:
            chosen = str(self.model_dir / f"G_{complete[0]}.pth")
            if chosen != latest:
                missing = [f"{p}_{checkpoint_step(latest)}.pth" for p in prefixes
                           if not (self.model_dir / f"{p}_{checkpoint_step(latest)}.pth").is_file()]
                logger.warning("%s is not used: its set is incomplete (%s missing, an interrupted save?); resuming "
                               "from the newest complete set, step %d", latest, ", ".join(missing), complete[0])
            latest = chosen
        source_dir, resuming = self.model_dir, latest is not None
        if latest is None and self.opts.base_model:
            source_dir = Path(self.opts.base_model)
            latest = latest_checkpoint_path(source_dir, "G_*.pth")
            if latest is None:
                raise TrainError(f"--base-model {source_dir}: no G_*.pth there (expected G_0.pth, D_0.pth, DUR_0.pth, WD_0.pth)")
        if latest is None:
            logger.info("no checkpoint in %s: training from scratch", self.model_dir)
            return
        step = checkpoint_step(latest)
        skip_opt = bool(_get(self.hps.train, "skip_optimizer", True)) or not resuming
        result = None
        for prefix, net in self.nets.items():
            path = Path(latest).with_name(f"{prefix}_{step}.pth")
            if not path.is_file():
                if prefix == "G":
                    raise TrainError(f"{path} vanished")
                logger.warning("%s not found: %s starts from a fresh initialisation", path, prefix)
                continue
            loaded = load_checkpoint(path, net, self.optims[prefix], strict=False, skip_optimizer=skip_opt)
            report = loaded.report
            if prefix == "G":
                result = loaded
                enc_q_keys = [k for k in _unwrap(net).state_dict() if k.startswith("enc_q.")]
                if enc_q_keys and all(k in report.missing for k in enc_q_keys):
                    # a release file (compress_model.py): training would start from a random posterior encoder
                    try:
                        require_posterior_encoder({"enc_p.emb.weight": torch.empty(0)}, "fine-tuning", path)
                    except MissingPosteriorEncoderError as exc:
                        raise TrainError(str(exc)) from None
            if "emb_g.weight" in report.mismatched:
                old, new = report.mismatched_shapes["emb_g.weight"]
                logger.warning("emb_g.weight re-initialised: %s has %d speakers, this config %d (fine-tuning on other "
                               "speakers); everything else is loaded", path, old[0], new[0])
            others = [k for k in report.mismatched if k != "emb_g.weight"]
            if others:
                logger.warning("%s: %d tensor(s) of another shape were NOT loaded (config differs from the "
                               "checkpoint's): %s", path, len(others), ", ".join(others[:8]))
        if resuming:
            self.global_step = int(step or 0)
            self.epoch = max(int(result.iteration), 1)
            self.last_saved_step = self.global_step
            logger.info("resuming from %s: step %d, epoch %d%s", latest, self.global_step, self.epoch,
                        " (optimizer state skipped: train.skip_optimizer)" if skip_opt else "")
        else:
            logger.info("fine-tuning from base model %s (step count starts at 0)", latest)

    def _set_bytes(self) -> int:
        """Rough size of one checkpoint set (weights + AdamW moments, fp32), for the disk-full message."""
        return sum(3 * 4 * p.numel() for net in self.nets.values() for p in net.parameters())

    def save(self) -> None:
        """Write G/D/DUR/WD for this step as one set (complete or absent); Ctrl-C during it waits for the end."""
        if self.rank != 0 or self.last_saved_step == self.global_step or self.global_step == 0:
            return  # (no step trained yet: a G_0 set would be the initial weights, never pruned, resumed from)
        entries = {prefix: (net, self.optims[prefix]) for prefix, net in self.nets.items()}
        with _defer_sigint(f"saving the step-{self.global_step} checkpoints"):
            try:
                save_checkpoint_set(self.model_dir, self.global_step, entries, self.lr, self.epoch)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise TrainError(
                        f"disk full while saving the step-{self.global_step} checkpoints in {self.model_dir}: nothing "
                        f"of that step was written; free about {self._set_bytes() / 2**20:.0f} MB there and run "
                        "again to resume from the last complete set") from None
                raise TrainError(f"cannot save the step-{self.global_step} checkpoints in {self.model_dir}: "
                                 f"{exc.strerror or exc}") from None
            self.last_saved_step = self.global_step
            keep = self.opts.keep_ckpts if self.opts.keep_ckpts is not None else int(_get(self.hps.train, "keep_ckpts", 8))
            prune_checkpoints(self.model_dir, keep)

    # ------------------------------------------------------------------------------------------ one step
    def _autocast(self, enabled: bool = True):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16 and enabled)

    def _grad_norm(self, net: nn.Module, max_norm: float | None) -> float:
        params = [p for p in net.parameters() if p.grad is not None]
        if not params:
            return 0.0
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm is not None else float("inf")))

    def _step_optim(self, name: str, loss: torch.Tensor, clip: float | None) -> float:
        optim = self.optims[name]
        optim.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optim)
        norm = self._grad_norm(self.nets[name], clip if self.bf16 else None)
        self.scaler.step(optim)
        return norm

    def train_step(self, batch) -> dict[str, Any]:
        d, t = self.hps.data, self.hps.train
        x, x_lengths, spec, spec_lengths, y, y_lengths, speakers, tone, language, bert, ja_bert, en_bert = (
            item.to(self.device, non_blocking=True) for item in batch)
        net_g, net_d = self.nets["G"], self.nets["D"]
        net_dur, net_wd = self.nets.get("DUR"), self.nets.get("WD")
        g_module = _unwrap(net_g)
        if g_module.use_noise_scaled_mas:
            g_module.current_mas_noise_scale = max(
                g_module.mas_noise_scale_initial - g_module.noise_scale_delta * self.global_step, 0.0)
        mel_args = (int(d.filter_length), int(d.n_mel_channels), int(d.sampling_rate))
        fmin, fmax = float(_get(d, "mel_fmin", 0.0)), _get(d, "mel_fmax", None)
        out: dict[str, Any] = {}
        with self._autocast():
            (y_hat, l_length, attn, ids_slice, x_mask, z_mask, (z, z_p, m_p, logs_p, m_q, logs_q),
             (hidden_x, logw, logw_, logw_sdp), g) = net_g(x, x_lengths, spec, spec_lengths, speakers, tone, language,
                                                          bert, ja_bert, en_bert)
            mel = spec_to_mel_torch(spec, *mel_args, fmin, fmax)
            y_mel = commons.slice_segments(mel, ids_slice, self.segment_frames)
            y_hat_mel = mel_spectrogram_torch(y_hat.squeeze(1).float(), *mel_args, self.hop, int(d.win_length), fmin, fmax)
            y = commons.slice_segments(y, ids_slice * self.hop, self.segment_size)

            y_d_hat_r, y_d_hat_g, _, _ = net_d(y, y_hat.detach())
            with self._autocast(False):
                loss_disc, _, _ = discriminator_loss(y_d_hat_r, y_d_hat_g)
            if net_dur is not None:
                args = (hidden_x.detach(), x_mask.detach(), logw_.detach())
                r1, g1 = net_dur(*args, logw.detach(), g.detach())
                r2, g2 = net_dur(*args, logw_sdp.detach(), g.detach())
                with self._autocast(False):
                    loss_dur_disc, _, _ = discriminator_loss(r1 + r2, g1 + g2)
            h_real = h_gen = None
            if self.slm is not None:
                with torch.no_grad():
                    h_real = self.slm(y)
                h_gen = self.slm(y_hat)
                wd_real = net_wd(slm_input(h_real))
                wd_fake = net_wd(slm_input([h.detach() for h in h_gen]))
                with self._autocast(False):
                    loss_wd = torch.mean((1 - wd_real.float()) ** 2) + torch.mean(wd_fake.float() ** 2)

        if net_dur is not None:
            out["grad_norm_dur"] = self._step_optim("DUR", loss_dur_disc, None)
            out["loss/dur_disc"] = loss_dur_disc.item()
        out["grad_norm_d"] = self._step_optim("D", loss_disc, 200.0)
        if self.slm is not None:
            out["grad_norm_wd"] = self._step_optim("WD", loss_wd, None)
            out["loss/wd"] = loss_wd.item()

        with self._autocast():
            _, y_d_hat_g, fmap_r, fmap_g = net_d(y, y_hat)
            if net_dur is not None:
                _, g1 = net_dur(hidden_x, x_mask, logw_, logw, g)
                _, g2 = net_dur(hidden_x, x_mask, logw_, logw_sdp, g)
            if self.slm is not None:
                wd_gen = net_wd(slm_input(h_gen))
            with self._autocast(False):
                loss_dur = torch.sum(l_length.float())
                loss_mel = F.l1_loss(y_mel.float(), y_hat_mel.float()) * float(t.c_mel)
                loss_kl = kl_loss(z_p, logs_q, m_p, logs_p, z_mask) * float(t.c_kl)
                loss_fm = feature_loss(fmap_r, fmap_g)
                loss_gen, _ = generator_loss(y_d_hat_g)
                loss_gen_all = loss_gen + loss_fm + loss_mel + loss_dur + loss_kl
                if self.slm is not None:
                    loss_lm = slm_feature_loss(h_real, h_gen)
                    loss_lm_gen = torch.mean((1 - wd_gen.float()) ** 2)
                    loss_gen_all = loss_gen_all + loss_lm + loss_lm_gen
                    out["loss/g/lm"], out["loss/g/lm_gen"] = loss_lm.item(), loss_lm_gen.item()
                if net_dur is not None:
                    loss_dur_gen, _ = generator_loss(g1 + g2)
                    loss_gen_all = loss_gen_all + loss_dur_gen
                    out["loss/g/dur_gen"] = loss_dur_gen.item()
        out["grad_norm_g"] = self._step_optim("G", loss_gen_all, 500.0)
        self.scaler.update()
        out.update({
            "loss/d/total": loss_disc.item(), "loss/g/total": loss_gen_all.item(), "loss/g/gen": loss_gen.item(),
            "loss/g/fm": loss_fm.item(), "loss/g/mel": loss_mel.item(), "loss/g/dur": loss_dur.item(),
            "loss/g/kl": loss_kl.item(),
        })
        out["_images"] = (y_mel, y_hat_mel, mel, attn)
        return out

    # ------------------------------------------------------------------------------------------ logging / eval
    def log(self, out: dict[str, Any]) -> None:
        scalars = {k: v for k, v in out.items() if not k.startswith("_")}
        scalars["learning_rate"] = self.optims["G"].param_groups[0]["lr"]
        scalars["mas_noise_scale"] = _unwrap(self.nets["G"]).current_mas_noise_scale
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, self.global_step)
        y_mel, y_hat_mel, mel, attn = out["_images"]
        self.writer.add_image("slice/mel_org", _plot_image(y_mel[0]), self.global_step, dataformats="HWC")
        self.writer.add_image("slice/mel_gen", _plot_image(y_hat_mel[0]), self.global_step, dataformats="HWC")
        self.writer.add_image("all/mel", _plot_image(mel[0]), self.global_step, dataformats="HWC")
        self.writer.add_image("all/attn", _plot_image(attn[0, 0], "Phones", "Frames"), self.global_step,
                              dataformats="HWC")
        names = {"loss/g/total": "g", "loss/d/total": "d"}
        losses = " ".join(f"{names.get(k, k.rsplit('/', 1)[-1])}={v:.3f}"
                          for k, v in scalars.items() if k.startswith("loss/"))
        logger.info("epoch %d step %d lr %.3e | %s | grad_norm g %.1f d %.1f", self.epoch, self.global_step,
                    scalars["learning_rate"], losses, out["grad_norm_g"], out["grad_norm_d"])

    @torch.no_grad()
    def evaluate(self, max_items: int = 4) -> None:
        if self.val_set is None:
            return
        d = self.hps.data
        net_g = _unwrap(self.nets["G"])
        net_g.eval()
        mel_args = (int(d.filter_length), int(d.n_mel_channels), int(d.sampling_rate))
        fmin, fmax = float(_get(d, "mel_fmin", 0.0)), _get(d, "mel_fmax", None)
        for i in range(min(max_items, len(self.val_set))):
            batch = collate_batch([self.val_set[i]])
            x, x_lengths, spec, spec_lengths, y, y_lengths, sid, tone, language, bert, ja_bert, en_bert = (
                b.to(self.device) for b in batch)
            y_hat, _, mask, _ = net_g.infer(x, x_lengths, sid, tone, language, bert, ja_bert, en_bert,
                                            max_len=1000, sdp_ratio=0.0)
            y_hat_len = int(mask.sum()) * self.hop
            y_hat_mel = mel_spectrogram_torch(y_hat.squeeze(1).float(), *mel_args, self.hop, int(d.win_length), fmin, fmax)
            self.writer_eval.add_image(f"gen/mel_{i}", _plot_image(y_hat_mel[0]), self.global_step, dataformats="HWC")
            self.writer_eval.add_audio(f"gen/audio_{i}", y_hat[0, :, :y_hat_len].float().cpu(), self.global_step,
                                       int(d.sampling_rate))
            if self.global_step == self.first_eval_step:
                gt_mel = spec_to_mel_torch(spec, *mel_args, fmin, fmax)
                self.writer_eval.add_image(f"gt/mel_{i}", _plot_image(gt_mel[0]), self.global_step, dataformats="HWC")
                self.writer_eval.add_audio(f"gt/audio_{i}", y[0, :, : int(y_lengths[0])].cpu(), self.global_step,
                                           int(d.sampling_rate))
        net_g.train()

    # ------------------------------------------------------------------------------------------ loop
    def _non_finite_message(self, bad: list[str], out: dict[str, Any], epoch_batches: list[list[int]],
                            batch_no: int) -> str:
        """One line: the step, which losses, the batch's wav files and what to try."""
        indices = epoch_batches[batch_no] if batch_no < len(epoch_batches) else []
        files = [self.train_set.utterances[i].line.wav for i in indices if i < len(self.train_set.utterances)]
        shown = ", ".join(files[:8]) + (f" (+{len(files) - 8} more)" if len(files) > 8 else "")
        values = ", ".join(f"{k.removeprefix('loss/')}={out[k]}" for k in bad)
        return (f"non-finite loss at step {self.global_step} (epoch {self.epoch}): {values}; batch files: "
                f"{shown or 'unknown'}; stopped without saving this step. Check those files, lower "
                "train.learning_rate, or set train.bf16_run to false")

    def fit(self) -> int:
        t = self.hps.train
        epochs, log_interval, eval_interval = int(t.epochs), int(t.log_interval), int(t.eval_interval)
        for net in self.nets.values():
            net.train()
        done = False
        try:
            for epoch in range(self.epoch, epochs + 1):
                self.epoch = epoch
                self.sampler.set_epoch(epoch)
                bar = None
                if self.rank == 0 and self.opts.progress:
                    bar = tqdm(total=len(self.sampler), desc=f"epoch {epoch}", unit="step", leave=False)
                # the sampler's batches for this epoch, in the order the loader yields them (same seed): names the
                # files of a batch whose loss is not finite
                epoch_batches = list(self.sampler)
                for batch_no, batch in enumerate(self.train_loader):
                    start = time.perf_counter()
                    out = self.train_step(batch)
                    self.global_step += 1
                    bad = [k for k, v in out.items() if k.startswith("loss/") and not math.isfinite(v)]
                    if bad:
                        raise TrainError(self._non_finite_message(bad, out, epoch_batches, batch_no))
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(step=self.global_step, mel=f"{out['loss/g/mel']:.2f}",
                                        s_per_step=f"{time.perf_counter() - start:.2f}")
                    if self.rank == 0:
                        if self.global_step % log_interval == 0:
                            self.log(out)
                        if self.global_step % eval_interval == 0:
                            if self.first_eval_step is None:
                                self.first_eval_step = self.global_step
                            self.evaluate()
                            self.save()
                    if self.opts.max_steps is not None and self.global_step >= self.opts.max_steps:
                        done = True
                        break
                if bar is not None:
                    bar.close()
                for scheduler in self.schedulers.values():
                    scheduler.step()
                if done:
                    break
        except KeyboardInterrupt:
            if self.rank == 0:
                if self.global_step == 0:
                    logger.warning("interrupted before the first step: nothing trained, no checkpoint written")
                elif self.last_saved_step != self.global_step:
                    logger.warning("interrupted at step %d: saving a checkpoint before exiting", self.global_step)
                try:
                    self.save()
                except KeyboardInterrupt:  # a second Ctrl-C during that save: it was held until the save finished
                    pass
            return 130
        if self.rank == 0:
            self.save()
            for writer in (self.writer, self.writer_eval):
                writer.close()
        logger.info("training finished at step %d (epoch %d)", self.global_step, self.epoch)
        return 0


def build_step_runner(hps: HParams, device: torch.device, wavlm: nn.Module | None = None):
    """The four networks, optimizers and ``train_step(batch)`` without data, checkpoints or DDP (benchmarks)."""
    runner = _Trainer.__new__(_Trainer)
    runner.opts, runner.hps, runner.rank, runner.world, runner.device = TrainOptions("", ""), hps, 0, 1, device
    runner.global_step = 0
    runner._setup_common()
    runner._build_networks(wavlm)
    runner.scaler = torch.amp.GradScaler(device.type, enabled=runner.bf16)
    for net in runner.nets.values():
        net.train()
    return runner


def run_training(opts: TrainOptions) -> int:
    """Train Bert-VITS2 v2.3 as configured; returns an exit code (0 done, 130 interrupted). Raises TrainError."""
    try:
        hps = load_hparams(opts.config_path)
    except (OSError, ValueError) as exc:
        raise TrainError(str(exc)) from None
    rank, world, local_rank, device = _init_distributed()
    model_dir = Path(opts.model_dir)
    interrupted = False
    try:
        if rank == 0:
            model_dir.mkdir(parents=True, exist_ok=True)
            save_hparams(hps, model_dir / "config.json")
            logger.info("training on %s, %d process(es), model dir %s", device, world, model_dir)
        try:
            trainer = _Trainer(opts, hps, rank, world, local_rank, device)
        except (DataError, CheckpointError) as exc:
            raise TrainError(str(exc)) from None
        code = trainer.fit()
        interrupted = code == 130
        return code
    finally:
        if dist.is_initialized() and not interrupted:
            dist.destroy_process_group()
