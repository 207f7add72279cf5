"""CLAP audio and text towers through transformers' ``ClapModel`` (LAION's weights, from safetensors).

Both towers of a checkpoint share one loaded model and return projected, L2-normalised embeddings.
Clips longer than a window: ``long_clip="center"`` (default) embeds the central window, ``"mean"``
the re-normalised mean of up to ``max_windows`` evenly spaced ones; fused checkpoints use their own
global+local view, with numpy's RNG fixed so it is repeatable.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..audio import DEFAULT_MAX_BYTES, DEFAULT_MAX_SECONDS, DEFAULT_MIN_SECONDS, AudioError, load_audio
from ..checkpoint import from_pretrained_safetensors
from ..conventions import pick_device
from .base import (
    Encoder,
    EncoderConfigError,
    EncoderInputError,
    check_batch_size,
    check_caption,
    freeze,
    model_max_length,
    model_revision,
    note_truncation,
    pick_dtype,
    token_count,
)
from .clap_features import LogMel

LONG_CLIP_MODES = ("center", "mean")


@dataclass
class ClapBundle:
    """One loaded CLAP checkpoint, shared by its audio and text encoders."""

    model: Any  # transformers.ClapModel
    feature_extractor: Any  # transformers.ClapFeatureExtractor
    tokenizer: Any
    revision: str | None
    enable_fusion: bool


_CACHE: dict[tuple, ClapBundle] = {}
_LOCK = threading.Lock()


def load_clap(model_id: str, *, revision: str | None = None, device=None, dtype=None) -> ClapBundle:
    """Load (or reuse) a CLAP checkpoint with a feature extractor matching its fusion setting."""
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    key = (str(model_id), revision, str(dev), str(dt))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        model = from_pretrained_safetensors(ClapModel, model_id, revision=revision)
        fe = ClapFeatureExtractor.from_pretrained(model_id, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
        fusion = bool(getattr(model.config.audio_config, "enable_fusion", False))
        fe.truncation = "fusion" if fusion else "rand_trunc"
        rev = revision or model_revision(model.config, model_id)
        bundle = ClapBundle(freeze(model, dev, dt), fe, tokenizer, rev, fusion)
        _CACHE[key] = bundle
        return bundle


def clear_clap_cache() -> None:
    """Drop shared CLAP models (frees memory; next load reads from disk again)."""
    with _LOCK:
        _CACHE.clear()


def window_starts(n: int, window: int, mode: str, max_windows: int) -> list[int]:
    """Start offsets of the windows embedded for a clip of ``n`` samples (deterministic)."""
    if n <= window:
        return [0]
    if mode == "center":
        return [(n - window) // 2]
    k = min(math.ceil(n / window), max_windows)
    return [int(round(s)) for s in np.linspace(0, n - window, k)]


class _ClapBase(Encoder):
    def __init__(self, model_id: str, *, revision=None, device=None, dtype=None, batch_size: int = 16):
        self.bundle = load_clap(model_id, revision=revision, device=device, dtype=dtype)
        self.model_id, self.revision, self.pooling = str(model_id), self.bundle.revision, "projected"
        self.device, self.dtype = self.bundle.model.device, self.bundle.model.dtype
        self.dim = int(self.bundle.model.config.projection_dim)
        self.batch_size = check_batch_size(batch_size)


class ClapAudioEncoder(_ClapBase):
    """CLAP audio tower: audio items -> unit vectors ``[B, projection_dim]``."""

    kind = "clap-audio"
    modality = "audio"

    def __init__(self, model_id: str, *, revision=None, device=None, dtype=None, batch_size: int = 16,
                 long_clip: str = "center", max_windows: int = 6,
                 max_seconds: float = DEFAULT_MAX_SECONDS, min_seconds: float = DEFAULT_MIN_SECONDS,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        if long_clip not in LONG_CLIP_MODES:
            raise EncoderConfigError(f"long_clip must be one of {LONG_CLIP_MODES}, got {long_clip!r}")
        if not isinstance(max_windows, int) or not 1 <= max_windows <= 64:
            raise EncoderConfigError(f"max_windows must be an int in 1..64, got {max_windows!r}")
        super().__init__(model_id, revision=revision, device=device, dtype=dtype, batch_size=batch_size)
        fe = self.bundle.feature_extractor
        self.sample_rate, self.window, self.max_windows = int(fe.sampling_rate), int(fe.nb_max_samples), max_windows
        self.long_clip = "fusion" if self.bundle.enable_fusion else long_clip
        try:  # fusemix's log-mel where it reproduces the extractor, else the extractor itself
            self.log_mel = LogMel(fe) if self.long_clip != "fusion" else None
        except ValueError:
            self.log_mel = None
        self.limits = {"max_seconds": max_seconds, "min_seconds": min_seconds, "max_bytes": max_bytes}

    def prepare(self, item: Any) -> dict[str, Any]:
        """Decode to mono at the model's rate, pick the windows, and return their log-mel features."""
        try:
            wav = load_audio(item, self.sample_rate, source_sr=self.sample_rate, **self.limits)
        except AudioError as exc:
            raise EncoderInputError(str(exc)) from exc
        fe = self.bundle.feature_extractor
        if self.long_clip == "fusion":
            state = np.random.get_state()  # the extractor's random choices, repeatable; the seed not leaked
            np.random.seed(0)
            try:
                feats = fe([wav], sampling_rate=self.sample_rate, return_tensors="np")
            finally:
                np.random.set_state(state)
        else:
            starts = window_starts(len(wav), self.window, self.long_clip, self.max_windows)
            windows = [wav[s:s + self.window] for s in starts]
            feats = (self.log_mel.features(windows) if self.log_mel is not None
                     else fe(windows, sampling_rate=self.sample_rate, return_tensors="np"))
        return {"input_features": feats["input_features"].astype(np.float32, copy=False),
                "is_longer": np.asarray(feats["is_longer"], dtype=bool).reshape(-1, 1)}

    def collate(self, prepared: Sequence[dict]) -> dict[str, Any]:
        # numpy, not torch.cat: single-threaded, so it never spins against busy decoding workers
        batch = {k: torch.from_numpy(np.concatenate([np.asarray(p[k]) for p in prepared])) for k in prepared[0]}
        batch["counts"] = [len(p["input_features"]) for p in prepared]
        return batch

    def _forward(self, batch: dict) -> torch.Tensor:
        out = self.bundle.model.get_audio_features(
            input_features=batch["input_features"].to(self.device, self.dtype),
            is_longer=batch["is_longer"].to(self.device),
        ).pooler_output.float()
        if max(batch["counts"]) == 1:
            return out
        groups = torch.split(out, batch["counts"])
        return torch.nn.functional.normalize(torch.stack([g.mean(0) for g in groups]), dim=-1)

    def extra_description(self) -> dict:
        # The resampler is part of what made a latent; "soxr-hq" keeps the keys of existing caches.
        return {"sample_rate": self.sample_rate, "window_samples": self.window, "resampler": "soxr-hq",
                "long_clip": self.long_clip, "max_windows": self.max_windows,
                "enable_fusion": self.bundle.enable_fusion, "normalized": True}


