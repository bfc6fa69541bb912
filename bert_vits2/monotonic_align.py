"""Monotonic alignment search (Glow-TTS/VITS): the best monotonic, surjective frame -> phone path.

The dynamic programme runs in float32 like upstream's numba kernel; the kernel is compiled on first use
(not at import time).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

_MAX_NEG_VAL = -1e9


def _maximum_path_each(path: np.ndarray, value: np.ndarray, t_y: int, t_x: int) -> None:
    """DP over one item: value[y, x] += max(value[y-1, x-1], value[y-1, x]); then backtrack from (t_y-1, t_x-1)."""
    for y in range(t_y):
        for x in range(max(0, t_x + y - t_y), min(t_x, y + 1)):
            v_cur = _MAX_NEG_VAL if x == y else value[y - 1, x]
            if x == 0:
                v_prev = 0.0 if y == 0 else _MAX_NEG_VAL
            else:
                v_prev = value[y - 1, x - 1]
            value[y, x] += max(v_prev, v_cur)
    index = t_x - 1
    for y in range(t_y - 1, -1, -1):
        path[y, index] = 1
        if index != 0 and (index == y or value[y - 1, index] < value[y - 1, index - 1]):
            index = index - 1


def _maximum_path_batch(paths: np.ndarray, values: np.ndarray, t_ys: np.ndarray, t_xs: np.ndarray) -> None:
    for i in range(paths.shape[0]):
        _maximum_path_each(paths[i], values[i], t_ys[i], t_xs[i])


@functools.lru_cache(maxsize=1)
def _kernel():
    """numba-compiled batch kernel (pure Python fallback when numba is unavailable)."""
    try:
        import numba  # numba: ~0.4 s import, and the kernel compiles on first use
    except ImportError:  # pragma: no cover - numba is a requirement; slow but correct fallback
        return _maximum_path_batch
    each = numba.njit(nogil=True, cache=False)(_maximum_path_each)

    @numba.njit(nogil=True, cache=False)
    def batch(paths, values, t_ys, t_xs):
        for i in range(paths.shape[0]):
            each(paths[i], values[i], t_ys[i], t_xs[i])

    return batch


def maximum_path(neg_cent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard alignment [B, T_y, T_x] (0/1, dtype/device of ``neg_cent``) maximising the summed ``neg_cent``.

    ``mask`` [B, T_y, T_x] marks the valid (frame, phone) pairs of each item (a rectangle from the origin).
    """
    if neg_cent.dim() != 3 or neg_cent.shape != mask.shape:
        raise ValueError(f"neg_cent and mask must both be [B, T_y, T_x], got {tuple(neg_cent.shape)} / {tuple(mask.shape)}")
    device, dtype = neg_cent.device, neg_cent.dtype
    values = np.ascontiguousarray(neg_cent.detach().cpu().numpy().astype(np.float32))
    paths = np.zeros(values.shape, dtype=np.int32)
    t_ys = np.ascontiguousarray(mask.sum(1)[:, 0].detach().cpu().numpy().astype(np.int32))
    t_xs = np.ascontiguousarray(mask.sum(2)[:, 0].detach().cpu().numpy().astype(np.int32))
    _kernel()(paths, values, t_ys, t_xs)
    return torch.from_numpy(paths).to(device=device, dtype=dtype)
