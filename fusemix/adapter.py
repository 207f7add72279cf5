"""The fusion adapter: a small residual MLP from one frozen latent space into the shared one."""
from __future__ import annotations

import torch
from torch import nn

from .dropout import GeluDropout


class ResidualBlock(nn.Module):
    """Pre-LayerNorm MLP block with a skip: x + W2 Drop(GELU(W1 LN(x)))."""

    def __init__(self, dim: int, expansion: int = 4, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, expansion * dim)
        self.act_drop = GeluDropout(dropout)  # GELU then dropout, fused (fusemix/dropout.py)
        self.fc2 = nn.Linear(expansion * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act_drop(self.fc1(self.norm(x))))


class Adapter(nn.Module):
    """``depth`` residual blocks at the input width, LN -> Linear into the shared space, then
    ``head_depth`` residual blocks at the shared width (a correction on top of a linear map)."""

    def __init__(self, in_dim: int, out_dim: int, depth: int = 4, expansion: int = 4, dropout: float = 0.6,
                 head_depth: int = 0):
        super().__init__()
        if in_dim < 1 or out_dim < 1 or min(depth, head_depth) < 0 or expansion < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"invalid adapter shape: in_dim={in_dim}, out_dim={out_dim}, depth={depth}, head_depth={head_depth}, "
                f"expansion={expansion}, dropout={dropout} (need dims >= 1, depths >= 0, expansion >= 1, 0 <= dropout < 1)"
            )
        self.in_dim, self.out_dim = in_dim, out_dim
        self.blocks = nn.Sequential(*[ResidualBlock(in_dim, expansion, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, out_dim)
        self.head = nn.Sequential(*[ResidualBlock(out_dim, expansion, dropout) for _ in range(head_depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"adapter expects inputs of width {self.in_dim}, got shape {tuple(x.shape)}")
        return self.head(self.proj(self.norm(self.blocks(x))))
