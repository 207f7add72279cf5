"""A larger image gallery from a Hugging Face hub dataset of openly licensed photographs.

The dataset's first ``size`` rows are streamed (only what they need is fetched), stored once as small JPEGs
with a manifest (licence, author, caption per photo) under fusemix's cache root, then embedded and searched
as a folder gallery (``Gallery.from_folder``, its embeddings cached per model). :class:`BackgroundGallery`
does both in a thread and says meanwhile what it is doing ("embedding N/M images"). A local dataset (parquet
files in a folder, or one written by ``save_to_disk``) loads the same way, offline.
"""
from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import re
import threading
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

from .conventions import cache_root
from .gallery import Gallery, GalleryError
from .io import atomic_write_json

logger = logging.getLogger(__name__)
FORMAT = "fusemix.hub_gallery.v1"
# CommonCatalog CC-BY (from its dataset card): per row a photo (`jpg`), its Flickr licence (`licensename`),
# its author (`unickname`) and a BLIP-2 caption (`blip2_caption`).
DEFAULT_DATASET = "common-canvas/commoncatalog-cc-by"
DEFAULT_SOURCE = ("CommonCatalog CC-BY (`common-canvas/commoncatalog-cc-by`; Gokaslan et al., CommonCanvas, 2023): "
                  "Creative Commons photographs by Yahoo Flickr users (YFCC100M) with BLIP-2 captions; its dataset "
                  "card licenses the collection CC BY 4.0, and each photo keeps its own Flickr Creative Commons "
                  "Attribution licence and its author's name")


class HubGalleryError(GalleryError):
    """A hub gallery that cannot be had as configured (unreachable, not a dataset, a missing column, ...)."""


def _column(value: str | None) -> str | None:
    return None if value is None or str(value).strip().lower() in ("", "none") else str(value).strip()


@dataclass(frozen=True)
class HubGallerySpec:
    """Which dataset rows become the gallery. A column set to None or "none" is not read; without a licence
    column, ``licence`` names the one licence of every photo (then it is required)."""

    dataset: str = DEFAULT_DATASET  # a hub dataset id or a local dataset folder
    split: str = "train"
    image_column: str = "jpg"
    licence_column: str | None = "licensename"
    licence: str = ""
    caption_column: str | None = "blip2_caption"  # each photo's title
    credit_column: str | None = "unickname"  # its author, for attribution
    size: int = 2000  # the first `size` rows
    max_side: int = 384  # stored this small: enough for thumbnails and the encoders' 224 px

    def __post_init__(self):
        for f in ("licence_column", "caption_column", "credit_column"):
            object.__setattr__(self, f, _column(getattr(self, f)))
        if not _column(self.dataset) or not _column(self.image_column) or not str(self.split).strip():
            raise HubGalleryError("a hub gallery needs a dataset, a split and an image column")
        if self.licence_column is None and not str(self.licence).strip():
            raise HubGalleryError("without a licence column, give the one licence every photo is under")
        for f in ("size", "max_side"):
            if isinstance(getattr(self, f), bool) or not isinstance(getattr(self, f), int) or getattr(self, f) < 1:
                raise HubGalleryError(f"{f} must be a whole number >= 1, got {getattr(self, f)!r}")

    @classmethod
    def from_options(cls, prefix: str, options: Any) -> "HubGallerySpec":
        """From attributes ``<prefix>`` (the dataset) and ``<prefix>_<field>`` of ``options`` (e.g. the demo's
        Settings); absent or None ones keep their defaults."""
        given = {f.name: getattr(options, f"{prefix}_{f.name}", None) for f in fields(cls) if f.name != "dataset"}
        return cls(dataset=getattr(options, prefix), **{k: v for k, v in given.items() if v is not None})

    @property
    def local(self) -> Path | None:
        """The local dataset folder, or None for a hub id."""
        p = Path(self.dataset).expanduser()
        return p if p.exists() else None

    def key(self) -> dict:
        """What decides the stored photos: the settings, and a local dataset's place and newest file time."""
        local = self.local
        if local is None:
            return asdict(self)
        newest = max((p.stat().st_mtime_ns for p in [local, *local.rglob("*")] if p.is_file()), default=0)
        return asdict(self) | {"dataset": str(local.resolve()), "modified": newest}

    def folder(self) -> Path:
        """Where its photos and manifest live: ``cache_root("hub-galleries", ...)``."""
        tag = hashlib.sha256(json.dumps(self.key(), sort_keys=True).encode()).hexdigest()[:16]
        return cache_root("hub-galleries", re.sub(r"[^\w.-]+", "_", Path(self.dataset).name)[:48] + f"-{tag}")


