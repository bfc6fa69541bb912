"""Inference: a generator checkpoint loaded for synthesis, weight norm folded, and the fast paths (issue 16).

:func:`load_model_for_inference` builds ``SynthesizerTrn`` from a config and a G checkpoint (full or release form) and
hands it to :func:`optimize_for_inference`: the decoder becomes :class:`FastGenerator` (channels-last convolutions,
optionally bf16) and the flow may run under bf16 autocast. The plain modules of :mod:`bert_vits2.models` stay the
reference ("debug") path; nothing here is used in training.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.weight_norm import WeightNorm

from bert_vits2 import attentions, modules
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
    "bucket_length",
    "bucketing_default",
    "decode_windows",
    "warm_up",
    "DEFAULT_WARMUP_S",
    "MAX_DECODE_FRAMES",
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


#: oneDNN convolution with a fused post-op (leaky ReLU, add): torch's CPU op that inductor uses; None if absent
_FUSED_CONV = getattr(torch.ops.mkldnn, "_convolution_pointwise", None) if torch.backends.mkldnn.is_available() else None

#: widest decoder window (z frames) decoded in one call; longer latents are cut into windows of this size with
#: context (:func:`decode_windows`), so the decoder only ever sees a bounded set of shapes
MAX_DECODE_FRAMES = 512


def bucket_length(n: int, min_step: int = 8, per_octave: int = 8) -> int:
    """The padded length that ``n`` frames or phones run at on the fast path (``n`` itself if already a bucket).

    Why: a new input length makes oneDNN create (JIT-compile) new primitives for every convolution, which on a CPU
    with AMX costs more than running them; padding to a few lengths makes every shape one the runtime has seen.
    Steps of ``min_step`` up to ``2 * min_step * per_octave``, then ``per_octave`` buckets per doubling (at most 1/8
    = 12.5 % padding, about 6 % on average; 8, 16, ..., 64, 72, ..., 128, 144, ..., 256, 288, ...).
    """
    n = int(n)
    if n <= 0:
        return n
    step = int(min_step)
    while n > step * per_octave * 2:
        step *= 2
    return -(-n // step) * step


def decode_windows(n: int, context: int, max_frames: int = MAX_DECODE_FRAMES) -> list[tuple[int, int, int, int]]:
    """``(lo, hi, a, b)`` windows that decode ``n`` z frames: frames ``[lo, hi)`` go through the decoder and the
    samples of ``[a, b)`` are kept. One window when ``n <= max_frames``; else windows of ``max_frames`` overlapping
    by ``2 * context`` (the decoder's receptive field), the last one shorter (it is padded to a bucket)."""
    n, context, max_frames = int(n), max(0, int(context)), int(max_frames)
    if n <= max_frames:
        return [(0, n, 0, n)]
    if max_frames <= 2 * context:
        raise ValueError(f"max_frames ({max_frames}) must exceed twice the decoder context ({context})")
    windows, a = [], 0
    while a < n:
        lo = max(0, a - context)
        hi = min(n, lo + max_frames)
        b = hi if hi == n else hi - context
        windows.append((lo, hi, a, b))
        a = b
    return windows


class FastGenerator(nn.Module):
    """Inference-only HiFi-GAN decoder with the same maths as a weight-norm-folded :class:`Generator`.

    Why it is faster: every 1-D conv runs as a (1, k) 2-D conv on a channels-last ([B, T, C] in memory) tensor,
    the layout oneDNN's direct convolutions want (no reorder per call, better vectorisation for the 16-64
    channel late stages); the non-overlapping transposed convs (kernel == stride) are a single matmul; the
    leaky ReLU shared by the first conv of the parallel residual blocks is computed once. With ``dtype=bfloat16``
    the weights are stored in bf16 and the whole stack runs in bf16 (AVX512-BF16/AMX/tensor cores); the output
    is float32 either way. Weights are buffers, so ``.to(device)`` moves them; there is no training path.
    """

    def __init__(self, dec: Generator, dtype: torch.dtype = torch.float32, bucketed: bool = True,
                 max_frames: int = MAX_DECODE_FRAMES):
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
        #: batch-1 inputs are padded to :func:`bucket_length` (the padding masked exactly) and latents longer than
        #: ``max_frames`` decoded in overlapping windows: a bounded set of shapes (see :meth:`forward`)
        self.bucketed, self.max_frames = bool(bucketed), int(max_frames)
        self.hop = math.prod(cfg[1] for cfg in self.up_cfg)
        self.context = self._receptive_field_frames()
        self._span_reach = self._span_margins()

    def _receptive_field_frames(self, margin: int = 2) -> int:
        """z frames each side that reach an output sample (conv_pre, transposed convs, widest residual block per
        stage, conv_post), rounded up plus ``margin``: the context a window needs to equal the whole decode."""
        half, rate = 3.0, 1
        for i, (k, s, _p, _m, _c) in enumerate(self.up_cfg):
            half += (math.ceil(k / s) + 1) / rate
            rate *= s
            blocks = self.rb_cfg[i * self.num_kernels:(i + 1) * self.num_kernels]
            half += max(sum(pad for layer in block for (_n, _d, pad) in layer) for block in blocks) / rate
        half += 3.0 / rate
        return int(math.ceil(half)) + margin

    def _span_margins(self, margin: int = 1) -> list[int]:
        """Per crop point of :meth:`decode_span` (the input, after conv_pre, after each stage), the samples at that
        point's rate each side that still reach an output sample: the receptive field of what comes after it.

        Why per stage: most of the decoder's reach comes from the early, low-rate stages (conv_pre and the first
        residual blocks: about 12 of 16 z frames), while most of its work is in the later ones; a chunk cropped after
        every stage runs the later stages on the chunk and a frame or two of context, not on the whole window."""
        reach = [3 + margin]  # conv_post (kernel 7), at the output rate
        for i in reversed(range(self.num_upsamples)):
            k, s, _p, _m, _c = self.up_cfg[i]
            blocks = self.rb_cfg[i * self.num_kernels:(i + 1) * self.num_kernels]
            r = reach[0] + max(sum(pad for layer in block for (_n, _d, pad) in layer) for block in blocks)
            reach.insert(0, -(-(r + k) // s) + 1 + margin)  # before the transposed conv, at the lower rate
        reach.insert(0, reach[0] + 3 + margin)  # conv_pre (kernel 7)
        return reach  # [input, after conv_pre, after stage 0, ..., after the last stage]

    def decode_span(self, x: torch.Tensor, g: torch.Tensor | None, a: int, b: int) -> torch.Tensor:
        """Samples of z frames ``[a, b)`` of ``x`` [1, C, T] ([1, (b - a) * hop], float32): equal within float rounding
        to ``forward(x)[..., a * hop:b * hop]`` (same zero padding at ``x``'s ends), at a fraction of the cost for a
        short span: the input and every stage's output are cropped to the span plus the reach of the layers after
        them (:meth:`_span_margins`). Why: a streamed chunk is decoded with context frames each side, and decoding
        all of them through every stage made the first chunk cost as much as 2.5 times its length."""
        n = x.shape[-1]
        lo, hi = max(0, a - self._span_reach[0]), min(n, b + self._span_reach[0])
        m = hi - lo
        padded = bucket_length(m) if self.bucketed and x.shape[0] == 1 and not _tracing() else m
        if b <= a or padded > self.max_frames:
            return self.forward(x[:, :, lo:hi], g)[0, :, (a - lo) * self.hop:(b - lo) * self.hop]
        xi = x[:, :, lo:hi] if padded == m else F.pad(x[:, :, lo:hi], (0, padded - m))
        return self._decode(xi, g, m if padded > m else None, span=(a - lo, b - lo))[0]

    def span_decoder(self, latent: torch.Tensor, g: torch.Tensor | None):
        """A :class:`bert_vits2.stream_decoder.IncrementalDecoder` for ``latent`` [1, C, T] (chunks in order, each
        sample of the costly early stages computed once), or None where the windowed :meth:`decode_span` is the
        better choice: the bucketed (bf16 CPU) path, whose point is a small set of shapes that oneDNN has built."""
        if self.bucketed or latent.shape[0] != 1 or _tracing():
            return None
        from bert_vits2.stream_decoder import IncrementalDecoder

        return IncrementalDecoder(self, latent, g)

    @staticmethod
    def _crop(x: torch.Tensor, valid: int | None, off: int, lo: int, hi: int) -> tuple[torch.Tensor, int | None, int]:
        """Keep samples ``[lo, hi)`` (absolute) of ``x``, which starts at absolute ``off``; the real end (and the
        masked padding after it) stays when ``hi`` reaches it, so the next convolution sees the same zeros there."""
        real = x.shape[-1] if valid is None else valid
        c0, c1 = max(0, lo - off), min(real, hi - off)
        if c1 >= real:
            return x[..., c0:], None if valid is None else valid - c0, off + c0
        return x[..., c0:c1], None, off + c0

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

    def _conv(self, x: torch.Tensor, name: str, dilation: int = 1, padding: int = 0, lrelu: bool = False,
              add: torch.Tensor | None = None) -> torch.Tensor:
        """conv, then optionally leaky ReLU or ``+ add``: on the CPU one oneDNN call with the op fused as a post-op
        (one pass less over the activations: about 15 % of a 128-channel conv's time); else three ops."""
        w, b = getattr(self, f"{name}_w"), getattr(self, f"{name}_b")
        if (lrelu or add is not None) and x.device.type == "cpu" and _FUSED_CONV is not None:
            if add is not None:
                return _FUSED_CONV.binary(x, add, w, b, [0, padding], [1, 1], [1, dilation], 1, "add", 1.0, None, [],
                                          None)
            return _FUSED_CONV(x, w, b, [0, padding], [1, 1], [1, dilation], 1, "leaky_relu", [modules.LRELU_SLOPE], "")
        y = F.conv2d(x, w, b, padding=(0, padding), dilation=(1, dilation))
        if lrelu:
            y = F.leaky_relu(y, modules.LRELU_SLOPE)
        return y if add is None else y + add

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
        """z [B, C, T] (float32) -> waveform [B, 1, T * prod(upsample_rates)] (float32).

        Batch 1 (``bucketed``): the latent runs padded to :func:`bucket_length`, in windows of at most
        ``max_frames`` (:func:`decode_windows`). The padded frames are zeroed after every convolution, so the real
        samples see exactly the zero padding of an unpadded decode (equal within float rounding); windows overlap
        by the decoder's receptive field (``context``), so cutting a long latent changes nothing either.
        """
        if x.shape[-1] == 0:  # no frames (a caller that needs only z): no samples, no decoder work
            return x.new_zeros(x.shape[0], 1, 0, dtype=torch.float32)
        if not self.bucketed or x.shape[0] != 1 or _tracing():
            return self._decode(x, g, None)
        outs = []
        for lo, hi, a, b in decode_windows(x.shape[-1], self.context, self.max_frames):
            n = hi - lo
            padded = bucket_length(n)
            xi = x[:, :, lo:hi]
            if padded > n:
                xi = F.pad(xi, (0, padded - n))
            o = self._decode(xi, g, n if padded > n else None)
            outs.append(o[:, :, (a - lo) * self.hop:(b - lo) * self.hop])
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)

    @staticmethod
    def _mask(x: torch.Tensor, valid: int | None) -> torch.Tensor:
        """Zero the padded tail (samples ``valid`` on) in place: what the next convolution reads there is the zero
        padding an unpadded input would have (a slice of the outermost axis of channels-last memory: cheap)."""
        if valid is not None:
            x[..., valid:] = 0
        return x

    def _decode(self, x: torch.Tensor, g: torch.Tensor | None, valid: int | None,
                span: tuple[int, int] | None = None) -> torch.Tensor:
        """The decoder stack on ``x`` (``valid``: real frames, the rest is masked padding). ``span``: only frames
        ``[a, b)`` are wanted; every stage's output is cropped to what the later layers need (:meth:`decode_span`)."""
        x = x.to(self.dtype).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        x = self._conv(x, "conv_pre", padding=3)
        if g is not None and self.cond is not None:
            x = x + self.cond(g.float()).to(self.dtype).unsqueeze(2)
        self._mask(x, valid)
        off = 0  # the absolute position (at the current rate) of x's first sample
        if span is not None:
            x, valid, off = self._crop(x, valid, off, span[0] - self._span_reach[1], span[1] + self._span_reach[1])
        return self._run_stages(x, valid, off, 0, span)

    def _run_stages(self, x: torch.Tensor, valid: int | None, off: int, first: int,
                    span: tuple[int, int] | None) -> torch.Tensor:
        """Stages ``first`` on and conv_post on ``x`` (channels-last, the output of stage ``first - 1`` or of
        conv_pre; its first sample at absolute position ``off`` at that rate). ``span``: only frames ``[a, b)`` are
        wanted (every stage's output cropped to what the later layers need). :class:`bert_vits2.stream_decoder.
        IncrementalDecoder` enters here after the stages it computes itself."""
        rate = math.prod(self.up_cfg[i][1] for i in range(first))
        for i in range(first, self.num_upsamples):
            valid = None if valid is None else valid * self.up_cfg[i][1]
            off, rate = off * self.up_cfg[i][1], rate * self.up_cfg[i][1]
            x = self._mask(self._up(F.leaky_relu(x, modules.LRELU_SLOPE), i), valid)
            xs = None
            x_act = F.leaky_relu(x, modules.LRELU_SLOPE)  # first op of every parallel block: shared
            for j in range(self.num_kernels):
                y = x
                for n, layer in enumerate(self.rb_cfg[i * self.num_kernels + j]):
                    xt = x_act if n == 0 else F.leaky_relu(y, modules.LRELU_SLOPE)
                    (name, dil, pad) = layer[0]
                    if len(layer) == 2:  # ResBlock1: y + conv_b(lrelu(conv_a(lrelu(y))))
                        xt = self._mask(self._conv(xt, name, dil, pad, lrelu=True), valid)
                        (name, dil, pad) = layer[1]
                    # y's padded tail is zero, so masking the sum masks the conv's output
                    y = self._mask(self._conv(xt, name, dil, pad, add=y), valid)
                xs = y if xs is None else xs + y
            x = xs / self.num_kernels
            if span is not None:
                r = self._span_reach[i + 2]
                x, valid, off = self._crop(x, valid, off, span[0] * rate - r, span[1] * rate + r)
        x = self._conv(F.leaky_relu(x), "conv_post", padding=3)
        if span is not None:
            x = x[..., span[0] * rate - off:span[1] * rate - off]
        return torch.tanh(x.squeeze(2).float())



# --- bucketed lengths for the text encoder, duration predictors and flow -----------------------------------------
#
# These modules are written for padded batches (every op is masked), so a batch-1 input padded to a bucket with a
# zero mask gives the same values on the real frames/phones. The fast path swaps their class for a subclass that
# pads and crops (state dict, weights and isinstance checks unchanged); batches and training never use it.


def _pad_last(t: torch.Tensor, n: int) -> torch.Tensor:
    return t if t.shape[-1] >= n else F.pad(t, (0, n - t.shape[-1]))


def _tracing() -> bool:
    """An export or trace records shapes as constants: bucketing stays off there (dynamic axes stay dynamic)."""
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()


def _full_mask(mask: torch.Tensor) -> bool:
    """Batch 1 with every position real: the only case the bucketed modules pad (else they run unchanged)."""
    return mask.shape[0] == 1 and not _tracing() and bool(mask.all())


class _BucketedEncoder:
    """Text encoder on phones padded to :func:`bucket_length` (batch 1, ``x_lengths`` = the length)."""

    def forward(self, x, x_lengths, tone, language, bert, ja_bert, en_bert, g=None):
        t = x.shape[1]
        n = bucket_length(t)
        if n == t or x.shape[0] != 1 or _tracing() or int(x_lengths[0]) != t:
            return super().forward(x, x_lengths, tone, language, bert, ja_bert, en_bert, g=g)
        out = super().forward(_pad_last(x, n), x_lengths, _pad_last(tone, n), _pad_last(language, n),
                              _pad_last(bert, n), _pad_last(ja_bert, n), _pad_last(en_bert, n), g=g)
        return tuple(o[..., :t] for o in out)


class _BucketedDurationPredictor:
    def forward(self, x, x_mask, g=None):
        t = x.shape[-1]
        n = bucket_length(t)
        if n == t or not _full_mask(x_mask):
            return super().forward(x, x_mask, g=g)
        return super().forward(_pad_last(x, n), _pad_last(x_mask, n), g=g)[..., :t]


class _BucketedStochasticDurationPredictor:
    """Sampling direction only; the noise is drawn for the real phones exactly as the unpadded module draws it (same
    generator, same shape, same order), then padded."""

    def forward(self, x, x_mask, w=None, g=None, reverse=False, noise_scale=1.0, noise=None, generator=None):
        t = x.shape[-1]
        n = bucket_length(t)
        if not reverse or n == t or not _full_mask(x_mask):
            return super().forward(x, x_mask, w=w, g=g, reverse=reverse, noise_scale=noise_scale, noise=noise,
                                   generator=generator)
        if noise is None:
            noise = torch.randn(1, 2, t, generator=generator).to(device=x.device, dtype=x.dtype) * noise_scale
        return super().forward(_pad_last(x, n), _pad_last(x_mask, n), g=g, reverse=True,
                               noise=_pad_last(noise, n))[..., :t]


class _BucketedFlow:
    def forward(self, x, x_mask, g=None, reverse=False):
        t = x.shape[-1]
        n = bucket_length(t)
        if not reverse or n == t or not _full_mask(x_mask):
            return super().forward(x, x_mask, g=g, reverse=reverse)
        return super().forward(_pad_last(x, n), _pad_last(x_mask, n), g=g, reverse=True)[..., :t]


class _PackedFFN:
    """The transformer FFN (two "same" convolutions, ReLU between) as matrix products on time-major memory: each
    convolution is ``kernel_size`` products of the shifted ``[T, C_in]`` input with that tap's ``[C_in, C_out]``
    weights (laid out once by :func:`_pack_ffns`), summed in place. Why: the flow's 16 FFNs (kernel 5, 192 <-> 768
    channels) are most of its time, and with the time axis as the products' rows MKL ran them faster than oneDNN's
    channels-last convolutions at the lengths a first clause has (Xeon @ 2.80GHz, Ice Lake, no AMX, 2 threads, one
    kernel-5 FFN, interleaved: 30 frames 2.32 -> 1.42 ms, 60: 2.85 -> 2.03, 227: 6.29 -> 5.14, 524: 9.81 -> 9.90).
    Equal within float rounding (the taps are summed in another order). fp32 on the CPU at inference only; anything
    else (autocast, training, tracing, GPU) runs the module's own forward."""

    def forward(self, x, x_mask):
        packed = self.__dict__.get("_packed")
        if (packed is None or self.training or x.device.type != "cpu" or x.dtype != torch.float32 or _tracing()
                or torch.is_autocast_enabled("cpu") or x.shape[0] != 1):
            return super().forward(x, x_mask)
        (w1, b1), (w2, b2) = packed
        pad = (w1.shape[0] - 1) // 2
        m = x_mask[0, 0].unsqueeze(1).to(x.dtype)  # [T, 1]
        h = _shifted_products(x[0].t(), m, w1, b1, pad).relu_()
        h = _shifted_products(h, m, w2, b2, pad)
        return (h * m).t().unsqueeze(0).contiguous()


def _shifted_products(x: torch.Tensor, m: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
                      pad: int) -> torch.Tensor:
    """A "same" convolution of the masked time-major ``x`` [T, C_in] with taps ``w`` [k, C_in, C_out]: [T, C_out]."""
    k, t = w.shape[0], x.shape[0]
    padded = x.new_zeros(t + k - 1, x.shape[1])
    torch.mul(x, m, out=padded[pad:pad + t])
    y = padded[0:t] @ w[0] if b is None else torch.addmm(b, padded[0:t], w[0])
    for j in range(1, k):
        y.addmm_(padded[j:j + t], w[j])
    return y


def _pack_ffns(model: nn.Module) -> int:
    """Give every odd-kernel fp32 ``attentions.FFN`` of ``model`` (text encoder, flow) the :class:`_PackedFFN` forward
    with its weights laid out once as taps (the module's own weights become views of that layout); returns how
    many."""
    n = 0
    for ffn in model.modules():
        if not isinstance(ffn, attentions.FFN) or ffn.kernel_size % 2 == 0:
            continue
        convs = (ffn.conv_1, ffn.conv_2)
        if any(c.weight.dtype != torch.float32 or c.weight.device.type != "cpu" for c in convs):
            continue
        packed = []
        for c in convs:
            w = c.weight.detach().permute(2, 1, 0).contiguous()  # [k, C_in, C_out]
            c.weight.data = w.permute(2, 1, 0)  # the module's weight is a view of the packed layout: no second copy,
            packed.append((w, None if c.bias is None else c.bias.detach()))  # and weights loaded later reach both
        ffn.__dict__["_packed"] = (packed[0], packed[1])
        _bucketize(ffn, _PackedFFN)
        n += 1
    return n


class _BandedAttention:
    """Relative-position self-attention without the 2L-1 offset tensors: the relative logits and weights exist only
    for the 2*window+1 offsets of the band, so they are added to / read from the score matrix's diagonals directly
    (upstream pads them to 2L-1 offsets and reshapes, five pads and their copies per layer), q/k/v come from one
    matrix product and every 1x1 convolution is a plain matrix product. Same arithmetic: the scores get the same
    additions (out-of-band offsets were +0), the band's weights meet the same embeddings. Inference only: training,
    tracing and cross-attention run the module's own forward."""

    def forward(self, x, c, attn_mask=None):
        qkv = self.__dict__.get("_qkv")
        if qkv is None or x is not c or self.training or _tracing() or x.shape[0] != 1:
            return super().forward(x, c, attn_mask)
        w, b = qkv
        q, k, v = torch.addmm(b, w, x[0]).unsqueeze(0).split(self.channels, dim=1)
        out = self._banded(q, k, v, attn_mask)
        return torch.addmm(self.conv_o.bias.unsqueeze(1), self.conv_o.weight.squeeze(2), out[0]).unsqueeze(0)

    def _banded(self, query, key, value, mask):
        b, d, t = key.shape
        h, kc = self.n_heads, self.k_channels
        query = query.view(b, h, kc, t).transpose(2, 3) / math.sqrt(kc)
        key = key.view(b, h, kc, t).transpose(2, 3)
        value = value.view(b, h, kc, t).transpose(2, 3)
        scores = torch.matmul(query, key.transpose(-2, -1))
        key_rel, _ = self._window_embeddings(self.emb_rel_k, t)
        rel = torch.matmul(query, key_rel.unsqueeze(0).transpose(-2, -1))  # [b, h, t, m]: offset = column - half
        band = rel.shape[-1]
        half = (band - 1) // 2
        for col in range(band):
            off = col - half
            scores.diagonal(off, -2, -1).add_(rel[..., max(0, -off):t - max(0, off), col])
        if mask is not None and not bool(mask.all()):
            scores = scores.masked_fill(mask == 0, -1e4)
        p_attn = F.softmax(scores, dim=-1)
        output = torch.matmul(p_attn, value)
        weights = p_attn.new_zeros(b, h, t, band)
        for col in range(band):
            off = col - half
            weights[..., max(0, -off):t - max(0, off), col] = p_attn.diagonal(off, -2, -1)
        value_rel, _ = self._window_embeddings(self.emb_rel_v, t)
        output = output + torch.matmul(weights, value_rel.unsqueeze(0))
        return output.transpose(2, 3).contiguous().view(b, d, t)


def _band_attentions(model: nn.Module) -> int:
    """Give every relative-position ``attentions.MultiHeadAttention`` of ``model`` the :class:`_BandedAttention`
    forward, its q/k/v weights laid out as one matrix (the module's own weights become views of it); returns how
    many."""
    n = 0
    for attn in model.modules():
        if not isinstance(attn, attentions.MultiHeadAttention) or attn.window_size is None:
            continue
        convs = (attn.conv_q, attn.conv_k, attn.conv_v)
        w = torch.cat([c.weight.detach().squeeze(2) for c in convs])
        bias = torch.cat([c.bias.detach() for c in convs]).unsqueeze(1)
        for i, conv in enumerate(convs):  # views of the fused layout: weights loaded later reach both
            conv.weight.data = w[i * attn.channels:(i + 1) * attn.channels].unsqueeze(2)
            conv.bias.data = bias[i * attn.channels:(i + 1) * attn.channels, 0]
        attn.__dict__["_qkv"] = (w, bias)
        _bucketize(attn, _BandedAttention)
        n += 1
    return n


_BUCKETED_CLASSES: dict[type, type] = {}


def _bucketize(module: nn.Module, mixin: type) -> None:
    """Swap ``module``'s class for ``mixin`` + its class (one subclass per class, made once)."""
    base = type(module)
    if issubclass(base, mixin):
        return
    cls = _BUCKETED_CLASSES.get(base)
    if cls is None:
        cls = _BUCKETED_CLASSES[base] = type(f"Bucketed{base.__name__}", (mixin, base), {"__doc__": base.__doc__})
    module.__class__ = cls


def copy_module(module: nn.Module) -> nn.Module:
    """A deep copy (so the fast path never shares mutable weights with the plain module it came from)."""
    return copy.deepcopy(module)


def optimize_for_inference(model: SynthesizerTrn, precision: str = "fp32", fast: bool = True,
                           bucketed: bool | None = None) -> SynthesizerTrn:
    """Prepare a loaded synthesizer for inference in place and return it.

    Always folds weight norm. ``fast`` swaps the decoder for :class:`FastGenerator` (same maths, channels-last,
    fused conv + activation; fp32 stays within 1e-4 of the plain path). ``precision="bf16"`` (or ``auto`` on
    hardware with fast bf16) runs the decoder in bf16 and the flow under bf16 autocast; the text encoder and both
    duration predictors stay float32, so the phone durations are the fp32 ones exactly. ``fast=False`` keeps the
    plain modules (the debugging path); bf16 then means autocast on the plain decoder. Sets ``model.precision``.

    ``auto`` on a CPU with native bf16 measures before it chooses (:func:`measure_decoder_precisions`, a few seconds):
    bf16 is kept only where it decodes faster than fp32; ``model.precision_timing`` holds the figures (None when
    nothing was measured).

    ``bucketed`` (fast path only; None: :func:`bucketing_default`): batch-1 lengths are padded to
    :func:`bucket_length` in the text encoder, duration predictors, flow and decoder (masked, so the output is the
    unpadded one within float rounding) and the decoder works in windows of at most :data:`MAX_DECODE_FRAMES`:
    every request then reuses a few shapes whose oneDNN primitives exist (see :func:`warm_up`).
    """
    device = next(model.parameters()).device
    resolved = resolve_precision(precision, device)
    remove_weight_norm_(model)
    dec = model.dec
    if isinstance(dec, FastGenerator):
        raise ValueError("optimize_for_inference was already applied to this model")
    model.precision_timing = None
    if str(precision).lower() == "auto" and resolved == "bf16" and fast and device.type == "cpu":
        model.precision_timing = measure_decoder_precisions(dec, device)
        if model.precision_timing["bf16"] > AUTO_BF16_MARGIN * model.precision_timing["fp32"]:
            resolved = "fp32"
    dtype = torch.bfloat16 if resolved == "bf16" else torch.float32
    bucketed = fast and (bucketing_default(resolved, device) if bucketed is None else bool(bucketed))
    if fast:
        model.dec = FastGenerator(dec, dtype, bucketed=bucketed).to(device)
    if bucketed:
        for name, mixin in (("enc_p", _BucketedEncoder), ("dp", _BucketedDurationPredictor),
                            ("sdp", _BucketedStochasticDurationPredictor), ("flow", _BucketedFlow)):
            _bucketize(getattr(model, name), mixin)
    elif dtype != torch.float32:
        model.dec = _AutocastDecoder(dec, dtype)
    if dtype != torch.float32:
        model.flow.autocast_dtype = dtype
    elif fast and device.type == "cpu":
        _pack_ffns(model)
        _band_attentions(model)
    model.precision = resolved
    model.eval()
    model.bucketed = bucketed
    logger.info("synthesizer prepared for inference: precision %s (requested %s), %s decoder%s", resolved, precision,
                "fast" if fast else "plain", ", bucketed lengths" if bucketed else "")
    return model


#: ``auto`` keeps bf16 only where its decoder took at most this share of fp32's time (fp32 is exact, so a tie is fp32)
AUTO_BF16_MARGIN = 0.9

#: the request lengths (z frames: about 0.4 and 0.8 s of speech at 44.1 kHz, first clauses of a stream) that ``auto``
#: times each precision on. The full-size decoder took 11.5 s for both on these two (24 s on 43/77/131 frames) on a
#: 2-core Ice Lake Xeon with emulated bf16 and the other core busy, where ``auto`` never measures; native bf16 is faster
AUTO_PROBE_FRAMES = (31, 67)


def measure_decoder_precisions(dec: Generator, device: str | torch.device = "cpu",
                               frames: tuple[int, ...] = AUTO_PROBE_FRAMES) -> dict[str, float]:
    """Seconds each precision's fast decoder takes for ``frames`` as requests bring them: ``{"fp32": s, "bf16": s}``.

    Why measure: native bf16 instructions (AVX512-BF16, AMX) do not make the decoder faster on every CPU and every
    model size, and issue 26 saw bf16 lose to fp32 on requests of new lengths. Each path runs as it would serve:
    bf16 bucketed with its bucket shapes warmed first (what ``warm_up`` does at load), fp32 unbucketed on lengths it
    has not seen (its new oneDNN primitives are part of its cost). ``dec``: a weight-norm-folded decoder, unchanged.
    """
    device = torch.device(device)
    gin = int(getattr(dec.cond, "in_channels", 0)) if getattr(dec, "cond", None) is not None else 0
    inter = int(dec.conv_pre.in_channels)
    g = torch.zeros(1, gin, 1, device=device) if gin else None
    seconds = {}
    with torch.inference_mode():
        for name, dtype, bucketed in (("fp32", torch.float32, False), ("bf16", torch.bfloat16, True)):
            fast = FastGenerator(dec, dtype, bucketed=bucketed).to(device)
            fast(torch.zeros(1, inter, 8, device=device), g=g)  # first-call set-up, paid once per process
            if bucketed:
                for n in frames:
                    fast(torch.zeros(1, inter, bucket_length(n), device=device), g=g)
            t0 = time.perf_counter()
            for n in frames:
                fast(torch.randn(1, inter, n, device=device), g=g)
            seconds[name] = time.perf_counter() - t0
            del fast
    logger.info("precision auto: the decoder took %.3f s in fp32 and %.3f s in bf16 on %s frames: %s", seconds["fp32"],
                seconds["bf16"], "/".join(map(str, frames)),
                "bf16" if seconds["bf16"] <= AUTO_BF16_MARGIN * seconds["fp32"] else "fp32")
    return seconds


def bucketing_default(precision: str, device: str | torch.device = "cpu") -> bool:
    """Whether the fast path pads to bucketed lengths by default: in bf16 on the CPU, where oneDNN builds new
    primitives per shape (with AMX that cost several times the run itself: issue 26's 0.68x on distinct lengths).
    fp32 primitives are cheap to make: issue 26 measured fp32 on an AMX Xeon as fast on distinct lengths as on one
    repeated input, and on a 2-core Ice Lake Xeon (quiet, 2 threads, 10 distinct lengths, full-size generator) the
    bucketed fp32 path was 1.34x upstream against 1.47x unbucketed: the padding costs more than it saves."""
    return torch.device(device).type == "cpu" and resolve_precision(precision, device) == "bf16"


#: default time budget of the warm-up at load (``Voice.load``) for the bucketed bf16 path
DEFAULT_WARMUP_S = 15.0


def warm_up(model: nn.Module, budget_s: float = DEFAULT_WARMUP_S, max_frames: int = MAX_DECODE_FRAMES) -> dict:
    """Run the flow and the decoder once on each bucket length, shortest first, until ``budget_s`` is spent, so the
    first requests find their oneDNN primitives built. Returns ``{"shapes": n, "seconds": s, "up_to_frames": L}``
    and logs it. Only for a model from :func:`optimize_for_inference` with ``bucketed``; others return at once."""
    dec = getattr(model, "dec", None)
    done = {"shapes": 0, "seconds": 0.0, "up_to_frames": 0}
    if not isinstance(dec, FastGenerator) or not dec.bucketed or budget_s <= 0:
        return done
    device = dec.conv_pre_w.device
    gin = getattr(model, "gin_channels", 0) or 0
    g = torch.zeros(1, gin, 1, device=device) if gin and dec.cond is not None else None
    inter = dec.conv_pre_w.shape[1]
    lengths = sorted({bucket_length(n) for n in range(1, int(max_frames) + 1)})
    t0 = time.perf_counter()
    with torch.inference_mode():
        for n in lengths:
            if time.perf_counter() - t0 > budget_s:
                break
            z = torch.zeros(1, inter, n, device=device)
            if g is not None and hasattr(model, "flow"):
                model.flow(z, torch.ones(1, 1, n, device=device), g=g, reverse=True)
            dec(z, g=g)
            done["shapes"] += 1
            done["up_to_frames"] = n
    done["seconds"] = time.perf_counter() - t0
    logger.info("warm-up: flow + decoder on %d bucket lengths (up to %d frames) in %.1f s (budget %.0f s)",
                done["shapes"], done["up_to_frames"], done["seconds"], budget_s)
    return done


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
    bucketed: bool | None = None,
    warmup_s: float | None = 0.0,
) -> tuple[nn.Module, HParams]:
    """Build ``SynthesizerTrn`` from a config, load a G checkpoint strictly, fold weight norm; returns ``(model, hps)``.

    The vocabulary size is taken from the checkpoint (``enc_p.emb.weight``); speaker count and
    ``gin_channels`` from the config, so a config that does not belong to the checkpoint is refused
    with the differing keys named. The model is in eval mode on ``device``.

    ``precision`` is ``fp32`` (within 1e-4 of upstream), ``bf16`` (decoder and flow in bf16, text encoder and
    duration predictors in fp32 so durations do not change) or ``auto`` (bf16 where the CPU/GPU runs it natively);
    ``model.precision`` says what was chosen. ``fast=False`` keeps the plain decoder (debugging);
    see :func:`optimize_for_inference` (also for ``bucketed``). ``warmup_s``: time budget of :func:`warm_up`
    (0: none; None: :data:`DEFAULT_WARMUP_S` for the bucketed bf16 path, else none). The checkpoint file itself
    is never modified.
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
    optimize_for_inference(model, precision, fast=fast, bucketed=bucketed)
    if warmup_s is None:
        warmup_s = DEFAULT_WARMUP_S if model.precision == "bf16" else 0.0
    warm_up(model, warmup_s)
    return model, hps
