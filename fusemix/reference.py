"""The zero-training reference scorer for caption -> images: a CLIP model, used as it ships.

The demo keeps this *reference* route beside trained adapters so the two can be compared.
Images go through the PIL-based image processor (no torchvision); outputs are L2-normalised.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .checkpoint import from_pretrained_safetensors
from .conventions import pick_device
from .encoders.base import EncoderInputError, check_caption, pick_dtype
from .retrieval import Embedder, EmbeddingSpace, module_fingerprint

logger = logging.getLogger(__name__)

DEFAULT_REFERENCE_MODEL = "openai/clip-vit-base-patch32"


class ReferenceScorer:
    """A frozen CLIP model: captions and images -> unit vectors in CLIP's space; ``standin=True`` labels it."""

    def __init__(self, model, tokenizer, image_processor, model_id: str, *, batch_size: int = 16,
                 standin: bool = False):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.model_id = str(model_id)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.dim = int(model.config.projection_dim)
        self.max_length = int(model.config.text_config.max_position_embeddings)
        self.batch_size = int(batch_size)
        self.n_truncated = 0
        self.standin = bool(standin)
        self._lock = threading.Lock()  # tokenizers and CPU inference are not re-entrant-safe
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(cls, model_id: str | os.PathLike = DEFAULT_REFERENCE_MODEL, *, device=None, dtype=None,
                        revision: str | None = None, batch_size: int = 16, standin: bool = False) -> "ReferenceScorer":
        """Load ``CLIPModel`` + tokenizer + PIL image processor from a hub id or a local directory."""
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        dev = pick_device(device)
        dt = pick_dtype(dev, dtype)
        model_id = str(model_id)
        model = from_pretrained_safetensors(CLIPModel, model_id, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
        processor = AutoImageProcessor.from_pretrained(model_id, revision=revision, backend="pil")
        return cls(model.to(device=dev, dtype=dt), tokenizer, processor, model_id, batch_size=batch_size,
                   standin=standin)

    @property
    def fingerprint(self) -> str:
        """Model id + a hash of the weights: galleries embedded by another model never match it."""
        if self._fingerprint is None:
            self._fingerprint = f"reference-clip:{self.model_id}:{module_fingerprint(self.model)[:32]}"
        return self._fingerprint


    def embed_texts(self, captions: Sequence[str]) -> torch.Tensor:
        """Unit vectors ``[len(captions), dim]``; captions longer than CLIP's 77 tokens are cut (counted)."""
        if isinstance(captions, str) or not isinstance(captions, Sequence):
            raise EncoderInputError(f"captions must be a list of strings, got {type(captions).__name__}")
        texts = [check_caption(c, i) for i, c in enumerate(captions)]

        def run(chunk):
            full = self.tokenizer(chunk, truncation=False, verbose=False)["input_ids"]
            cut = sum(len(ids) > self.max_length for ids in full)
            if cut:
                self.n_truncated += cut
                logger.info("reference CLIP: %d caption(s) truncated to %d tokens", cut, self.max_length)
            tok = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            return self.model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                                attention_mask=tok["attention_mask"].to(self.device)).pooler_output

        return self._embed(texts, run)

    def embed_images(self, images: Sequence[Any]) -> torch.Tensor:
        """Unit vectors ``[len(images), dim]`` for PIL images, paths, bytes or arrays."""
        from .encoders.image import open_image

        if not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
            raise EncoderInputError(f"images must be a list, got {type(images).__name__}")

        def run(chunk):
            pix = self.image_processor(images=chunk, return_tensors="pt")["pixel_values"]
            return self.model.get_image_features(pixel_values=pix.to(self.device, self.dtype)).pooler_output

        return self._embed([open_image(im) for im in images], run)

    def _embed(self, items: list, run) -> torch.Tensor:
        """``run`` (-> projected CLIP features) over ``items`` in batches, as unit float32 vectors on the CPU."""
        with self._lock, torch.inference_mode():
            outs = [run(items[s:s + self.batch_size]).float().cpu()
                    for s in range(0, len(items), self.batch_size)]
        return F.normalize(torch.cat(outs), dim=-1) if outs else torch.empty((0, self.dim))

    def score(self, caption: str, images: Sequence[Any]) -> torch.Tensor:
        """Cosine similarity of one caption with each image, ``[len(images)]``."""
        return (self.embed_images(images) @ self.embed_texts([caption])[0]).float()

    def space(self, name: str = "reference", *, standin: bool | None = None) -> EmbeddingSpace:
        """This scorer as an :class:`~fusemix.retrieval.EmbeddingSpace`; ``standin`` overrides its own label."""
        fp = self.fingerprint
        return EmbeddingSpace(name, [Embedder("image", self.embed_images, fp + ":image"),
                                     Embedder("text", self.embed_texts, fp + ":text")],
                              standin=self.standin if standin is None else standin)

    def __repr__(self) -> str:
        return f"ReferenceScorer({self.model_id!r}, dim={self.dim}{', stand-in' if self.standin else ''})"


def clip_space(model_id: str, *, name: str = "clip-reference", device: str | None = None,
               standin: bool = False) -> EmbeddingSpace:
    """A zero-training reference space (image and text embedders) from a CLIP checkpoint."""
    return ReferenceScorer.from_pretrained(model_id, device=device, standin=standin).space(name)
