"""Gallery: a folder (or list) of images, sounds or captions, embedded once and searchable by top-k.

The cache (safetensors embeddings + a JSON manifest, tied by a random ``manifest_id`` so a crash between
the two writes means a rebuild) is updated incrementally and matched by content hash. Symlinks leading
outside the root, hidden files and devices are never read; skipped files are counted in ``gallery.report``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .conventions import EXTENSIONS, cache_root
from .encoders.image import open_image  # PIL with every decoder error mapped to a ValueError
from .io import atomic_save_safetensors, atomic_write_json, sha256_file
from .search import SearchIndex, build_index

FORMAT = "fusemix.gallery.v1"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
SKIP_REASONS = ("symlink_outside_root", "not_media", "too_large", "unreadable", "duplicate", "rejected")

EmbedFn = Callable[[list], torch.Tensor]


class GalleryError(ValueError):
    """A gallery that cannot be built or queried as asked; the message says why."""


@dataclass(frozen=True)
class GalleryItem:
    """One searchable entry: ``key`` is the path relative to the root (POSIX) or the given key."""

    key: str
    sha256: str
    path: str | None = None  # absolute path of the file, for folder galleries
    meta: dict = field(default_factory=dict)  # JSON-able extras, e.g. {"caption": ...}


class Hit(NamedTuple):
    """A search result; unpacks as ``item, score``."""

    item: GalleryItem
    score: float


@dataclass
class GalleryReport:
    """What a build did: counts, plus every skipped entry grouped by reason."""

    items: int = 0
    embedded: int = 0  # items passed through the embedding function in this build
    reused: int = 0  # items whose embedding came from the cache
    changed: int = 0  # keys whose content changed since the cache (re-embedded)
    removed: int = 0  # cached keys no longer present
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, what: str) -> None:
        self.skipped.setdefault(reason, []).append(what)

    @property
    def skipped_counts(self) -> dict[str, int]:
        return {r: len(v) for r, v in self.skipped.items()}

    def __str__(self) -> str:
        skips = ", ".join(f"{n} {r}" for r, n in self.skipped_counts.items()) or "none"
        return (f"{self.items} items ({self.embedded} embedded, {self.reused} from cache, {self.changed} changed, "
                f"{self.removed} removed); skipped: {skips}")


def default_cache_dir() -> Path:
    """Where gallery caches live: ``conventions.cache_root("galleries")``."""
    return cache_root("galleries")


def content_hash(item: Any) -> str:
    """sha256 of an item's content: str, bytes, PIL image, numpy array / tensor, (sr, array), path, dict."""
    h = hashlib.sha256()
    if isinstance(item, str):
        h.update(b"str\0" + item.encode("utf-8"))
    elif isinstance(item, (bytes, bytearray, memoryview)):
        h.update(b"bytes\0" + bytes(item))
    elif isinstance(item, np.ndarray):
        h.update(f"nd\0{item.dtype.str}\0{item.shape}\0".encode() + np.ascontiguousarray(item).tobytes())
    elif isinstance(item, torch.Tensor):
        return content_hash(item.detach().cpu().numpy())
    elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], np.ndarray):
        h.update(f"audio\0{item[0]}\0".encode() + content_hash(item[1]).encode())
    elif hasattr(item, "tobytes") and hasattr(item, "mode") and hasattr(item, "size"):  # PIL image
        h.update(f"pil\0{item.mode}\0{item.size}\0".encode() + item.tobytes())
    elif isinstance(item, os.PathLike):  # a file: its content, not its name
        h.update(b"file\0" + sha256_file(item).encode())
    elif isinstance(item, Mapping):  # e.g. a datasets audio dict {"array", "sampling_rate"} or {"path", "bytes"}
        h.update(b"map\0")
        for k in sorted(item, key=str):
            h.update(f"{k}\0".encode() + content_hash(item[k]).encode())
    elif item is None or isinstance(item, (bool, int, float)):
        h.update(f"num\0{item!r}".encode())
    else:
        raise GalleryError(f"cannot hash a gallery item of type {type(item).__name__}: use str, bytes, a PIL "
                           "image, a numpy array, a (sample_rate, array) tuple, a path or a dict of those")
    return h.hexdigest()


