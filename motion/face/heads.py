"""Expression heads: sequence models from TTS features (z or log-mel, 86.13 frames/s) to the 61 Live Link values.

- ``ZHead`` (spec §3, the original "VisemesNet"): Conv1d -> optional post-norm TransformerEncoder (no positional
  encoding) -> LSTM or GRU (bidirectional) -> MLP -> Conv1d temporal smoother; no output activation.
- ``MelHead`` (spec §4, the "2025 improvement", a CRNN on the log-mel). Gaps settled here:
  * ``n_mels`` is a config value (default 80); the mel comes from ``motion.face.features.log_mel``.
  * Pooling is **frequency-only** (MaxPool2d((2, 1))), so the output stays at the input frame rate and there is
    nothing to upsample; the GRU reads ``channels[-1] * n_mels / 4`` features per frame.
  * Output range: sigmoid for the 52 shapes ([0, 1]) and tanh for the 9 head/eye rotations ([-1, 1]).
  * BatchNorm statistics include zero padding frames of a padded batch (harmless with similar-length batches).

- ``CausalMelHead`` (live faces, ``head_config("mel", causal=True)``): the mel CRNN with causal convolutions, a
  unidirectional GRU and ``lookahead_frames`` (0-5) frames of right context; ``CausalMelStream`` runs it frame by frame.

All take ``x [B, C, T]`` (+ optional ``lengths [B]``) and return ``[B, 61, T]`` at the input frame rate; padded
positions are kept out of every recurrent/attention computation. ``motion.frames.resample_curves`` maps predictions to another rate on
frame-centre times (differentiable, used by the loss); ``predict`` does inference on one clip and returns ``[T', 61]``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from motion.arkit import NUM_BLENDSHAPES, NUM_VALUES
from motion.constants import FEATURE_FPS
from motion.frames import resample_curves

Z_HEAD_DEFAULTS: dict[str, Any] = {
    "type": "z", "in_channels": 192, "use_transformer": True, "transformer_layers": 3, "transformer_heads": 8,
    "transformer_ff": 512, "rnn": "lstm", "rnn_hidden": 128, "rnn_layers": 3, "mlp_hidden": 96, "dropout": 0.4,
    "smoother_kernel": 5,
}
MEL_HEAD_DEFAULTS: dict[str, Any] = {
    "type": "mel", "n_mels": 80, "channels": [32, 64], "rnn_hidden": 128, "rnn_layers": 2, "fc_hidden": 128,
    "dropout": 0.3,
}
#: the causal mel head's own keys (``head_config("mel", causal=True)``): the GRU output of feature frame ``t`` is the
#: prediction for frame ``t - lookahead_frames``, so a frame waits that many frames (11.6 ms each) of future audio
CAUSAL_DEFAULTS: dict[str, Any] = {"causal": True, "lookahead_frames": 4}
#: the most right context a causal head may have: 5 frames + the STFT's half window stay within 100 ms
MAX_LOOKAHEAD_FRAMES = 5


def lengths_mask(lengths: torch.Tensor | None, batch: int, time: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean [B, T], True on valid frames."""
    if lengths is None:
        return torch.ones(batch, time, dtype=torch.bool, device=device)
    pos = torch.arange(time, device=lengths.device)
    return pos[None, :] < lengths[:, None]


