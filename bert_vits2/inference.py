"""Inference: a generator checkpoint loaded for synthesis, weight norm folded, and the fast paths (issue 16).

:func:`load_model_for_inference` builds ``SynthesizerTrn`` from a config and a G checkpoint (full or release form) and
hands it to :func:`optimize_for_inference`: the decoder becomes :class:`FastGenerator` (channels-last convolutions,
optionally bf16) and the flow may run under bf16 autocast. The plain modules of :mod:`bert_vits2.models` stay the
reference ("debug") path; nothing here is used in training.
"""

from __future__ import annotations

import copy
import logging
import os

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.weight_norm import WeightNorm

from bert_vits2 import modules
from bert_vits2.checkpoint import CheckpointError, apply_checkpoint, read_checkpoint
from bert_vits2.hparams import HParams, load_hparams
from bert_vits2.models import Generator, SynthesizerTrn
from bert_vits2.release import MissingPosteriorEncoder, is_release_state
from bert_vits2.versions import check_model_version

__all__ = [
    "PRECISIONS",
    "remove_weight_norm_",
    "resolve_precision",
    "FastGenerator",
    "copy_module",
    "optimize_for_inference",
    "load_model_for_inference",
]

logger = logging.getLogger(__name__)


def remove_weight_norm_(model: nn.Module) -> nn.Module:
    """Fold every legacy weight norm (weight_g/weight_v -> weight) in place, for inference; idempotent.

    After this the state dict has plain ``weight`` keys: save checkpoints before calling it.
    """
    for module in model.modules():
        names = [hook.name for hook in module._forward_pre_hooks.values() if isinstance(hook, WeightNorm)]
        for name in names:
            torch.nn.utils.remove_weight_norm(module, name)
    return model


#: precision names accepted by :func:`optimize_for_inference` and ``load_model_for_inference``
PRECISIONS = ("fp32", "bf16", "auto")


