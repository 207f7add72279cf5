"""Embedding spaces for cross-modal search: frozen encoders + a FusionModel, or any other shared space.

An :class:`EmbeddingSpace` is a named set of per-modality embedders sharing one space (a FuseMix model,
a reference such as CLIP, or any callables), so a query and a gallery are only compared within one.
Each embedder's *fingerprint* (encoder description + adapter weights hash) keeps gallery caches apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .conventions import model_id_of, same_model
from .model import FusionModel


class RetrievalError(ValueError):
    """A query a space cannot answer (unsupported modality, bad items, a broken embedder)."""


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over a module's parameter names, shapes and values: changes whenever the weights do."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu")
        h.update(f"{name}\0{tuple(t.shape)}\0{t.dtype}\0".encode())
        h.update(t.float().contiguous().numpy().tobytes() if t.is_floating_point() else t.numpy().tobytes())
    return h.hexdigest()


@dataclass
class Embedder:
    """Any ``list[item] -> Tensor[B, P]`` for one modality, with a fingerprint naming the model."""

    modality: str
    fn: Callable[[list], torch.Tensor]
    fingerprint: str

    def __call__(self, items: list) -> torch.Tensor:
        with torch.no_grad():  # retrieval never needs gradients
            out = self.fn(list(items))
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(items):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise RetrievalError(f"the {self.modality} embedder must return [{len(items)}, P], got {shape}")
        return torch.nn.functional.normalize(out.detach().to("cpu", torch.float32), dim=-1)


class FusionEmbedder(Embedder):
    """Frozen encoder -> FusionModel adapter for one modality, under inference mode. Another latent width is an
    error; another model too, unless ``strict_encoder=False`` (e.g. a local snapshot of the same hub id)."""

    def __init__(self, encoder, model: FusionModel, modality: str | None = None, *, strict_encoder: bool = True):
        modality = modality or encoder.modality
        if modality not in model.adapters:
            raise RetrievalError(f"the fusion model has no {modality!r} adapter; it has {model.modalities}")
        spec = model.config.modalities[modality]
        if int(encoder.dim) != int(spec.dim):
            raise RetrievalError(f"the {modality} adapter reads {spec.dim}-d latents of {spec.encoder}, but the "
                                 f"encoder {encoder.model_id} produces {encoder.dim}-d latents")
        if strict_encoder and spec.encoder and not same_model(model_id_of(spec.encoder), str(encoder.model_id)):
            raise RetrievalError(f"the {modality} adapter was trained on latents of {spec.encoder}, not "
                                 f"{encoder.model_id}; pass strict_encoder=False if they are the same model")
        self.encoder, self.model = encoder, model.eval()
        # the encoder's identity, the adapter's spec and the shared width, and the adapter's weights
        head = json.dumps([encoder.describe(), modality, spec.encoder, spec.dim, model.config.proj_dim], sort_keys=True)
        fp = hashlib.sha256((head + module_fingerprint(model.adapters[modality])).encode()).hexdigest()
        super().__init__(modality, self._embed, f"fusion:{modality}:{fp}")

    def _embed(self, items: list) -> torch.Tensor:
        latents = self.encoder.encode(items, progress=False)
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            return self.model.embed(self.modality, latents.to(device)).float().cpu()


class EmbeddingSpace:
    """Named per-modality embedders whose outputs live in one shared space."""

    def __init__(self, name: str, embedders: Sequence[Embedder], *, standin: bool = False):
        items = list(embedders)
        if not items:
            raise RetrievalError(f"space {name!r} needs at least one embedder")
        self.name = str(name)
        self.embedders: dict[str, Embedder] = {}
        for e in items:
            if e.modality in self.embedders:
                raise RetrievalError(f"space {name!r} has two {e.modality!r} embedders")
            self.embedders[e.modality] = e
        self.standin = bool(standin)  # True when built from random-init stand-in models: label it in UIs

    @property
    def modalities(self) -> list[str]:
        return list(self.embedders)

    def embedder(self, modality: str) -> Embedder:
        if modality not in self.embedders:
            raise RetrievalError(f"space {self.name!r} cannot embed {modality!r} queries; "
                                 f"it supports {self.modalities}")
        return self.embedders[modality]

    def embed(self, modality: str, items: Sequence[Any]) -> torch.Tensor:
        """Unit vectors ``[len(items), P]`` for ``items`` of ``modality``."""
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise RetrievalError(f"items must be a list, got {type(items).__name__}")
        if len(items) == 0:
            raise RetrievalError("no items to embed")
        return self.embedder(modality)(list(items))

    @classmethod
    def from_fusion(cls, model: FusionModel, encoders: Mapping[str, Any], *, name: str = "fusion",
                    strict_encoder: bool = True, standin: bool = False) -> "EmbeddingSpace":
        """One :class:`FusionEmbedder` per ``{modality: encoder}``; each modality needs an adapter."""
        return cls(name, [FusionEmbedder(enc, model, m, strict_encoder=strict_encoder) for m, enc in encoders.items()],
                   standin=standin)

    def __repr__(self) -> str:
        return f"EmbeddingSpace({self.name!r}, modalities={self.modalities}{', stand-in' if self.standin else ''})"
