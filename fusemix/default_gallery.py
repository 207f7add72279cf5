"""The default image gallery: real photographs that ship inside scikit-image, so the demo works offline.

``fusemix/data/default_gallery.json`` lists the photographs of ``skimage/data`` (others in ``EXCLUDED``)
with their licence and source, and two captions each for caption -> image retrieval (``default_captions()``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

@dataclass(frozen=True)
class DefaultImage:
    file: str  # name inside skimage/data
    title: str
    captions: tuple[str, ...]
    licence: str  # as scikit-image documents it
    source: str  # credit / origin as scikit-image documents it

    def meta(self) -> dict:
        return {"title": self.title, "caption": self.captions[0], "captions": list(self.captions),
                "licence": self.licence, "source": self.source}


def _table() -> tuple[tuple[DefaultImage, ...], dict[str, str]]:
    """The photographs and the files left out (``fusemix/data/default_gallery.json``)."""
    raw = json.loads((resources.files("fusemix") / "data" / "default_gallery.json").read_text(encoding="utf-8"))
    return tuple(DefaultImage(**{**d, "captions": tuple(d["captions"])}) for d in raw["images"]), raw["excluded"]


DEFAULT_IMAGES, EXCLUDED = _table()  # EXCLUDED: file of skimage/data -> why it is not in the gallery


def default_gallery_dir() -> Path:
    """The installed ``skimage/data`` folder (scikit-image is a runtime dependency)."""
    import skimage

    return Path(os.path.dirname(skimage.__file__)) / "data"


def available_images(root: str | os.PathLike | None = None) -> list[DefaultImage]:
    """The default photographs that exist in this installation (versions may drop or rename files)."""
    root = Path(root) if root is not None else default_gallery_dir()
    return [img for img in DEFAULT_IMAGES if (root / img.file).is_file()]


def default_captions(root: str | os.PathLike | None = None) -> tuple[list[str], list[str]]:
    """The labelled set: (captions, image file each caption describes), two captions per photograph."""
    pairs = [(c, img.file) for img in available_images(root) for c in img.captions]
    return [c for c, _ in pairs], [f for _, f in pairs]


def build_default_gallery(embed_fn: Callable, fingerprint: str | None = None, *, cache_dir=None, root=None, **kwargs):
    """``Gallery.from_folder`` over the default photographs, with title, captions and licence as meta."""
    from .gallery import Gallery

    root = Path(root) if root is not None else default_gallery_dir()
    images = available_images(root)
    return Gallery.from_folder(root, embed_fn, fingerprint, modality="image", cache_dir=cache_dir,
                               files=[img.file for img in images], meta={img.file: img.meta() for img in images},
                               **kwargs)


def licence_table() -> str:
    """Markdown table of every default photograph with its licence and source (for the demo / README)."""
    rows = ["| file | title | licence | source |", "|---|---|---|---|"]
    rows += [f"| {i.file} | {i.title} | {i.licence} | {i.source} |" for i in DEFAULT_IMAGES]
    return "\n".join(rows)
