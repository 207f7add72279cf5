"""The bridge's output heads: an adapter's output -> a residual prompt_embeds sequence [B, T, D]."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..adapter import Adapter


class DirectHead(nn.Module):
    """Residual MLP straight to all T*D numbers; simple, but T*D*in_dim parameters."""

    def __init__(self, c):
        super().__init__()
        self.seq_len, self.out_dim = c.seq_len, c.out_dim
        self.mlp = Adapter(c.in_dim, c.seq_len * c.out_dim, c.depth, c.expansion, c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).view(x.shape[0], self.seq_len, self.out_dim)


class LowRankHead(nn.Module):
    """Residual MLP to ``rank`` whitened coefficients of a frozen PCA basis of caption encodings,
    so every output lies in the span of real caption encodings."""

    def __init__(self, c):
        super().__init__()
        self.seq_len, self.out_dim = c.seq_len, c.out_dim
        self.mlp = Adapter(c.in_dim, c.rank, c.depth, c.expansion, c.dropout)
        self.register_buffer("basis", torch.zeros(c.rank, c.seq_len * c.out_dim))
        self.register_buffer("basis_scale", torch.zeros(c.rank))  # std of each coefficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coef = self.mlp(x) * self.basis_scale
        return (coef @ self.basis).view(x.shape[0], self.seq_len, self.out_dim)

    @torch.no_grad()
    def fit(self, centred: torch.Tensor, seed: int = 0) -> float:
        """PCA of centred targets [N, T*D]; returns the fraction of variance the basis keeps."""
        n = centred.shape[0]
        q = min(self.basis.shape[0], n, centred.shape[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, s, v = torch.svd_lowrank(centred, q=min(q + 8, n, centred.shape[1]), niter=3)
        self.basis.zero_()
        self.basis_scale.zero_()
        self.basis[:q] = v[:, :q].t()
        self.basis_scale[:q] = s[:q] / math.sqrt(max(n - 1, 1))
        return float(s[:q].pow(2).sum() / centred.pow(2).sum().clamp_min(1e-12))


HEAD_CLASSES = {"direct": DirectHead, "lowrank": LowRankHead}
