"""The latent cache: each frozen encoder runs once over a dataset, its outputs kept on disk.

``<root>/<model>-<kind>-<key>/`` holds ``manifest.json``, ``item_ids.json`` and fixed-size shards,
written atomically and checksummed, so a killed run resumes from its last complete shard; under
``accelerate launch`` / ``torchrun`` shard ``s`` belongs to process ``s % num_processes``.
Items that fail to load or that the encoder rejects are recorded with their reason and skipped.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .io import atomic_save_safetensors, atomic_write, atomic_write_json, sha256_file
from .malloc import keep_freed_memory

FORMAT = "fusemix.latent_cache.v1"
STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MANIFEST = "manifest.json"
IDS_FILE = "item_ids.json"
MAX_REASON = 500


class CacheError(ValueError):
    """A cache that cannot be built or read as asked (bad settings, incomplete, corrupt)."""


@dataclass
class Units:
    """What one cache encodes: ordered unit ids, their content fingerprint and a loader. ``load(i)`` runs
    in worker processes, so it must be picklable (not a lambda), and may raise for a bad item."""

    ids: list[str]
    fingerprint: str
    load: Callable[[int], Any]
    kind: str = "items"


@dataclass
class CachedLatents:
    """A loaded cache: latents for the units that succeeded, and why the others failed."""

    ids: list[str]
    index: torch.Tensor
    latents: torch.Tensor
    failed: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass
class BuildStats:
    encoded_shards: list[int] = field(default_factory=list)
    reused_shards: list[int] = field(default_factory=list)
    redone_shards: list[int] = field(default_factory=list)


def _slug(text: str) -> str:
    name = Path(str(text).rstrip("/")).name or "encoder"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:40]


def _encoder_desc(encoder: Any) -> dict[str, Any]:
    try:
        desc = encoder.describe()
        json.dumps(desc, sort_keys=True)
    except (AttributeError, TypeError) as e:
        raise CacheError(f"encoder {type(encoder).__name__} needs a JSON-able describe(): {e}") from e
    return desc


def cache_key(units: Units, encoder: Any, *, dtype: str = "float32", shard_size: int = 1024) -> str:
    """Hash of everything that decides what the cache holds."""
    desc = _encoder_desc(encoder)
    payload = {"format": FORMAT, "units": units.kind, "fingerprint": units.fingerprint, "encoder": desc,
               "pooling": getattr(encoder, "pooling", desc.get("pooling")), "dtype": dtype,
               "shard_size": shard_size}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


class SingleProcess:
    """accelerate's ``PartialState`` for a one-process run, without starting accelerate."""

    process_index, num_processes = 0, 1
    is_main_process = is_local_main_process = True

    def wait_for_everyone(self) -> None:
        pass


