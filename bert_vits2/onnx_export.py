"""ONNX export of a Bert-VITS2 v2.3 generator as six graphs (MoeVoiceStudio-style layout), plus an onnxruntime check.

Why six graphs: the runtime computes durations itself (ceil, alignment, noise) between the duration predictors and
the flow, and can run the speaker embedding / text encoder / decoder independently. Files ``<name>_<part>.onnx``:

=========  ============================================================  ====================================
part       inputs (batch 1; T phones, F frames)                           outputs
=========  ============================================================  ====================================
emb        sid int64 [1]                                                  g [1, gin]
enc_p      x int64 [1, T], x_lengths int64 [1], t int64 [1, T],            xout [1, H, T], m_p [1, C, T],
           language int64 [1, T], bert_0/1/2 float [T, 1024], g [1,gin,1]  logs_p [1, C, T], x_mask [1, 1, T]
sdp        x [1, H, T], x_mask [1, 1, T], zin [1, 2, T], g [1, gin, 1]    logw [1, 1, T]
dp         x [1, H, T], x_mask [1, 1, T], g [1, gin, 1]                    logw [1, 1, T]
flow       z_p [1, C, F], y_mask [1, 1, F], g [1, gin, 1]                  z [1, C, F]
dec        z_in [1, C, F], g [1, gin, 1]                                   o [1, 1, F * hop]
=========  ============================================================  ====================================

``zin`` is the SDP noise already multiplied by ``noise_scale_w`` (zeros for deterministic output). Opset 16, the
TorchScript-based exporter (``dynamo=False``; it needs no onnxscript), dynamic T/F axes, weight norm folded, fp32.
:func:`run_onnx_inference` chains the six graphs like ``SynthesizerTrn.infer`` and :func:`check_export` compares
every graph with the PyTorch model on fresh lengths. Compatibility with MoeVoiceStudio itself is not tested here.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bert_vits2.inference import FastGenerator
from bert_vits2.models import SynthesizerTrn

log = logging.getLogger(__name__)

PARTS = ("emb", "enc_p", "sdp", "dp", "flow", "dec")
OPSET = 16


class _Emb(nn.Module):
    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, sid: torch.Tensor) -> torch.Tensor:
        return self.m.emb_g(sid)


class _EncP(nn.Module):
    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x, x_lengths, t, language, bert_0, bert_1, bert_2, g):
        return self.m.enc_p(x, x_lengths, t, language, bert_0.transpose(0, 1).unsqueeze(0),
                            bert_1.transpose(0, 1).unsqueeze(0), bert_2.transpose(0, 1).unsqueeze(0), g=g)


class _Sdp(nn.Module):
    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x, x_mask, zin, g):
        return self.m.sdp(x, x_mask, g=g, reverse=True, noise=zin)


class _Dp(nn.Module):
    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, x, x_mask, g):
        return self.m.dp(x, x_mask, g=g)


class _Flow(nn.Module):
    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, z_p, y_mask, g):
        return self.m.flow(z_p, y_mask, g=g, reverse=True)


class _Dec(nn.Module):
    def __init__(self, m: nn.Module):
        super().__init__()
        self.m = m

    def forward(self, z_in, g):
        return self.m.dec(z_in, g=g)


def _example_inputs(model: nn.Module, n_phones: int = 12, n_frames: int = 30) -> dict[str, tuple]:
    """Export-time example inputs (lengths must exceed the attention window so no branch is baked for short input)."""
    gen = torch.Generator().manual_seed(0)
    hidden, inter, gin = model.hidden_channels, model.inter_channels, model.gin_channels
    x = torch.randint(1, model.n_vocab, (1, n_phones), generator=gen)
    g = torch.randn(1, gin, 1, generator=gen)
    bert = [torch.randn(n_phones, 1024, generator=gen) for _ in range(3)]
    mask_t = torch.ones(1, 1, n_phones)
    mask_f = torch.ones(1, 1, n_frames)
    return {
        "emb": (torch.LongTensor([0]),),
        "enc_p": (x, torch.LongTensor([n_phones]), torch.zeros_like(x), torch.zeros_like(x), *bert, g),
        "sdp": (torch.randn(1, hidden, n_phones, generator=gen), mask_t, torch.randn(1, 2, n_phones, generator=gen) * 0.8, g),
        "dp": (torch.randn(1, hidden, n_phones, generator=gen), mask_t, g),
        "flow": (torch.randn(1, inter, n_frames, generator=gen), mask_f, g),
        "dec": (torch.randn(1, inter, n_frames, generator=gen), g),
    }


_IO: dict[str, tuple[list[str], list[str], dict[str, dict[int, str]]]] = {
    "emb": (["sid"], ["g"], {}),
    "enc_p": (
        ["x", "x_lengths", "t", "language", "bert_0", "bert_1", "bert_2", "g"], ["xout", "m_p", "logs_p", "x_mask"],
        {"x": {1: "T"}, "t": {1: "T"}, "language": {1: "T"}, "bert_0": {0: "T"}, "bert_1": {0: "T"}, "bert_2": {0: "T"},
         "xout": {2: "T"}, "m_p": {2: "T"}, "logs_p": {2: "T"}, "x_mask": {2: "T"}},
    ),
    "sdp": (["x", "x_mask", "zin", "g"], ["logw"], {"x": {2: "T"}, "x_mask": {2: "T"}, "zin": {2: "T"}, "logw": {2: "T"}}),
    "dp": (["x", "x_mask", "g"], ["logw"], {"x": {2: "T"}, "x_mask": {2: "T"}, "logw": {2: "T"}}),
    "flow": (["z_p", "y_mask", "g"], ["z"], {"z_p": {2: "F"}, "y_mask": {2: "F"}, "z": {2: "F"}}),
    "dec": (["z_in", "g"], ["o"], {"z_in": {2: "F"}, "o": {2: "S"}}),
}

_WRAPPERS = {"emb": _Emb, "enc_p": _EncP, "sdp": _Sdp, "dp": _Dp, "flow": _Flow, "dec": _Dec}


def _check_exportable(model: nn.Module) -> None:
    if isinstance(model.dec, FastGenerator) or getattr(model, "precision", "fp32") != "fp32":
        raise ValueError("export the plain fp32 model: load_model_for_inference(..., precision='fp32', fast=False)")
    if any(hasattr(m, "weight_g") for m in model.modules()):
        raise ValueError("fold weight norm before exporting (bert_vits2.inference.remove_weight_norm_)")


def export_onnx(model: nn.Module, out_dir: str | os.PathLike, name: str = "BertVits2") -> dict[str, Path]:
    """Write the six graphs of ``model`` (plain fp32, weight norm folded, eval) into ``out_dir/<name>/``.

    Returns ``{part: path}``. Exported on the CPU; the model is not changed.
    """
    _check_exportable(model)
    model = model.eval()
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    examples = _example_inputs(model)
    paths: dict[str, Path] = {}
    for part in PARTS:
        inputs, outputs, axes = _IO[part]
        path = folder / f"{name}_{part}.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings on shape arithmetic that the exporter keeps symbolic
            torch.onnx.export(
                _WRAPPERS[part](model).eval(), examples[part], str(path), input_names=inputs, output_names=outputs,
                dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True,
            )
        paths[part] = path
        log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    model.eval()  # the exporter restores the wrappers' train flag, which would switch dropout back on
    return paths


def load_sessions(paths: dict[str, Path], threads: int | None = None) -> dict[str, Any]:
    """onnxruntime CPU sessions of the six graphs (``threads``: intra-op threads, default onnxruntime's)."""
    import onnxruntime as ort  # onnxruntime: optional (not a dependency), only for --check

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return {p: ort.InferenceSession(str(paths[p]), opts, providers=["CPUExecutionProvider"]) for p in PARTS}


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def run_onnx_inference(
    sessions: dict[str, Any], x, tone, language, bert, ja_bert, en_bert, sid: int, *, sdp_zin: np.ndarray | None = None,
    sdp_ratio: float = 0.0, length_scale: float = 1.0, noise: np.ndarray | None = None, noise_scale: float = 0.667,
) -> dict[str, np.ndarray]:
    """``SynthesizerTrn.infer`` through the six graphs (batch 1). ``x``/``tone``/``language`` int64 [T], BERT
    features [1024, T]; ``sdp_zin`` [1, 2, T] scaled SDP noise (zeros if None); ``noise`` [1, C, F] prior noise
    (zeros if None). Returns o, logw, w_ceil, z."""
    t_len = int(np.asarray(x).shape[-1])
    g2 = sessions["emb"].run(None, {"sid": np.array([sid], dtype=np.int64)})[0]
    g = g2[:, :, None]
    enc = sessions["enc_p"].run(None, {
        "x": np.asarray(x, np.int64)[None], "x_lengths": np.array([t_len], np.int64),
        "t": np.asarray(tone, np.int64)[None], "language": np.asarray(language, np.int64)[None],
        "bert_0": np.ascontiguousarray(np.asarray(bert, np.float32).T),
        "bert_1": np.ascontiguousarray(np.asarray(ja_bert, np.float32).T),
        "bert_2": np.ascontiguousarray(np.asarray(en_bert, np.float32).T), "g": g,
    })
    xout, m_p, logs_p, x_mask = enc
    zin = np.zeros((1, 2, t_len), np.float32) if sdp_zin is None else np.asarray(sdp_zin, np.float32)
    logw_sdp = sessions["sdp"].run(None, {"x": xout, "x_mask": x_mask, "zin": zin, "g": g})[0]
    logw_dp = sessions["dp"].run(None, {"x": xout, "x_mask": x_mask, "g": g})[0]
    logw = logw_sdp * sdp_ratio + logw_dp * (1 - sdp_ratio)
    # the alignment maths between the graphs is the model's own (torch), so durations match by construction

    attn, y_mask = SynthesizerTrn.durations_to_alignment(torch.from_numpy(logw), torch.from_numpy(x_mask), length_scale)
    w_ceil = attn.sum(2)
    a = attn.squeeze(1).numpy()
    m_f = np.matmul(a, m_p.transpose(0, 2, 1)).transpose(0, 2, 1)
    logs_f = np.matmul(a, logs_p.transpose(0, 2, 1)).transpose(0, 2, 1)
    eps = np.zeros_like(m_f) if noise is None else np.asarray(noise, np.float32)
    z_p = (m_f + eps * np.exp(logs_f) * noise_scale).astype(np.float32)
    y_mask_np = y_mask.numpy().astype(np.float32)
    z = sessions["flow"].run(None, {"z_p": z_p, "y_mask": y_mask_np, "g": g})[0]
    o = sessions["dec"].run(None, {"z_in": (z * y_mask_np).astype(np.float32), "g": g})[0]
    return {"o": o, "logw": logw, "w_ceil": w_ceil.numpy(), "z": z}


def check_export(model: nn.Module, sessions: dict[str, Any], n_phones: int = 23, n_frames: int = 57,
                 seed: int = 1) -> dict[str, float]:
    """Max abs difference onnxruntime vs PyTorch of every graph on fresh lengths (not the export lengths)."""
    gen = torch.Generator().manual_seed(seed)
    ex = _example_inputs(model, n_phones, n_frames)
    ex["enc_p"] = (torch.randint(1, model.n_vocab, (1, n_phones), generator=gen),) + ex["enc_p"][1:]
    diffs: dict[str, float] = {}
    with torch.no_grad():
        for part in PARTS:
            inputs, outputs, _ = _IO[part]
            ref = _WRAPPERS[part](model).eval()(*ex[part])
            ref = ref if isinstance(ref, (tuple, list)) else (ref,)
            got = sessions[part].run(None, {n: _np(t) for n, t in zip(inputs, ex[part])})
            diffs[part] = max(float(np.max(np.abs(_np(r) - gt))) if r.numel() else 0.0 for r, gt in zip(ref, got))
    return diffs


def time_onnx(sessions: dict[str, Any], feed: dict[str, Any], repeats: int = 2) -> float:
    """Best wall time of :func:`run_onnx_inference` with ``feed`` (its keyword arguments)."""
    best = float("inf")
    for _ in range(repeats + 1):  # first run warms onnxruntime's allocator
        t0 = time.perf_counter()
        run_onnx_inference(sessions, **feed)
        best = min(best, time.perf_counter() - t0)
    return best


__all__ = ["OPSET", "PARTS", "check_export", "export_onnx", "load_sessions", "run_onnx_inference", "time_onnx"]