def _decode_audio(data: bytes):
    from .audio import load_audio, probe_audio

    info = probe_audio(data)
    return info.sample_rate, load_audio(data, target_sr=info.sample_rate)


_DECODERS = {"image": open_image, "audio": _decode_audio}


@dataclass
class _Candidate:
    key: str
    path: Path  # the path to read: the file itself, or a symlink's resolved target inside the root
    size: int
    mtime_ns: int
    sha256: str | None = None


def _scan(root: Path, exts: frozenset, max_bytes: int, report: GalleryReport,
          only: set[str] | None, skip_dirs: list[Path]) -> list[_Candidate]:
    """Walk ``root`` without following links; return the media files that may be read, sorted by key."""
    root_real = root.resolve()
    found: list[_Candidate] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        keep_dirs = []
        for d in sorted(dirnames):
            p = here / d
            if d.startswith(".") or any(p.resolve() == s for s in skip_dirs):
                continue
            if p.is_symlink():  # never descended; counted when it leads outside the root
                if not p.resolve().is_relative_to(root_real):
                    report.skip("symlink_outside_root", p.relative_to(root).as_posix() + "/")
                continue
            keep_dirs.append(d)
        dirnames[:] = keep_dirs
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = here / name
            key = p.relative_to(root).as_posix()
            if only is not None and key not in only:
                continue
            target = p
            if p.is_symlink():
                target = p.resolve()
                if not target.is_relative_to(root_real):
                    report.skip("symlink_outside_root", key)
                    continue
            if p.suffix.lower() not in exts:
                report.skip("not_media", key)
                continue
            try:
                st = os.stat(target)
            except OSError as exc:
                report.skip("unreadable", f"{key}: {exc.strerror or exc}")
                continue
            if not stat.S_ISREG(st.st_mode):
                report.skip("not_media", f"{key}: not a regular file")
                continue
            if st.st_size > max_bytes:
                report.skip("too_large", f"{key}: {st.st_size} bytes > {max_bytes}")
                continue
            found.append(_Candidate(key, target, st.st_size, st.st_mtime_ns))
    found.sort(key=lambda c: c.key)
    return found


