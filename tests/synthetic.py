"""Synthetic paired latents: two different random nonlinear "encoders" of one shared latent.

A stand-in for two frozen encoders looking at the same content: retrieval between the two
spaces is possible only if the adapters learn to undo both nonlinearities.
"""
from __future__ import annotations

import torch

from fusemix.latents import LatentPairs


def make_pairs(n: int, seed: int = 0, z_dim: int = 8, x_dim: int = 32, y_dim: int = 24, noise: float = 0.1,
               captions_per_item: int = 1, modalities=("image", "text")) -> LatentPairs:
    g = torch.Generator().manual_seed(seed)
    enc = torch.Generator().manual_seed(12345)  # the "encoders" are fixed across seeds
    a, b = torch.randn(z_dim, x_dim, generator=enc), torch.randn(z_dim, y_dim, generator=enc)
    z = torch.randn(n, z_dim, generator=g)
    x = torch.tanh(z @ a) + noise * torch.randn(n, x_dim, generator=g)
    y_item = torch.arange(n).repeat_interleave(captions_per_item)
    y = torch.tanh(z[y_item] @ b) + noise * torch.randn(len(y_item), y_dim, generator=g)
    return LatentPairs(x, y, y_item if captions_per_item > 1 else None, *modalities, "synthetic-x", "synthetic-y")
