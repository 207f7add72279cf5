"""The latent cache: each frozen encoder runs once over a dataset, its outputs kept on disk.

One cache directory per (units fingerprint, ``encoder.describe()``, pooling, stored dtype, shard
size): the directory name carries a hash of all of them, so a changed encoder or dataset lands in a
new directory and can never be mixed with an old one.

Layout of ``<root>/<model>-<kind>-<key>/``::

    manifest.json            encoder, pooling, dtype, dim, count, per-shard sha256 + failures, complete
    item_ids.json            the unit ids in order (written once; the manifest holds its sha256)
    shard-00000.safetensors  ``latents`` [k, ...] and ``index`` [k] (unit positions that succeeded)
    progress-rank<r>.json    only while ranks > 0 of a multi-process run are working

Units are split into fixed shards of ``shard_size`` by position, and batches never straddle a
shard, so what a shard holds does not depend on how many processes ran or where a run stopped.
Shards and the manifest are written atomically; the manifest is rewritten after every shard, so a
killed run resumes from its last complete shard. A shard whose bytes do not match the recorded
sha256 (truncated, corrupted) is encoded again. Under ``accelerate launch`` / ``torchrun`` shard
``s`` belongs to process ``s % num_processes``.

Encoders with the ``prepare`` / ``collate`` / ``forward`` split (``fusemix.encoders.Encoder``) have
``prepare`` (decoding, feature extraction) run in DataLoader workers, so it overlaps the forward
pass in the main process; other encoders get ``encode(list)`` on what ``Units.load`` returns.
Items that fail to load, that ``prepare`` or the encoder rejects (``ValueError``) or that come out
non-finite are recorded (position, id, reason) and skipped; anything else stops the run.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .io import atomic_write, atomic_write_json, sha256_file
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
    """What one cache encodes: ordered unit ids, their content fingerprint and a loader.

    ``load(i)`` returns unit ``i`` as the encoder takes it (a path, bytes, a decoded waveform or
    image, a caption). It runs in DataLoader worker processes, so it must be picklable (a
    module-level class, not a lambda) and may raise for a bad item.
    """

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

    def ok_mask(self) -> torch.Tensor:
        mask = torch.zeros(len(self.ids), dtype=torch.bool)
        mask[self.index] = True
        return mask


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
    """The process state of a one-process run: what ``build`` reads from accelerate's
    ``PartialState`` (rank, world size, a barrier), without starting accelerate. For scripts,
    benchmarks and tests that never run distributed."""

    process_index, num_processes = 0, 1
    is_main_process = is_local_main_process = True

    def wait_for_everyone(self) -> None:
        pass


def default_state() -> Any:
    """accelerate's process state. Without CUDA it must be told ``cpu=True``: otherwise
    ``torchrun --nproc_per_node 2`` on a CPU machine yields two independent single-process states
    (measured with accelerate 1.15), and each process would encode everything."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


class _UnitDataset(Dataset):
    """Loads unit ``pos`` and runs the encoder's CPU-side ``prepare`` on it, in a worker.

    A failure to load (any exception: decoders raise many kinds) or a ``prepare`` that rejects
    the item (ValueError, OSError) becomes a recorded reason, never a crash. Other exceptions
    from ``prepare`` are bugs and propagate.
    """

    def __init__(self, load: Callable[[int], Any], prepare: Callable[[Any], Any] | None, n: int) -> None:
        self.load, self.prepare, self.n = load, prepare, n

    def __len__(self) -> int:
        return self.n

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


def _collate(batch: list) -> list:
    return batch


@dataclass
class _Collated:
    """A batch collated where it was prepared: (position, failure reason or None) per item, and
    ``encoder.collate`` of the items that have no reason (None when none is left)."""

    items: list[tuple[int, str | None]]
    batch: Any
    rejected: bool = False  # collate raised ValueError: the main process redoes the items one by one

    def pin_memory(self) -> _Collated:
        """Page-locked copies of the batch's tensors, made by the DataLoader's pinning thread
        (``pin_memory=True``, for a CUDA encoder): the host-to-GPU copy becomes a DMA, and the
        shared-memory pages are faulted in and unmapped in that thread, not the main one. Those two
        took 0.28-0.33 and 0.27-0.32 ms of main-thread CPU per 1.76 MB clip here (2 workers,
        batches of 32), four to eight times the receiving itself (0.04-0.07 ms)."""
        if not isinstance(self.batch, dict):
            return self
        pinned = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in self.batch.items()}
        return _Collated(self.items, pinned, self.rejected)


class _CollateInWorkers:
    """DataLoader ``collate_fn`` that also runs ``encoder.collate`` on the usable items, in the worker.

    For encoders that ask for it (``collate_in_workers``): where prepared items are large (a GPU
    CLAP model's cut windows, 1.76 MB per 10 s 44.1 kHz clip) the main process would otherwise receive
    every item and copy it again into a batch; one tensor per batch costs it 0.35 instead of about
    1.3 ms of CPU per clip (measured with 2 workers), which at GPU rates could bound the stage.
    """

    def __init__(self, collate: Callable[[list], Any]) -> None:
        self.collate = collate

    def __call__(self, batch: list) -> _Collated:
        items = [(pos, err) for pos, _, err in batch]
        good = [x for _, x, err in batch if err is None]
        try:
            return _Collated(items, self.collate(good) if good else None)
        except ValueError:  # as a rejected forward: one of the items, found by redoing them one by one
            return _Collated(items, None, rejected=True)