def _read(path: Path) -> bytes:
    """Read a file without following a symlink that appeared since the scan."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _cache_stem(cache_dir: Path, source: str, fingerprint: str, modality: str) -> Path:
    tag = hashlib.sha256(json.dumps([FORMAT, source, fingerprint, modality]).encode()).hexdigest()[:24]
    return cache_dir / f"gallery-{modality}-{tag}"


def _load_cache(stem: Path, fingerprint: str, modality: str) -> tuple[dict[str, dict], dict[str, torch.Tensor]]:
    """Return ({key: manifest entry}, {sha256: embedding}) or empty dicts when absent / unusable."""
    man_path, emb_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not (man_path.is_file() and emb_path.is_file()):
        return {}, {}
    try:
        from safetensors import safe_open

        manifest = json.loads(man_path.read_text(encoding="utf-8"))
        with safe_open(str(emb_path), framework="pt") as f:
            meta = f.metadata() or {}
            emb = f.get_tensor("embeddings")
        entries = manifest["items"]
        ok = (manifest.get("format") == FORMAT and manifest.get("fingerprint") == fingerprint
              and manifest.get("modality") == modality and meta.get("manifest_id") == manifest.get("manifest_id")
              and emb.ndim == 2 and emb.shape[0] == len(entries) and torch.isfinite(emb).all())
        if not ok:
            raise ValueError("manifest and embeddings do not match")
    except Exception as exc:  # a broken cache costs a rebuild, never a crash
        warnings.warn(f"ignoring unusable gallery cache {stem}: {exc}", stacklevel=3)
        return {}, {}
    by_key = {e["key"]: e for e in entries}
    by_sha = {e["sha256"]: emb[i] for i, e in enumerate(entries)}
    return by_key, by_sha


def _save_cache(stem: Path, gallery: "Gallery", entries: list[dict]) -> None:
    manifest_id = uuid.uuid4().hex
    try:
        atomic_save_safetensors(stem.with_suffix(".safetensors"), {"embeddings": gallery.embeddings},
                                {"format": FORMAT, "manifest_id": manifest_id, "fingerprint": gallery.fingerprint})
        atomic_write_json(stem.with_suffix(".json"), {
            "format": FORMAT, "manifest_id": manifest_id, "fingerprint": gallery.fingerprint,
            "modality": gallery.modality, "source": gallery.source, "dim": gallery.dim, "count": len(gallery),
            "items": entries, "skipped": gallery.report.skipped,
        })
    except OSError as exc:  # a read-only cache location must not break search
        warnings.warn(f"could not write the gallery cache at {stem}: {exc}", stacklevel=3)


def _check_embeddings(out: Any, n: int, dim: int | None) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        out = torch.as_tensor(np.asarray(out))
    if out.ndim != 2 or out.shape[0] != n:
        raise GalleryError(f"the embedding function must return [{n}, P] for {n} items, got {tuple(out.shape)}")
    if dim is not None and out.shape[1] != dim:
        raise GalleryError(f"the embedding function returned dim {out.shape[1]}, but the gallery holds dim {dim}")
    return out.detach().to("cpu", torch.float32)


def _normalise_rows(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit rows, and a mask of rows that were usable (finite and not all zero)."""
    norms = e.norm(dim=1)
    ok = torch.isfinite(e).all(dim=1) & (norms > 0)
    return torch.where(ok[:, None], e / norms.clamp_min(1e-12)[:, None], torch.zeros_like(e)), ok


def _embed_batches(pending: list[tuple[Any, Any]], embed_fn: EmbedFn, batch_size: int, dim: int | None,
                   report: GalleryReport, progress: bool | None, desc: str) -> list[tuple[Any, torch.Tensor]]:
    """Embed (tag, loaded item) pairs in batches; items the function rejects alone are skipped, but
    a batch whose every item fails is a systemic error (wrong model, bug) and raised."""
    from tqdm.auto import tqdm

    from .cache import encode_rows

    done: list[tuple[Any, torch.Tensor]] = []
    n_batches = (len(pending) + batch_size - 1) // batch_size
    show = n_batches > 1 if progress is None else progress
    for s in tqdm(range(0, len(pending), batch_size), total=n_batches, disable=not show, desc=desc, unit="batch"):
        chunk = pending[s : s + batch_size]
        results = encode_rows(embed_fn, [it for _, it in chunk], rejects=(Exception,),
                              check=lambda out, n: _check_embeddings(out, n, dim))
        if all(exc is not None for _, exc in results):
            raise results[0][1]
        for (tag, _), (row, exc) in zip(chunk, results):
            if exc is not None:
                report.skip("rejected", f"{tag}: {exc}")
                continue
            emb, ok = _normalise_rows(row[None])
            if bool(ok[0]):
                done.append((tag, emb[0]))
                dim = emb.shape[1]
            else:
                report.skip("rejected", f"{tag}: embedding is zero or not finite")
    return done


def _fingerprint(embed_fn, fingerprint) -> str:
    fingerprint = fingerprint if fingerprint is not None else getattr(embed_fn, "fingerprint", None)
    if not isinstance(fingerprint, str) or not fingerprint:
        raise GalleryError("fingerprint must be a non-empty string naming the embedding model "
                           "(or pass an embedder with a .fingerprint attribute)")
    return fingerprint


