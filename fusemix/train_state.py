"""Resumable training checkpoints: weights, optimiser state and progress, no pickle.

``ckpt-<step>`` is written whole under a temporary name and renamed into place, then ``latest.json``
is switched to it atomically: a kill or a full disk at any point leaves the previous one intact.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .checkpoint import CheckpointError, read_safetensors
from .io import atomic_save_safetensors, atomic_write_json, usual_permissions

LATEST = "latest.json"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser state dict into flat tensors (safetensors) and JSON (hyper-parameters)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in [*tensors.items(), *meta["scalars"].items()]:
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    groups = meta["param_groups"]
    if len(groups) != len(optimizer.param_groups) or any(
            len(g["params"]) != len(h["params"]) for g, h in zip(groups, optimizer.param_groups)):
        raise CheckpointError("the optimiser state in the checkpoint was saved for a different set of parameters")
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(out_dir: str | Path, step: int, save_model, optimizer: torch.optim.Optimizer,
                    state: dict, keep: int = 2) -> Path:
    """``save_model(dir)`` writes the inference files (e.g. ``FusionModel.save_pretrained``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".ckpt-*"):  # a save killed half-way; the pointer never named it
        shutil.rmtree(stale, ignore_errors=True)
    final = out_dir / f"ckpt-{step:09d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=out_dir))
    try:
        usual_permissions(tmp)
        save_model(tmp)
        tensors, meta = optimizer_tensors(optimizer)
        atomic_save_safetensors(tmp / "optimizer.safetensors", tensors)
        atomic_write_json(tmp / "optimizer.json", meta)
        atomic_write_json(tmp / "trainer_state.json", {**state, "step": step})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_json(out_dir / LATEST, {"checkpoint": final.name, "step": step})
    protected = {final.name, state.get("best_checkpoint")}
    old = sorted(p for p in out_dir.glob("ckpt-*") if p.is_dir() and p.name not in protected)
    for p in old[: max(len(old) - (keep - 1), 0)]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    ptr = Path(out_dir) / LATEST
    if not ptr.is_file():
        return None
    try:
        name = json.loads(ptr.read_text())["checkpoint"]
    except (json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"{ptr} is unreadable: {e}") from e
    path = Path(out_dir) / name
    if not path.is_dir():
        raise CheckpointError(f"{ptr} points to {name}, which does not exist")
    return path


def kept_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint a finished run stands for: the best on its held-out slice by train.py's rule (of
    equal scores the latest; as its trainer state records it), or the last one when it held nothing out."""
    last = latest_checkpoint(out_dir)
    if last is None:
        return None
    best = json.loads((last / "trainer_state.json").read_text()).get("best_checkpoint")
    return Path(out_dir) / best if best else last


def load_trainer_state(ckpt: Path, optimizer: torch.optim.Optimizer) -> dict:
    load_optimizer(optimizer, read_safetensors(ckpt / "optimizer.safetensors"),
                   json.loads((ckpt / "optimizer.json").read_text()))
    return json.loads((ckpt / "trainer_state.json").read_text())
