"""Pair sources: where (item, captions) pairs come from, before any encoder touches them.

A source holds ``ids``, each item's ``captions`` (one group per item) and loads item ``i`` with
``item(i)``. Bad rows are left out and recorded in ``source.skipped``, never stopping a dataset.
``fingerprint()`` changes with any file, id or caption, so the latent cache never mixes datasets.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conventions import modality_of_path
from .io import sha256_file

METADATA_NAMES = ("metadata.csv", "metadata.jsonl")


class PairSourceError(ValueError):
    """A source that cannot be read at all (bad path, missing column, unknown format)."""


@dataclass(frozen=True)
class Skip:
    """An item or caption left out of a source, and why."""

    item_id: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.item_id, "reason": self.reason}


def _hash_lines(lines: Iterator[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8") + b"\n")
    return h.hexdigest()


def _is_utf8(text: str) -> bool:
    """False for strings UTF-8 cannot encode: lone surrogates such as ``"\\ud800"`` (valid JSON)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class PairSource:
    """Common interface: ``ids`` and ``captions`` (filled eagerly: text only), ``item(i)`` (lazy, so
    DataLoader workers load in parallel), ``skipped``, fingerprints; ``modality`` may be None."""

    ids: list[str]
    captions: list[tuple[str, ...]]
    skipped: list[Skip]
    modality: str | None

    def item(self, i: int) -> Any:
        raise NotImplementedError

    def items_fingerprint(self) -> str:
        raise NotImplementedError

    def captions_fingerprint(self) -> str:
        """Depends on ids and captions only: re-touching an audio file keeps caption latents."""
        return _hash_lines(json.dumps([i, list(c)], ensure_ascii=False) for i, c in zip(self.ids, self.captions))

    def fingerprint(self) -> str:
        return _hash_lines(iter([type(self).__name__, self.items_fingerprint(), self.captions_fingerprint()]))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_captions(self) -> int:
        return sum(len(c) for c in self.captions)

    def describe(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, "items": len(self), "captions": self.num_captions,
                "skipped": len(self.skipped), "modality": self.modality, "fingerprint": self.fingerprint()}


