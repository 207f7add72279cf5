"""The text tower of a CLIP model: captions -> unit vectors in CLIP's image-text space.

The target of the Sound -> Images adapter: a bridge from CLAP into this space reaches the images a
reference CLIP embedded (``fusemix.reference``), so no second gallery embedding is needed. Loads only
the text tower and its projection (``CLIPTextModelWithProjection``), never the vision tower.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..checkpoint import from_pretrained_safetensors
from .base import Encoder, check_caption, freeze, model_max_length, model_revision, note_truncation, token_count


class ClipTextEncoder(Encoder):
    """CLIP text tower: captions -> L2-normalised projected ``text_embeds`` ``[B, projection_dim]``."""

    kind = "clip-text"
    modality = "text"

    def __init__(self, model_id: str, *, revision: str | None = None, device=None, dtype=None, batch_size: int = 64):
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        self._place(device, dtype, batch_size)
        model = from_pretrained_safetensors(CLIPTextModelWithProjection, model_id, revision=revision)
        self.tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
        self.model = freeze(model, self.device, self.dtype)
        self.model_id = str(model_id)
        self.revision = revision or model_revision(model.config, model_id)
        self.dim = int(model.config.projection_dim)
        self.max_length = model_max_length(self.tokenizer, model.config.max_position_embeddings)
        self.pooling = "projected"
        self.n_truncated = 0

    def prepare(self, item: Any) -> tuple[str, bool]:
        text = check_caption(item)
        return text, token_count(self.tokenizer, text) > self.max_length

    def collate(self, prepared: Sequence[tuple[str, bool]]) -> dict[str, Any]:
        tok = self.tokenizer([t for t, _ in prepared], padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"],
                "n_truncated": sum(tr for _, tr in prepared)}

    def _forward(self, batch: dict) -> torch.Tensor:
        note_truncation(self, batch["n_truncated"], len(batch["input_ids"]), self.max_length)
        out = self.model(input_ids=batch["input_ids"].to(self.device),
                         attention_mask=batch["attention_mask"].to(self.device))
        return F.normalize(out.text_embeds.float(), dim=-1)

    def extra_description(self) -> dict:
        return {"max_length": self.max_length, "normalized": True}
