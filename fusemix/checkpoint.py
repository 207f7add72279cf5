"""Saving and loading module weights as safetensors, with errors a person can act on.

:class:`Pretrained` saves and loads fusemix's own models; ``load_state_strict`` checks every key and
shape first; ``from_pretrained_safetensors`` loads Hugging Face models from safetensors only, never pickle.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .io import atomic_save_safetensors, atomic_write_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model it is loaded into."""


class PickleOnlyCheckpointError(CheckpointError):
    """A pretrained model whose weights are not available as safetensors (only pickle, or none)."""


PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def from_pretrained_safetensors(cls, model_id, **kwargs):
    """``cls.from_pretrained(model_id, use_safetensors=True, **kwargs)`` for transformers and diffusers.

    Why: both fall back to unpickling ``pytorch_model.bin`` when a repo has no safetensors (the main
    branch of laion/clap-htsat-unfused has none; transformers then finds the hub's conversion PR).
    What cannot be loaded so raises :class:`PickleOnlyCheckpointError` saying how to convert it.
    """
    try:
        return cls.from_pretrained(model_id, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as e:
        if "safetensors" not in str(e):
            raise
        root = Path(str(model_id))
        if root.is_dir():
            pickled = sorted(str(f.relative_to(root)) for f in root.rglob("*")
                             if f.suffix in PICKLE_WEIGHT_SUFFIXES and f.is_file())
            if not pickled:
                raise
            found = f"only pickled weights ({', '.join(pickled[:3])})"
        else:
            found = "no safetensors weights on this revision"
        raise PickleOnlyCheckpointError(
            f"{model_id} has {found}; fusemix loads weights from safetensors only (pickle can run code). "
            f"Convert once where you trust the file: {cls.__name__}.from_pretrained(path).save_pretrained(new_dir) "
            f"writes safetensors; for a hub repo, a revision holding model.safetensors (its conversion PR, "
            f"refs/pr/N) also works.") from e


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from e


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(
                f"{source}: tensor {k!r} has shape {tuple(v.shape)} but the model (built from its config) "
                f"expects {tuple(expected[k].shape)}: the config and the weights disagree")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{source}: tensor {k!r} holds NaN or inf values")
    module.load_state_dict(state, strict=True)


class Pretrained:
    """``save_pretrained`` / ``from_pretrained`` for a fusemix ``nn.Module`` with a ``config``: weights, then the
    config (marks a complete save), atomically. A load checks ``MODEL_TYPE`` and loads the weights strictly."""

    MODEL_TYPE = ""

    def _weights_metadata(self) -> dict[str, str]:
        return {}

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_save_safetensors(directory / WEIGHTS_NAME, self.state_dict(),
                                {"format": "pt", **self._weights_metadata()})
        atomic_write_json(directory / CONFIG_NAME, self.config.to_dict())
        return directory

    @classmethod
    def _from_config(cls, cfg_path: Path, raw: dict):
        raise NotImplementedError

    @classmethod
    def _load_pretrained(cls, directory: str | Path, check=None, map_location="cpu"):
        directory = Path(directory)
        cfg_path, name = directory / CONFIG_NAME, cls.MODEL_TYPE.rpartition(".")[2]
        if not cfg_path.is_file():
            raise CheckpointError(f"{directory} holds no {CONFIG_NAME}; is it a fusemix {name} directory?")
        try:
            raw = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from e
        if not isinstance(raw, dict) or raw.get("model_type") != cls.MODEL_TYPE:
            kind = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
            raise CheckpointError(f"{cfg_path} describes a {kind!r}, not a {cls.MODEL_TYPE}")
        model = cls._from_config(cfg_path, raw)
        if check is not None:
            check(model)
        load_state_strict(model, read_safetensors(directory / WEIGHTS_NAME), str(directory / WEIGHTS_NAME))
        return model.to(map_location).eval()