def _caption_values(value: Any) -> list[Any]:
    """A caption cell may hold one caption or a list of them (JSONL, HF Sequence columns)."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


class _Grouper:
    """Collects rows into caption groups keyed by item id, in first-appearance order."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.item: dict[str, Any] = {}
        self.caps: dict[str, list[str]] = {}
        self.skipped: list[Skip] = []

    def add(self, item_id: str, item: Any, captions: list[Any], where: str) -> None:
        if item_id in self.item:
            if self.item[item_id] != item:
                raise PairSourceError(f"{where}: id {item_id!r} names two different items: "
                                      f"{self.item[item_id]!r} and {item!r}")
        else:
            self.order.append(item_id)
            self.item[item_id] = item
            self.caps[item_id] = []
        for cap in captions:
            if cap is not None and not isinstance(cap, str):
                self.skipped.append(Skip(item_id, f"{where}: caption is not text: {cap!r}"))
            elif not (cap or "").strip():
                self.skipped.append(Skip(item_id, f"{where}: empty caption {cap!r}"))
            elif not _is_utf8(cap):
                self.skipped.append(Skip(item_id, f"{where}: caption is not valid Unicode (lone surrogate): "
                                                  f"{cap[:200]!r}"))
            else:
                self.caps[item_id].append(cap.strip())

    def finish(self) -> tuple[list[str], list[Any], list[tuple[str, ...]]]:
        ids, items, caps = [], [], []
        for item_id in self.order:
            if not self.caps[item_id]:
                self.skipped.append(Skip(item_id, "no non-empty caption: item left out"))
                continue
            ids.append(item_id)
            items.append(self.item[item_id])
            caps.append(tuple(self.caps[item_id]))
        return ids, items, caps


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """Yield (line number, row or None, error) from a CSV or JSONL file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise PairSourceError(f"{path} is empty: expected a CSV header row")
            for row in reader:
                yield reader.line_num, row, ""
    elif suffix in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    yield n, None, f"invalid JSON ({e.msg})"
                    continue
                if not isinstance(row, dict):
                    yield n, None, f"expected a JSON object, got {type(row).__name__}"
                    continue
                yield n, row, ""
    else:
        raise PairSourceError(f"{path}: unknown manifest format {suffix!r} (expected .csv or .jsonl)")


class ManifestSource(PairSource):
    """Items listed in a CSV/JSONL file, paths relative to the file's directory.

    ``caption_column`` is one column name or several (COCO-style ``caption_0..caption_4``).
    ``id_column`` defaults to the item path as written. Rows sharing an id form one caption group.
    """

    def __init__(self, path: str | os.PathLike, *, item_column: str = "file_name",
                 caption_column: str | Sequence[str] = "caption", id_column: str | None = None,
                 content_hash: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise PairSourceError(f"manifest {self.path} does not exist or is not a file")
        self.root = self.path.parent
        self.item_column = item_column
        self.caption_columns = [caption_column] if isinstance(caption_column, str) else list(caption_column)
        if not self.caption_columns:
            raise PairSourceError("caption_column must name at least one column")
        self.id_column = id_column
        self.content_hash = content_hash
        grouper = _Grouper()
        missing_ids: set[str] = set()
        checked_header = False
        for line, row, error in _read_rows(self.path):
            where = f"{self.path.name}:{line}"
            if row is None:
                grouper.skipped.append(Skip(f"<line {line}>", f"{where}: {error}"))
                continue
            if not checked_header:
                self._check_columns(row)
                checked_header = True
            rel = row.get(item_column)
            if not isinstance(rel, str) or not rel.strip():
                grouper.skipped.append(Skip(f"<line {line}>", f"{where}: empty {item_column!r}"))
                continue
            rel = rel.strip()
            item_id = str(row.get(id_column, "") or "").strip() if id_column else rel
            if not item_id:
                grouper.skipped.append(Skip(f"<line {line}>", f"{where}: empty {id_column!r}"))
                continue
            if not (_is_utf8(item_id) and _is_utf8(rel)):
                grouper.skipped.append(Skip(f"<line {line}>", f"{where}: {item_column!r} or id is not valid "
                                                              f"Unicode (lone surrogate): {rel[:200]!r}"))
                continue
            file = self.root / rel
            if item_id in missing_ids or not file.is_file():
                if item_id not in missing_ids:  # counted once per item, however many rows it has
                    missing_ids.add(item_id)
                    grouper.skipped.append(Skip(item_id, f"missing file: {file}"))
                continue
            captions = [c for col in self.caption_columns for c in _caption_values(row.get(col))]
            grouper.add(item_id, rel, captions, where)
        self.ids, self._rel, self.captions = grouper.finish()
        self.skipped = grouper.skipped
        kinds = {modality_of_path(r) for r in self._rel}
        self.modality = kinds.pop() if len(kinds) == 1 else None
        self._items_fp: str | None = None

    def _check_columns(self, row: dict[str, Any]) -> None:
        needed = [self.item_column, *self.caption_columns] + ([self.id_column] if self.id_column else [])
        missing = [c for c in needed if c not in row]
        if missing:
            raise PairSourceError(f"{self.path}: missing column(s) {missing}; it has {sorted(row)}")

    def item(self, i: int) -> str:
        return str(self.root / self._rel[i])

    def items_fingerprint(self) -> str:
        if self._items_fp is None:
            def lines() -> Iterator[str]:
                for item_id, rel in zip(self.ids, self._rel):
                    p = self.root / rel
                    if self.content_hash:
                        sig: list[Any] = [sha256_file(p)]
                    else:
                        st = p.stat()
                        sig = [st.st_size, st.st_mtime_ns]
                    yield json.dumps([item_id, Path(rel).as_posix(), *sig], ensure_ascii=False)
            self._items_fp = _hash_lines(lines())
        return self._items_fp


def open_folder(folder: str | os.PathLike, *, caption_column: str | Sequence[str] = "caption",
                split: str | None = None, id_column: str | None = None,
                content_hash: bool = False) -> ManifestSource:
    """An ``audiofolder``/``imagefolder`` directory (or its ``split`` subfolder) with a ``metadata.csv|jsonl``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PairSourceError(f"{folder} is not a directory")
    d = folder / split if split else folder
    found = [d / n for n in METADATA_NAMES if (d / n).is_file()]
    if len(found) > 1:
        raise PairSourceError(f"{d} has both {found[0].name} and {found[1].name}; keep one")
    if not found:
        others = sorted(str(p.relative_to(folder)) for n in METADATA_NAMES for p in folder.glob(f"*/{n}"))
        hint = f" (found {others}: pass split=...)" if others else ""
        raise PairSourceError(f"{d} has no metadata.csv or metadata.jsonl{hint}")
    return ManifestSource(found[0], item_column="file_name", caption_column=caption_column, id_column=id_column,
                          content_hash=content_hash)