class ClapTextEncoder(_ClapBase):
    """CLAP text tower: captions -> unit vectors ``[B, projection_dim]`` in the audio tower's space."""

    kind = "clap-text"
    modality = "text"

    def __init__(self, model_id: str, *, revision=None, device=None, dtype=None, batch_size: int = 64,
                 max_length: int | None = None):
        super().__init__(model_id, revision=revision, device=device, dtype=dtype, batch_size=batch_size)
        cfg = self.bundle.model.config.text_config
        # RoBERTa positions start after the padding index: two slots of the table are not usable.
        self.max_length = max_length or model_max_length(self.bundle.tokenizer, cfg.max_position_embeddings - 2)
        self.n_truncated = 0

    def prepare(self, item: Any) -> tuple[str, bool]:
        text = check_caption(item)
        return text, token_count(self.bundle.tokenizer, text) > self.max_length

    def collate(self, prepared: Sequence[tuple[str, bool]]) -> dict[str, Any]:
        tok = self.bundle.tokenizer([t for t, _ in prepared], padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt")
        return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"],
                "n_truncated": sum(tr for _, tr in prepared)}

    def _forward(self, batch: dict) -> torch.Tensor:
        note_truncation(self, batch["n_truncated"], len(batch["input_ids"]), self.max_length)
        return self.bundle.model.get_text_features(
            input_ids=batch["input_ids"].to(self.device),
            attention_mask=batch["attention_mask"].to(self.device),
        ).pooler_output.float()

    def extra_description(self) -> dict:
        return {"max_length": self.max_length, "normalized": True}
