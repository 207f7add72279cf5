"""Cross-modal search: frozen encoders + a FusionModel (or any other shared space) + galleries.

Why a "space" object: a query and a gallery are only comparable when both were embedded into the
same vector space.  An :class:`EmbeddingSpace` is a named set of per-modality embedding functions that
share one space: a trained FuseMix model with its encoders (:meth:`EmbeddingSpace.from_fusion`), or a
zero-training reference such as CLIP (:func:`clip_space`), or any callables you plug in.  A
:class:`Retriever` keeps galleries, each tied to the space its embeddings came from, and answers
``query(modality, item, gallery, k)``: text -> image, image -> text, text -> audio, audio -> image (the
emergent direction when audio and image adapters were both trained against one frozen text anchor),
image -> image.  Asking with a modality the gallery's space cannot embed is a ``RetrievalError``.

Every embedder carries a *fingerprint* (encoder description + adapter weights hash) so gallery caches
made with one model are never reused by another.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .gallery import Gallery, Hit
from .model import FusionModel

__all__ = ["RetrievalError", "Embedder", "FusionEmbedder", "EmbeddingSpace", "Retriever", "clip_space",
           "adapter_fingerprint", "module_fingerprint"]


class RetrievalError(ValueError):
    """A query the retriever cannot answer (unknown gallery, unsupported modality, bad k)."""


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over a module's parameter names, shapes and values: changes whenever the weights do."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu")
        h.update(f"{name}\0{tuple(t.shape)}\0{t.dtype}\0".encode())
        h.update(t.float().contiguous().numpy().tobytes() if t.is_floating_point() else t.numpy().tobytes())
    return h.hexdigest()


def adapter_fingerprint(model: FusionModel, modality: str) -> str:
    """The identity of one adapter of a FusionModel: its spec, the shared width and its weights."""
    spec = model.config.modalities[modality]
    head = json.dumps({"modality": modality, "encoder": spec.encoder, "dim": spec.dim,
                       "proj_dim": model.config.proj_dim}, sort_keys=True)
    return hashlib.sha256((head + module_fingerprint(model.adapters[modality])).encode()).hexdigest()


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
    """Frozen encoder -> FusionModel adapter for one modality (both run under inference mode).

    The encoder must produce the latents the adapter was trained on: a different width is always an
    error; a different encoder id is an error unless ``strict_encoder=False`` (e.g. the same model
    loaded from a local snapshot path instead of its hub id).
    """

    def __init__(self, encoder, model: FusionModel, modality: str | None = None, *, strict_encoder: bool = True,
                 batch_size: int | None = None):
        modality = modality or encoder.modality
        if modality not in model.adapters:
            raise RetrievalError(f"the fusion model has no {modality!r} adapter; it has {model.modalities}")
        spec = model.config.modalities[modality]
        if int(encoder.dim) != int(spec.dim):
            raise RetrievalError(f"the {modality} adapter reads {spec.dim}-d latents of {spec.encoder}, but the "
                                 f"encoder {encoder.model_id} produces {encoder.dim}-d latents")
        if strict_encoder and spec.encoder and str(encoder.model_id) != str(spec.encoder):
            raise RetrievalError(f"the {modality} adapter was trained on latents of {spec.encoder}, not "
                                 f"{encoder.model_id}; pass strict_encoder=False if they are the same model")
        self.encoder, self.model, self.batch_size = encoder, model.eval(), batch_size
        desc = json.dumps(encoder.describe(), sort_keys=True)
        fp = hashlib.sha256((desc + adapter_fingerprint(model, modality)).encode()).hexdigest()
        super().__init__(modality, self._embed, f"fusion:{modality}:{fp}")

    def _embed(self, items: list) -> torch.Tensor:
        latents = self.encoder.encode(items, batch_size=self.batch_size, progress=False)
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            return self.model.embed(self.modality, latents.to(device)).float().cpu()


class EmbeddingSpace:
    """Named per-modality embedders whose outputs live in one shared space."""

    def __init__(self, name: str, embedders: Mapping[str, Embedder] | Sequence[Embedder], *, standin: bool = False):
        items = list(embedders.values()) if isinstance(embedders, Mapping) else list(embedders)
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


class Retriever:
    """Galleries, each with the space its embeddings live in; top-k queries across modalities."""

    def __init__(self, space: EmbeddingSpace | None = None):
        self.default_space = space
        self._galleries: dict[str, tuple[Gallery, EmbeddingSpace]] = {}

    # -- galleries -------------------------------------------------------------------------------
    @property
    def galleries(self) -> dict[str, Gallery]:
        return {n: g for n, (g, _) in self._galleries.items()}

    def space_of(self, name: str) -> EmbeddingSpace:
        return self._entry(name)[1]

    def add_gallery(self, name: str, gallery: Gallery, space: EmbeddingSpace | None = None) -> Gallery:
        """Register ``gallery`` under ``name``; ``space`` (default: the retriever's) embeds its queries.

        If the space can embed the gallery's own modality, the gallery's fingerprint must be that
        embedder's: a gallery embedded by another model would give meaningless scores.
        """
        space = space or self.default_space
        if space is None:
            raise RetrievalError("give a space for this gallery (the retriever has no default space)")
        if not isinstance(name, str) or not name:
            raise RetrievalError("gallery name must be a non-empty string")
        own = space.embedders.get(gallery.modality)
        if own is not None and own.fingerprint != gallery.fingerprint:
            raise RetrievalError(f"gallery {name!r} was embedded by another model ({gallery.fingerprint[:40]}...) "
                                 f"than space {space.name!r}'s {gallery.modality} embedder")
        self._galleries[name] = (gallery, space)
        return gallery

    def build_gallery(self, name: str, source: str | os.PathLike | Sequence[Any], modality: str, *,
                      space: EmbeddingSpace | None = None, **kwargs) -> Gallery:
        """Embed a folder (path) or a list of items with the space's ``modality`` embedder, then register it.

        ``kwargs`` go to :meth:`Gallery.from_folder` / :meth:`Gallery.from_items` (cache_dir, keys, meta...).
        """
        space = space or self.default_space
        if space is None:
            raise RetrievalError("give a space for this gallery (the retriever has no default space)")
        emb = space.embedder(modality)
        if isinstance(source, (str, os.PathLike)):  # a folder; a list of items otherwise
            gallery = Gallery.from_folder(source, emb, modality=modality, **kwargs)
        else:
            gallery = Gallery.from_items(source, emb, modality=modality, name=name, **kwargs)
        return self.add_gallery(name, gallery, space)

    def _entry(self, name: str) -> tuple[Gallery, EmbeddingSpace]:
        if name not in self._galleries:
            raise RetrievalError(f"no gallery named {name!r}; have {sorted(self._galleries)}")
        return self._galleries[name]

    # -- queries ---------------------------------------------------------------------------------
    def modalities_for(self, gallery_name: str) -> list[str]:
        """Query modalities the named gallery can answer."""
        return self.space_of(gallery_name).modalities

    def embed_query(self, modality: str, items: Sequence[Any], gallery_name: str) -> torch.Tensor:
        return self.space_of(gallery_name).embed(modality, items)

    def query(self, modality: str, item: Any, gallery_name: str, k: int = 10) -> list[Hit]:
        """Top-``k`` gallery items for one query item of ``modality`` (k > gallery size: all items)."""
        return self.query_batch(modality, [item], gallery_name, k)[0]

    def query_batch(self, modality: str, items: Sequence[Any], gallery_name: str, k: int = 10) -> list[list[Hit]]:
        gallery, space = self._entry(gallery_name)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise RetrievalError(f"k must be an integer >= 1, got {k!r}")
        return gallery.search_batch(space.embed(modality, items), k)

    def query_via(self, modality: str, item: Any, via_gallery: str, gallery_name: str, k: int = 10,
                  pivots: int = 1) -> list[Hit]:
        """Two-hop retrieval: find the ``pivots`` best items of ``via_gallery`` (e.g. captions), then
        search ``gallery_name`` with the mean of their stored embeddings.

        The baseline the emergent direction is compared with (audio -> captions -> images).
        """
        via, _ = self._entry(via_gallery)
        target, _ = self._entry(gallery_name)
        if via.dim != target.dim:
            raise RetrievalError(f"galleries {via_gallery!r} and {gallery_name!r} live in different spaces "
                                 f"(dims {via.dim} and {target.dim})")
        hops = self.query(modality, item, via_gallery, pivots)
        q = torch.stack([via.embedding(h.item.key) for h in hops]).mean(0)
        return target.search(q, k)


def clip_space(model_id: str, *, name: str = "clip-reference", device: str | None = None,
               standin: bool | None = None) -> EmbeddingSpace:
    """A zero-training reference space from a CLIP checkpoint (image and text embedders).

    The same model as the demo's reference scorer (:class:`fusemix.reference.ReferenceScorer`:
    ``CLIPModel`` + tokenizer + PIL image processor, L2-normalised projected features, captions
    checked and cut at 77 tokens). ``standin`` defaults to whether the checkpoint is a
    :mod:`fusemix.tiny` stand-in.
    """
    from .reference import ReferenceScorer

    return ReferenceScorer.from_pretrained(model_id, device=device).space(name, standin=standin)