class DatasetSource(PairSource):
    """A ``datasets.Dataset``: one row per item, captions in one or more columns. Audio columns are cast
    to ``Audio(decode=False)`` (decoding needs torchcodec) and decoded by the audio loader."""

    def __init__(self, dataset: Any, *, item_column: str, caption_column: str | Sequence[str] = "caption",
                 id_column: str | None = None) -> None:
        import datasets

        if not isinstance(dataset, datasets.Dataset):
            raise PairSourceError(f"expected a datasets.Dataset, got {type(dataset).__name__} "
                                  "(pick a split of a DatasetDict)")
        self.caption_columns = [caption_column] if isinstance(caption_column, str) else list(caption_column)
        needed = [item_column, *self.caption_columns] + ([id_column] if id_column else [])
        missing = [c for c in needed if c not in dataset.column_names]
        if missing:
            raise PairSourceError(f"dataset lacks column(s) {missing}; it has {dataset.column_names}")
        feature = dataset.features[item_column]
        self.modality = None
        if isinstance(feature, datasets.Audio):
            self.modality = "audio"
            if feature.decode:
                dataset = dataset.cast_column(item_column, datasets.Audio(decode=False))
        elif isinstance(feature, datasets.Image):
            self.modality = "image"
        self.dataset = dataset
        self.item_column = item_column
        self.id_column = id_column
        text_cols = dataset.select_columns(list(dict.fromkeys(self.caption_columns + ([id_column] if id_column else []))))
        grouper = _Grouper()
        self._rows: dict[str, int] = {}
        for row_index, row in enumerate(text_cols):
            item_id = str(row[id_column]) if id_column else str(row_index)
            if item_id in self._rows:
                raise PairSourceError(f"dataset row {row_index}: duplicate id {item_id!r} in column {id_column!r}")
            self._rows[item_id] = row_index
            captions = [c for col in self.caption_columns for c in _caption_values(row[col])]
            grouper.add(item_id, row_index, captions, f"row {row_index}")
        self.ids, self._row_of, self.captions = grouper.finish()
        self.skipped = grouper.skipped

    def item(self, i: int) -> Any:
        return self.dataset[self._row_of[i]][self.item_column]

    def items_fingerprint(self) -> str:
        fp = getattr(self.dataset, "_fingerprint", None)
        if not fp:
            raise PairSourceError("this dataset has no content fingerprint; save it to disk and reload it")
        return _hash_lines(iter([fp, self.item_column, json.dumps(self._row_of)]))


def hub_source(name: str, *, split: str = "train", item_column: str, caption_column: str | Sequence[str] = "caption",
               id_column: str | None = None, **load_kwargs: Any) -> DatasetSource:
    """A dataset from the Hugging Face hub (needs the network or a warm ``datasets`` cache)."""
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split, **load_kwargs)
    except Exception as e:  # datasets raises many types (connection, missing config, ...)
        raise PairSourceError(f"could not load dataset {name!r} split {split!r}: {e}") from e
    return DatasetSource(ds, item_column=item_column, caption_column=caption_column, id_column=id_column)


def open_source(data: Any, *, caption_column: str | Sequence[str] = "caption", item_column: str | None = None,
                id_column: str | None = None, split: str | None = None, content_hash: bool = False) -> PairSource:
    """Dispatch: a PairSource, a ``datasets.Dataset``, a manifest file or an audio/image folder."""
    if isinstance(data, PairSource):
        return data
    if not isinstance(data, (str, os.PathLike)):
        if item_column is None:
            raise PairSourceError("a datasets.Dataset source needs item_column (e.g. 'audio' or 'image')")
        return DatasetSource(data, item_column=item_column, caption_column=caption_column, id_column=id_column)
    path = Path(data)
    if path.is_dir():
        if item_column not in (None, "file_name"):
            raise PairSourceError(f"a folder source always uses the 'file_name' column, not {item_column!r}")
        return open_folder(path, caption_column=caption_column, split=split, id_column=id_column,
                           content_hash=content_hash)
    if path.is_file():
        return ManifestSource(path, item_column=item_column or "file_name", caption_column=caption_column,
                              id_column=id_column, content_hash=content_hash)
    raise PairSourceError(f"{path} is neither a manifest file nor a dataset folder")
