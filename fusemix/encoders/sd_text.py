"""The text encoder of a Stable Diffusion checkpoint: the space a conditioning bridge maps into.

Loads only ``text_encoder/`` and ``tokenizer/`` (never the UNet or VAE). ``encode`` returns
``[B, seq_len, D]`` exactly as ``StableDiffusionPipeline.encode_prompt`` feeds the UNet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import from_pretrained_safetensors
from .base import (
    Encoder,
    EncoderConfigError,
    check_caption,
    fingerprint_files,
    freeze,
    model_max_length,
    note_truncation,
    token_count,
)

SUBFOLDERS = ("text_encoder", "tokenizer")


def _local_fingerprint(model_id: str) -> str | None:
    parts = [fingerprint_files(Path(model_id) / sub) for sub in SUBFOLDERS]
    return None if None in parts else "+".join(parts)


class SdTextEncoder(Encoder):
    """SD conditioning: captions -> ``prompt_embeds`` ``[B, seq_len, D]``."""

    kind = "sd-text"
    modality = "text"

    def __init__(self, model_id: str, *, revision: str | None = None, device=None, dtype=None,
                 batch_size: int = 64, clip_skip: int | None = None):
        from transformers import CLIPTextModel, CLIPTokenizer

        self._place(device, dtype, batch_size)
        self.tokenizer = CLIPTokenizer.from_pretrained(model_id, subfolder="tokenizer", revision=revision)
        model = from_pretrained_safetensors(CLIPTextModel, model_id, subfolder="text_encoder", revision=revision)
        n_layers = model.config.num_hidden_layers
        if clip_skip is not None and (isinstance(clip_skip, bool) or not isinstance(clip_skip, int)
                                      or not 0 <= clip_skip < n_layers):
            raise EncoderConfigError(f"clip_skip must be an int in 0..{n_layers - 1} or None, got {clip_skip!r}")
        self.text_encoder = freeze(model, self.device, self.dtype)
        self.clip_skip = clip_skip
        self.model_id = str(model_id)
        self.revision = revision or getattr(model.config, "_commit_hash", None) or _local_fingerprint(model_id)
        self.dim = int(model.config.hidden_size)
        self.seq_len = model_max_length(self.tokenizer, model.config.max_position_embeddings)
        self.pooling = "tokens" if clip_skip is None else f"tokens(clip_skip={clip_skip})"
        self.use_attention_mask = bool(getattr(model.config, "use_attention_mask", False))
        self.n_truncated = 0

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.seq_len, self.dim)

    def prepare(self, item: Any) -> tuple[str, bool]:
        text = check_caption(item)
        return text, token_count(self.tokenizer, text) > self.seq_len

    def collate(self, prepared: Sequence[tuple[str, bool]]) -> dict[str, Any]:
        tok = self.tokenizer([t for t, _ in prepared], padding="max_length", max_length=self.seq_len,
                             truncation=True, return_tensors="pt")
        return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"],
                "n_truncated": sum(tr for _, tr in prepared)}

    def _forward(self, batch: dict) -> torch.Tensor:
        note_truncation(self, batch["n_truncated"], len(batch["input_ids"]), self.seq_len)
        mask = batch["attention_mask"].to(self.device) if self.use_attention_mask else None
        out = self.text_encoder(batch["input_ids"].to(self.device), attention_mask=mask,
                                output_hidden_states=self.clip_skip is not None)
        if self.clip_skip is None:
            return out.last_hidden_state
        # transformers 5 flattened CLIPTextModel (no .text_model); 4.x nests it.
        text_model = getattr(self.text_encoder, "text_model", self.text_encoder)
        return text_model.final_layer_norm(out.hidden_states[-(self.clip_skip + 1)])

    def extra_description(self) -> dict:
        return {"seq_len": self.seq_len, "clip_skip": self.clip_skip, "subfolders": list(SUBFOLDERS),
                "pooled_dim": self.dim, "normalized": False}
