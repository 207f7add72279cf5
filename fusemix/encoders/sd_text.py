"""The text encoder of a Stable Diffusion checkpoint: the space a conditioning bridge maps into.

Loads only the ``text_encoder/`` (``CLIPTextModel``) and ``tokenizer/`` (``CLIPTokenizer``)
subfolders of a diffusers repo id or directory, so the UNet and VAE are never read. ``encode``
returns the per-token hidden states ``[B, seq_len, D]`` exactly as
``StableDiffusionPipeline.encode_prompt`` feeds them to the UNet: padding to the tokenizer's
``model_max_length`` (77), truncation, the attention mask only when the config asks for one, the
last layer (or layer ``-(clip_skip + 1)`` followed by the final layer norm, as diffusers does).
``D`` is 768 for SD 1.x (CLIP ViT-L) and 1024 for SD 2.x / sd-turbo (OpenCLIP ViT-H).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..checkpoint import from_pretrained_safetensors
from ..conventions import pick_device
from .base import (
    Encoder,
    EncoderConfigError,
    check_caption,
    fingerprint_files,
    freeze,
    hub_revision,
    model_max_length,
    note_truncation,
    pick_dtype,
    token_count,
)


class SdTextEncoder(Encoder):
    """SD conditioning: captions -> ``prompt_embeds`` ``[B, seq_len, D]`` (+ pooled ``[B, D]``)."""

    kind = "sd-text"
    modality = "text"

    def __init__(self, model_id: str, *, revision: str | None = None, device=None, dtype=None,
                 batch_size: int = 64, clip_skip: int | None = None,
                 text_encoder_subfolder: str = "text_encoder", tokenizer_subfolder: str = "tokenizer"):
        from transformers import CLIPTextModel, CLIPTokenizer

        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise EncoderConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        self.tokenizer = CLIPTokenizer.from_pretrained(model_id, subfolder=tokenizer_subfolder, revision=revision)
        model = from_pretrained_safetensors(CLIPTextModel, model_id, subfolder=text_encoder_subfolder,
                                            revision=revision)
        n_layers = model.config.num_hidden_layers
        if clip_skip is not None and (isinstance(clip_skip, bool) or not isinstance(clip_skip, int)
                                      or not 0 <= clip_skip < n_layers):
            raise EncoderConfigError(f"clip_skip must be an int in 0..{n_layers - 1} or None, got {clip_skip!r}")
        self.text_encoder = freeze(model, self.device, self.dtype)
        self.clip_skip = clip_skip
        self.model_id = str(model_id)
        self.subfolders = (text_encoder_subfolder, tokenizer_subfolder)
        self.revision = revision or hub_revision(model.config) or self._local_fingerprint()
        self.dim = int(model.config.hidden_size)
        self.seq_len = model_max_length(self.tokenizer, model.config.max_position_embeddings)
        self.pooling = "tokens" if clip_skip is None else f"tokens(clip_skip={clip_skip})"
        self.use_attention_mask = bool(getattr(model.config, "use_attention_mask", False))
        self.n_truncated = 0

    def _local_fingerprint(self) -> str | None:
        from pathlib import Path

        parts = [fingerprint_files(Path(self.model_id) / sub) for sub in self.subfolders]
        return None if None in parts else "+".join(parts)

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

    def _run(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        note_truncation(self, batch["n_truncated"], len(batch["input_ids"]), self.seq_len)
        mask = batch["attention_mask"].to(self.device) if self.use_attention_mask else None
        out = self.text_encoder(batch["input_ids"].to(self.device), attention_mask=mask,
                                output_hidden_states=self.clip_skip is not None)
        if self.clip_skip is None:
            seq = out.last_hidden_state
        else:
            # transformers 5 flattened CLIPTextModel (no .text_model); 4.x nests it.
            text_model = getattr(self.text_encoder, "text_model", self.text_encoder)
            seq = text_model.final_layer_norm(out.hidden_states[-(self.clip_skip + 1)])
        return seq, out.pooler_output

    def _forward(self, batch: dict) -> torch.Tensor:
        return self._run(batch)[0]

    def encode_with_pooled(self, texts: Sequence[str], *, batch_size: int | None = None,
                           progress: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(seq [B, seq_len, D], pooled [B, D])``; pooled = the EOS token after the final norm."""
        seqs, pools = [], []
        for batch in self.batches(texts, batch_size=batch_size, progress=progress):
            with torch.inference_mode():
                seq, pooled = self._run(batch)
            seqs.append(seq.to("cpu", torch.float32))
            pools.append(pooled.to("cpu", torch.float32))
        if not seqs:
            return torch.empty((0, *self.output_shape)), torch.empty((0, self.dim))
        return torch.cat(seqs), torch.cat(pools)

    def unconditional(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of the empty prompt ``""``: what the pipeline uses for classifier-free
        guidance when no negative prompt is given. ``([1, seq_len, D], [1, D])``."""
        with torch.inference_mode():
            seq, pooled = self._run(self.collate([("", False)]))
        return seq.to("cpu", torch.float32), pooled.to("cpu", torch.float32)

    def extra_description(self) -> dict:
        return {"seq_len": self.seq_len, "clip_skip": self.clip_skip, "subfolders": list(self.subfolders),
                "pooled_dim": self.dim, "normalized": False}
