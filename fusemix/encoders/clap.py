"""CLAP audio and text towers through transformers' ``ClapModel``.

transformers' ``ClapModel`` loads LAION's CLAP weights (``laion/clap-htsat-unfused``,
``laion/larger_clap_general``, ...) from safetensors; the ``laion-clap`` package is not used (it
downgrades numpy, imports torchvision without declaring it, and downloads roberta-base when built).

Both towers of one checkpoint share a single loaded model (cached by model id, revision, device
and dtype). Outputs are the projected, L2-normalised embeddings ``[B, projection_dim]``.

Audio: any source :func:`fusemix.audio.load_audio` accepts, decoded to mono at the feature
extractor's rate (48 kHz for LAION CLAP); bare numpy arrays are taken to be at that rate already.
The feature extractor's mode follows the checkpoint's ``enable_fusion``: unfused checkpoints need
``truncation="rand_trunc"`` (the "fusion" default makes 4-channel input they cannot take).
For those the log-mel spectrogram is fusemix's own (:mod:`fusemix.encoders.clap_features`: the
extractor's values from ``torch.stft``; a 10 s window on one core ~6 ms, the extractor ~20 ms).
With the model on an accelerator it is computed per batch on the device in ``forward``, after
resampling and padding there too (:mod:`fusemix.device_resample`), so that ``prepare`` (DataLoader
workers) only decodes and cuts windows at the file's own rate and the CPU side keeps up with the
GPU; with the model on the CPU all of it stays in ``prepare`` (soxr resampling). The two paths
differ only by resampler (julius on the device: log-mel within ~0.003 dB on average for 32 kHz and
up; lower rates are resampled with soxr on the CPU in both). Configurations it does not reproduce
keep the extractor.

Clips longer than the model's window (10 s) are handled deterministically, never by a random
crop: ``long_clip="center"`` (default) embeds the central window; ``"mean"`` embeds up to
``max_windows`` evenly spaced windows covering the clip and averages them (re-normalised). Fused
checkpoints use their own global+local view, with numpy's RNG fixed so it is repeatable.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fusemix.audio import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SECONDS,
    DEFAULT_MIN_SECONDS,
    AudioError,
    decode_audio,
    load_audio,
    resample,
    resampled_length,
)
from fusemix.device_resample import DeviceResampler, collate_windows, cut_windows, resamples_on_device

from ..checkpoint import from_pretrained_safetensors
from .base import (
    Encoder,
    EncoderConfigError,
    EncoderInputError,
    check_caption,
    fingerprint_files,
    freeze,
    hub_revision,
    model_max_length,
    note_truncation,
    pick_device,
    pick_dtype,
    token_count,
)
from .clap_features import LogMel, check_supported, pad_windows

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
        rev = revision or hub_revision(model.config) or fingerprint_files(model_id)
        bundle = ClapBundle(freeze(model, dev, dt), fe, tokenizer, rev, fusion)
        _CACHE[key] = bundle
        return bundle


def clear_clap_cache() -> None:
    """Drop shared CLAP models (frees memory; next load reads from disk again)."""
    with _LOCK:
        _CACHE.clear()


@contextlib.contextmanager
def _fixed_numpy_rng(seed: int = 0):
    """Make the feature extractor's numpy-random choices repeatable without leaking the seed."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def window_starts(n: int, window: int, mode: str, max_windows: int) -> list[int]:
    """Start offsets of the windows embedded for a clip of ``n`` samples (deterministic)."""
    if n <= window:
        return [0]
    if mode == "center":
        return [(n - window) // 2]
    k = min(math.ceil(n / window), max_windows)
    return [int(round(s)) for s in np.linspace(0, n - window, k)]


def _reproducible(fe: Any) -> bool:
    """Whether :class:`LogMel` reproduces ``fe`` (else ``prepare`` keeps the extractor)."""
    try:
        check_supported(fe)
    except ValueError:
        return False
    return True


class _ClapBase(Encoder):
    def __init__(self, model_id: str, *, revision=None, device=None, dtype=None, batch_size: int = 16):
        self.bundle = load_clap(model_id, revision=revision, device=device, dtype=dtype)
        self.model_id = str(model_id)
        self.revision = self.bundle.revision
        self.device = self.bundle.model.device
        self.dtype = self.bundle.model.dtype
        self.dim = int(self.bundle.model.config.projection_dim)
        self.pooling = "projected"
        if not isinstance(batch_size, int) or batch_size < 1:
            raise EncoderConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size


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
        self.sample_rate = int(fe.sampling_rate)
        self.window = int(fe.nb_max_samples)
        self.long_clip = "fusion" if self.bundle.enable_fusion else long_clip
        self.max_windows = max_windows
        self.fast_features = self.long_clip != "fusion" and _reproducible(fe)
        self.log_mel = LogMel(fe) if self.fast_features else None
        self.resampler = DeviceResampler(self.sample_rate, self.window) if self.fast_features else None
        # Where the log-mel runs: on an accelerator, in forward with the resampling (the GPU does
        # both almost for free and the CPU side, the bound at GPU rates, only decodes and cuts
        # windows: fusemix.device_resample); on the CPU, in prepare, so that
        # DataLoader workers compute it in the idle time the forward leaves (in the forward it
        # lengthens every batch: full-size CLAP, 2 cores, 2 workers, stage/forward median 0.88 with
        # the log-mel in forward, 0.92 and 0.96 with it in prepare).
        self.features_in_forward = self.fast_features and self.device.type != "cpu"
        self.limits = {"max_seconds": max_seconds, "min_seconds": min_seconds, "max_bytes": max_bytes}

    @property
    def collate_in_workers(self) -> bool:
        """Batch the windows' samples where they were cut (see ``fusemix.cache._CollateInWorkers``)."""
        return self.features_in_forward

    def prepare(self, item: Any) -> dict[str, Any]:
        """Decode to mono and pick windows; then either their log-mel features (CPU model) or, for
        ``forward`` on an accelerator, the source samples they need at the file's own rate
        (:func:`fusemix.device_resample.cut_windows`: ``{"audio", "table"}``).

        Samples are torch tensors, not numpy arrays, and are batched in the DataLoader workers
        (``collate_in_workers``): a tensor travels through shared memory, an array is pickled
        through a pipe (main-process CPU per 10 s clip, measured: 0.35 ms for a batched tensor,
        3.0-3.6 ms for arrays, which would cap a GPU encoder's stage near 300 clips/s)."""
        try:
            if self.features_in_forward:
                return self._cut(item)
            wav = load_audio(item, self.sample_rate, source_sr=self.sample_rate, **self.limits)
        except AudioError as exc:
            raise EncoderInputError(str(exc)) from exc
        fe = self.bundle.feature_extractor
        if self.long_clip == "fusion":
            with _fixed_numpy_rng():
                feats = fe([wav], sampling_rate=self.sample_rate, return_tensors="np")
        else:
            starts = window_starts(len(wav), self.window, self.long_clip, self.max_windows)
            windows = [wav[s:s + self.window] for s in starts]
            if self.fast_features:
                feats = self.log_mel.features(windows)
            else:
                feats = fe(windows, sampling_rate=self.sample_rate, return_tensors="np")
        return {"input_features": feats["input_features"].astype(np.float32, copy=False),
                "is_longer": np.asarray(feats["is_longer"], dtype=bool).reshape(-1, 1)}

    def _cut(self, item: Any) -> dict[str, Any]:
        """The windows :meth:`prepare` would pick, as source samples for the device to resample."""
        mono, sr = decode_audio(item, source_sr=self.sample_rate, mono_pcm16_as_int16=True, **self.limits)
        if not resamples_on_device(sr, self.sample_rate, self.bundle.feature_extractor.frequency_max):
            mono, sr = resample(mono, sr, self.sample_rate), self.sample_rate
        starts = window_starts(resampled_length(len(mono), sr, self.sample_rate), self.window,
                               self.long_clip, self.max_windows)
        return cut_windows(mono, sr, self.sample_rate, starts, self.window)

    def collate(self, prepared: Sequence[dict]) -> dict[str, Any]:
        keys = {tuple(sorted(p)) for p in prepared}
        if len(keys) != 1:
            raise RuntimeError(f"prepared items of different kinds in one batch: {sorted(keys)}")
        if "table" in prepared[0]:
            return collate_windows(prepared)
        # numpy, not torch.cat: single-threaded, so it never spins against busy decoding workers
        # (torch.cat of shared-memory waveforms on 2 threads: 2.8 vs 0.7 ms per 10 s clip).
        batch = {k: torch.from_numpy(np.concatenate([np.asarray(p[k]) for p in prepared])) for k in prepared[0]}
        batch["counts"] = [len(p["input_features"]) for p in prepared]
        return batch

    def features_on_device(self, batch: dict) -> torch.Tensor:
        """Log-mel features ``[N, 1, frames, mels]`` of a collated ``{"audio", "table"}`` batch,
        resampled, padded and transformed on the model's device."""
        if self.log_mel is None:
            raise RuntimeError("audio batches need the reproduced log-mel (fast_features)")
        # non_blocking: from a pinned batch (fusemix.cache pins them for CUDA) the copy is a DMA
        body, lengths = self.resampler(batch["audio"].to(self.device, non_blocking=True), batch["table"])
        return self.log_mel(pad_windows(body, lengths, self.bundle.feature_extractor))

    def _forward(self, batch: dict) -> torch.Tensor:
        model = self.bundle.model
        if "audio" in batch:  # resampling and log-mel run here, on the model's device
            features = self.features_on_device(batch)
            is_longer = torch.zeros(len(features), 1, dtype=torch.bool, device=self.device)
        else:
            features, is_longer = batch["input_features"], batch["is_longer"].to(self.device)
        out = model.get_audio_features(
            input_features=features.to(self.device, self.dtype), is_longer=is_longer,
        ).pooler_output.float()
        counts = batch["counts"]
        if max(counts) == 1:
            return out
        groups = torch.split(out, counts)
        return torch.nn.functional.normalize(torch.stack([g.mean(0) for g in groups]), dim=-1)

    def extra_description(self) -> dict:
        # The resampler is part of what made a latent (julius and soxr differ slightly), so caches
        # made on a GPU and on a CPU never mix. "julius-device/soxr-hq": julius on the model's device
        # where its pass band clears the mel range (device_resample.resamples_on_device), else soxr.
        resampler = "julius-device/soxr-hq" if self.features_in_forward else "soxr-hq"
        return {"sample_rate": self.sample_rate, "window_samples": self.window, "resampler": resampler,
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


__all__ = ["ClapAudioEncoder", "ClapTextEncoder", "ClapBundle", "load_clap", "clear_clap_cache",
           "window_starts", "EncoderInputError"]
