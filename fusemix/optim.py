"""AdamW without weight decay on biases and norms, and a warm-up + cosine learning rate."""
from __future__ import annotations

import math

import torch


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Matrices decay; biases, LayerNorm weights and scalars (the temperature) do not."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Linear warm-up to ``base_lr``, then a half cosine down to ``min_lr_ratio * base_lr``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return base_lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the official code's settings; fused where this torch build has it for the parameters' device."""
    groups = param_groups(model, weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr)
