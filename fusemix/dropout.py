"""GELU then dropout in one autograd node, with a mask that costs 16 random bits per element.

Why: on CPU, ``nn.Dropout``'s ``bernoulli_`` mask is a large share of a training step (docs/performance.md).
The mask is drawn in fixed chunks on all threads, each seeded from the caller's generator (so it never
depends on the thread count); survivors are scaled by the exact inverse keep rate. CUDA uses ``F.dropout``.
"""
from __future__ import annotations

import contextlib
import math
import threading

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16  # distinct values of one 16-bit slice of a random word


def _check_p(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")


def keep_levels(p: float) -> int:
    """How many of the 65536 values of a 16-bit slice keep an element (at least one)."""
    return max(1, round((1.0 - p) * _LEVELS))


_CHUNK_WORDS = 1 << 17  # random words per chunk generator (CPU)


def _fill_random(words: torch.Tensor, generator: torch.Generator | None) -> None:
    words.random_(-(1 << 63), None, generator=generator)  # every bit uniform: the full int64 range


def _fill_random_chunked(words: torch.Tensor, generator: torch.Generator | None) -> None:
    """``words`` filled chunk by chunk, each chunk from a generator seeded by one draw of ``generator``."""
    chunks = words.split(_CHUNK_WORDS)
    seeds = torch.empty(len(chunks), dtype=torch.int64).random_(generator=generator).tolist()

    def fill(indices):
        for i in indices:
            _fill_random(chunks[i], torch.Generator().manual_seed(seeds[i]))

    lanes = max(1, min(torch.get_num_threads(), len(chunks)))
    helpers = [threading.Thread(target=fill, args=(range(k, len(chunks), lanes),)) for k in range(1, lanes)]
    for t in helpers:  # torch releases the GIL while it fills: the lanes run in parallel
        t.start()
    try:
        fill(range(0, len(chunks), lanes))
    finally:
        for t in helpers:
            t.join()


def _random_int16(shape, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform int16 values: four per 64-bit random word (a quarter of a float draw's RNG calls)."""
    n = math.prod(int(s) for s in shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    if words.device.type == "cpu" and words.numel() > _CHUNK_WORDS:
        _fill_random_chunked(words, generator)
    else:
        _fill_random(words, generator)
    return words.view(torch.int16)[:n].view(shape)


def scaled_mask(shape, p: float, dtype: torch.dtype, device=None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Dropout's multiplier as ``dtype``: 1/keep where an element survives (chance keep_levels(p) / 2**16), else 0."""
    out = torch.empty(shape, dtype=dtype, device=device)
    torch.lt(_random_int16(shape, device, generator), keep_levels(p) - (1 << 15), out=out)  # no bool pass
    return out.mul_(_LEVELS / keep_levels(p))


class _GeluScaledMask(torch.autograd.Function):
    """y = gelu(h) * m, saving h and m; both products happen in place."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(h, mask)
        return F.gelu(h).mul_(mask)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, mask = ctx.saved_tensors
        return torch.ops.aten.gelu_backward(grad, h).mul_(mask), None


_THREAD = threading.local()


@contextlib.contextmanager
def dropout_generator(generator: torch.Generator):
    """CPU dropout masks drawn from ``generator`` in this thread, not from torch's global RNG, which any
    other thread of the process (an app's background job) may reseed or rewind under a training step."""
    before, _THREAD.generator = getattr(_THREAD, "generator", None), generator
    try:
        yield generator
    finally:
        _THREAD.generator = before


def gelu_dropout(h: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``dropout(gelu(h), p)`` (exact GELU), the functional form of :class:`GeluDropout`."""
    _check_p(p)
    if not training or p == 0.0:
        return F.gelu(h)
    if h.device.type != "cpu":
        return F.dropout(F.gelu(h), p, True)
    mask = scaled_mask(h.shape, p, h.dtype, h.device, getattr(_THREAD, "generator", None))
    return _GeluScaledMask.apply(h, mask)


class GeluDropout(nn.Module):
    """``nn.Sequential(nn.GELU(), nn.Dropout(p))`` as one module (no parameters, no state)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        _check_p(p)
        self.p = p

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return gelu_dropout(h, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