class Gallery:
    """Items + their unit embeddings + a search index.  Build with ``from_folder`` or ``from_items``."""

    def __init__(self, items: Sequence[GalleryItem], embeddings: torch.Tensor, *, fingerprint: str, modality: str,
                 source: str = "", report: GalleryReport | None = None):
        if len(items) == 0:
            raise GalleryError("a gallery needs at least one item")
        emb = _check_embeddings(embeddings, len(items), None)
        emb, ok = _normalise_rows(emb)
        if not bool(ok.all()):
            raise GalleryError(f"{int((~ok).sum())} gallery embeddings are zero or not finite")
        self.items: list[GalleryItem] = list(items)
        self.embeddings: torch.Tensor = emb.contiguous()
        self.fingerprint, self.modality, self.source = str(fingerprint), str(modality), str(source)
        self.report = report or GalleryReport(items=len(items))
        self._by_key = {it.key: i for i, it in enumerate(self.items)}
        if len(self._by_key) != len(self.items):
            raise GalleryError("gallery item keys must be unique")
        self._index: SearchIndex = build_index(self.embeddings.numpy())
        self._rebuild: Callable[[], "Gallery"] | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def keys(self) -> list[str]:
        return [it.key for it in self.items]

    def __getitem__(self, key: str) -> GalleryItem:
        try:
            return self.items[self._by_key[key]]
        except KeyError:
            raise KeyError(f"no item {key!r} in this gallery") from None

    def embedding(self, key: str) -> torch.Tensor:
        """The stored unit embedding of one item (e.g. an image -> image query)."""
        self[key]
        return self.embeddings[self._by_key[key]]

    def __repr__(self) -> str:
        return f"Gallery({self.modality}, {len(self)} items, dim={self.dim}, source={self.source!r})"

    def search(self, query, k: int = 10) -> list[Hit]:
        """Top-``k`` items for one query vector ``[P]`` (or ``[1, P]``), best first; ``k`` over the
        gallery's size returns every item, ``k < 1`` is an error."""
        q = torch.as_tensor(query) if not isinstance(query, torch.Tensor) else query
        if q.ndim == 2 and q.shape[0] == 1:
            q = q[0]
        if q.ndim != 1:
            raise GalleryError(f"search takes one query vector [P] or [1, P], got shape {tuple(q.shape)}; "
                               "use search_batch for several")
        return self.search_batch(q[None], k)[0]

    def search_batch(self, queries, k: int = 10) -> list[list[Hit]]:
        """Top-``k`` hits for each row of ``queries`` ``[Q, P]``."""
        q = queries.detach().to("cpu", torch.float32) if isinstance(queries, torch.Tensor) else torch.as_tensor(
            np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise GalleryError(f"queries must have shape [Q, {self.dim}] for this gallery, got {tuple(q.shape)}")
        q, ok = _normalise_rows(q)
        if not bool(ok.all()):
            raise GalleryError("query vectors must be finite and non-zero")
        scores, ids = self._index.search(q.numpy(), k)
        return [[Hit(self.items[i], float(s)) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(scores, ids)]

    @classmethod
    def from_folder(cls, root: str | os.PathLike, embed_fn: EmbedFn, fingerprint: str | None = None, *,
                    modality: str = "image",
                    cache_dir: str | os.PathLike | None | bool = None, files: Iterable[str] | None = None,
                    meta: Mapping[str, dict] | None = None, batch_size: int = 16, max_bytes: int = DEFAULT_MAX_BYTES,
                    progress: bool | None = None) -> "Gallery":
        """Embed every image (or audio) file under ``root``; reuse and update the on-disk cache.

        ``fingerprint`` names the embedding model (default ``embed_fn.fingerprint``): another never
        reuses its cache. ``cache_dir``: None for :func:`default_cache_dir`, False for none.
        ``files``: only these root-relative keys; ``meta``: JSON-able extras per key (e.g. captions).
        """
        if modality not in EXTENSIONS:
            raise GalleryError(f"folder galleries hold {' or '.join(EXTENSIONS)}, got modality {modality!r}")
        fingerprint = _fingerprint(embed_fn, fingerprint)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise GalleryError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        root = Path(root)
        if not root.exists():
            raise GalleryError(f"gallery folder not found: {root}")
        if not root.is_dir():
            raise GalleryError(f"gallery root is not a folder: {root}")
        root = root.resolve()
        meta = dict(meta or {})
        cache = None if cache_dir is False else Path(cache_dir) if cache_dir not in (None, True) else default_cache_dir()
        stem = _cache_stem(cache, str(root), fingerprint, modality) if cache else None
        cached_by_key, cached_by_sha = _load_cache(stem, fingerprint, modality) if stem else ({}, {})

        report = GalleryReport()
        only = set(files) if files is not None else None
        skip_dirs = [cache.resolve()] if cache else []
        candidates = _scan(root, EXTENSIONS[modality], max_bytes, report, only, skip_dirs)
        if only is not None:
            for missing in sorted(k for k in only if not os.path.lexists(root / k)):
                report.skip("unreadable", f"{missing}: not found")

        decode = _DECODERS[modality]
        seen: dict[str, str] = {}  # sha256 -> first key with that content
        chosen: list[tuple[_Candidate, torch.Tensor | None]] = []
        pending: list[tuple[_Candidate, Any]] = []

        for c in candidates:
            old = cached_by_key.get(c.key)
            if old and old.get("size") == c.size and old.get("mtime_ns") == c.mtime_ns:
                c.sha256, data = old["sha256"], None
            else:
                try:
                    data = _read(c.path)
                except OSError as exc:
                    report.skip("unreadable", f"{c.key}: {exc.strerror or exc}")
                    continue
                c.sha256 = hashlib.sha256(data).hexdigest()
            if c.sha256 in seen:
                report.skip("duplicate", f"{c.key}: same content as {seen[c.sha256]}")
                continue
            seen[c.sha256] = c.key
            if old and old["sha256"] != c.sha256:
                report.changed += 1
            if c.sha256 in cached_by_sha:
                chosen.append((c, cached_by_sha[c.sha256]))
                report.reused += 1
                continue
            if data is None:  # stat matched but the embedding is gone: read it after all
                data = _read(c.path)
            try:
                loaded = decode(data)
            except Exception as exc:  # noqa: BLE001 - every decoder failure is one bad file
                report.skip("unreadable", f"{c.key}: {exc}")
                continue
            del data
            chosen.append((c, None))
            pending.append((c.key, loaded))
            if len(pending) >= batch_size:  # embed as we go: never hold a whole folder decoded
                cls._flush(pending, embed_fn, batch_size, chosen, report, progress)
        cls._flush(pending, embed_fn, batch_size, chosen, report, progress)
        report.removed = len(set(cached_by_key) - {c.key for c, _ in chosen} - {c.key for c in candidates})

        chosen = [(c, e) for c, e in chosen if e is not None]
        if not chosen:
            skips = ", ".join(f"{n} {r}" for r, n in report.skipped_counts.items()) or "the folder is empty"
            raise GalleryError(f"no usable {modality} files in {root} ({skips})")
        items = [GalleryItem(c.key, c.sha256, str(root / c.key), dict(meta.get(c.key, {}))) for c, _ in chosen]
        report.items = len(items)
        gallery = cls(items, torch.stack([e for _, e in chosen]), fingerprint=fingerprint, modality=modality,
                      source=str(root), report=report)
        entries = [{"key": c.key, "sha256": c.sha256, "size": c.size, "mtime_ns": c.mtime_ns, "meta": it.meta}
                   for (c, _), it in zip(chosen, items)]
        if stem is not None and entries != list(cached_by_key.values()):
            _save_cache(stem, gallery, entries)
        gallery._rebuild = lambda: cls.from_folder(
            root, embed_fn, fingerprint, modality=modality, cache_dir=cache if cache else False,
            files=None if only is None else sorted(only), meta=meta, batch_size=batch_size, max_bytes=max_bytes,
            progress=progress)
        return gallery

    @staticmethod
    def _flush(pending, embed_fn, batch_size, chosen, report, progress) -> None:
        """Embed the decoded items waiting in ``pending`` and fill their slots in ``chosen``."""
        if not pending:
            return
        dim = next((int(e.shape[0]) for _, e in chosen if e is not None), None)
        done = dict(_embed_batches(pending, embed_fn, batch_size, dim, report, progress, "embed gallery"))
        report.embedded += len(done)
        for i, (c, e) in enumerate(chosen):
            if e is None and c.key in done:
                chosen[i] = (c, done[c.key])
        # items the embedding function rejected stay None and are dropped by the caller
        pending.clear()

    @classmethod
    def from_items(cls, items: Sequence[Any], embed_fn: EmbedFn, fingerprint: str | None = None, *, modality: str,
                   keys: Sequence[str] | None = None, meta: Sequence[dict] | None = None,
                   cache_dir: str | os.PathLike | None = None, name: str = "items", batch_size: int = 32,
                   progress: bool | None = None) -> "Gallery":
        """A gallery of in-memory items (captions, PIL images, ``(sr, array)`` clips, dataset rows), cached
        only with ``cache_dir``, by :func:`content_hash`; an item repeating an earlier one is skipped."""
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise GalleryError(f"items must be a list, got {type(items).__name__}")
        if len(items) == 0:
            raise GalleryError("cannot build a gallery from 0 items")
        fingerprint = _fingerprint(embed_fn, fingerprint)
        keys = [str(i) for i in range(len(items))] if keys is None else [str(k) for k in keys]
        if len(keys) != len(items) or len(set(keys)) != len(keys):
            raise GalleryError(f"keys must be {len(items)} unique strings, one per item")
        meta = [{} for _ in items] if meta is None else list(meta)
        if len(meta) != len(items):
            raise GalleryError(f"meta must hold one dict per item ({len(items)}), got {len(meta)}")
        stem = _cache_stem(Path(cache_dir), f"items:{name}", fingerprint, modality) if cache_dir else None
        cached_by_key, cached_by_sha = _load_cache(stem, fingerprint, modality) if stem else ({}, {})

        report = GalleryReport()
        seen: dict[str, str] = {}
        rows: dict[str, torch.Tensor] = {}
        kept: list[tuple[str, str, dict]] = []
        pending = []
        for key, item, m in zip(keys, items, meta):
            sha = content_hash(item)
            if sha in seen:
                report.skip("duplicate", f"{key}: same content as {seen[sha]}")
                continue
            seen[sha] = key
            old = cached_by_key.get(key)
            if old and old["sha256"] != sha:
                report.changed += 1
            kept.append((key, sha, dict(m)))
            if sha in cached_by_sha:
                rows[key] = cached_by_sha[sha]
                report.reused += 1
            else:
                pending.append((key, item))
        done = _embed_batches(pending, embed_fn, batch_size, None if not rows else next(iter(rows.values())).shape[0],
                              report, progress, f"embed {modality}")
        report.embedded = len(done)
        rows.update(done)
        report.removed = len(set(cached_by_key) - set(keys))
        kept = [k for k in kept if k[0] in rows]
        if not kept:
            raise GalleryError(f"none of the {len(items)} items could be embedded ({report})")
        gitems = [GalleryItem(k, sha, None, m) for k, sha, m in kept]
        report.items = len(gitems)
        gallery = cls(gitems, torch.stack([rows[k] for k, _, _ in kept]), fingerprint=fingerprint,
                      modality=modality, source=f"items:{name}", report=report)
        entries = [{"key": k, "sha256": sha, "meta": m} for k, sha, m in kept]
        if stem is not None and entries != list(cached_by_key.values()):
            _save_cache(stem, gallery, entries)
        return gallery

    def refresh(self) -> GalleryReport:
        """Re-scan a folder gallery: embed new and changed files, drop missing ones, keep the rest."""
        if self._rebuild is None:
            raise GalleryError("only galleries built with from_folder can be refreshed; rebuild with from_items")
        new = self._rebuild()
        self.__dict__.update(new.__dict__)
        return self.report
