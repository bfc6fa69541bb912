"""Bert-VITS2 v2.3 networks: the synthesizer ``SynthesizerTrn`` and the three training discriminators.

Attribute names are the checkpoint's state-dict names (G_*.pth, D_*.pth, DUR_*.pth, WD_*.pth load unchanged).
These plain modules are the reference path; the inference fast paths (weight-norm folding, the channels-last / bf16
decoder, loading a generator for synthesis) are :mod:`bert_vits2.inference`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import Conv1d, Conv2d, ConvTranspose1d
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

from bert_vits2 import attentions, commons, modules, monotonic_align
from bert_vits2.commons import get_padding, init_weights
from bert_vits2.modules import weight_norm

N_TONES = 12  # 6 Chinese + 2 Japanese + 4 English tone ids
N_LANGUAGES = 3  # ZH, JP, EN
BERT_DIM = 1024


class DurationDiscriminator(nn.Module):
    """VITS2 duration discriminator: BiLSTM over (text hidden, log-duration) -> per-phone probability."""

    def __init__(self, in_channels: int, filter_channels: int, kernel_size: int, p_dropout: float, gin_channels: int = 0):
        super().__init__()
        self.in_channels = in_channels
        self.filter_channels = filter_channels
        self.gin_channels = gin_channels
        self.drop = nn.Dropout(p_dropout)
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_1 = modules.LayerNorm(filter_channels)
        self.conv_2 = nn.Conv1d(filter_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_2 = modules.LayerNorm(filter_channels)
        self.dur_proj = nn.Conv1d(1, filter_channels, 1)
        self.LSTM = nn.LSTM(2 * filter_channels, filter_channels, batch_first=True, bidirectional=True)
        if gin_channels != 0:
            self.cond = nn.Conv1d(gin_channels, in_channels, 1)
        self.output_layer = nn.Sequential(nn.Linear(2 * filter_channels, 1), nn.Sigmoid())

    def forward_probability(self, x: torch.Tensor, dur: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, self.dur_proj(dur)], dim=1).transpose(1, 2)
        x, _ = self.LSTM(x)
        return self.output_layer(x)

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, dur_r: torch.Tensor, dur_hat: torch.Tensor, g: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Returns ``[prob_real, prob_generated]``, each [B, T, 1] (padded positions are not zeroed)."""
        x = torch.detach(x)
        if g is not None:
            x = x + self.cond(torch.detach(g))
        x = self.drop(self.norm_1(torch.relu(self.conv_1(x * x_mask))))
        x = self.drop(self.norm_2(torch.relu(self.conv_2(x * x_mask))))
        return [self.forward_probability(x, dur) for dur in (dur_r, dur_hat)]


class TransformerCouplingBlock(nn.Module):
    """The v2.3 prior flow: n_flows x (transformer coupling layer, Flip)."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        n_flows: int = 4,
        gin_channels: int = 0,
        share_parameter: bool = False,
    ):
        super().__init__()
        if share_parameter:
            raise NotImplementedError("flow_share_parameter=True is not supported (no released v2.3 config uses it)")
        self.channels = channels
        self.n_flows = n_flows
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                modules.TransformerCouplingLayer(
                    channels, hidden_channels, kernel_size, n_layers, n_heads, p_dropout, filter_channels,
                    mean_only=True, gin_channels=gin_channels,
                )
            )
            self.flows.append(modules.Flip())

    #: set by :func:`optimize_for_inference` (bf16): run the couplings under autocast, return float32
    autocast_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False):
        if self.autocast_dtype is not None and reverse and x.dtype == torch.float32 and not torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, dtype=self.autocast_dtype):
                out = self._forward(x, x_mask, g, reverse)
            return out.float()
        return self._forward(x, x_mask, g, reverse)

    def _forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None, reverse: bool) -> torch.Tensor:
        if not reverse:
            for flow in self.flows:
                x, _ = flow(x, x_mask, g=g, reverse=reverse)
        else:
            for flow in reversed(self.flows):
                x = flow(x, x_mask, g=g, reverse=reverse)
        return x


class ResidualCouplingBlock(nn.Module):
    """WaveNet-coupling prior flow (only for configs with use_transformer_flow=False)."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        n_flows: int = 4,
        gin_channels: int = 0,
    ):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                modules.ResidualCouplingLayer(
                    channels, hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels, mean_only=True
                )
            )
            self.flows.append(modules.Flip())

    autocast_dtype: torch.dtype | None = None
    forward = TransformerCouplingBlock.forward
    _forward = TransformerCouplingBlock._forward