WORKER_NICENESS = 19  # decoding workers run at the lowest CPU priority (see _worker_init)


def _worker_init(_: int) -> None:
    """Set up a decoding worker.

    - Lowest CPU priority: where the encoder runs on the same cores (CPU extraction), a worker
      that takes a core from one of torch's threads stalls every parallel region at its barrier;
      at niceness 19 decoding fills the cores the forward leaves idle, and when the main process
      waits for a batch the worker has the cores to itself. Full-size CLAP on 2 cores, 10 s
      clips, stage/forward: 1 worker 0.76-0.84 -> 0.79-0.91, 2 workers 0.87 -> 0.83-1.04 (5 runs
      of a drifting machine). With spare cores (a GPU encoder) niceness changes nothing.
    - Freed memory is kept (fusemix/malloc.py): no page faults on the same multi-MB arrays clip
      after clip.
    - One BLAS thread, as DataLoader already does for torch's own threads: workers are the unit
      of parallelism, and extra BLAS threads fight the encoder for cores.
    """
    try:
        os.nice(WORKER_NICENESS)
    except OSError:  # pragma: no cover - a platform or sandbox that refuses it: run as is
        pass
    keep_freed_memory()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: present wherever scikit-learn is
        return
    threadpool_limits(1)


def _on_cuda(encoder: Any) -> bool:
    """Whether the encoder's model is on a CUDA device (batches for it are pinned)."""
    device = getattr(encoder, "device", None)
    return device is not None and torch.device(device).type == "cuda"


