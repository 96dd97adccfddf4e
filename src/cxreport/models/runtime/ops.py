"""The few network operations the report model needs, in NumPy float32, computed as PyTorch
computes them on the CPU (same formulas, same order where the order changes the rounding), so
the two runtimes agree to float rounding (~1e-7) and decode the same tokens."""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def linear(x: np.ndarray, weight_t: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``x @ W.T + b`` with ``weight_t`` = W.T stored contiguous (in x out)."""
    y = x @ weight_t
    return y + bias if bias is not None else y


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """LayerNorm over the last axis; mean and variance taken in float64 (PyTorch's float32 kernel
    is within a rounding of the exact statistics, as this is)."""
    x64 = x.astype(np.float64)
    mean = x64.mean(-1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(-1, keepdims=True)
    rstd = (1.0 / np.sqrt(var + eps)).astype(F32)
    return (x - mean.astype(F32)) * rstd * weight + bias


# erf by table: Taylor coefficients about every 1/32 on [0, 6] (derivatives of erf are Hermite
# polynomials times exp(-x^2)); degree 6 at |offset| <= 1/64 is within ~1e-15 of erf, and
# erf(|x| >= 6) is 1 in float64. NumPy has no erf ufunc; math.erf per element is ~4x slower.
_STEP, _TOP, _DEG = 32, 6.0, 6


def _erf_table() -> np.ndarray:
    """(_DEG + 1) x nodes: row k holds the k-th Taylor coefficient at every node."""
    nodes = np.arange(int(_TOP * _STEP) + 1) / _STEP
    hermite = [np.ones_like(nodes), 2 * nodes]
    for n in range(1, _DEG):
        hermite.append(2 * nodes * hermite[n] - 2 * n * hermite[n - 1])
    scale = 2 / math.sqrt(math.pi) * np.exp(-nodes ** 2)
    table = np.empty((_DEG + 1, len(nodes)))
    table[0] = [math.erf(v) for v in nodes]
    for n in range(_DEG):
        table[n + 1] = scale * (-1) ** n * hermite[n] / math.factorial(n + 1)
    return table


_ERF = _erf_table()


def erf(x: np.ndarray) -> np.ndarray:
    """erf in float64 (to ~1e-15) of any float array."""
    a = np.minimum(np.abs(np.asarray(x, dtype=np.float64)), _TOP)
    i = (a * _STEP + 0.5).astype(np.intp)
    d = a - i * (1.0 / _STEP)
    p = _ERF[_DEG].take(i)
    for k in range(_DEG - 1, -1, -1):
        p *= d
        p += _ERF[k].take(i)
    return np.copysign(p, x)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU as PyTorch's float32 kernel evaluates it: x * 0.5 * (1 + erf(x / sqrt(2))), with
    erf rounded to float32 first (so tiny negative outputs round as PyTorch's do)."""
    e = erf(x * F32(math.sqrt(0.5))).astype(F32)
    return x * F32(0.5) * (F32(1.0) + e)


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """float32 log-softmax over the last axis (the sum of exponentials in float64)."""
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z.astype(np.float64)).sum(-1, keepdims=True)).astype(F32)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Scaled dot-product attention, heads in axis 1: q B x H x Tq x D, k/v B x H x Tk x D;
    ``allowed`` (broadcast to B x H x Tq x Tk, True = attend) masks the keys."""
    scores = (q @ k.transpose(0, 1, 3, 2)) * F32(1.0 / math.sqrt(q.shape[-1]))
    if allowed is not None:
        scores = np.where(allowed, scores, F32(-np.inf))
    return softmax(scores) @ v


def split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """B x T x (H*D) -> B x H x T x D."""
    b, t, d = x.shape
    return x.reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """B x H x T x D -> B x T x (H*D)."""
    b, h, t, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, t, h * d)


def sincos_2d(h: int, w: int, dim: int) -> np.ndarray:
    """``models.projectors.sincos_2d`` in NumPy: (h*w) x dim fixed 2D position code."""
    quarter = max(dim // 4, 1)
    omega = (F32(1.0) / (F32(10000) ** (np.arange(quarter, dtype=F32) / F32(quarter)))).astype(F32)
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    y = ys.reshape(-1, 1).astype(F32) * omega
    x = xs.reshape(-1, 1).astype(F32) * omega
    code = np.concatenate([np.sin(y), np.cos(y), np.sin(x), np.cos(x)], 1)
    if code.shape[1] < dim:
        code = np.pad(code, ((0, 0), (0, dim - code.shape[1])))
    return code[:, :dim].astype(F32)