@dataclass
class HubPhotos:
    """The stored photos: their folder, and per file its meta (title, caption, licence, credit, source)."""

    root: Path
    meta: dict[str, dict]
    skipped: int = 0


def read_manifest(spec: HubGallerySpec) -> HubPhotos | None:
    """The photos stored for ``spec`` when complete (every file present), else None. Never uses the network."""
    try:
        man = json.loads((spec.folder() / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    root = spec.folder() / "images"
    if (man.get("format") != FORMAT or man.get("spec") != json.loads(json.dumps(spec.key())) or not man.get("items")
            or not all((root / f).is_file() for f in man["items"])):
        return None
    return HubPhotos(root, dict(man["items"]), int(man.get("skipped", 0)))


def _offline() -> bool:
    return any(str(os.environ.get(v, "")).strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def probe(dataset: str, timeout: float = 5.0) -> None:
    """One time-limited metadata request: can this hub dataset be read? :class:`HubGalleryError` says why not."""
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", dataset):
        raise HubGalleryError(f"{dataset!r} is neither a local dataset folder nor a hub dataset id")
    if _offline():
        raise HubGalleryError(f"the hub dataset {dataset} is not stored here and HF_HUB_OFFLINE is set")
    from huggingface_hub import HfApi

    try:
        HfApi().dataset_info(dataset, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - unreachable, missing, gated: each a plain reason
        raise HubGalleryError(f"cannot read the hub dataset {dataset} ({type(exc).__name__}: {str(exc)[:160]})"
                              ) from None


def _rows(spec: HubGallerySpec):
    """The split as an iterable dataset (streamed from the hub), its columns checked, images left undecoded."""
    import datasets

    local = spec.local
    try:
        if local is not None and any((local / f).is_file() for f in ("state.json", "dataset_dict.json")):
            ds = datasets.load_from_disk(str(local))
            ds = (ds[spec.split] if isinstance(ds, datasets.DatasetDict) else ds).to_iterable_dataset()
        else:
            ds = datasets.load_dataset(str(local or spec.dataset), split=spec.split, streaming=True)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types: not a dataset, bad split, ...
        raise HubGalleryError(f"{spec.dataset} could not be loaded as a dataset (split {spec.split!r}): "
                              f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if not (columns := list(ds.features or [])):
        raise HubGalleryError(f"{spec.dataset} declares no columns (a folder of text or CSV?): not a photo dataset")
    wanted = [c for c in (spec.image_column, spec.licence_column, spec.caption_column, spec.credit_column) if c]
    if missing := [c for c in wanted if c not in columns]:
        raise HubGalleryError(f"{spec.dataset} has no column {', '.join(map(repr, missing))} (its columns: "
                              f"{', '.join(columns[:20])}; name one, or none, in the *_column settings)")
    if not isinstance(ds.features[spec.image_column], datasets.Image):
        raise HubGalleryError(f"column {spec.image_column!r} of {spec.dataset} holds "
                              f"{type(ds.features[spec.image_column]).__name__}, not images")
    return ds.cast_column(spec.image_column, datasets.Image(decode=False))  # decoded here, within limits


def _image_bytes(value: dict, local: Path | None) -> bytes:
    """A row's image: embedded bytes, a file of the hub repo (``hf://``) or a file inside the local dataset
    (a path naming anything else on this machine is never read)."""
    path = str(value.get("path") or "")
    if value.get("bytes"):
        return bytes(value["bytes"])
    if path.startswith("hf://"):
        from huggingface_hub import HfFileSystem

        with HfFileSystem().open(path, "rb") as f:
            return f.read()
    if path and local is not None and Path(path).resolve().is_relative_to(local.resolve()):
        return Path(path).read_bytes()
    raise ValueError(f"the image file {path!r} is not part of the dataset")


def _text(value: Any) -> str:
    return " ".join(str(value).split())[:120] if value is not None else ""


def materialise(spec: HubGallerySpec, *, probe_timeout: float = 5.0,
                progress: Callable[[int, int], None] | None = None) -> HubPhotos:
    """Store the first ``spec.size`` photos of the dataset (once: later calls read them from disk);
    ``progress(stored, size)`` after each. Unreadable photos are skipped and counted."""
    from .encoders.image import open_image

    if (done := read_manifest(spec)) is not None:
        return done
    if spec.local is None:
        probe(spec.dataset, probe_timeout)
    rows, root = _rows(spec), spec.folder() / "images"
    root.mkdir(parents=True, exist_ok=True)
    meta: dict[str, dict] = {}
    skipped, first_error = 0, None
    for i, row in enumerate(rows.take(spec.size)):
        name = f"{i:05d}.jpg"
        try:
            img = open_image(_image_bytes(row[spec.image_column] or {}, spec.local))
            img.thumbnail((spec.max_side, spec.max_side))
            img.save(root / name, format="JPEG", quality=90)  # the manifest, written last, vouches for the set
        except Exception as exc:  # noqa: BLE001 - one unreadable photo is skipped, not fatal
            skipped, first_error = skipped + 1, first_error or f"row {i}: {exc}"
            continue
        licence, caption, credit = (_text(row[c]) if c else "" for c in (
            spec.licence_column, spec.caption_column, spec.credit_column))
        licence = licence or spec.licence or "unknown"
        byline = ", ".join(x for x in (credit and f"by {credit}", licence) if x)
        meta[name] = {"title": f"{caption or name} ({byline})", "caption": caption, "licence": licence,
                      "credit": credit, "source": f"{spec.dataset} row {i}"}
        if progress is not None:
            progress(len(meta), spec.size)
    if not meta:
        raise HubGalleryError(f"no usable photos in the first {spec.size} rows of {spec.dataset}"
                              + (f" ({skipped} unreadable; {first_error})" if skipped else " (it is empty)"))
    atomic_write_json(spec.folder() / "manifest.json", {"format": FORMAT, "spec": spec.key(), "items": meta,
                                                        "skipped": skipped})
    return HubPhotos(root, meta, skipped)


# --------------------------------------------------------------------------- in the background


def open_hub_gallery(options: Any, prefix: str = "hub_gallery", *, network: bool = True
                     ) -> tuple["BackgroundGallery | None", str | None]:
    """(gallery, None) from ``options`` (:meth:`HubGallerySpec.from_options`, and its ``probe_timeout``), or
    (None, why not): off ("none"), unusable settings (said), a hub id without the network (``network=False``
    or HF_HUB_OFFLINE: silent). Nothing is fetched here; the thread probes once, later."""
    if str(getattr(options, prefix) or "none").strip().lower() == "none":
        return None, None
    try:
        spec = HubGallerySpec.from_options(prefix, options)
    except HubGalleryError as exc:
        logger.warning("hub gallery not offered: %s", exc)
        return None, f"the hub gallery settings are not usable: {exc}"
    if spec.local is None and (not network or _offline()):
        return None, None  # offline: the shipped photos stay the default
    return BackgroundGallery(spec, probe_timeout=float(getattr(options, "probe_timeout", 5.0))), None


class StandIn:
    """The gallery searched while the hub gallery is not ready: ``gallery`` itself, plus a ``note`` saying so."""

    def __init__(self, gallery: Gallery, note: str):
        self.gallery, self.note = gallery, note

    def __getattr__(self, name):
        return getattr(self.gallery, name)

    def __len__(self) -> int:
        return len(self.gallery)


class BackgroundGallery:
    """A hub gallery prepared in a daemon thread: its photos stored once, then embedded for each model asked
    for (:meth:`request`; one at a time, in order). :meth:`status` says what it is doing; a failure is kept,
    with its reason, and never raised into a search."""

    def __init__(self, spec: HubGallerySpec, *, name: str | None = None, probe_timeout: float = 5.0):
        self.spec, self.probe_timeout = spec, probe_timeout
        self.name = name or ("Openly licensed photos (CommonCatalog CC-BY)" if spec.dataset == DEFAULT_DATASET
                             else f"Photos: {Path(spec.dataset).name if spec.local else spec.dataset}")
        self.photos: HubPhotos | None = None
        self.error: str | None = None
        self._galleries: dict[str, Gallery] = {}
        self._queue: list = []
        self._stage, self._done, self._total = "waiting to start", 0, spec.size
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running, self._factory = False, None

    def start(self, embedder: Callable[[], Any] | None = None) -> "BackgroundGallery":
        """Begin storing the photos, then embed them with ``embedder()`` (a factory, called in the thread:
        models take time to load) and whatever was requested; a no-op while running."""
        with self._lock:
            self._factory = embedder or self._factory
            if self.error is None and not self._running:  # a flag, not is_alive(): a finishing thread takes no work
                self._running = True
                self._thread = threading.Thread(target=self._work, name="fusemix-hub-gallery", daemon=True)
                self._thread.start()
        return self

    def request(self, embed_fn, *, start: bool = True) -> Gallery | None:
        """The gallery embedded by ``embed_fn`` when ready; else None, and it is queued (the thread started)."""
        with self._lock:
            got = self._galleries.get(embed_fn.fingerprint)
            if got is None and self.error is None and all(e.fingerprint != embed_fn.fingerprint for e in self._queue):
                self._queue.append(embed_fn)
                self._stage = "waiting to embed" if self._stage == "ready" else self._stage
        if got is None and start:
            self.start()
        return got

    def gallery_for(self, embed_fn, fallback: Callable[[], Gallery]) -> Gallery | StandIn:
        """The gallery embedded by ``embed_fn`` when ready; until then ``fallback()``, labelled as standing in
        (asked again after ``fallback()``, which takes time: it may be ready by then)."""
        got = self.request(embed_fn)
        if got is None:
            default = fallback()
            got = self.request(embed_fn) or StandIn(default, f"the default photos, standing in while {self.name} "
                                                             f"is {self.progress()}")
        return got

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thread has nothing left to do (True) or ``timeout`` passes (False)."""
        if (t := self._thread) is not None:
            t.join(timeout)
        return t is None or not t.is_alive()

    def progress(self) -> str:
        """What it is doing, e.g. "embedding 340/2000 images", "ready", or "unavailable: <why>"."""
        if self.error is not None:
            return f"unavailable: {self.error}"
        with self._lock:
            stage, done, total = self._stage, self._done, self._total
        return f"{stage} {done}/{total} images" if stage in ("downloading", "embedding") else stage

    def status(self) -> str:
        """One line for the UI: what is being done (with counts), ready, or why it is unavailable."""
        if (now := self.progress()) == "ready":
            return f"{self.name}: {len(self.photos.meta)} photos, ready."
        return f"{self.name} is {now}" + (". Searches use the default photos." if self.error else
                                           "; searches use the default photos until it is ready.")

    def _set(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            self._stage, self._done, self._total = stage, done, total

    def _work(self) -> None:
        try:
            if self.photos is None:
                self._set("downloading", 0, self.spec.size)
                self.photos = materialise(self.spec, probe_timeout=self.probe_timeout,
                                          progress=lambda n, m: self._set("downloading", n, m))
            factory, self._factory = self._factory, None
            if factory is not None:
                try:
                    self.request(factory(), start=False)
                except Exception as exc:  # noqa: BLE001 - a model that cannot load: searches will say so
                    logger.warning("hub gallery: the default embedding model could not be loaded: %s", exc)
            while True:
                with self._lock:
                    if not self._queue:
                        self._stage = "ready" if self._galleries else "stored, not yet embedded"
                        self._running = False
                        return
                    embed_fn = self._queue[0]
                self._embed(embed_fn)
        except Exception as exc:  # noqa: BLE001 - kept and shown; the default photos keep serving
            logger.warning("hub gallery %s failed: %s", self.spec.dataset, exc)
            with self._lock:
                self.error = str(exc) if isinstance(exc, GalleryError) else f"{type(exc).__name__}: {exc}"
                self._queue.clear()
                self._running = False

    def _embed(self, embed_fn) -> None:
        total, done = len(self.photos.meta), [0]

        def counting(items):  # reports "embedding N/M images" as the batches go through
            out = embed_fn(items)
            done[0] += len(items)
            self._set("embedding", min(done[0], total), total)
            return out

        counting.fingerprint = embed_fn.fingerprint
        self._set("embedding", 0, total)
        gallery = Gallery.from_folder(self.photos.root, counting, modality="image", files=list(self.photos.meta),
                                      meta=self.photos.meta, progress=False)
        with self._lock:
            self._galleries[embed_fn.fingerprint] = gallery
            self._queue = [e for e in self._queue if e.fingerprint != embed_fn.fingerprint]
            self._stage, self._done = "ready", total

    def describe(self) -> str:
        """Markdown for an About page: the source, its licence, and the licences of the stored photos."""
        s = self.spec
        lic = (f"each photo's licence from column `{s.licence_column}`" if s.licence_column
               else f"every photo under {html.escape(s.licence)}")
        lines = [f"\n## {self.name}", f"Up to {s.size} photographs (the first rows of split `{s.split}`) of "
                 f"{DEFAULT_SOURCE if s.dataset == DEFAULT_DATASET else f'`{s.dataset}`'}; {lic}"
                 + (f", its author from `{s.credit_column}`" if s.credit_column else "") + ". Each photo's licence "
                 "(and author, where given) is shown with it in the search results."]
        if (photos := self.photos or read_manifest(s)) is not None:
            counts = Counter(m["licence"] for m in photos.meta.values()).most_common()
            lines += ["", "| licence | photos |", "|---|---|"]
            lines += [f"| {html.escape(k).replace('|', '&#124;')} | {v} |" for k, v in counts]
        return "\n".join(lines)
