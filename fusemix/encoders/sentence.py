"""Sentence encoder (BGE, E5, MiniLM, ...): ``AutoModel`` + ``AutoTokenizer``, pooled and L2-normalised.

Pooling, unless given: the sentence-transformers ``1_Pooling/config.json``, else guessed from the model id
(``bge`` -> cls, else mean). E5 models get ``"query: "`` by default; long captions are truncated and counted.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import from_pretrained_safetensors
from .base import (
    Encoder,
    EncoderConfigError,
    check_caption,
    freeze,
    model_max_length,
    model_revision,
    note_truncation,
    token_count,
)

logger = logging.getLogger(__name__)

POOLINGS = ("cls", "mean")


def _read_side_json(model_id: str, name: str, revision: str | None) -> dict | None:
    """A sentence-transformers side file from a local dir, or the hub cache/network if reachable."""
    local = Path(model_id) / name
    if local.is_file():
        return json.loads(local.read_text())
    if Path(model_id).is_dir():
        return None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(model_id, name, revision=revision)).read_text())
    except Exception:  # offline, no such file, gated repo: fall back to other evidence
        return None


def guess_pooling(model_id: str, revision: str | None = None) -> tuple[str, str]:
    """``(pooling, source)`` for a sentence encoder, in the module docstring's order."""
    st = _read_side_json(model_id, "1_Pooling/config.json", revision)
    if st:
        if st.get("pooling_mode_cls_token"):
            return "cls", "sentence-transformers config"
        if st.get("pooling_mode_mean_tokens"):
            return "mean", "sentence-transformers config"
    name = str(model_id).lower()
    if "bge" in name:
        return "cls", "model id"
    if _is_e5(name) or "minilm" in name or "mpnet" in name:
        return "mean", "model id"
    logger.warning("no pooling known for %s: using mean pooling (pass pooling= to choose)", model_id)
    return "mean", "default"


def _is_e5(name: str) -> bool:
    return re.search(r"(^|[/_-])e5([-_/]|$)", name.lower()) is not None


class SentenceEncoder(Encoder):
    """Frozen sentence encoder: captions -> unit vectors ``[B, hidden_size]``."""

    kind = "sentence"
    modality = "text"

    def __init__(self, model_id: str, *, pooling: str | None = None, prefix: str | None = None,
                 max_length: int | None = None, revision: str | None = None, device=None, dtype=None,
                 batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        if pooling is not None and pooling not in POOLINGS:
            raise EncoderConfigError(f"pooling must be one of {POOLINGS} or None, got {pooling!r}")
        self._place(device, dtype, batch_size)
        self.tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
        model = from_pretrained_safetensors(AutoModel, model_id, revision=revision)
        self.model = freeze(model, self.device, self.dtype)
        self.model_id = str(model_id)
        self.revision = revision or model_revision(model.config, model_id)
        self.dim = int(model.config.hidden_size)
        if pooling is None:
            self.pooling, self.pooling_source = guess_pooling(self.model_id, revision)
        else:
            self.pooling, self.pooling_source = pooling, "argument"
        self.prefix = prefix if prefix is not None else ("query: " if _is_e5(self.model_id) else "")
        if max_length is None:
            st = _read_side_json(self.model_id, "sentence_bert_config.json", revision) or {}
            max_length = st.get("max_seq_length")
        limit = model_max_length(self.tokenizer, getattr(model.config, "max_position_embeddings", None))
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or not 1 < max_length <= limit):
            raise EncoderConfigError(f"max_length must be an int in 2..{limit}, got {max_length!r}")
        self.max_length = max_length or limit
        self.n_truncated = 0

    def prepare(self, item: Any) -> tuple[str, bool]:
        text = self.prefix + check_caption(item)
        return text, token_count(self.tokenizer, text) > self.max_length

    def collate(self, prepared: Sequence[tuple[str, bool]]) -> dict[str, Any]:
        tok = self.tokenizer([t for t, _ in prepared], padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"inputs": dict(tok), "n_truncated": sum(tr for _, tr in prepared)}

    def _forward(self, batch: dict) -> torch.Tensor:
        inputs = {k: v.to(self.device) for k, v in batch["inputs"].items()}
        note_truncation(self, batch["n_truncated"], len(inputs["input_ids"]), self.max_length)
        hidden = self.model(**inputs).last_hidden_state.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def extra_description(self) -> dict:
        return {"pooling_source": self.pooling_source, "prefix": self.prefix,
                "max_length": self.max_length, "normalized": True}