def _run_rnn(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """x [B, T, C] -> [B, T, H]; packed so padding never leaks into the backward direction."""
    if lengths is None or bool((lengths == x.shape[1]).all()):
        return rnn(x)[0]
    packed = pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def _make_rnn(kind: str, inp: int, hidden: int, layers: int, dropout: float) -> nn.RNNBase:
    cls = {"lstm": nn.LSTM, "gru": nn.GRU}.get(kind.lower())
    if cls is None:
        raise ValueError(f"rnn must be 'lstm' or 'gru', got {kind!r}")
    return cls(inp, hidden, num_layers=layers, batch_first=True, bidirectional=True, dropout=dropout if layers > 1 else 0.0)


class ZHead(nn.Module):
    """z [B, C, T] -> [B, 61, T] (spec §3)."""

    def __init__(self, **cfg: Any) -> None:
        super().__init__()
        self.config = {**Z_HEAD_DEFAULTS, **cfg, "type": "z"}
        c = self.config
        ch, p = int(c["in_channels"]), float(c["dropout"])
        self.conv_in = nn.Conv1d(ch, ch, 3, padding=1)
        self.transformer = None
        if c["use_transformer"]:
            layer = nn.TransformerEncoderLayer(
                ch, int(c["transformer_heads"]), int(c["transformer_ff"]), p, activation="relu", batch_first=True,
                norm_first=False,
            )
            self.transformer = nn.TransformerEncoder(layer, int(c["transformer_layers"]), enable_nested_tensor=False)
        self.rnn = _make_rnn(c["rnn"], ch, int(c["rnn_hidden"]), int(c["rnn_layers"]), p)
        h = 2 * int(c["rnn_hidden"])
        self.mlp = nn.Sequential(
            nn.Dropout(p), nn.Linear(h, int(c["mlp_hidden"])), nn.LeakyReLU(0.01), nn.Dropout(p),
            nn.Linear(int(c["mlp_hidden"]), NUM_VALUES),
        )
        k = int(c["smoother_kernel"])
        self.smoother = nn.Conv1d(NUM_VALUES, NUM_VALUES, k, padding=k // 2)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for name, w in self.rnn.named_parameters():
            if "weight_hh" in name:
                nn.init.orthogonal_(w)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        b, _, t = x.shape
        mask = lengths_mask(lengths, b, t, x.device)
        m1 = mask[:, None, :].to(x.dtype)
        h = self.conv_in(x * m1) * m1
        h = h.transpose(1, 2)  # [B, T, C]
        if self.transformer is not None:
            h = self.transformer(h, src_key_padding_mask=None if lengths is None else ~mask)
        h = _run_rnn(self.rnn, h, lengths)
        y = self.mlp(h).transpose(1, 2) * m1  # [B, 61, T]
        return self.smoother(y) * m1


class MelHead(nn.Module):
    """log-mel [B, n_mels, T] -> [B, 61, T] (spec §4 CRNN, frequency-only pooling)."""

    def __init__(self, **cfg: Any) -> None:
        super().__init__()
        self.config = {**MEL_HEAD_DEFAULTS, **cfg, "type": "mel"}
        c = self.config
        n_mels = int(c["n_mels"])
        if n_mels % 4:
            raise ValueError(f"n_mels must be divisible by 4 (two 2x frequency poolings), got {n_mels}")
        c1, c2 = (int(v) for v in c["channels"])
        self.cnn = nn.ModuleList([
            nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.LeakyReLU(0.2), nn.MaxPool2d((2, 1))),
            nn.Sequential(nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.LeakyReLU(0.2), nn.MaxPool2d((2, 1))),
        ])
        self.rnn = _make_rnn("gru", c2 * n_mels // 4, int(c["rnn_hidden"]), int(c["rnn_layers"]), 0.0)
        self.fc = nn.Sequential(
            nn.Linear(2 * int(c["rnn_hidden"]), int(c["fc_hidden"])), nn.ReLU(), nn.Dropout(float(c["dropout"])),
            nn.Linear(int(c["fc_hidden"]), NUM_VALUES),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        b, f, t = x.shape
        mask = lengths_mask(lengths, b, t, x.device)
        m1 = mask[:, None, :].to(x.dtype)
        h = x.unsqueeze(1)
        m2 = m1[:, None]  # [B, 1, 1, T]
        for block in self.cnn:  # re-mask after each block so padding stays zero for the next convolution
            h = block(h * m2) * m2
        # h: [B, C, F/4, T]
        h = h.flatten(1, 2).transpose(1, 2)  # [B, T, C*F/4]
        h = _run_rnn(self.rnn, h, lengths)
        y = self.fc(h)  # [B, T, 61]
        y = torch.cat([torch.sigmoid(y[..., :NUM_BLENDSHAPES]), torch.tanh(y[..., NUM_BLENDSHAPES:])], dim=-1)
        return y.transpose(1, 2) * m1


class CausalMelHead(nn.Module):
    """log-mel [B, n_mels, T] -> [B, 61, T] reading only the past and ``lookahead_frames`` future frames (live use).

    The mel CRNN made causal: each 3x3 convolution sees the current and the two previous frames (zeros before the
    start, as a stream starts from silence-free zeros), the GRU is unidirectional, and its output at frame ``t`` is the
    prediction for frame ``t - lookahead_frames`` (the input is extended by that many zero frames at the end). So a
    whole-clip ``forward`` and :class:`CausalMelStream` fed frame by frame give the same numbers, and frames beyond a
    clip's length (batch padding) never reach the frames before it."""

    def __init__(self, **cfg: Any) -> None:
        super().__init__()
        self.config = {**MEL_HEAD_DEFAULTS, **CAUSAL_DEFAULTS, **cfg, "type": "mel", "causal": True}
        c = self.config
        n_mels = int(c["n_mels"])
        if n_mels % 4:
            raise ValueError(f"n_mels must be divisible by 4 (two 2x frequency poolings), got {n_mels}")
        look = int(c["lookahead_frames"])
        if not 0 <= look <= MAX_LOOKAHEAD_FRAMES:
            raise ValueError(f"lookahead_frames must be 0..{MAX_LOOKAHEAD_FRAMES} (at most 100 ms with the STFT), "
                             f"got {look}")
        self.lookahead = look
        c1, c2 = (int(v) for v in c["channels"])
        self.cnn = nn.ModuleList([
            nn.Sequential(nn.Conv2d(1, c1, 3, padding=(1, 0)), nn.BatchNorm2d(c1), nn.LeakyReLU(0.2),
                          nn.MaxPool2d((2, 1))),
            nn.Sequential(nn.Conv2d(c1, c2, 3, padding=(1, 0)), nn.BatchNorm2d(c2), nn.LeakyReLU(0.2),
                          nn.MaxPool2d((2, 1))),
        ])
        hid = int(c["rnn_hidden"])
        layers = int(c["rnn_layers"])
        self.rnn = nn.GRU(c2 * n_mels // 4, hid, num_layers=layers, batch_first=True,
                          dropout=float(c["dropout"]) if layers > 1 else 0.0)
        self.fc = nn.Sequential(
            nn.Linear(hid, int(c["fc_hidden"])), nn.ReLU(), nn.Dropout(float(c["dropout"])),
            nn.Linear(int(c["fc_hidden"]), NUM_VALUES),
        )

    def cnn_features(self, x: torch.Tensor, contexts: list[torch.Tensor] | None = None,
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x [B, n_mels, T] -> GRU input [B, T, C*F/4]; ``contexts``: each convolution's two previous input frames
        (None: zeros, the start of a stream). Returns the new contexts too."""
        h = x.unsqueeze(1)
        new: list[torch.Tensor] = []
        for i, block in enumerate(self.cnn):
            ctx = contexts[i] if contexts is not None else h.new_zeros(*h.shape[:3], 2)
            h = torch.cat([ctx, h], dim=-1)
            new.append(h[..., -2:])
            h = block(h)
        return h.flatten(1, 2).transpose(1, 2), new

    def _out(self, h: torch.Tensor) -> torch.Tensor:
        y = self.fc(h)
        return torch.cat([torch.sigmoid(y[..., :NUM_BLENDSHAPES]), torch.tanh(y[..., NUM_BLENDSHAPES:])], dim=-1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        b, _, t = x.shape
        mask = lengths_mask(lengths, b, t, x.device)
        x = x * mask[:, None, :].to(x.dtype)  # zeros after each clip's end: the lookahead of its last frames
        x = nn.functional.pad(x, (0, self.lookahead))
        h, _ = self.cnn_features(x)
        y = self._out(self.rnn(h)[0])[:, self.lookahead:]  # [B, T, 61]
        return y.transpose(1, 2) * mask[:, None, :].to(y.dtype)


def _fold_conv_bn(block: nn.Sequential) -> tuple[np.ndarray, np.ndarray]:
    """A Conv2d + BatchNorm2d (eval) pair as one convolution: weights [C_out, C_in * 9], bias [C_out]."""
    conv, bn = block[0], block[1]
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    w = (conv.weight.detach() * scale[:, None, None, None]).reshape(conv.out_channels, -1)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
    b = (bias - bn.running_mean) * scale + bn.bias.detach()
    return w.numpy().astype(np.float32), b.numpy().astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function without float32 overflow warnings (inputs beyond +-60 saturate to 0/1 anyway)."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def _causal_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 convolution of ``x`` [C_in, F, 2 + T] (two context frames first; frequency zero-padded) -> [C_out, F, T],
    then LeakyReLU(0.2) and 2x frequency max-pooling, as a ``CausalMelHead`` block in eval mode."""
    c_in, f, tt = x.shape
    t = tt - 2
    xp = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    cols = np.stack([xp[:, df:df + f, dt:dt + t] for df in range(3) for dt in range(3)], axis=1)  # [C_in, 9, F, T]
    y = (w @ cols.reshape(c_in * 9, f * t)).reshape(-1, f, t) + b[:, None, None]
    y = np.where(y > 0, y, 0.2 * y)
    return y.reshape(y.shape[0], f // 2, 2, t).max(axis=2)


class CausalMelStream:
    """A :class:`CausalMelHead` run incrementally: :meth:`push` feature frames as they come, get the finished frames'
    raw outputs (lagging ``lookahead`` frames); :meth:`finish` emits the rest. Carries the convolution contexts and the
    GRU state, so memory stays constant and the outputs equal one whole-clip ``forward`` within float rounding.

    Runs in numpy on weights taken from the head once (BatchNorm folded into the convolutions): a live stream pushes
    one frame every 11.6 ms, where torch's per-call overhead would cost more than the arithmetic."""

    def __init__(self, head: CausalMelHead) -> None:
        head.eval()
        self.head = head
        self.n_mels = int(head.config["n_mels"])
        self.convs = [_fold_conv_bn(block) for block in head.cnn]
        rnn = head.rnn
        self.hid = rnn.hidden_size
        self.gru = [tuple(getattr(rnn, f"{k}_l{i}").detach().numpy().astype(np.float32)
                          for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")) for i in range(rnn.num_layers)]
        fc0, fc1 = head.fc[0], head.fc[3]
        self.fc = [(m.weight.detach().numpy().T.astype(np.float32), m.bias.detach().numpy().astype(np.float32))
                   for m in (fc0, fc1)]
        c1 = int(head.config["channels"][0])
        self.contexts = [np.zeros((1, self.n_mels, 2), np.float32), np.zeros((c1, self.n_mels // 2, 2), np.float32)]
        self.state = np.zeros((rnn.num_layers, self.hid), np.float32)
        self.skip = head.lookahead  # the first GRU outputs predict frames before the start
        self.frames_in = 0

    def _gru(self, x: np.ndarray) -> np.ndarray:
        """x [T, C] through every GRU layer, carrying the hidden states -> [T, hidden]."""
        hid = self.hid
        for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.gru):
            gi = x @ w_ih.T + b_ih  # [T, 3H]: reset, update, new
            h = self.state[layer]
            out = np.empty((len(x), hid), np.float32)
            w_hh_t = w_hh.T
            for t in range(len(x)):
                gh = h @ w_hh_t + b_hh
                r = _sigmoid(gi[t, :hid] + gh[:hid])
                z = _sigmoid(gi[t, hid:2 * hid] + gh[hid:2 * hid])
                n = np.tanh(gi[t, 2 * hid:] + r * gh[2 * hid:])
                h = (1.0 - z) * n + z * h
                out[t] = h
            self.state[layer] = h
            x = out
        return x

    def push(self, feats: np.ndarray) -> np.ndarray:
        """Feature frames ``[n_mels, n]`` -> raw outputs ``[m, 61]`` of the frames now complete."""
        feats = np.asarray(feats, dtype=np.float32)
        if feats.shape[-1] == 0:
            return np.zeros((0, NUM_VALUES), np.float32)
        self.frames_in += feats.shape[-1]
        h = feats[None]
        for i, (w, b) in enumerate(self.convs):
            h = np.concatenate([self.contexts[i], h], axis=-1)
            self.contexts[i] = h[..., -2:].copy()
            h = _causal_conv(h, w, b)
        x = h.reshape(-1, h.shape[-1]).T  # [T, C * F / 4], channel-major as the head's flatten
        y = self._gru(np.ascontiguousarray(x, dtype=np.float32))
        y = np.maximum(y @ self.fc[0][0] + self.fc[0][1], 0.0) @ self.fc[1][0] + self.fc[1][1]
        y[:, :NUM_BLENDSHAPES] = _sigmoid(y[:, :NUM_BLENDSHAPES])
        y[:, NUM_BLENDSHAPES:] = np.tanh(y[:, NUM_BLENDSHAPES:])
        y = y.astype(np.float32)
        drop = min(self.skip, len(y))
        self.skip -= drop
        return y[drop:]

    def finish(self) -> np.ndarray:
        """The last ``lookahead`` frames (the stream is then done)."""
        real = self.frames_in
        y = self.push(np.zeros((self.n_mels, self.head.lookahead), np.float32))
        self.frames_in = real
        return y


def is_causal(head: nn.Module) -> bool:
    """Whether a head reads no more than a few frames of the future (usable live)."""
    return isinstance(head, CausalMelHead)


def build_head(config: Mapping[str, Any]) -> nn.Module:
    """A head from its configuration dict (``type`` 'z' or 'mel', ``causal`` for the live mel head; other keys
    override the defaults)."""
    cfg = dict(config)
    kind = cfg.pop("type", "mel")
    if kind == "z":
        return ZHead(**cfg)
    if kind == "mel":
        if cfg.get("causal"):
            return CausalMelHead(**cfg)
        cfg.pop("causal", None)
        cfg.pop("lookahead_frames", None)
        return MelHead(**cfg)
    raise ValueError(f"head type must be 'z' or 'mel', got {kind!r}")


def head_config(kind: str, **overrides: Any) -> dict[str, Any]:
    """Defaults of a head type with ``overrides`` applied (None values ignored); ``causal=True`` on a mel head adds
    the causal head's keys (``lookahead_frames``)."""
    base = copy.deepcopy(Z_HEAD_DEFAULTS if kind == "z" else MEL_HEAD_DEFAULTS)
    if kind != "z" and overrides.get("causal"):
        base.update(CAUSAL_DEFAULTS)
    elif kind == "z" and overrides.get("causal"):
        raise ValueError("only a mel head can be causal (the z head's attention reads the whole clip)")
    base.update({k: v for k, v in overrides.items() if v is not None and not (k == "causal" and not v)})
    return base


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


#: frames a head reads at once on long input (about 12 s at 86.13 frames/s)
HEAD_BLOCK_FRAMES = 1024
#: context each side of a z-head block (about 6 s): the z head's attention sees the whole input, so its blocks
#: differ from a whole-clip run (which for 10 minutes would need an 85 GB attention matrix); the mel head needs none
HEAD_CONTEXT_FRAMES = 512


def _direction(rnn: nn.GRU, layer: int, reverse: bool) -> nn.GRU:
    """One direction of one layer of a bidirectional GRU as its own unidirectional GRU (same weights)."""
    inp = rnn.input_size if layer == 0 else 2 * rnn.hidden_size
    one = nn.GRU(inp, rnn.hidden_size, num_layers=1, batch_first=True)
    sfx = f"_l{layer}" + ("_reverse" if reverse else "")
    one.load_state_dict({f"{k}_l0": getattr(rnn, f"{k}{sfx}") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    return one.eval()


#: a long clip's mel head keeps its GRU layers' outputs only up to this size (bytes); beyond it they are recomputed
#: from the hidden states kept at block edges (:func:`_mel_head_blocks`), so a 10-minute upload needs no 75 MB of them
KEEP_GRU_OUTPUTS_BYTES = 16 << 20


def _mel_head_blocks(head: "MelHead", feats: np.ndarray, block: int,
                     keep_outputs_bytes: int = KEEP_GRU_OUTPUTS_BYTES) -> np.ndarray:
    """The mel head on ``[n_mels, T]`` block by block, equal to the whole-clip run within float rounding: the
    convolutions get their 2 frames of context, and each GRU direction carries its hidden state from block to block
    (the backward one walking the blocks from the end). Holds ``[T, 61]``, never ``[T, 32, 80]``.

    Sweep ``s`` over the blocks (forward, backward, forward, ...) carries the GRU directions that walk its way one
    layer further up; the last sweep runs the output layer. The hidden state where each direction enters each block is
    kept, and the blocks' outputs of the directions already run are kept too while they fit in
    ``keep_outputs_bytes`` (a 2-layer GRU: the convolutions twice, the directions four times). On longer clips those
    outputs are recomputed from the kept states instead (the same operations on the same inputs, so the same numbers:
    the convolutions three times, the directions eight times), which a 10-minute clip's 75 MB of outputs needs."""
    total = feats.shape[-1]
    spans = [(f0, min(total, f0 + block)) for f0 in range(0, total, block)]

    def cnn(f0: int, f1: int) -> torch.Tensor:  # [1, f1 - f0, C * F / 4]
        c0, c1 = max(0, f0 - 2), min(total, f1 + 2)
        h = torch.from_numpy(np.ascontiguousarray(feats[:, c0:c1]))[None, None]
        for layer in head.cnn:
            h = layer(h)
        return h[..., f0 - c0: f1 - c0].flatten(1, 2).transpose(1, 2)

    rnn = head.rnn
    layers, nb = rnn.num_layers, len(spans)
    grus = {(layer, rev): _direction(rnn, layer, rev) for layer in range(layers) for rev in (False, True)}
    keep = 4 * rnn.hidden_size * total * (2 * layers - 1) <= keep_outputs_bytes
    states: dict[tuple[int, bool], list[Any]] = {}  # the hidden state entering each block, per direction run
    outputs: dict[tuple[int, bool], list[Any]] = {}  # the blocks' outputs per direction run (when ``keep``)
    res = np.empty((total, NUM_VALUES), dtype=np.float32)
    for sweep in range(layers + 1):
        reverse = sweep % 2 == 1
        new_states: dict[tuple[int, bool], list[Any]] = {}
        new_outputs: dict[tuple[int, bool], list[Any]] = {}
        carry: dict[tuple[int, bool], torch.Tensor] = {}
        for k in (reversed(range(nb)) if reverse else range(nb)):
            x = None  # the current layer's input (layer 0: the convolutions, run only when a direction needs them)
            for layer in range(layers):
                ys = []
                for rev in (False, True):
                    key = (layer, rev)
                    if key in outputs:
                        ys.append(outputs[key][k])
                        continue
                    if key in states:
                        state = states[key][k]
                    elif rev == reverse:  # this sweep's direction: carried from block to block
                        state = carry.get(key)
                        new_states.setdefault(key, [None] * nb)[k] = state
                    else:
                        continue
                    x = cnn(*spans[k]) if x is None else x
                    y, last = grus[key](x.flip(1) if rev else x, state)
                    if key in new_states:
                        carry[key] = last
                    y = y.flip(1) if rev else y
                    if keep:
                        new_outputs.setdefault(key, [None] * nb)[k] = y
                    ys.append(y)
                if len(ys) < 2:
                    break
                x = torch.cat(ys, -1)
            else:  # every layer ran on this block: the output layer
                f0, f1 = spans[k]
                z = head.fc(x[0])
                res[f0:f1] = torch.cat([torch.sigmoid(z[:, :NUM_BLENDSHAPES]), torch.tanh(z[:, NUM_BLENDSHAPES:])],
                                       -1).numpy()
        states.update(new_states)
        outputs.update(new_outputs)
    return res


def run_blocks(head: nn.Module, features: np.ndarray, block_frames: int = HEAD_BLOCK_FRAMES,
               context_frames: int = HEAD_CONTEXT_FRAMES) -> np.ndarray:
    """A head on features ``[C, T]`` -> raw ``[T, 61]`` at the feature rate, ``block_frames`` at a time, so memory
    does not grow with the clip (a 10-minute mel-head input needs 2 GB of convolution activations at once).

    The mel head runs exactly (:func:`_mel_head_blocks`, max |diff| to the whole run below 1e-5); other heads run on
    blocks with ``context_frames`` each side, dropped after the run. Input of one block (plus context) runs whole."""
    head.eval()
    feats = np.asarray(features, dtype=np.float32)
    total = feats.shape[-1]
    block, ctx = max(1, int(block_frames)), max(0, int(context_frames))
    with torch.no_grad():
        if isinstance(head, CausalMelHead):  # exact in blocks: the stream carries its state
            stream = CausalMelStream(head)
            parts = [stream.push(feats[:, f0:f0 + block]) for f0 in range(0, total, block)] + [stream.finish()]
            return np.concatenate(parts).astype(np.float32)
        if isinstance(head, MelHead) and total > block:
            return _mel_head_blocks(head, feats, block)
        if isinstance(head, MelHead) or total <= block + 2 * ctx:
            return head(torch.from_numpy(np.ascontiguousarray(feats))[None])[0].transpose(0, 1).numpy().astype(np.float32)
        out = np.empty((total, NUM_VALUES), dtype=np.float32)
        for f0 in range(0, total, block):
            f1 = min(total, f0 + block)
            c0, c1 = max(0, f0 - ctx), min(total, f1 + ctx)
            y = head(torch.from_numpy(np.ascontiguousarray(feats[:, c0:c1]))[None])  # [1, 61, c1 - c0]
            out[f0:f1] = y[0, :, f0 - c0: f1 - c0].transpose(0, 1).numpy()
        return out


@torch.no_grad()
def predict(
    head: nn.Module, features: np.ndarray, fps: float = 60.0, num_frames: int | None = None,
    feature_fps: float = FEATURE_FPS, block_frames: int = HEAD_BLOCK_FRAMES, context_frames: int = HEAD_CONTEXT_FRAMES,
) -> np.ndarray:
    """One clip's features ``[C, T]`` -> curves ``[T', 61]`` at ``fps`` (default: frames covering the same duration).

    Long clips run in overlapping blocks (:func:`run_blocks`)."""
    curves = run_blocks(head, features, block_frames, context_frames)
    if num_frames is None:
        num_frames = max(1, int(math.ceil(curves.shape[0] / feature_fps * fps - 1e-6)))
    return resample_curves(curves, feature_fps, fps, num_frames)


__all__ = [
    "CAUSAL_DEFAULTS", "CausalMelHead", "CausalMelStream", "FEATURE_FPS", "HEAD_BLOCK_FRAMES", "HEAD_CONTEXT_FRAMES",
    "MAX_LOOKAHEAD_FRAMES", "MEL_HEAD_DEFAULTS", "MelHead", "is_causal", "Z_HEAD_DEFAULTS", "ZHead", "build_head", "count_parameters",
    "head_config", "lengths_mask", "predict", "run_blocks",
]