def _cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16): only then is bf16 faster.

    oneDNN also "supports" bf16 on plain AVX-512 by emulation, which is slower than fp32, so torch's own
    ``_is_mkldnn_bf16_supported`` is not enough; Linux ``/proc/cpuinfo`` flags decide (elsewhere: False).
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"}) and torch.backends.mkldnn.is_available()
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``fp32`` / ``bf16`` for a requested precision; ``auto`` picks bf16 only where the hardware runs it fast."""
    precision = str(precision).lower()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if dev.type == "cpu":
        return "bf16" if _cpu_has_native_bf16() else "fp32"
    return "fp32"


class FastGenerator(nn.Module):
    """Inference-only HiFi-GAN decoder with the same maths as a weight-norm-folded :class:`Generator`.

    Why it is faster: every 1-D conv runs as a (1, k) 2-D conv on a channels-last ([B, T, C] in memory) tensor,
    the layout oneDNN's direct convolutions want (no reorder per call, better vectorisation for the 16-64
    channel late stages); the non-overlapping transposed convs (kernel == stride) are a single matmul; the
    leaky ReLU shared by the first conv of the parallel residual blocks is computed once. With ``dtype=bfloat16``
    the weights are stored in bf16 and the whole stack runs in bf16 (AVX512-BF16/AMX/tensor cores); the output
    is float32 either way. Weights are buffers, so ``.to(device)`` moves them; there is no training path.
    """

    def __init__(self, dec: Generator, dtype: torch.dtype = torch.float32):
        super().__init__()
        if any(hasattr(m, "weight_g") for m in dec.modules()):
            raise ValueError("fold weight norm first (remove_weight_norm_)")
        self.dtype = dtype
        self.num_kernels = dec.num_kernels
        self.num_upsamples = dec.num_upsamples
        self.resblock_kind = 1 if isinstance(dec.resblocks[0], modules.ResBlock1) else 2
        #: (plain state-dict prefix, buffer prefix, kind): state_dict() reports the plain Generator's keys
        self._plain_keys: list[tuple[str, str, str]] = []
        self._add_conv("conv_pre", dec.conv_pre, "conv_pre")
        self.up_cfg: list[tuple[int, int, int, bool, int]] = []
        for i, up in enumerate(dec.ups):
            k, s, p = up.kernel_size[0], up.stride[0], up.padding[0]
            as_matmul = k == s and p == 0 and up.output_padding[0] == 0 and up.dilation[0] == 1 and up.groups == 1
            if as_matmul:  # [C_in, C_out, k] -> [C_in, k * C_out]: out[t*k + j] = x[t] @ W[:, :, j]
                w = up.weight.detach().permute(0, 2, 1).reshape(up.in_channels, k * up.out_channels)
                self.register_buffer(f"up{i}_w", w.to(dtype).contiguous(), persistent=False)
                self.register_buffer(f"up{i}_b", up.bias.detach().to(dtype).repeat(k), persistent=False)
                self._plain_keys.append((f"ups.{i}", f"up{i}", "up_matmul"))
            else:
                self._add_conv(f"up{i}", up, f"ups.{i}")
            self.up_cfg.append((k, s, p, as_matmul, up.out_channels))
        # per residual block: list of (conv name, dilation, padding) pairs (ResBlock1) or singles (ResBlock2)
        self.rb_cfg: list[list[tuple]] = []
        for r, rb in enumerate(dec.resblocks):
            layers = []
            if self.resblock_kind == 1:
                for j, (c1, c2) in enumerate(zip(rb.convs1, rb.convs2)):
                    self._add_conv(f"rb{r}_{j}a", c1, f"resblocks.{r}.convs1.{j}")
                    self._add_conv(f"rb{r}_{j}b", c2, f"resblocks.{r}.convs2.{j}")
                    layers.append(((f"rb{r}_{j}a", c1.dilation[0], c1.padding[0]), (f"rb{r}_{j}b", 1, c2.padding[0])))
            else:
                for j, c in enumerate(rb.convs):
                    self._add_conv(f"rb{r}_{j}a", c, f"resblocks.{r}.convs.{j}")
                    layers.append(((f"rb{r}_{j}a", c.dilation[0], c.padding[0]),))
            self.rb_cfg.append(layers)
        self._add_conv("conv_post", dec.conv_post, "conv_post")
        self.cond = copy_module(dec.cond) if hasattr(dec, "cond") else None  # tiny 1x1 on g, kept fp32

    def _add_conv(self, name: str, conv: nn.Module, plain_name: str) -> None:
        w = conv.weight.detach().unsqueeze(2).to(self.dtype).contiguous(memory_format=torch.channels_last)
        self.register_buffer(f"{name}_w", w, persistent=False)
        b = None if conv.bias is None else conv.bias.detach().to(self.dtype)
        self.register_buffer(f"{name}_b", b, persistent=False)
        self._plain_keys.append((plain_name, name, "conv"))

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """Report the weights under the folded plain Generator's names and layouts (float32), so code that reads
        ``model.state_dict()`` (key checks, export, saving an inference copy) sees the usual checkpoint layout."""
        for plain, name, kind in self._plain_keys:
            w, b = getattr(self, f"{name}_w"), getattr(self, f"{name}_b")
            if kind == "conv":
                weight, bias = w.squeeze(2).contiguous().float(), b
            else:
                _k, _s, _p, _m, c_out = self.up_cfg[int(name[2:])]
                weight = w.reshape(w.shape[0], -1, c_out).permute(0, 2, 1).contiguous().float()
                bias = b[:c_out]
            destination[prefix + plain + ".weight"] = weight
            if bias is not None:
                destination[prefix + plain + ".bias"] = bias.float()

    def _conv(self, x: torch.Tensor, name: str, dilation: int = 1, padding: int = 0) -> torch.Tensor:
        return F.conv2d(x, getattr(self, f"{name}_w"), getattr(self, f"{name}_b"), padding=(0, padding),
                        dilation=(1, dilation))

    def _up(self, x: torch.Tensor, i: int) -> torch.Tensor:
        k, s, p, as_matmul, c_out = self.up_cfg[i]
        if not as_matmul:
            return F.conv_transpose2d(x, getattr(self, f"up{i}_w"), getattr(self, f"up{i}_b"), stride=(1, s),
                                      padding=(0, p))
        b, c, _, t = x.shape
        x_ntc = x.permute(0, 2, 3, 1).reshape(b, t, c)  # a view for channels-last input
        y = torch.addmm(getattr(self, f"up{i}_b"), x_ntc.reshape(b * t, c), getattr(self, f"up{i}_w"))
        return y.view(b, 1, t * k, c_out).permute(0, 3, 1, 2)  # [B, C, 1, T*k], channels-last memory

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """z [B, C, T] (float32) -> waveform [B, 1, T * prod(upsample_rates)] (float32)."""
        x = x.to(self.dtype).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        x = self._conv(x, "conv_pre", padding=3)
        if g is not None and self.cond is not None:
            x = x + self.cond(g.float()).to(self.dtype).unsqueeze(2)
        for i in range(self.num_upsamples):
            x = self._up(F.leaky_relu(x, modules.LRELU_SLOPE), i)
            xs = None
            x_act = F.leaky_relu(x, modules.LRELU_SLOPE)  # first op of every parallel block: shared
            for j in range(self.num_kernels):
                y = x
                for n, layer in enumerate(self.rb_cfg[i * self.num_kernels + j]):
                    xt = x_act if n == 0 else F.leaky_relu(y, modules.LRELU_SLOPE)
                    (name, dil, pad) = layer[0]
                    xt = self._conv(xt, name, dil, pad)
                    if len(layer) == 2:
                        (name, dil, pad) = layer[1]
                        xt = self._conv(F.leaky_relu(xt, modules.LRELU_SLOPE), name, dil, pad)
                    y = xt + y
                xs = y if xs is None else xs + y
            x = xs / self.num_kernels
        x = self._conv(F.leaky_relu(x), "conv_post", padding=3)
        return torch.tanh(x.squeeze(2).float())


def copy_module(module: nn.Module) -> nn.Module:
    """A deep copy (so the fast path never shares mutable weights with the plain module it came from)."""
    return copy.deepcopy(module)


def optimize_for_inference(model: SynthesizerTrn, precision: str = "fp32", fast: bool = True) -> SynthesizerTrn:
    """Prepare a loaded synthesizer for inference in place and return it.

    Always folds weight norm. ``fast`` swaps the decoder for :class:`FastGenerator` (same maths, channels-last;
    fp32 stays within 1e-4 of the plain path). ``precision="bf16"`` (or ``auto`` on hardware with fast bf16)
    runs the decoder in bf16 and the flow under bf16 autocast; the text encoder and both duration predictors
    stay float32, so the phone durations are the fp32 ones exactly. ``fast=False`` keeps the plain modules
    (the debugging path); bf16 then means autocast on the plain decoder. Sets ``model.precision``.
    """
    device = next(model.parameters()).device
    resolved = resolve_precision(precision, device)
    remove_weight_norm_(model)
    dtype = torch.bfloat16 if resolved == "bf16" else torch.float32
    dec = model.dec
    if isinstance(dec, FastGenerator):
        raise ValueError("optimize_for_inference was already applied to this model")
    if fast:
        model.dec = FastGenerator(dec, dtype).to(device)
    elif dtype != torch.float32:
        model.dec = _AutocastDecoder(dec, dtype)
    if dtype != torch.float32:
        model.flow.autocast_dtype = dtype
    model.precision = resolved
    model.eval()
    logger.info("synthesizer prepared for inference: precision %s (requested %s), %s decoder", resolved, precision,
                "fast" if fast else "plain")
    return model


class _AutocastDecoder(nn.Module):
    """The plain decoder under autocast (the debugging variant of the bf16 path); returns float32."""

    def __init__(self, dec: Generator, dtype: torch.dtype):
        super().__init__()
        self.dec, self.dtype = dec, dtype

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.dec(x, g=g).float()


def load_model_for_inference(
    config_path_or_hps: str | os.PathLike | HParams,
    checkpoint_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    *,
    fast: bool = True,
) -> tuple[nn.Module, HParams]:
    """Build ``SynthesizerTrn`` from a config, load a G checkpoint strictly, fold weight norm; returns ``(model, hps)``.

    The vocabulary size is taken from the checkpoint (``enc_p.emb.weight``); speaker count and
    ``gin_channels`` from the config, so a config that does not belong to the checkpoint is refused
    with the differing keys named. The model is in eval mode on ``device``.

    ``precision`` is ``fp32`` (within 1e-4 of upstream), ``bf16`` (decoder and flow in bf16, text encoder and
    duration predictors in fp32 so durations do not change) or ``auto`` (bf16 where the CPU/GPU runs it natively);
    ``model.precision`` says what was chosen. ``fast=False`` keeps the plain decoder (debugging);
    see :func:`optimize_for_inference`. The checkpoint file itself is never modified.
    """
    resolve_precision(precision, device)  # a bad precision fails before the (slow) checkpoint read
    hps = config_path_or_hps if isinstance(config_path_or_hps, HParams) else load_hparams(config_path_or_hps)
    config_where = "the config" if isinstance(config_path_or_hps, HParams) else str(config_path_or_hps)
    check_model_version(hps, config_where)  # an old config fails before the checkpoint read
    ckpt = read_checkpoint(checkpoint_path)
    check_model_version(hps, str(checkpoint_path), ckpt["model"])
    emb = ckpt["model"].get("enc_p.emb.weight")
    if emb is None or emb.dim() != 2:
        raise CheckpointError(f"{checkpoint_path}: no 'enc_p.emb.weight' of shape [n_vocab, hidden]; "
                              "not a Bert-VITS2 generator (G_*.pth) checkpoint")
    model = SynthesizerTrn(
        emb.shape[0],
        hps.data.filter_length // 2 + 1,
        hps.train.segment_size // hps.data.hop_length,
        n_speakers=hps.data.n_speakers,
        **hps.model,
    )
    model.eval()
    if is_release_state(ckpt["model"]):
        # compress_model.py output: no enc_q (synthesis never uses it), weights maybe fp16 (load_state_dict copies
        # them into the fp32 parameters, so they are computed in fp32). The stub makes any later use of enc_q fail
        # with MissingPosteriorEncoderError instead of running random weights.
        model.enc_q = MissingPosteriorEncoder(str(checkpoint_path))
        half = sum(1 for v in ckpt["model"].values() if v.dtype == torch.float16)
        logger.info("%s: release checkpoint without enc_q%s: loaded for synthesis only", checkpoint_path,
                    f" ({half} fp16 tensors, computed in fp32)" if half else "")
    apply_checkpoint(ckpt, str(checkpoint_path), model, None, strict=True, skip_optimizer=True)
    del ckpt
    remove_weight_norm_(model)
    model.to(device)
    optimize_for_inference(model, precision, fast=fast)
    return model, hps
