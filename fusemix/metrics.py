"""Retrieval metrics with several captions per item: ``za`` one row per item, ``zb`` one per caption,
``b_to_a[j]`` the item caption j describes. a->b ranks an item's best caption; b->a has one right item.
"""
from __future__ import annotations

import torch


def ranks_from_similarity(sim: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """1-based rank of the highest-scoring positive in each row (ties counted pessimistically)."""
    if sim.shape != positive.shape:
        raise ValueError(f"similarity {tuple(sim.shape)} and positive mask {tuple(positive.shape)} differ")
    if not positive.any(dim=1).all():
        raise ValueError("every query needs at least one positive target")
    sim, positive = sim.float(), positive.bool()
    best_pos = sim.masked_fill(~positive, float("-inf")).max(dim=1, keepdim=True).values
    return 1 + ((sim >= best_pos) & ~positive).sum(dim=1)  # 1 + negatives scoring at least as high


def _summary(ranks: torch.Tensor, name: str, ks=(1, 5, 10)) -> dict[str, float]:
    out = {f"{name}_R@{k}": (ranks <= k).float().mean().item() for k in ks}
    out[f"{name}_mean_rank"] = ranks.float().mean().item()
    out[f"{name}_median_rank"] = ranks.float().median().item()
    return out


@torch.no_grad()
def retrieval_metrics(za: torch.Tensor, zb: torch.Tensor, b_to_a: torch.Tensor | None = None,
                      prefix: tuple[str, str] = ("a", "b"), ks=(1, 5, 10), chunk: int = 4096) -> dict[str, float]:
    """R@K, mean and median rank both ways as a flat dict like ``i2t_R@1`` (``za``/``zb`` L2-normalised)."""
    if za.ndim != 2 or zb.ndim != 2 or za.shape[1] != zb.shape[1]:
        raise ValueError(f"need [N, P] and [M, P] embeddings, got {tuple(za.shape)} and {tuple(zb.shape)}")
    if b_to_a is None:
        if za.shape[0] != zb.shape[0]:
            raise ValueError(f"without b_to_a the two sets must be row-aligned, got {za.shape[0]} and {zb.shape[0]} rows")
        b_to_a = torch.arange(za.shape[0])
    b_to_a = b_to_a.long().cpu()
    if b_to_a.shape != (zb.shape[0],) or b_to_a.min() < 0 or b_to_a.max() >= za.shape[0]:
        raise ValueError(f"b_to_a must map each of the {zb.shape[0]} rows of zb to an item in [0, {za.shape[0]})")
    za, zb = za.float().cpu(), zb.float().cpu()
    a, b = prefix
    a2b, b2a = [], []
    for s in range(0, za.shape[0], chunk):  # item queries
        sim = za[s:s + chunk] @ zb.t()
        pos = b_to_a.unsqueeze(0) == torch.arange(s, s + sim.shape[0]).unsqueeze(1)
        a2b.append(ranks_from_similarity(sim, pos))
    for s in range(0, zb.shape[0], chunk):  # caption queries
        sim = zb[s:s + chunk] @ za.t()
        pos = torch.zeros_like(sim, dtype=torch.bool)
        pos[torch.arange(sim.shape[0]), b_to_a[s:s + sim.shape[0]]] = True
        b2a.append(ranks_from_similarity(sim, pos))
    return {**_summary(torch.cat(a2b), f"{a}2{b}", ks), **_summary(torch.cat(b2a), f"{b}2{a}", ks)}


@torch.no_grad()
def contrastive_loss(za: torch.Tensor, zb: torch.Tensor, b_to_a: torch.Tensor | None = None,
                     temperature: float = 0.05, chunk: int = 4096) -> float:
    """Symmetric InfoNCE of L2-normalised embeddings at a fixed temperature: each caption against all
    items, each item against all captions (any of its own counts). On a small held-out slice R@1 is
    1.0 for most checkpoints; this still tells them apart, so train.py keeps the checkpoint by it."""
    b_to_a = torch.arange(len(za)) if b_to_a is None else b_to_a.long().cpu()
    if za.ndim != 2 or zb.ndim != 2 or b_to_a.shape != (len(zb),) or (len(zb) and int(b_to_a.max()) >= len(za)):
        raise ValueError(f"need [N, P] items, [M, P] captions and each caption's item, got {tuple(za.shape)}, "
                         f"{tuple(zb.shape)}, {tuple(b_to_a.shape)}")
    za, zb = za.float().cpu(), zb.float().cpu()
    item_side = caption_side = 0.0
    for s in range(0, len(za), chunk):  # an item finds its captions among all captions
        logits = za[s:s + chunk] @ zb.t() / temperature
        own = b_to_a.unsqueeze(0) == torch.arange(s, s + len(logits)).unsqueeze(1)
        item_side += float((logits.logsumexp(1) - logits.masked_fill(~own, float("-inf")).logsumexp(1)).sum())
    for s in range(0, len(zb), chunk):  # a caption finds its one item among all items
        logits = zb[s:s + chunk] @ za.t() / temperature
        caption_side += float(torch.nn.functional.cross_entropy(logits, b_to_a[s:s + chunk], reduction="sum"))
    return 0.5 * (item_side / len(za) + caption_side / len(zb))
