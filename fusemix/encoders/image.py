"""Image encoder: a vision transformer (built for DINOv2) via ``AutoModel`` + the PIL image processor.

Any AutoModel whose ``last_hidden_state`` is ``[B, tokens, D]`` with a leading CLS token works.
Pooling: ``"cls"`` (DINOv2's layer-normed CLS token) or ``"mean"`` over the patch tokens only.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import from_pretrained_safetensors
from .base import Encoder, EncoderConfigError, EncoderInputError, freeze, model_revision

POOLINGS = ("cls", "mean")
MAX_IMAGE_BYTES = 64 * 1024 * 1024
# Checked from the header, before decoding: a 14 kB PNG can claim 100 Mpx, and PIL only refuses over
# 179 Mpx. Module-level, so an application can change them; ``open_image`` also takes them.
MAX_IMAGE_PIXELS = 40_000_000
# Processors scale the short side up to their input size: a 1 x 20000 image becomes 256 x 5.1 M px.
MAX_ASPECT_RATIO = 20.0


def check_image_size(size: tuple[int, int], name: str = "image", *, max_pixels: int | None = None,
                     max_aspect: float | None = None) -> None:
    """Refuse a (width, height) over the pixel or aspect-ratio limit (EncoderInputError)."""
    max_pixels = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    max_aspect = MAX_ASPECT_RATIO if max_aspect is None else max_aspect
    w, h = int(size[0]), int(size[1])
    if min(w, h) < 1:
        raise EncoderInputError(f"image has no pixels (size {w}x{h}): {name}")
    if max_pixels and w * h > max_pixels:
        raise EncoderInputError(f"image too large: {w}x{h} = {w * h / 1e6:.1f} M pixels, over the limit of "
                                f"{max_pixels / 1e6:g} M pixels ({name})")
    if max_aspect and max(w, h) / min(w, h) > max_aspect:
        raise EncoderInputError(f"image aspect ratio too extreme: {w}x{h} is {max(w, h) / min(w, h):.0f}:1, over "
                                f"the limit of {max_aspect:g}:1 ({name})")


def open_image(item: Any, *, max_pixels: int | None = None,
               max_aspect: float | None = None) -> "PIL.Image.Image":  # noqa: F821
    """Item -> RGB PIL image, or EncoderInputError saying why it is not an image. ``max_pixels`` and
    ``max_aspect`` (default: the module's limits; 0: off) are checked on a file's header, before decoding."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        img = item
    elif isinstance(item, (str, os.PathLike, bytes, bytearray)):
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if not path.is_file():
                raise EncoderInputError(f"image file not found: {path}")
            if path.stat().st_size > MAX_IMAGE_BYTES:
                raise EncoderInputError(f"image file over {MAX_IMAGE_BYTES >> 20} MB: {path}")
            src, name = path, str(path)
        else:
            src, name = io.BytesIO(bytes(item)), f"<{len(item)} bytes>"
        try:
            img = Image.open(src)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError, ValueError) as exc:
            raise EncoderInputError(f"not a readable image ({name}): {exc}") from None
        check_image_size(img.size, name, max_pixels=max_pixels, max_aspect=max_aspect)  # header only
        try:
            img.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError, ValueError) as exc:
            raise EncoderInputError(f"not a readable image ({name}): {exc}") from None
    elif isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (1, 3, 4)):
            raise EncoderInputError(
                f"image arrays must be uint8 HxW or HxWxC with C in (1, 3, 4), got {item.dtype} {item.shape}")
        img = Image.fromarray(item.squeeze(-1) if item.ndim == 3 and item.shape[2] == 1 else item)
    else:
        raise EncoderInputError(f"not an image: expected a PIL image, path, bytes or uint8 array, "
                                f"got {type(item).__name__}")
    check_image_size(img.size, "image", max_pixels=max_pixels, max_aspect=max_aspect)
    return img.convert("RGB")


class ImageEncoder(Encoder):
    """Frozen vision encoder: images -> ``[B, hidden_size]`` (CLS or mean-pooled)."""

    kind = "image"
    modality = "image"

    def __init__(self, model_id: str, *, pooling: str = "cls", normalize: bool = False,
                 revision: str | None = None, device=None, dtype=None, batch_size: int = 32):
        from transformers import AutoImageProcessor, AutoModel

        if pooling not in POOLINGS:
            raise EncoderConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self._place(device, dtype, batch_size)
        self.processor = AutoImageProcessor.from_pretrained(model_id, revision=revision, backend="pil")
        model = from_pretrained_safetensors(AutoModel, model_id, revision=revision)
        cfg = model.config
        if not hasattr(cfg, "hidden_size"):
            raise EncoderConfigError(f"{model_id}: {type(model).__name__} has no hidden_size; "
                                     "expected a vision transformer such as DINOv2")
        self.model = freeze(model, self.device, self.dtype)
        self.model_id = str(model_id)
        self.revision = revision or model_revision(cfg, model_id)
        self.dim = int(cfg.hidden_size)
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.n_prefix_tokens = 1 + int(getattr(cfg, "num_register_tokens", 0) or 0)

    def prepare(self, item: Any) -> np.ndarray:
        img = open_image(item)
        pixels = self.processor(images=[img], return_tensors="np")["pixel_values"]
        return pixels[0].astype(np.float32)

    def collate(self, prepared: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(prepared))

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        hidden = self.model(pixel_values=batch.to(self.device, self.dtype)).last_hidden_state
        pooled = hidden[:, 0] if self.pooling == "cls" else hidden[:, self.n_prefix_tokens:].mean(1)
        pooled = pooled.float()
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def extra_description(self) -> dict:
        return {"normalized": self.normalize, "model_type": self.model.config.model_type}
