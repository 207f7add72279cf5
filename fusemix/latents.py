"""The latent-pair file that train.py reads: ``x`` [N, Dx] (one row per item), ``y`` [M, Dy] or
[M, T, Dy] (one row per caption), optional ``y_item`` [M] (the item each caption describes; absent:
row-aligned), metadata naming modalities and encoders. Validated before any training starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .io import atomic_save_safetensors

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class LatentFileError(ValueError):
    """A latent file that cannot be trained on, with the reason."""


@dataclass
class LatentPairs:
    x: torch.Tensor
    y: torch.Tensor
    y_item: torch.Tensor | None = None
    x_modality: str = "x"
    y_modality: str = "y"
    x_encoder: str = "unknown"
    y_encoder: str = "unknown"

    def __post_init__(self):
        validate(self)

    @property
    def item_of(self) -> torch.Tensor:
        """Item index of each y row (an arange when the pairs are row-aligned)."""
        return self.y_item if self.y_item is not None else torch.arange(self.y.shape[0])

    @property
    def num_pairs(self) -> int:
        return self.y.shape[0]

    def metadata(self) -> dict[str, str]:
        return {"x_modality": self.x_modality, "y_modality": self.y_modality,
                "x_encoder": self.x_encoder, "y_encoder": self.y_encoder, "format": "fusemix.latent_pairs.v1"}

    def split(self, heldout_fraction: float, seed: int = 0) -> tuple["LatentPairs", "LatentPairs"]:
        """Split by *item* (all captions of an item stay together), reproducibly."""
        n = self.x.shape[0]
        n_held = int(round(n * heldout_fraction))
        if not 0 <= n_held < n:
            raise LatentFileError(f"held-out fraction {heldout_fraction} leaves no training items out of {n}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        return self.subset(order[n_held:].sort().values), self.subset(order[:n_held].sort().values)

    def subset(self, items: torch.Tensor) -> "LatentPairs":
        """The given items and all their captions, with y_item renumbered."""
        remap = torch.full((self.x.shape[0],), -1, dtype=torch.long)
        remap[items] = torch.arange(len(items))
        keep = remap[self.item_of] >= 0
        return LatentPairs(self.x[items], self.y[keep], remap[self.item_of[keep]], self.x_modality,
                           self.y_modality, self.x_encoder, self.y_encoder)


def validate(p: LatentPairs) -> None:
    for name, t, ranks in (("x", p.x, (2,)), ("y", p.y, (2, 3))):
        if not isinstance(t, torch.Tensor):
            raise LatentFileError(f"{name} must be a tensor, got {type(t).__name__}")
        if t.ndim not in ranks:
            raise LatentFileError(f"{name} must have rank {' or '.join(map(str, ranks))}, got shape {tuple(t.shape)}")
        if t.dtype not in FLOAT_DTYPES:
            raise LatentFileError(f"{name} must be a floating-point tensor, got {t.dtype}")
        if t.shape[0] == 0 or t.shape[-1] == 0:
            raise LatentFileError(f"{name} is empty (shape {tuple(t.shape)})")
        bad = ~torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
        if bad.any():
            rows = bad.nonzero().flatten()[:5].tolist()
            raise LatentFileError(f"{name} has {int(bad.sum())} rows with NaN or inf values (first rows: {rows})")
    if p.y_item is None:
        if p.x.shape[0] != p.y.shape[0]:
            raise LatentFileError(
                f"x has {p.x.shape[0]} rows and y has {p.y.shape[0]}: without y_item they must be row-aligned pairs")
    else:
        if p.y_item.dtype not in (torch.int32, torch.int64) or p.y_item.shape != (p.y.shape[0],):
            raise LatentFileError(f"y_item must be an integer tensor of shape ({p.y.shape[0]},), got "
                                  f"{p.y_item.dtype} {tuple(p.y_item.shape)}")
        if p.y_item.min() < 0 or p.y_item.max() >= p.x.shape[0]:
            raise LatentFileError(f"y_item values must lie in [0, {p.x.shape[0]}), got "
                                  f"[{int(p.y_item.min())}, {int(p.y_item.max())}]")
        p.y_item = p.y_item.long()


def save_latent_pairs(path: str | Path, pairs: LatentPairs) -> Path:
    tensors = {"x": pairs.x, "y": pairs.y}
    if pairs.y_item is not None:
        tensors["y_item"] = pairs.y_item
    return atomic_save_safetensors(path, tensors, pairs.metadata())


def load_latent_pairs(path: str | Path) -> LatentPairs:
    path = Path(path)
    if not path.is_file():
        raise LatentFileError(f"latent file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            missing = {"x", "y"} - keys
            if missing:
                raise LatentFileError(f"{path} lacks tensor(s) {sorted(missing)}; it holds {sorted(keys)}")
            tensors = {k: f.get_tensor(k) for k in ("x", "y", "y_item") if k in keys}
    except (SafetensorError, OSError) as e:
        raise LatentFileError(f"{path} is not a readable safetensors file: {e}") from e
    return LatentPairs(
        tensors["x"], tensors["y"], tensors.get("y_item"),
        meta.get("x_modality", "x"), meta.get("y_modality", "y"),
        meta.get("x_encoder", "unknown"), meta.get("y_encoder", "unknown"))
