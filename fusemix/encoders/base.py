"""The one interface every frozen encoder follows, and what all of them share.

``prepare(item)`` (CPU, per item, in DataLoader workers; a bad item raises :class:`EncoderInputError`),
``collate(prepared)`` and ``forward(batch)`` (-> float32 CPU ``[B, *output_shape]``); ``encode(items)``
chains the three. Models are frozen, fp16 on CUDA and fp32 on CPU by default.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..conventions import pick_device

logger = logging.getLogger(__name__)


class EncoderInputError(ValueError):
    """An item an encoder cannot use (empty caption, not an image, undecodable audio, ...)."""


class EncoderConfigError(ValueError):
    """Bad encoder arguments (unknown kind or pooling, batch size out of range, ...)."""


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None) -> torch.dtype:
    """``None`` -> fp16 on CUDA, fp32 elsewhere (CPU fp16 kernels are slow and inexact)."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
                 "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
        if dtype not in names:
            raise EncoderConfigError(f"dtype must be one of {sorted(names)}, got {dtype!r}")
        return names[dtype]
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise EncoderConfigError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
    return dtype


def freeze(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Eval mode, no gradients, on ``device`` in ``dtype``: the encoder is frozen for good."""
    model.requires_grad_(False)
    return model.to(device=device, dtype=dtype).eval()


def check_caption(item: Any, index: int | None = None) -> str:
    """A caption must be a string with some non-space text; returned unchanged (the model's
    own tokenizer decides what whitespace means, exactly as its pipeline would)."""
    where = "" if index is None else f"item {index}: "
    if not isinstance(item, str):
        raise EncoderInputError(f"{where}caption must be a string, got {type(item).__name__}")
    if not item.strip():
        raise EncoderInputError(f"{where}caption is empty or whitespace only")
    try:
        item.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate such as "\ud800" (valid in JSON, not in UTF-8)
        raise EncoderInputError(f"{where}caption is not valid Unicode: {e.object[e.start:e.end]!r} at "
                                f"position {e.start} is a lone surrogate") from None
    return item


def model_max_length(tokenizer, position_limit: int | None = None) -> int:
    """The tokenizer's limit, bounded by the model's position table (tokenizers may say 1e30)."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit <= 0 or limit > 1_000_000:
        limit = None
    if position_limit is not None:
        limit = position_limit if limit is None else min(limit, position_limit)
    if limit is None:
        raise EncoderConfigError("cannot tell the tokenizer's maximum length; pass max_length=")
    return limit


def check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EncoderConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def fingerprint_files(root: str | Path, patterns: Iterable[str] = ("*.json", "*.safetensors", "*.txt", "*.model")) -> str | None:
    """sha256 over a local model directory's config/weight files (None for a hub id): a content
    revision, so an edited or replaced model makes a new cache key instead of mixing latents."""
    root = Path(root)
    if not root.is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted({p for pat in patterns for p in root.rglob(pat) if p.is_file()}):
        if p.name in ("README.md", "STANDIN.txt"):
            continue
        h.update(str(p.relative_to(root)).encode())
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def model_revision(config, model_id: str) -> str | None:
    """The hub commit transformers recorded for ``config``, else a local directory's fingerprint."""
    return getattr(config, "_commit_hash", None) or fingerprint_files(model_id)


class Encoder(ABC):
    """Base class of frozen encoders. Subclasses set the attributes below in ``__init__``."""

    kind: str  # registry name, e.g. "clap-audio"
    modality: str  # "audio" | "text" | "image"
    model_id: str  # repo id or local path it was loaded from
    revision: str | None  # hub commit or local content fingerprint
    dim: int  # read from the model config
    pooling: str
    device: torch.device
    dtype: torch.dtype
    batch_size: int = 32

    def _place(self, device, dtype, batch_size: int) -> None:
        """Set ``device``, ``dtype`` (:func:`pick_dtype`) and a checked ``batch_size``."""
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.batch_size = check_batch_size(batch_size)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one item's latent: ``(dim,)``, or ``(seq_len, dim)`` for token sequences."""
        return (self.dim,)

    @abstractmethod
    def prepare(self, item: Any) -> Any:
        """CPU-only per-item preprocessing; raises EncoderInputError for unusable items."""

    @abstractmethod
    def collate(self, prepared: Sequence[Any]) -> Any:
        """Batch prepared items for :meth:`forward`."""

    @abstractmethod
    def _forward(self, batch: Any) -> torch.Tensor:
        """Model forward on a collated batch; called under inference mode."""

    def forward(self, batch: Any) -> torch.Tensor:
        with torch.inference_mode():
            return self._forward(batch).detach().to("cpu", torch.float32).contiguous()

    def extra_description(self) -> dict:
        return {}

    def describe(self) -> dict:
        """JSON-able identity of this encoder: what produced a latent (cache keys, checkpoints)."""
        d = {"kind": self.kind, "model_id": str(self.model_id), "revision": self.revision, "modality": self.modality,
             "dim": int(self.dim), "output_shape": list(self.output_shape), "pooling": self.pooling,
             "compute_dtype": str(self.dtype).replace("torch.", ""), **self.extra_description()}
        json.dumps(d)  # fail here, not when a cache manifest is written
        return d

    def batches(self, items: Sequence[Any], *, batch_size: int | None = None,
                progress: bool | None = None) -> Iterator[Any]:
        """Prepare all items (one EncoderInputError lists every bad one), then yield collated batches."""
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise EncoderInputError(f"items must be a list, got {type(items).__name__}")
        bs = check_batch_size(self.batch_size if batch_size is None else batch_size)
        prepared, errors = [], []
        for i, item in enumerate(items):  # every item is checked before any compute
            try:
                prepared.append(self.prepare(item))
            except ValueError as exc:  # EncoderInputError, AudioError, ...: one item's fault
                errors.append(f"item {i}: {exc}")
        if errors:
            shown = "; ".join(errors[:5]) + (f"; ... ({len(errors)} in all)" if len(errors) > 5 else "")
            raise EncoderInputError(f"{len(errors)} of {len(items)} items are unusable: {shown}")
        n_batches = math.ceil(len(prepared) / bs)
        show = n_batches > 1 if progress is None else progress
        for start in tqdm(range(0, len(prepared), bs), total=n_batches, disable=not show,
                          desc=f"encode {self.kind}", unit="batch"):
            yield self.collate(prepared[start:start + bs])

    def encode(self, items: Sequence[Any], *, batch_size: int | None = None, progress: bool | None = None) -> torch.Tensor:
        """Latents of ``items``, float32 CPU ``[len(items), *output_shape]``; ``progress=None`` shows a
        tqdm bar when there is more than one batch."""
        outs = [self.forward(b) for b in self.batches(items, batch_size=batch_size, progress=progress)]
        return torch.cat(outs) if outs else torch.empty((0, *self.output_shape), dtype=torch.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, dim={self.dim}, pooling={self.pooling!r})"


def token_count(tokenizer, text: str) -> int:
    """Number of tokens ``text`` becomes, special tokens included, before any truncation."""
    return len(tokenizer(text, truncation=False, verbose=False)["input_ids"])


def note_truncation(encoder: Encoder, n_truncated: int, batch_len: int, limit: int) -> None:
    """Count and log captions cut at the tokenizer limit (kept on ``encoder.n_truncated``)."""
    if n_truncated:
        encoder.n_truncated = getattr(encoder, "n_truncated", 0) + n_truncated
        logger.warning("%s: %d of %d captions truncated to %d tokens (%d so far)",
                       encoder.kind, n_truncated, batch_len, limit, encoder.n_truncated)