class StochasticDurationPredictor(nn.Module):
    """Flow-based log-duration model (VITS). Training direction returns NLL + log q per item; reverse samples logw."""

    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel_size: int,
        p_dropout: float,
        n_flows: int = 4,
        gin_channels: int = 0,
    ):
        super().__init__()
        filter_channels = in_channels  # upstream overrides it (kept for checkpoint shapes)
        self.in_channels = in_channels
        self.filter_channels = filter_channels
        self.kernel_size = kernel_size
        self.p_dropout = p_dropout
        self.n_flows = n_flows
        self.gin_channels = gin_channels

        self.log_flow = modules.Log()
        self.flows = nn.ModuleList()
        self.flows.append(modules.ElementwiseAffine(2))
        for _ in range(n_flows):
            self.flows.append(modules.ConvFlow(2, filter_channels, kernel_size, n_layers=3))
            self.flows.append(modules.Flip())

        self.post_pre = nn.Conv1d(1, filter_channels, 1)
        self.post_proj = nn.Conv1d(filter_channels, filter_channels, 1)
        self.post_convs = modules.DDSConv(filter_channels, kernel_size, n_layers=3, p_dropout=p_dropout)
        self.post_flows = nn.ModuleList()
        self.post_flows.append(modules.ElementwiseAffine(2))
        for _ in range(4):
            self.post_flows.append(modules.ConvFlow(2, filter_channels, kernel_size, n_layers=3))
            self.post_flows.append(modules.Flip())

        self.pre = nn.Conv1d(in_channels, filter_channels, 1)
        self.proj = nn.Conv1d(filter_channels, filter_channels, 1)
        self.convs = modules.DDSConv(filter_channels, kernel_size, n_layers=3, p_dropout=p_dropout)
        if gin_channels != 0:
            self.cond = nn.Conv1d(gin_channels, filter_channels, 1)

    def forward(
        self,
        x: torch.Tensor,
        x_mask: torch.Tensor,
        w: torch.Tensor | None = None,
        g: torch.Tensor | None = None,
        reverse: bool = False,
        noise_scale: float = 1.0,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Training: NLL + log q per item. ``reverse``: sampled logw [B, 1, T]; ``noise`` [B, 2, T] (already scaled)
        replaces the internal ``randn * noise_scale`` draw (deterministic graphs, e.g. the ONNX export).
        ``generator``: a CPU generator for that draw (default: torch's global RNG, as upstream)."""
        x = torch.detach(x)
        x = self.pre(x)
        if g is not None:
            x = x + self.cond(torch.detach(g))
        x = self.convs(x, x_mask)
        x = self.proj(x) * x_mask

        if reverse:
            flows = list(reversed(self.flows))
            flows = flows[:-2] + [flows[-1]]  # the first ConvFlow is skipped when sampling (upstream behaviour)
            # RNG draw order matters for seeded reproduction: this is the first draw of infer().
            if noise is None:
                z = torch.randn(x.size(0), 2, x.size(2), generator=generator).to(device=x.device, dtype=x.dtype) * noise_scale
            else:
                z = noise.to(dtype=x.dtype)
            for flow in flows:
                z = flow(z, x_mask, g=x, reverse=True)
            return z[:, :1]

        if w is None:
            raise ValueError("the training direction of the stochastic duration predictor needs durations w")
        logdet_tot_q = 0
        h_w = self.post_pre(w)
        h_w = self.post_convs(h_w, x_mask)
        h_w = self.post_proj(h_w) * x_mask
        e_q = torch.randn(w.size(0), 2, w.size(2)).to(device=x.device, dtype=x.dtype) * x_mask
        z_q = e_q
        for flow in self.post_flows:
            z_q, logdet_q = flow(z_q, x_mask, g=(x + h_w))
            logdet_tot_q = logdet_tot_q + logdet_q
        z_u, z1 = torch.split(z_q, [1, 1], 1)
        u = torch.sigmoid(z_u) * x_mask
        z0 = (w - u) * x_mask
        logdet_tot_q = logdet_tot_q + torch.sum((F.logsigmoid(z_u) + F.logsigmoid(-z_u)) * x_mask, [1, 2])
        logq = torch.sum(-0.5 * (math.log(2 * math.pi) + (e_q**2)) * x_mask, [1, 2]) - logdet_tot_q

        logdet_tot = 0
        z0, logdet = self.log_flow(z0, x_mask)
        logdet_tot = logdet_tot + logdet
        z = torch.cat([z0, z1], 1)
        for flow in self.flows:
            z, logdet = flow(z, x_mask, g=x, reverse=False)
            logdet_tot = logdet_tot + logdet
        nll = torch.sum(0.5 * (math.log(2 * math.pi) + (z**2)) * x_mask, [1, 2]) - logdet_tot
        return nll + logq


class DurationPredictor(nn.Module):
    """Deterministic log-duration predictor (two conv/ReLU/LayerNorm blocks)."""

    def __init__(self, in_channels: int, filter_channels: int, kernel_size: int, p_dropout: float, gin_channels: int = 0):
        super().__init__()
        self.in_channels = in_channels
        self.filter_channels = filter_channels
        self.gin_channels = gin_channels
        self.drop = nn.Dropout(p_dropout)
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_1 = modules.LayerNorm(filter_channels)
        self.conv_2 = nn.Conv1d(filter_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_2 = modules.LayerNorm(filter_channels)
        self.proj = nn.Conv1d(filter_channels, 1, 1)
        if gin_channels != 0:
            self.cond = nn.Conv1d(gin_channels, in_channels, 1)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.detach(x)
        if g is not None:
            x = x + self.cond(torch.detach(g))
        x = self.drop(self.norm_1(torch.relu(self.conv_1(x * x_mask))))
        x = self.drop(self.norm_2(torch.relu(self.conv_2(x * x_mask))))
        return self.proj(x * x_mask) * x_mask


class TextEncoder(nn.Module):
    """Phone + tone + language embeddings plus the three projected BERT streams, then a transformer."""

    def __init__(
        self,
        n_vocab: int,
        out_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        gin_channels: int = 0,
    ):
        super().__init__()
        self.n_vocab = n_vocab
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.gin_channels = gin_channels
        self.emb = nn.Embedding(n_vocab, hidden_channels)
        nn.init.normal_(self.emb.weight, 0.0, hidden_channels**-0.5)
        self.tone_emb = nn.Embedding(N_TONES, hidden_channels)
        nn.init.normal_(self.tone_emb.weight, 0.0, hidden_channels**-0.5)
        self.language_emb = nn.Embedding(N_LANGUAGES, hidden_channels)
        nn.init.normal_(self.language_emb.weight, 0.0, hidden_channels**-0.5)
        self.bert_proj = nn.Conv1d(BERT_DIM, hidden_channels, 1)
        self.ja_bert_proj = nn.Conv1d(BERT_DIM, hidden_channels, 1)
        self.en_bert_proj = nn.Conv1d(BERT_DIM, hidden_channels, 1)
        self.encoder = attentions.Encoder(
            hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout, gin_channels=gin_channels
        )
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        tone: torch.Tensor,
        language: torch.Tensor,
        bert: torch.Tensor,
        ja_bert: torch.Tensor,
        en_bert: torch.Tensor,
        g: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(x, m, logs, x_mask)``: hidden [B, H, T], prior mean / log-std [B, C, T], mask [B, 1, T]."""
        bert_emb = self.bert_proj(bert).transpose(1, 2)
        ja_bert_emb = self.ja_bert_proj(ja_bert).transpose(1, 2)
        en_bert_emb = self.en_bert_proj(en_bert).transpose(1, 2)
        # The BERT projections are inside the sqrt(hidden) scaling (checkpoints depend on it).
        x = (
            self.emb(x) + self.tone_emb(tone) + self.language_emb(language) + bert_emb + ja_bert_emb + en_bert_emb
        ) * math.sqrt(self.hidden_channels)
        x = x.transpose(1, -1)
        x_mask = commons.sequence_mask(x_lengths, x.size(2)).unsqueeze(1).to(x.dtype)
        x = self.encoder(x * x_mask, x_mask, g=g)
        stats = self.proj(x) * x_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        return x, m, logs, x_mask


class PosteriorEncoder(nn.Module):
    """Linear spectrogram -> posterior q(z|y) through a 16-layer WaveNet."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = modules.WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(self, x: torch.Tensor, x_lengths: torch.Tensor, g: torch.Tensor | None = None):
        """Returns ``(z, m, logs, y_mask)``; z is sampled with ``torch.randn_like(m)``."""
        x_mask = commons.sequence_mask(x_lengths, x.size(2)).unsqueeze(1).to(x.dtype)
        x = self.pre(x) * x_mask
        x = self.enc(x, x_mask, g=g)
        stats = self.proj(x) * x_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        z = (m + torch.randn_like(m) * torch.exp(logs)) * x_mask
        return z, m, logs, x_mask


class Generator(nn.Module):
    """HiFi-GAN v1 decoder: z [B, C, T] -> waveform [B, 1, T * prod(upsample_rates)]."""

    def __init__(
        self,
        initial_channel: int,
        resblock: str,
        resblock_kernel_sizes: list[int],
        resblock_dilation_sizes: list[list[int]],
        upsample_rates: list[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: list[int],
        gin_channels: int = 0,
    ):
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.num_upsamples = len(upsample_rates)
        self.conv_pre = Conv1d(initial_channel, upsample_initial_channel, 7, 1, padding=3)
        resblock_cls = modules.ResBlock1 if str(resblock) == "1" else modules.ResBlock2

        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            self.ups.append(
                weight_norm(
                    ConvTranspose1d(
                        upsample_initial_channel // (2**i),
                        upsample_initial_channel // (2 ** (i + 1)),
                        k,
                        u,
                        padding=(k - u) // 2,
                    )
                )
            )

        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for i in range(len(self.ups)):
            ch = upsample_initial_channel // (2 ** (i + 1))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(resblock_cls(ch, k, d))

        self.conv_post = Conv1d(ch, 1, 7, 1, padding=3, bias=False)
        self.ups.apply(init_weights)
        if gin_channels != 0:
            self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond(g)
        for i in range(self.num_upsamples):
            x = F.leaky_relu(x, modules.LRELU_SLOPE)
            x = self.ups[i](x)
            xs = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        x = F.leaky_relu(x)  # default slope 0.01 here, as upstream
        x = self.conv_post(x)
        return torch.tanh(x)


class DiscriminatorP(nn.Module):
    """HiFi-GAN period discriminator: waveform folded into [T/p, p] and scanned with (k, 1) 2-D convs."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3, use_spectral_norm: bool = False):
        super().__init__()
        self.period = period
        norm_f = spectral_norm if use_spectral_norm else weight_norm
        pad = (get_padding(kernel_size, 1), 0)
        self.convs = nn.ModuleList(
            [
                norm_f(Conv2d(1, 32, (kernel_size, 1), (stride, 1), padding=pad)),
                norm_f(Conv2d(32, 128, (kernel_size, 1), (stride, 1), padding=pad)),
                norm_f(Conv2d(128, 512, (kernel_size, 1), (stride, 1), padding=pad)),
                norm_f(Conv2d(512, 1024, (kernel_size, 1), (stride, 1), padding=pad)),
                norm_f(Conv2d(1024, 1024, (kernel_size, 1), 1, padding=pad)),
            ]
        )
        self.conv_post = norm_f(Conv2d(1024, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        b, c, t = x.shape
        if t % self.period != 0:
            n_pad = self.period - (t % self.period)
            x = F.pad(x, (0, n_pad), "reflect")
            t = t + n_pad
        x = x.view(b, c, t // self.period, self.period)
        for layer in self.convs:
            x = F.leaky_relu(layer(x), modules.LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class DiscriminatorS(nn.Module):
    """HiFi-GAN/MelGAN scale discriminator on the raw waveform (grouped strided convs)."""

    def __init__(self, use_spectral_norm: bool = False):
        super().__init__()
        norm_f = spectral_norm if use_spectral_norm else weight_norm
        self.convs = nn.ModuleList(
            [
                norm_f(Conv1d(1, 16, 15, 1, padding=7)),
                norm_f(Conv1d(16, 64, 41, 4, groups=4, padding=20)),
                norm_f(Conv1d(64, 256, 41, 4, groups=16, padding=20)),
                norm_f(Conv1d(256, 1024, 41, 4, groups=64, padding=20)),
                norm_f(Conv1d(1024, 1024, 41, 4, groups=256, padding=20)),
                norm_f(Conv1d(1024, 1024, 5, 1, padding=2)),
            ]
        )
        self.conv_post = norm_f(Conv1d(1024, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        for layer in self.convs:
            x = F.leaky_relu(layer(x), modules.LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiPeriodDiscriminator(nn.Module):
    """One scale discriminator + period discriminators for periods 2, 3, 5, 7, 11 (D_*.pth)."""

    def __init__(self, use_spectral_norm: bool = False):
        super().__init__()
        periods = [2, 3, 5, 7, 11]
        discs = [DiscriminatorS(use_spectral_norm=use_spectral_norm)]
        discs += [DiscriminatorP(p, use_spectral_norm=use_spectral_norm) for p in periods]
        self.discriminators = nn.ModuleList(discs)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        """Returns ``(y_d_rs, y_d_gs, fmap_rs, fmap_gs)``: scores and feature maps of real and generated audio."""
        y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
        for d in self.discriminators:
            y_d_r, fmap_r = d(y)
            y_d_g, fmap_g = d(y_hat)
            y_d_rs.append(y_d_r)
            y_d_gs.append(y_d_g)
            fmap_rs.append(fmap_r)
            fmap_gs.append(fmap_g)
        return y_d_rs, y_d_gs, fmap_rs, fmap_gs


class WavLMDiscriminator(nn.Module):
    """Discriminator on stacked WavLM hidden states [B, slm_hidden * slm_layers, T] (WD_*.pth) -> scores [B, T]."""

    def __init__(
        self, slm_hidden: int = 768, slm_layers: int = 13, initial_channel: int = 64, use_spectral_norm: bool = False
    ):
        super().__init__()
        norm_f = spectral_norm if use_spectral_norm else weight_norm
        self.pre = norm_f(Conv1d(slm_hidden * slm_layers, initial_channel, 1, 1, padding=0))
        self.convs = nn.ModuleList(
            [
                norm_f(nn.Conv1d(initial_channel, initial_channel * 2, kernel_size=5, padding=2)),
                norm_f(nn.Conv1d(initial_channel * 2, initial_channel * 4, kernel_size=5, padding=2)),
                norm_f(nn.Conv1d(initial_channel * 4, initial_channel * 4, 5, 1, padding=2)),
            ]
        )
        self.conv_post = norm_f(Conv1d(initial_channel * 4, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        for layer in self.convs:
            x = F.leaky_relu(layer(x), modules.LRELU_SLOPE)
        x = self.conv_post(x)
        return torch.flatten(x, 1, -1)


class SynthesizerTrn(nn.Module):
    """Bert-VITS2 v2.3 synthesizer (generator G) for training and inference.

    Build it like upstream: ``SynthesizerTrn(len(symbols), filter_length // 2 + 1, segment_size // hop_length,
    n_speakers=hps.data.n_speakers, **hps.model)``; unknown config keys (slm, use_* flags, n_layers_q ...) are accepted.
    """

    def __init__(
        self,
        n_vocab: int,
        spec_channels: int,
        segment_size: int,
        inter_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        resblock: str,
        resblock_kernel_sizes: list[int],
        resblock_dilation_sizes: list[list[int]],
        upsample_rates: list[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: list[int],
        n_speakers: int = 256,
        gin_channels: int = 256,
        use_sdp: bool = True,
        n_flow_layer: int = 4,
        n_layers_trans_flow: int = 4,
        flow_share_parameter: bool = False,
        use_transformer_flow: bool = True,
        **kwargs,
    ):
        super().__init__()
        if n_speakers < 1:
            raise ValueError("n_speakers must be >= 1 (the reference-encoder variant without speaker ids is not supported)")
        self.n_vocab = n_vocab
        self.spec_channels = spec_channels
        self.inter_channels = inter_channels
        self.hidden_channels = hidden_channels
        self.segment_size = segment_size
        self.n_speakers = n_speakers
        self.gin_channels = gin_channels
        self.use_sdp = use_sdp
        self.n_layers_trans_flow = n_layers_trans_flow
        self.use_spk_conditioned_encoder = kwargs.get("use_spk_conditioned_encoder", True)
        self.use_noise_scaled_mas = kwargs.get("use_noise_scaled_mas", False)
        # Noise-scaled MAS (VITS2): the training loop lowers current_mas_noise_scale by noise_scale_delta per step.
        self.mas_noise_scale_initial = kwargs.get("mas_noise_scale_initial", 0.01)
        self.noise_scale_delta = kwargs.get("noise_scale_delta", 2e-6)
        self.current_mas_noise_scale = self.mas_noise_scale_initial
        self.enc_gin_channels = gin_channels if (self.use_spk_conditioned_encoder and gin_channels > 0) else 0

        self.enc_p = TextEncoder(
            n_vocab, inter_channels, hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout,
            gin_channels=self.enc_gin_channels,
        )
        self.dec = Generator(
            inter_channels, resblock, resblock_kernel_sizes, resblock_dilation_sizes, upsample_rates,
            upsample_initial_channel, upsample_kernel_sizes, gin_channels=gin_channels,
        )
        self.enc_q = PosteriorEncoder(spec_channels, inter_channels, hidden_channels, 5, 1, 16, gin_channels=gin_channels)
        if use_transformer_flow:
            self.flow = TransformerCouplingBlock(
                inter_channels, hidden_channels, filter_channels, n_heads, n_layers_trans_flow, 5, p_dropout,
                n_flow_layer, gin_channels=gin_channels, share_parameter=flow_share_parameter,
            )
        else:
            self.flow = ResidualCouplingBlock(inter_channels, hidden_channels, 5, 1, n_flow_layer, gin_channels=gin_channels)
        self.sdp = StochasticDurationPredictor(hidden_channels, 192, 3, 0.5, 4, gin_channels=gin_channels)
        self.dp = DurationPredictor(hidden_channels, 256, 3, 0.5, gin_channels=gin_channels)
        self.emb_g = nn.Embedding(n_speakers, gin_channels)

    def forward(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        y: torch.Tensor,
        y_lengths: torch.Tensor,
        sid: torch.Tensor,
        tone: torch.Tensor,
        language: torch.Tensor,
        bert: torch.Tensor,
        ja_bert: torch.Tensor,
        en_bert: torch.Tensor,
    ):
        """Training forward. Returns ``(o, l_length, attn, ids_slice, x_mask, y_mask,
        (z, z_p, m_p, logs_p, m_q, logs_q), (x, logw, logw_, logw_sdp), g)``."""
        if y.size(2) < self.segment_size:
            raise ValueError(
                f"spectrogram has {y.size(2)} frames, fewer than the training segment ({self.segment_size} frames): "
                "drop shorter utterances from the filelist or lower train.segment_size"
            )
        g = self.emb_g(sid).unsqueeze(-1)
        x, m_p, logs_p, x_mask = self.enc_p(x, x_lengths, tone, language, bert, ja_bert, en_bert, g=g)
        z, m_q, logs_q, y_mask = self.enc_q(y, y_lengths, g=g)
        z_p = self.flow(z, y_mask, g=g)

        with torch.no_grad():
            # log N(z_p | m_p, exp(logs_p)) for every (frame, phone) pair, [B, T_y, T_x]
            s_p_sq_r = torch.exp(-2 * logs_p)
            neg_cent1 = torch.sum(-0.5 * math.log(2 * math.pi) - logs_p, [1], keepdim=True)
            neg_cent2 = torch.matmul(-0.5 * (z_p**2).transpose(1, 2), s_p_sq_r)
            neg_cent3 = torch.matmul(z_p.transpose(1, 2), (m_p * s_p_sq_r))
            neg_cent4 = torch.sum(-0.5 * (m_p**2) * s_p_sq_r, [1], keepdim=True)
            neg_cent = neg_cent1 + neg_cent2 + neg_cent3 + neg_cent4
            if self.use_noise_scaled_mas:
                epsilon = torch.std(neg_cent) * torch.randn_like(neg_cent) * self.current_mas_noise_scale
                neg_cent = neg_cent + epsilon
            attn_mask = x_mask.unsqueeze(2) * y_mask.unsqueeze(-1)
            attn = monotonic_align.maximum_path(neg_cent, attn_mask.squeeze(1)).unsqueeze(1).detach()

        w = attn.sum(2)
        l_length_sdp = self.sdp(x, x_mask, w, g=g)
        l_length_sdp = l_length_sdp / torch.sum(x_mask)
        logw_ = torch.log(w + 1e-6) * x_mask
        logw = self.dp(x, x_mask, g=g)
        logw_sdp = self.sdp(x, x_mask, g=g, reverse=True, noise_scale=1.0)
        l_length_dp = torch.sum((logw - logw_) ** 2, [1, 2]) / torch.sum(x_mask)
        l_length_sdp = l_length_sdp + torch.sum((logw_sdp - logw_) ** 2, [1, 2]) / torch.sum(x_mask)
        l_length = l_length_dp + l_length_sdp

        m_p = torch.matmul(attn.squeeze(1), m_p.transpose(1, 2)).transpose(1, 2)
        logs_p = torch.matmul(attn.squeeze(1), logs_p.transpose(1, 2)).transpose(1, 2)

        z_slice, ids_slice = commons.rand_slice_segments(z, y_lengths, self.segment_size)
        o = self.dec(z_slice, g=g)
        return (
            o, l_length, attn, ids_slice, x_mask, y_mask,
            (z, z_p, m_p, logs_p, m_q, logs_q), (x, logw, logw_, logw_sdp), g,
        )

    def infer(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        sid: torch.Tensor,
        tone: torch.Tensor,
        language: torch.Tensor,
        bert: torch.Tensor,
        ja_bert: torch.Tensor,
        en_bert: torch.Tensor,
        noise_scale: float = 0.667,
        length_scale: float = 1,
        noise_scale_w: float = 0.8,
        max_len: int | None = None,
        sdp_ratio: float = 0,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        device_generator: torch.Generator | None = None,
    ):
        """Synthesis. Returns ``(o [B,1,T_y*hop], attn [B,1,T_y,T_x], y_mask, (z, z_p, m_p, logs_p))``.

        Random draws (same order as upstream, so seeded runs reproduce): SDP noise [B, 2, T_x] (drawn on the CPU),
        then the prior noise (drawn on the model's device). ``generator`` (CPU) and ``device_generator`` (the model's
        device; defaults to ``generator`` on a CPU model) give a request its own random stream; without them torch's
        global RNG is used, as upstream.
        """
        g = self.emb_g(sid).unsqueeze(-1)
        x, m_p, logs_p, x_mask = self.enc_p(x, x_lengths, tone, language, bert, ja_bert, en_bert, g=g)
        logw_sdp = self.sdp(x, x_mask, g=g, reverse=True, noise_scale=noise_scale_w, generator=generator)
        logw = logw_sdp * sdp_ratio + self.dp(x, x_mask, g=g) * (1 - sdp_ratio)
        attn, y_mask = self.durations_to_alignment(logw, x_mask, length_scale)
        m_p = torch.matmul(attn.squeeze(1), m_p.transpose(1, 2)).transpose(1, 2)
        logs_p = torch.matmul(attn.squeeze(1), logs_p.transpose(1, 2)).transpose(1, 2)
        if device_generator is None and generator is not None and m_p.device.type == "cpu":
            device_generator = generator
        # randn_like fills in m_p's memory order (m_p is a transposed view): keep that order, and the generator's
        # consumption with it, so a seeded generator reproduces upstream's global-RNG draws exactly
        eps = torch.empty_like(m_p).normal_(generator=device_generator)
        z_p = m_p + eps * torch.exp(logs_p) * noise_scale
        z = self.flow(z_p, y_mask, g=g, reverse=True)
        o = self.dec((z * y_mask)[:, :, :max_len], g=g)
        return o, attn, y_mask, (z, z_p, m_p, logs_p)

    @staticmethod
    def durations_to_alignment(
        logw: torch.Tensor, x_mask: torch.Tensor, length_scale: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-durations [B,1,T_x] -> hard alignment [B,1,T_y,T_x] and frame mask [B,1,T_y] (ceil'd durations)."""
        w = torch.exp(logw) * x_mask * length_scale
        w_ceil = torch.ceil(w)
        y_lengths = torch.clamp_min(torch.sum(w_ceil, [1, 2]), 1).long()
        y_mask = commons.sequence_mask(y_lengths, None).unsqueeze(1).to(x_mask.dtype)
        attn_mask = x_mask.unsqueeze(2) * y_mask.unsqueeze(-1)
        return commons.generate_path(w_ceil, attn_mask), y_mask
