"""fusemix.io: safetensors files written by fusemix are the same bytes for the same content."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open

from fusemix.io import _sort_safetensors_metadata, atomic_save_safetensors

ROOT = Path(__file__).resolve().parents[1]
META = {f"key{i}": f"value {i} é\\n\"{'x' * i}\"" for i in range(8)}  # non-ASCII and escapes included

SAVE = """
import sys, torch
sys.path.insert(0, {root!r})
from fusemix.io import atomic_save_safetensors
g = torch.Generator().manual_seed(0)
atomic_save_safetensors({path!r}, {{"b": torch.randn(3, 5, generator=g), "a": torch.arange(7)}}, {meta!r})
"""


def _save_in_new_process(path: Path) -> str:
    subprocess.run([sys.executable, "-c", SAVE.format(root=str(ROOT), path=str(path), meta=META)], check=True,
                   timeout=120)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_content_gives_the_same_bytes_in_every_process(tmp_path):
    # safetensors itself orders __metadata__ by a per-process hash: 8 keys, 40320 orders
    digests = {_save_in_new_process(tmp_path / f"f{i}.safetensors") for i in range(3)}
    assert len(digests) == 1
    with safe_open(str(tmp_path / "f0.safetensors"), "pt") as f:
        assert f.metadata() == META
        assert torch.equal(f.get_tensor("a"), torch.arange(7))


def test_sorting_changes_only_the_order_of_metadata_keys(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "raw.safetensors"
    tensors = {"w": torch.randn(4, 4), "b": torch.randn(4)}
    save_file(tensors, str(path), metadata=META)
    before = path.read_bytes()
    _sort_safetensors_metadata(path)
    after = path.read_bytes()
    n = int.from_bytes(after[:8], "little")
    assert len(after) == len(before) and after[:8] == before[:8] and after[8 + n:] == before[8 + n:]
    header = json.loads(after[8:8 + n])
    assert list(header["__metadata__"]) == sorted(META)
    assert json.loads(before[8:8 + n]) == header  # same content
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == META and torch.equal(f.get_tensor("w"), tensors["w"])


def test_files_with_one_metadata_key_are_what_safetensors_writes(tmp_path):
    from safetensors.torch import save

    tensors = {"x": torch.arange(6.0).reshape(2, 3)}
    path = atomic_save_safetensors(tmp_path / "m.safetensors", tensors, {"format": "pt"})
    assert path.read_bytes() == save(tensors, metadata={"format": "pt"})
