"""Frozen encoders behind one interface, loaded by kind: ``load_encoder(kind, model_id, **kw)``.

Kinds: ``conventions.ENCODER_KINDS``. Classes are imported lazily so ``import fusemix.encoders`` stays cheap.
"""

from __future__ import annotations

import importlib

from ..conventions import ENCODER_KINDS
from .base import Encoder, EncoderConfigError, EncoderInputError

_KINDS = {
    "clap-audio": ("clap", "ClapAudioEncoder"),
    "clap-text": ("clap", "ClapTextEncoder"),
    "sd-text": ("sd_text", "SdTextEncoder"),
    "image": ("image", "ImageEncoder"),
    "sentence": ("sentence", "SentenceEncoder"),
    "clip-text": ("clip_text", "ClipTextEncoder"),
}
assert tuple(_KINDS) == ENCODER_KINDS, "the registry must list exactly conventions.ENCODER_KINDS"


def load_encoder(kind: str, model_id: str, **kwargs) -> Encoder:
    """Load a frozen encoder of ``kind`` from a hub repo id or local directory."""
    if kind not in _KINDS:
        raise EncoderConfigError(f"unknown encoder kind {kind!r}; expected one of {ENCODER_KINDS}")
    if not isinstance(model_id, str) and not hasattr(model_id, "__fspath__"):
        raise EncoderConfigError(f"model_id must be a repo id or a path, got {type(model_id).__name__}")
    module, name = _KINDS[kind]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)(str(model_id), **kwargs)


__all__ = ["Encoder", "EncoderConfigError", "EncoderInputError", "ENCODER_KINDS", "load_encoder"]
