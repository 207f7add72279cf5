"""Frozen encoders behind one interface, and a registry to load them by kind.

``load_encoder(kind, model_id, **kw)`` with kind one of ``"clap-audio"``, ``"clap-text"``,
``"sd-text"``, ``"image"``, ``"sentence"``. The two CLAP kinds of one checkpoint share a loaded
model. Classes are imported lazily so ``import fusemix.encoders`` stays cheap.
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
}
assert tuple(_KINDS) == ENCODER_KINDS, "the registry must list exactly conventions.ENCODER_KINDS"


def encoder_class(kind: str) -> type[Encoder]:
    """The class registered for ``kind``."""
    if kind not in _KINDS:
        raise EncoderConfigError(f"unknown encoder kind {kind!r}; expected one of {ENCODER_KINDS}")
    module, name = _KINDS[kind]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def load_encoder(kind: str, model_id: str, **kwargs) -> Encoder:
    """Load a frozen encoder of ``kind`` from a hub repo id or local directory."""
    if not isinstance(model_id, (str,)) and not hasattr(model_id, "__fspath__"):
        raise EncoderConfigError(f"model_id must be a repo id or a path, got {type(model_id).__name__}")
    return encoder_class(kind)(str(model_id), **kwargs)


# describe() key -> constructor argument, per kind: what rebuilds the same encoder.
_REBUILD_ARGS = {
    "clap-audio": {"long_clip": "long_clip", "max_windows": "max_windows"},
    "clap-text": {"max_length": "max_length"},
    "sd-text": {"clip_skip": "clip_skip"},
    "image": {"pooling": "pooling", "normalized": "normalize"},
    "sentence": {"pooling": "pooling", "prefix": "prefix", "max_length": "max_length"},
}


class EncoderMismatchError(ValueError):
    """A rebuilt encoder is not the one a cache or checkpoint was made with."""


def load_encoder_from_description(desc: dict, *, check: bool = True, **kwargs) -> Encoder:
    """Rebuild the encoder a ``describe()`` dict came from (cache manifests, checkpoints).

    With ``check``, the rebuilt encoder must match on dim, output shape, pooling and, when both
    are known, revision; otherwise :class:`EncoderMismatchError` names the differences.
    ``kwargs`` (device, dtype, batch_size, ...) pass through.
    """
    for key in ("kind", "model_id"):
        if key not in desc:
            raise EncoderConfigError(f"encoder description lacks {key!r}: {sorted(desc)}")
    kind = desc["kind"]
    encoder_class(kind)  # unknown kind -> clear error before anything loads
    args = {arg: desc[key] for key, arg in _REBUILD_ARGS[kind].items() if key in desc}
    if args.get("long_clip") == "fusion":  # fused checkpoints choose this themselves
        del args["long_clip"]
    rev = desc.get("revision")
    if rev and not str(rev).startswith("sha256:"):
        args["revision"] = rev
    enc = load_encoder(kind, desc["model_id"], **{**args, **kwargs})
    if check:
        new = enc.describe()
        keys = ["dim", "output_shape", "pooling"] + (["revision"] if rev and new.get("revision") else [])
        diff = {k: (desc.get(k), new.get(k)) for k in keys if k in desc and desc.get(k) != new.get(k)}
        if diff:
            detail = ", ".join(f"{k}: expected {a!r}, got {b!r}" for k, (a, b) in diff.items())
            raise EncoderMismatchError(f"{kind} encoder {desc['model_id']} differs from the one recorded: {detail}")
    return enc


def __getattr__(name: str):
    for kind, (_, cls) in _KINDS.items():
        if cls == name:
            return encoder_class(kind)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Encoder", "EncoderConfigError", "EncoderInputError", "EncoderMismatchError", "ENCODER_KINDS",
           "encoder_class", "load_encoder", "load_encoder_from_description", "ClapAudioEncoder", "ClapTextEncoder", "SdTextEncoder", "ImageEncoder",
           "SentenceEncoder"]
