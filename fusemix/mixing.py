"""FuseMix: mixup inside each latent space with one ``lam ~ Beta(alpha, alpha)`` shared by both modalities.

``x = lam * x_i + (1 - lam) * x_j`` and ``y = lam * y_i + (1 - lam) * y_j``: the mixed x and y stay a positive pair.
"""
from __future__ import annotations

import math

import torch

SCHEMES = ("permutation", "half")


def sample_lambda(alpha: float, generator: torch.Generator | None = None) -> float:
    """One ``lam ~ Beta(alpha, alpha)`` per batch; ``alpha <= 0`` turns mixing off (lam = 1)."""
    if not math.isfinite(alpha):
        raise ValueError(f"mixup alpha must be finite, got {alpha}")
    if alpha <= 0:
        return 1.0
    # Beta(a, a) as G1 / (G1 + G2) with G ~ Gamma(a, 1), drawn from `generator` so that a
    # seeded run is reproducible (torch.distributions.Beta takes no generator).
    g1, g2 = torch._standard_gamma(torch.full((2,), float(alpha), dtype=torch.float64), generator=generator)
    return float(g1 / (g1 + g2))


def mix_partners(n: int, scheme: str = "permutation", generator: torch.Generator | None = None) -> torch.Tensor:
    """Index of the partner each row is mixed with: ``permutation`` (a random one) or ``half`` (the
    official code's: row i <-> i + n//2; with an odd n the last row is its own partner, unmixed)."""
    if n < 1:
        raise ValueError(f"cannot mix an empty batch (n={n})")
    if scheme == "permutation":
        return torch.randperm(n, generator=generator)
    if scheme == "half":
        h = n // 2
        idx = torch.arange(n)
        idx[:h] = torch.arange(h, 2 * h)
        idx[h:2 * h] = torch.arange(h)
        return idx
    raise ValueError(f"unknown mixing scheme {scheme!r}; choose one of {SCHEMES}")


def fusemix_mix(x: torch.Tensor, y: torch.Tensor, lam: float, partners: torch.Tensor):
    """Mix rows of ``x`` and ``y`` with their partners using the same ``lam`` (any trailing shape)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same number of pairs, got {x.shape[0]} and {y.shape[0]}")
    if partners.shape != (x.shape[0],):
        raise ValueError(f"partners must have shape ({x.shape[0]},), got {tuple(partners.shape)}")
    if lam == 1.0:
        return x, y
    partners = partners.to(x.device)
    return torch.lerp(x[partners], x, lam), torch.lerp(y[partners], y, lam)


def alpha_at(step: int, total_steps: int, alpha: float, schedule: str = "constant", warmup_steps: int = 0) -> float:
    """Mixup strength at ``step``: ``constant``, ``linear_decay`` / ``cosine_decay`` (alpha -> 0 over
    training) or ``warmup`` (0 for ``warmup_steps``, then alpha)."""
    if schedule == "constant":
        return alpha
    frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
    if schedule == "linear_decay":
        return alpha * (1.0 - frac)
    if schedule == "cosine_decay":
        return alpha * 0.5 * (1.0 + math.cos(math.pi * frac))
    if schedule == "warmup":
        return 0.0 if step < warmup_steps else alpha
    raise ValueError(f"unknown alpha schedule {schedule!r}; choose constant, linear_decay, cosine_decay or warmup")