def _prefetch(num_workers: int) -> int | None:
    """Batches each worker keeps ready: about 8 in flight in all, at least 2 per worker.

    A few workers need depth to ride out slow items; many workers have it already, and every batch
    in flight is memory (shared memory for tensors: a GPU batch of 32 10 s 44.1 kHz clips is 56 MB).
    """
    return max(2, -(-8 // num_workers)) if num_workers else None


def _as_tensor(out: Any, n: int, encoder: Any) -> torch.Tensor:
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor):
        raise RuntimeError(f"{type(encoder).__name__}.encode returned {type(out).__name__}, not a tensor")
    if out.ndim < 2 or out.shape[0] != n:
        raise RuntimeError(f"{type(encoder).__name__}.encode returned shape {tuple(out.shape)} for {n} inputs")
    return out.detach().to("cpu", torch.float32)


def _splits(encoder: Any) -> bool:
    """True for encoders with the prepare/collate/forward split (``fusemix.encoders.Encoder``)."""
    return all(callable(getattr(encoder, a, None)) for a in ("prepare", "collate", "forward"))


def encode_rows(encoder: Any, inputs: list[Any], prepared: bool = False) -> list[tuple[torch.Tensor | None, str | None]]:
    """(row, None) per input, or (None, reason) for inputs the encoder rejects or turns into NaN.

    ``prepared`` inputs went through ``encoder.prepare`` and are run with ``collate`` +
    ``forward``; others go through ``encode``. A ``ValueError`` on a batch is retried item by item
    to find the culprit; any other exception is a fault of the encoder or the machine and
    propagates.
    """
    if not inputs:
        return []
    try:
        with torch.inference_mode():
            raw = encoder.forward(encoder.collate(inputs)) if prepared else encoder.encode(inputs)
        out = _as_tensor(raw, len(inputs), encoder)
    except ValueError as e:
        if len(inputs) == 1:
            return [(None, f"encoder rejected it: {type(e).__name__}: {e}"[:MAX_REASON])]
        return [r for x in inputs for r in encode_rows(encoder, [x], prepared)]
    return _finite_rows(out)


def _finite_rows(out: torch.Tensor) -> list[tuple[torch.Tensor | None, str | None]]:
    finite = torch.isfinite(out.reshape(len(out), -1)).all(dim=1)
    return [(row, None) if ok else (None, "encoder produced NaN or inf") for row, ok in zip(out, finite.tolist())]


def encode_collated(encoder: Any, n: int, batch: Any, redo: Callable[[], list[tuple[Any, str | None]]],
                    rejected: bool = False) -> list[tuple[torch.Tensor | None, str | None]]:
    """As :func:`encode_rows`, for ``n`` items already collated into ``batch`` (by a worker).

    A ``ValueError`` on the batch (or a batch whose collation raised one: ``rejected``) cannot be
    traced to an item from the batch alone: ``redo()`` prepares the items again here, (item, None)
    or (None, reason) each, and they are encoded one by one to find the culprit.
    """
    if n == 0:
        return []
    if not rejected:
        try:
            with torch.inference_mode():
                return _finite_rows(_as_tensor(encoder.forward(batch), n, encoder))
        except ValueError:
            pass
    return [(None, err) if err is not None else encode_rows(encoder, [x], prepared=True)[0] for x, err in redo()]


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
        self.units = units
        self.encoder = encoder
        self.shard_size = shard_size
        self.dtype = dtype
        self.desc = _encoder_desc(encoder)
        self.key = cache_key(units, encoder, dtype=dtype, shard_size=shard_size)
        self.dir = Path(root) / f"{_slug(self.desc.get('model_id', 'encoder'))}-{units.kind}-{self.key}"
        self.num_shards = math.ceil(len(units.ids) / shard_size)
        self.item_shape: list[int] | None = None

    # ------------------------------------------------------------------ layout

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
        if not entry:
            return False
        try:
            return sha256_file(self.dir / self.shard_name(s)) == entry.get("sha256")
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
            m = self.read_manifest()
        except CacheError:
            return False
        return bool(m and m.get("complete"))

    # ------------------------------------------------------------------ build

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
            r = list(self.shard_range(s))
            chunks = [r[i:i + batch_size] for i in range(0, len(r), batch_size)]
            plan += [(s, c, k == len(chunks) - 1) for k, c in enumerate(chunks)]
        prepared = _splits(self.encoder)
        dataset = _UnitDataset(self.units.load, self.encoder.prepare if prepared else None, len(self.units.ids))
        in_workers = prepared and getattr(self.encoder, "collate_in_workers", False)
        pin = bool(in_workers and num_workers) and _on_cuda(self.encoder)
        loader = DataLoader(dataset, batch_sampler=[c for _, c, _ in plan],
                            collate_fn=_CollateInWorkers(self.encoder.collate) if in_workers else _collate,
                            num_workers=num_workers, worker_init_fn=_worker_init,
                            prefetch_factor=_prefetch(num_workers), pin_memory=pin)
        rows: list[tuple[int, torch.Tensor]] = []
        failed: list[list[Any]] = []
        ids = self.units.ids
        with tqdm(total=sum(len(c) for _, c, _ in plan), unit=self.units.kind, disable=not progress,
                  desc=f"encoding {self.units.kind} with {_slug(self.desc.get('model_id', '?'))}") as bar:
            for (s, _, last), batch in zip(plan, loader):
                if isinstance(batch, _Collated):
                    failed += [[pos, ids[pos], err] for pos, err in batch.items if err is not None]
                    good = [pos for pos, err in batch.items if err is None]
                    results = encode_collated(self.encoder, len(good), batch.batch,
                                              lambda good=good: [dataset[pos][1:] for pos in good], batch.rejected)
                else:
                    failed += [[pos, ids[pos], err] for pos, _, err in batch if err is not None]
                    good = [pos for pos, _, err in batch if err is None]
                    results = encode_rows(self.encoder, [x for _, x, err in batch if err is None], prepared)
                for pos, (row, err) in zip(good, results):
                    if row is None:
                        failed.append([pos, ids[pos], err])
                    else:
                        self._check_shape(row)
                        rows.append((pos, row))
                bar.update(len(batch.items) if isinstance(batch, _Collated) else len(batch))
                if last:
                    on_shard(s, self._write_shard(s, rows, failed))
                    rows, failed = [], []

    def _check_shape(self, row: torch.Tensor) -> None:
        shape = list(row.shape)
        if self.item_shape is None:
            self.item_shape = shape
        elif shape != self.item_shape:
            raise RuntimeError(f"encoder output shape {shape} differs from earlier {self.item_shape}")

    def _write_shard(self, s: int, rows: list[tuple[int, torch.Tensor]], failed: list[list[Any]]) -> dict[str, Any]:
        dt = STORE_DTYPES[self.dtype]
        if rows:
            latents = torch.stack([r for _, r in rows]).to(dt)
        else:
            latents = torch.zeros([0] + (self.item_shape or []), dtype=dt)
        index = torch.tensor([p for p, _ in rows], dtype=torch.int64)
        r = self.shard_range(s)
        # One metadata key: safetensors keeps metadata in a Rust HashMap, whose iteration order (and so
        # the header bytes and the sha256) differs from process to process when there are several keys.
        # A shard's bytes must not depend on which process wrote it: two concurrent writers would
        # otherwise leave a manifest whose checksums do not match the files. Nothing reads this back
        # (the manifest holds start/stop); shards of older versions (several keys) still load, since
        # they are checked against the sha256 their manifest recorded.
        meta = {"format": FORMAT, "key": self.key, "shard": s, "start": r.start, "stop": r.stop}
        data = st_save({"latents": latents, "index": index},
                       metadata={"fusemix": json.dumps(meta, sort_keys=True, separators=(",", ":"))})
        atomic_write(self.dir / self.shard_name(s), lambda tmp: Path(tmp).write_bytes(data))
        return {"file": self.shard_name(s), "sha256": hashlib.sha256(data).hexdigest(), "count": len(rows),
                "start": r.start, "stop": r.stop, "failed": failed}

    # ------------------------------------------------------------------ load

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


__all__ = ["BuildStats", "CacheError", "CachedLatents", "LatentCache", "Units", "cache_key", "default_state",
           "encode_rows"]