def default_state() -> Any:
    """accelerate's process state (``cpu=True`` without CUDA, so torchrun ranks on a CPU share work)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


class _UnitDataset(Dataset):
    """Loads unit ``pos`` and runs ``prepare`` on it, in a worker; a failure becomes a reason."""

    def __init__(self, load: Callable[[int], Any], prepare: Callable[[Any], Any] | None) -> None:
        self.load, self.prepare = load, prepare

    def __getitem__(self, pos: int) -> tuple[int, Any, str | None]:
        try:
            x = self.load(pos)
        except Exception as e:  # any decode failure is a per-item failure
            return pos, None, f"decode failed: {type(e).__name__}: {e}"[:MAX_REASON]
        if self.prepare is not None:
            try:
                x = self.prepare(x)
            except (ValueError, OSError) as e:
                return pos, None, f"unusable: {type(e).__name__}: {e}"[:MAX_REASON]
        return pos, x, None


WORKER_NICENESS = 19


def _worker_init(_: int) -> None:
    """A decoding worker: lowest CPU priority (never stalls the forward), freed memory kept
    (:mod:`fusemix.malloc`), one BLAS thread (workers are the unit of parallelism)."""
    with contextlib.suppress(OSError):  # a platform or sandbox that refuses it: run as is
        os.nice(WORKER_NICENESS)
    keep_freed_memory()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: present wherever scikit-learn is
        return
    threadpool_limits(1)


def _as_tensor(out: Any, n: int, encoder: Any = None) -> torch.Tensor:
    out = torch.from_numpy(out) if isinstance(out, np.ndarray) else out
    name = type(encoder).__name__ if encoder is not None else "the encoder"
    if not isinstance(out, torch.Tensor):
        raise RuntimeError(f"{name} returned {type(out).__name__}, not a tensor")
    if out.ndim < 2 or out.shape[0] != n:
        raise RuntimeError(f"{name} returned shape {tuple(out.shape)} for {n} inputs")
    return out.detach().to("cpu", torch.float32)


def prepares(encoder: Any) -> bool:
    """True for encoders with the prepare/collate/forward split (``fusemix.encoders.Encoder``)."""
    return all(callable(getattr(encoder, a, None)) for a in ("prepare", "collate", "forward"))


def encode_rows(fn: Callable[[list], Any], items: Sequence[Any], *,
                check: Callable[[Any, int], torch.Tensor] = _as_tensor,
                rejects: tuple[type[BaseException], ...] = (ValueError,)
                ) -> list[tuple[torch.Tensor | None, BaseException | None]]:
    """``fn`` over ``items`` as one batch, or over each item alone if that raises one of ``rejects``: ``(row, None)``
    or ``(None, exception)`` per item. ``check(out, n)`` gives an ``[n, ...]`` tensor or raises (propagated)."""
    items = list(items)
    if not items:
        return []
    try:
        out = fn(items)
    except rejects as exc:
        if len(items) == 1:
            return [(None, exc)]
        return [encode_rows(fn, [x], check=check, rejects=rejects)[0] for x in items]
    return [(row, None) for row in check(out, len(items))]


class LatentCache:
    """One encoder's latents for one ordered set of units; see the module docstring."""

    def __init__(self, root: str | os.PathLike, units: Units, encoder: Any, *, shard_size: int = 1024,
                 dtype: str = "float32") -> None:
        if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
            raise CacheError(f"shard_size must be a positive int, got {shard_size!r}")
        if dtype not in STORE_DTYPES:
            raise CacheError(f"dtype must be one of {sorted(STORE_DTYPES)}, got {dtype!r}")
        if not units.ids:
            raise CacheError(f"nothing to encode: no {units.kind}")
        if len(set(units.ids)) != len(units.ids):
            raise CacheError(f"{units.kind} ids are not unique")
        self.units, self.encoder, self.shard_size, self.dtype = units, encoder, shard_size, dtype
        self.desc = _encoder_desc(encoder)
        self.key = cache_key(units, encoder, dtype=dtype, shard_size=shard_size)
        self.dir = Path(root) / f"{_slug(self.desc.get('model_id', 'encoder'))}-{units.kind}-{self.key}"
        self.num_shards = math.ceil(len(units.ids) / shard_size)
        self.item_shape: list[int] | None = None

    def shard_name(self, s: int) -> str:
        return f"shard-{s:05d}.safetensors"

    def shard_range(self, s: int) -> range:
        return range(s * self.shard_size, min((s + 1) * self.shard_size, len(self.units.ids)))

    def _ids_sha(self) -> str:
        return hashlib.sha256(json.dumps(self.units.ids, ensure_ascii=False).encode()).hexdigest()

    def _manifest(self, shards: dict[str, Any], complete: bool) -> dict[str, Any]:
        return {
            "format": FORMAT, "key": self.key, "units": self.units.kind, "fingerprint": self.units.fingerprint,
            "encoder": self.desc, "model_id": self.desc.get("model_id"), "revision": self.desc.get("revision"),
            "pooling": getattr(self.encoder, "pooling", self.desc.get("pooling")), "dtype": self.dtype,
            "item_shape": self.item_shape, "dim": self.item_shape[-1] if self.item_shape else None,
            "count": len(self.units.ids), "shard_size": self.shard_size, "num_shards": self.num_shards,
            "item_ids": {"file": IDS_FILE, "sha256": self._ids_sha()},
            "ok_count": sum(e["count"] for e in shards.values()),
            "failed_count": sum(len(e["failed"]) for e in shards.values()),
            "shards": dict(sorted(shards.items())), "complete": complete,
        }

    def read_manifest(self) -> dict[str, Any] | None:
        path = self.dir / MANIFEST
        if not path.is_file():
            return None
        try:
            m = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CacheError(f"{path} is unreadable ({e}); delete {self.dir} to rebuild") from e
        if m.get("format") != FORMAT or m.get("key") != self.key:
            raise CacheError(f"{path} belongs to another cache (key {m.get('key')!r}, expected {self.key!r})")
        return m

    def _known_entries(self) -> dict[str, Any]:
        """Shard entries from the manifest, overridden by any per-rank progress files."""
        m = self.read_manifest() or {}
        entries = dict(m.get("shards", {}))
        if m.get("item_shape"):
            self.item_shape = m["item_shape"]
        for p in sorted(self.dir.glob("progress-rank*.json")):
            try:
                prog = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # a progress file is only a hint: its shards will be redone
            entries.update(prog.get("shards", {}))
            if prog.get("item_shape") and not self.item_shape:
                self.item_shape = prog["item_shape"]
        return entries

    def _shard_ok(self, s: int, entry: dict[str, Any] | None) -> bool:
        try:
            return bool(entry) and sha256_file(self.dir / self.shard_name(s)) == entry.get("sha256")
        except OSError:
            return False

    def _init_dir(self) -> None:
        """Main process: create the directory, fold stale progress files into the manifest."""
        self.dir.mkdir(parents=True, exist_ok=True)
        ids_path = self.dir / IDS_FILE
        if not ids_path.is_file() or hashlib.sha256(ids_path.read_bytes()).hexdigest() != self._ids_sha():
            atomic_write(ids_path, lambda tmp: Path(tmp).write_bytes(json.dumps(self.units.ids, ensure_ascii=False).encode()))
        entries = self._known_entries()
        atomic_write_json(self.dir / MANIFEST, self._manifest(entries, complete=False))
        for p in self.dir.glob("progress-rank*.json"):
            p.unlink()

    def is_complete(self) -> bool:
        try:
            return bool((self.read_manifest() or {}).get("complete"))
        except CacheError:
            return False

    def build(self, *, batch_size: int = 32, num_workers: int = 0, progress: bool = True,
              state: Any = None) -> BuildStats:
        """Encode every shard that is missing or corrupt; reuse the rest. Safe to rerun."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise CacheError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise CacheError(f"num_workers must be a non-negative int, got {num_workers!r}")
        state = state if state is not None else default_state()
        rank, world = state.process_index, state.num_processes
        if state.is_main_process:
            self._init_dir()
        state.wait_for_everyone()
        entries = self._known_entries()
        stats = BuildStats()
        todo = []
        for s in range(rank, self.num_shards, world):
            entry = entries.get(self.shard_name(s))
            if self._shard_ok(s, entry):
                stats.reused_shards.append(s)
            else:
                todo.append(s)
                if entry:
                    stats.redone_shards.append(s)
        mine: dict[str, Any] = {}

        def on_shard(s: int, entry: dict[str, Any]) -> None:
            mine[self.shard_name(s)] = entry
            stats.encoded_shards.append(s)
            if state.is_main_process:
                entries[self.shard_name(s)] = entry
                atomic_write_json(self.dir / MANIFEST, self._manifest(entries, complete=False))
            else:
                atomic_write_json(self.dir / f"progress-rank{rank}.json",
                                  {"shards": mine, "item_shape": self.item_shape})

        if todo:
            self._encode(todo, batch_size, num_workers, progress and state.is_local_main_process, on_shard)
        state.wait_for_everyone()
        if state.is_main_process:
            final = self._known_entries()
            complete = all(self.shard_name(s) in final for s in range(self.num_shards))
            atomic_write_json(self.dir / MANIFEST, self._manifest(final, complete=complete))
            for p in self.dir.glob("progress-rank*.json"):
                p.unlink()
        state.wait_for_everyone()
        return stats

    def _encode(self, todo: list[int], batch_size: int, num_workers: int, progress: bool,
                on_shard: Callable[[int, dict[str, Any]], None]) -> None:
        plan = []  # (shard, positions, last batch of its shard?)
        for s in todo:
            r = self.shard_range(s)
            plan += [(s, list(r[i:i + batch_size]), i + batch_size >= len(r)) for i in range(0, len(r), batch_size)]
        enc = self.encoder
        prepared = prepares(enc)
        dataset = _UnitDataset(self.units.load, enc.prepare if prepared else None)
        loader = DataLoader(dataset, batch_sampler=[c for _, c, _ in plan], collate_fn=list,
                            num_workers=num_workers, worker_init_fn=_worker_init)
        run = (lambda xs: enc.forward(enc.collate(xs))) if prepared else enc.encode
        rows: list[tuple[int, torch.Tensor]] = []
        failed: list[list[Any]] = []
        ids = self.units.ids
        with tqdm(total=sum(len(c) for _, c, _ in plan), unit=self.units.kind, disable=not progress,
                  desc=f"encoding {self.units.kind} with {_slug(self.desc.get('model_id', '?'))}") as bar:
            for (s, _, last), batch in zip(plan, loader):
                failed += [[pos, ids[pos], err] for pos, _, err in batch if err is not None]
                good = [(pos, x) for pos, x, err in batch if err is None]
                with torch.inference_mode():
                    results = encode_rows(run, [x for _, x in good], check=lambda out, n: _as_tensor(out, n, enc))
                for (pos, _), (row, exc) in zip(good, results):
                    if exc is not None:
                        failed.append([pos, ids[pos], f"encoder rejected it: {type(exc).__name__}: {exc}"[:MAX_REASON]])
                    elif not bool(torch.isfinite(row).all()):
                        failed.append([pos, ids[pos], "encoder produced NaN or inf"])
                    else:
                        self._check_shape(row)
                        rows.append((pos, row))
                bar.update(len(batch))
                if last:
                    on_shard(s, self._write_shard(s, rows, failed))
                    rows, failed = [], []

    def _check_shape(self, row: torch.Tensor) -> None:
        shape = list(row.shape)
        self.item_shape = self.item_shape or shape
        if shape != self.item_shape:
            raise RuntimeError(f"encoder output shape {shape} differs from earlier {self.item_shape}")

    def _write_shard(self, s: int, rows: list[tuple[int, torch.Tensor]], failed: list[list[Any]]) -> dict[str, Any]:
        dt = STORE_DTYPES[self.dtype]
        latents = torch.stack([r for _, r in rows]).to(dt) if rows else torch.zeros([0] + (self.item_shape or []), dtype=dt)
        index = torch.tensor([p for p, _ in rows], dtype=torch.int64)
        r = self.shard_range(s)
        path = self.dir / self.shard_name(s)
        meta = {"format": FORMAT, "key": self.key, "shard": str(s), "start": str(r.start), "stop": str(r.stop)}
        atomic_save_safetensors(path, {"latents": latents, "index": index}, metadata=meta)
        return {"file": self.shard_name(s), "sha256": sha256_file(path), "count": len(rows),
                "start": r.start, "stop": r.stop, "failed": failed}

    def load(self) -> CachedLatents:
        """Read a complete cache, checking every shard's checksum."""
        m = self.read_manifest()
        if not m or not m.get("complete"):
            raise CacheError(f"latent cache {self.dir} is incomplete: run the extraction (it resumes)")
        ids_path = self.dir / IDS_FILE
        try:
            ids_bytes = ids_path.read_bytes()
        except OSError as e:
            raise CacheError(f"{ids_path} is missing: delete {self.dir} to rebuild") from e
        if hashlib.sha256(ids_bytes).hexdigest() != m["item_ids"]["sha256"]:
            raise CacheError(f"{ids_path} does not match the manifest's checksum")
        ids = json.loads(ids_bytes)
        lat, idx, failed = [], [], []
        for s in range(self.num_shards):
            entry = m["shards"].get(self.shard_name(s))
            path = self.dir / self.shard_name(s)
            try:
                data = path.read_bytes()
            except OSError as e:
                raise CacheError(f"{path} is missing: rerun the extraction to redo it") from e
            if entry is None or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise CacheError(f"{path} is corrupt (checksum mismatch): rerun the extraction to redo it")
            t = st_load(data)
            if t["index"].numel():
                lat.append(t["latents"])
                idx.append(t["index"])
            failed += [tuple(f) for f in entry["failed"]]
        shape = m.get("item_shape") or [0]
        latents = torch.cat(lat) if lat else torch.zeros([0] + shape, dtype=STORE_DTYPES[self.dtype])
        index = torch.cat(idx) if idx else torch.zeros(0, dtype=torch.int64)
        return CachedLatents(ids=ids, index=index, latents=latents, failed=failed)
