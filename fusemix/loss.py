"""Symmetric InfoNCE with a learnable, clamped temperature (as in CLIP and the FuseMix code); with
``gather=True`` every data-parallel process's features are all-gathered with gradient (global negatives).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gather_with_grad(z: torch.Tensor) -> torch.Tensor:
    """Concatenate ``z`` over all processes; gradients flow back to each process's share."""
    import torch.distributed as dist
    import torch.distributed.nn.functional as dist_fn

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    return torch.cat(dist_fn.all_gather(z), dim=0)


def info_nce(za: torch.Tensor, zb: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Mean of the a->b and b->a cross-entropies; row i of ``za`` pairs with row i of ``zb``."""
    if za.shape != zb.shape or za.ndim != 2:
        raise ValueError(f"contrastive loss needs two [B, P] tensors of one shape, got {tuple(za.shape)} and {tuple(zb.shape)}")
    logits = za @ zb.t() / temperature
    target = torch.arange(za.shape[0], device=za.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class ContrastiveLoss(nn.Module):
    """Holds the learnable log-temperature (init 0.07, clamped to [0.001, 0.5] as in the official code)."""

    def __init__(self, init_temperature: float = 0.07, min_temperature: float = 0.001,
                 max_temperature: float = 0.5, gather: bool = False):
        super().__init__()
        if not 0 < min_temperature <= init_temperature <= max_temperature:
            raise ValueError(
                f"need 0 < min_temperature <= init_temperature <= max_temperature, got "
                f"{min_temperature}, {init_temperature}, {max_temperature}")
        self.min_log, self.max_log = math.log(min_temperature), math.log(max_temperature)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(init_temperature)))
        self.gather = gather

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.clamp(self.min_log, self.max_log).exp()

    def forward(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        if self.gather:
            za, zb = gather_with_grad(za), gather_with_grad(zb)
        return info_nce(za.float(), zb.float(), self.temperature)
