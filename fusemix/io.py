"""Atomic file writes: a reader sees the old file or the new one, never half of either, so a kill -9
or a full disk mid-write leaves the previous version of every fusemix artefact intact.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask sets it)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # pragma: no cover - non-Linux: set and restore
    os.umask(mask)
    return mask  # pragma: no cover


def usual_permissions(path: str | os.PathLike) -> None:
    """Give a temp file or directory the mode a plain ``open``/``mkdir`` gives (0666/0777 less the
    umask), not mkstemp's 0600/0700, which a team sharing a cache could not read."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~_umask())


def atomic_write(path: str | os.PathLike, write_fn: Callable[[str], None]) -> Path:
    """Call ``write_fn(tmp_path)`` on a temporary file beside ``path``, fsync it and rename it over
    ``path``; on any error the temporary file is removed and ``path`` left untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        usual_permissions(tmp)  # after: a writer may replace the file (safetensors does)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_safetensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """safetensors needs contiguous tensors that do not share memory; make them so."""
    clean = {k: v.detach().contiguous().clone() if _shares(v, tensors) else v.detach().contiguous()
             for k, v in tensors.items()}

    def write(tmp: str) -> None:
        try:
            save_file(clean, tmp, metadata=metadata)
        except SafetensorError as e:  # a full or read-only disk must be an OSError like any other write
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise
            n = int(code.group(1))
            raise OSError(n, f"{os.strerror(n)} while writing {path}") from e
        _sort_safetensors_metadata(tmp)

    return atomic_write(path, write)


def _sort_safetensors_metadata(path: str | os.PathLike) -> None:
    """Rewrite a safetensors header in place with its ``__metadata__`` keys sorted.

    Why: safetensors writes them from a hash map, so equal content gives different bytes (and
    sha256s) in different processes. The header keeps its length, so offsets and data are untouched.
    """
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))  # dicts keep the writer's order of everything else
        meta = header.get("__metadata__")
        if not isinstance(meta, dict) or len(meta) < 2:
            return
        header["__metadata__"] = dict(sorted(meta.items()))
        out = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8").ljust(n)
        if len(out) == n:
            f.seek(8)
            f.write(out)


def _shares(t: torch.Tensor, all_tensors: dict[str, torch.Tensor]) -> bool:
    ptr = t.untyped_storage().data_ptr()
    return sum(1 for v in all_tensors.values() if v.untyped_storage().data_ptr() == ptr) > 1


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
