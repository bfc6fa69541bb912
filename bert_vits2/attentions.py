"""Transformer encoder with windowed relative-position attention (VITS / VITS2 style).

Used by the text encoder and by every transformer coupling layer of the flow. Parameter names
(``attn_layers``, ``norm_layers_1``, ``ffn_layers``, ``norm_layers_2``, ``spk_emb_linear``, ``conv_q`` ...,
``emb_rel_k``/``emb_rel_v``, LayerNorm ``gamma``/``beta``) follow the Bert-VITS2 v2.3 checkpoint layout.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from bert_vits2.commons import convert_pad_shape


class LayerNorm(nn.Module):
    """LayerNorm over the channel axis of a [B, C, T] tensor (checkpoint names ``gamma``/``beta``)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, -1)
        x = F.layer_norm(x, (self.channels,), self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


class Encoder(nn.Module):
    """Post-LN transformer; with ``gin_channels`` the speaker embedding is added before layer ``cond_layer_idx``."""

    def __init__(
        self,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int = 1,
        p_dropout: float = 0.0,
        window_size: int = 4,
        isflow: bool = True,
        gin_channels: int = 0,
        cond_layer_idx: int = 2,
        **kwargs,
    ):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.filter_channels = filter_channels
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.kernel_size = kernel_size
        self.p_dropout = p_dropout
        self.window_size = window_size
        self.cond_layer_idx = n_layers
        self.gin_channels = gin_channels
        if gin_channels != 0:
            self.spk_emb_linear = nn.Linear(gin_channels, hidden_channels)
            self.cond_layer_idx = cond_layer_idx
            if not 0 <= cond_layer_idx < n_layers:
                raise ValueError(
                    f"speaker conditioning goes before encoder layer {cond_layer_idx}, "
                    f"but the encoder has only {n_layers} layers: use n_layers > {cond_layer_idx}"
                )
        self.drop = nn.Dropout(p_dropout)
        self.attn_layers = nn.ModuleList()
        self.norm_layers_1 = nn.ModuleList()
        self.ffn_layers = nn.ModuleList()
        self.norm_layers_2 = nn.ModuleList()
        for _ in range(n_layers):
            self.attn_layers.append(
                MultiHeadAttention(hidden_channels, hidden_channels, n_heads, p_dropout=p_dropout, window_size=window_size)
            )
            self.norm_layers_1.append(LayerNorm(hidden_channels))
            self.ffn_layers.append(FFN(hidden_channels, hidden_channels, filter_channels, kernel_size, p_dropout=p_dropout))
            self.norm_layers_2.append(LayerNorm(hidden_channels))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
        x = x * x_mask
        for i in range(self.n_layers):
            if i == self.cond_layer_idx and g is not None:
                x = x + self.spk_emb_linear(g.transpose(1, 2)).transpose(1, 2)
                x = x * x_mask
            y = self.drop(self.attn_layers[i](x, x, attn_mask))
            x = self.norm_layers_1[i](x + y)
            y = self.drop(self.ffn_layers[i](x, x_mask))
            x = self.norm_layers_2[i](x + y)
        return x * x_mask


class MultiHeadAttention(nn.Module):
    """Multi-head attention with relative key/value embeddings shared by all heads, window +-``window_size``."""

    def __init__(
        self,
        channels: int,
        out_channels: int,
        n_heads: int,
        p_dropout: float = 0.0,
        window_size: int | None = None,
        heads_share: bool = True,
    ):
        super().__init__()
        if channels % n_heads != 0:
            raise ValueError(f"hidden channels ({channels}) must be divisible by n_heads ({n_heads})")
        self.channels = channels
        self.out_channels = out_channels
        self.n_heads = n_heads
        self.window_size = window_size
        self.k_channels = channels // n_heads
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        self.drop = nn.Dropout(p_dropout)
        if window_size is not None:
            n_heads_rel = 1 if heads_share else n_heads
            rel_stddev = self.k_channels**-0.5
            self.emb_rel_k = nn.Parameter(torch.randn(n_heads_rel, window_size * 2 + 1, self.k_channels) * rel_stddev)
            self.emb_rel_v = nn.Parameter(torch.randn(n_heads_rel, window_size * 2 + 1, self.k_channels) * rel_stddev)
        nn.init.xavier_uniform_(self.conv_q.weight)
        nn.init.xavier_uniform_(self.conv_k.weight)
        nn.init.xavier_uniform_(self.conv_v.weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        q = self.conv_q(x)
        k = self.conv_k(c)
        v = self.conv_v(c)
        x = self.attention(q, k, v, mask=attn_mask)
        return self.conv_o(x)

    def attention(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, d, t_s = key.shape
        t_t = query.size(2)
        query = query.view(b, self.n_heads, self.k_channels, t_t).transpose(2, 3)
        key = key.view(b, self.n_heads, self.k_channels, t_s).transpose(2, 3)
        value = value.view(b, self.n_heads, self.k_channels, t_s).transpose(2, 3)

        query = query / math.sqrt(self.k_channels)
        scores = torch.matmul(query, key.transpose(-2, -1))
        if self.window_size is not None:
            if t_s != t_t:
                raise ValueError("relative attention is only defined for self-attention")
            if torch.jit.is_tracing():  # ONNX export: no Python branch on the length (it would be baked in)
                key_rel, pad = self._traceable_embeddings(self.emb_rel_k, t_s), 0
            else:
                # Only the 2*window+1 offsets inside the window have non-zero embeddings: multiply with those and
                # zero-pad to the 2L-1 offsets (O(L*window*d) instead of O(L^2*d); same result).
                key_rel, pad = self._window_embeddings(self.emb_rel_k, t_s)
            rel_logits = torch.matmul(query, key_rel.unsqueeze(0).transpose(-2, -1))
            if pad:
                rel_logits = F.pad(rel_logits, [pad, pad])
            scores = scores + self._relative_position_to_absolute_position(rel_logits)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e4)
        p_attn = self.drop(F.softmax(scores, dim=-1))
        output = torch.matmul(p_attn, value)
        if self.window_size is not None:
            relative_weights = self._absolute_position_to_relative_position(p_attn)
            if torch.jit.is_tracing():
                value_rel, pad = self._traceable_embeddings(self.emb_rel_v, t_s), 0
            else:
                value_rel, pad = self._window_embeddings(self.emb_rel_v, t_s)
            relative_weights = relative_weights[..., pad : relative_weights.size(-1) - pad]
            output = output + torch.matmul(relative_weights, value_rel.unsqueeze(0))
        return output.transpose(2, 3).contiguous().view(b, d, t_t)

    def _window_embeddings(self, relative_embeddings: torch.Tensor, length: int) -> tuple[torch.Tensor, int]:
        """The relative embeddings that can be non-zero for ``length`` and how many zero offsets pad each side.

        Zero-padding the result by ``pad`` on both sides gives ``_get_relative_embeddings(.., length)``.
        """
        window = self.window_size
        pad = max(length - (window + 1), 0)
        start = max((window + 1) - length, 0)
        return relative_embeddings[:, start : relative_embeddings.size(1) - start], pad

    def _traceable_embeddings(self, relative_embeddings: torch.Tensor, length: int | torch.Tensor) -> torch.Tensor:
        """The 2*length-1 relative embeddings with one pad whose amount may be negative (a crop): no branch on the
        length, so a traced graph (ONNX) stays valid for every length. Same values as ``_get_relative_embeddings``."""
        pad = length - (self.window_size + 1)
        return F.pad(relative_embeddings, [0, 0, pad, pad])

    def _get_relative_embeddings(self, relative_embeddings: torch.Tensor, length: int) -> torch.Tensor:
        """The 2*length-1 relative offsets needed for a sequence of ``length``, zero beyond the window."""
        window = self.window_size
        pad_length = max(length - (window + 1), 0)
        slice_start = max((window + 1) - length, 0)
        slice_end = slice_start + 2 * length - 1
        if pad_length > 0:
            relative_embeddings = F.pad(relative_embeddings, convert_pad_shape([[0, 0], [pad_length, pad_length], [0, 0]]))
        return relative_embeddings[:, slice_start:slice_end]

    @staticmethod
    def _relative_position_to_absolute_position(x: torch.Tensor) -> torch.Tensor:
        """[b, h, l, 2l-1] relative logits -> [b, h, l, l] absolute (pad/reshape trick)."""
        b, h, length, _ = x.shape
        x = F.pad(x, [0, 1])
        x_flat = x.view(b, h, length * 2 * length)
        x_flat = F.pad(x_flat, [0, length - 1])
        return x_flat.view(b, h, length + 1, 2 * length - 1)[:, :, :length, length - 1 :]

    @staticmethod
    def _absolute_position_to_relative_position(x: torch.Tensor) -> torch.Tensor:
        """[b, h, l, l] absolute weights -> [b, h, l, 2l-1] relative."""
        b, h, length, _ = x.shape
        x = F.pad(x, [0, length - 1])
        x_flat = x.view(b, h, length**2 + length * (length - 1))
        x_flat = F.pad(x_flat, [length, 0])
        return x_flat.view(b, h, length, 2 * length)[:, :, :, 1:]


class FFN(nn.Module):
    """Two 'same'-padded convolutions with ReLU between them, masked before each conv."""

    def __init__(
        self, in_channels: int, out_channels: int, filter_channels: int, kernel_size: int, p_dropout: float = 0.0
    ):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, out_channels, kernel_size)
        self.drop = nn.Dropout(p_dropout)

    def _same_padding(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size == 1:
            return x
        return F.pad(x, [(self.kernel_size - 1) // 2, self.kernel_size // 2])

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        x = self.conv_1(self._same_padding(x * x_mask))
        x = self.drop(torch.relu(x))
        x = self.conv_2(self._same_padding(x * x_mask))
        return x * x_mask
