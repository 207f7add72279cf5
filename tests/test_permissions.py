"""Atomically written artefacts get the permissions a plain open()/mkdir() would give (umask
applied), not mkstemp's private 0600, so a cache or checkpoint directory can be shared."""
from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import pytest
import torch

from fusemix.io import atomic_save_safetensors, atomic_write_json
from fusemix.tiny import save_tiny_image_encoder
from fusemix.train_state import save_checkpoint


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                      (0o002, 0o664, 0o775)])
def test_written_files_and_dirs_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    with umask(mask):
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        atomic_save_safetensors(tmp_path / "t.safetensors", {"w": torch.zeros(2)})
        model = torch.nn.Linear(2, 2)
        opt = torch.optim.AdamW(model.parameters())
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
        ckpt = save_checkpoint(tmp_path / "run", 3, lambda d: atomic_write_json(d / "config.json", {}), opt, {})
        tiny = save_tiny_image_encoder(tmp_path / "tiny")
    assert mode(tmp_path / "a.json") == file_mode
    assert mode(tmp_path / "t.safetensors") == file_mode
    assert mode(ckpt) == dir_mode
    assert mode(tiny) == dir_mode
    written = [p for p in list(ckpt.iterdir()) + list(tiny.rglob("*")) if p.is_file()]
    assert written and all(mode(p) == file_mode for p in written), {p.name: oct(mode(p)) for p in written}
