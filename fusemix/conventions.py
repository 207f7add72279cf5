"""The project's shared conventions, each defined once: where caches live, how an encoder is named
(``KIND:MODEL_ID``), which suffixes are audio or images, which device to use. No heavy imports.
"""
from __future__ import annotations

import os
from pathlib import Path

# --------------------------------------------------------------------------- cache root

PERSISTENT_STORAGE = "/data"  # a Hugging Face Space's persistent volume, when one is attached


def cache_root(*parts: str) -> Path:
    """The folder every fusemix cache lives under, joined with ``parts`` (not created): ``$FUSEMIX_CACHE``,
    else ``$XDG_CACHE_HOME/fusemix``, else ``~/.cache/fusemix``."""
    base = os.environ.get("FUSEMIX_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "fusemix")
    return Path(base).joinpath(*parts)


def use_persistent_storage(root: str | None = None, env=None) -> bool:
    """Where a writable ``root`` exists (a Space's persistent volume, ``/data``, or
    ``$FUSEMIX_PERSISTENT_STORAGE``), put the Hugging Face cache and fusemix's cache on it unless the
    environment already chose; call before any hub library is imported (they read ``HF_HOME`` once).
    True when ``root`` is used."""
    env = os.environ if env is None else env
    root = root or env.get("FUSEMIX_PERSISTENT_STORAGE") or PERSISTENT_STORAGE
    if not (os.path.isdir(root) and os.access(root, os.W_OK)):
        return False
    env.setdefault("HF_HOME", os.path.join(root, "huggingface"))
    env.setdefault("FUSEMIX_CACHE", os.path.join(root, "fusemix"))
    return True


# --------------------------------------------------------------------------- encoder specs

# Kinds of frozen encoder that fusemix.encoders can load (its registry must list exactly these).
ENCODER_KINDS = ("clap-audio", "clap-text", "sd-text", "image", "sentence", "clip-text")
# The kind a bare model id gets when only its modality is known.
DEFAULT_KIND = {"audio": "clap-audio", "image": "image", "text": "sentence"}


class SpecError(ValueError):
    """An encoder spec that is not ``KIND:MODEL_ID`` with a known kind."""


def parse_spec(spec: str, modality: str | None = None) -> tuple[str, str]:
    """``"clap-audio:laion/clap-htsat-unfused"`` -> ``("clap-audio", "laion/clap-htsat-unfused")``; a bare
    id or path (no known ``KIND:`` prefix, e.g. ``C:/x``) takes ``modality``'s default kind, else fails."""
    spec = str(spec)
    kind, sep, model_id = spec.partition(":")
    if sep and kind in ENCODER_KINDS:
        if not model_id:
            raise SpecError(f"encoder spec {spec!r} names no model after {kind}:")
        return kind, model_id
    if modality in DEFAULT_KIND and spec:
        return DEFAULT_KIND[modality], spec
    raise SpecError(f"encoder spec must look like KIND:MODEL_ID with KIND one of {', '.join(ENCODER_KINDS)} "
                    f"(e.g. clap-audio:laion/clap-htsat-unfused), got {spec!r}")


def model_id_of(spec: str) -> str:
    """The model id of a spec, or the spec itself when it carries no known kind."""
    kind, sep, model_id = str(spec).partition(":")
    return model_id if sep and kind in ENCODER_KINDS and model_id else str(spec)


def kind_of(spec: str) -> str | None:
    """The kind of a spec, or None when it carries none."""
    kind, sep, model_id = str(spec).partition(":")
    return kind if sep and kind in ENCODER_KINDS and model_id else None


def same_model(a: str, b: str) -> bool:
    """Two model ids name the same model: equal, or the same existing local folder."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


# --------------------------------------------------------------------------- file types

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac",
                              ".aif", ".aiff", ".aifc"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"})
EXTENSIONS = {"audio": AUDIO_EXTENSIONS, "image": IMAGE_EXTENSIONS}


def modality_of_path(path: str | os.PathLike) -> str | None:
    """"audio" or "image" by the file's suffix (any case), else None."""
    ext = os.path.splitext(str(path))[1].lower()
    return next((m for m, exts in EXTENSIONS.items() if ext in exts), None)


def audio_files(paths) -> list[Path]:
    """Audio files among ``paths`` (folders searched recursively, sorted); FileNotFoundError for a missing one."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        found += sorted(f for f in p.rglob("*") if modality_of_path(f) == "audio") if p.is_dir() else [p]
    return found


# --------------------------------------------------------------------------- device


def pick_device(device=None):
    """``device`` as a torch.device; None or "auto" -> CUDA when available, else the CPU."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
