"""FusionModel: one adapter per modality into a shared space, saved as safetensors + JSON.

With text as the anchor (image-text first, then audio against the frozen text adapter), audio -> image
works without an audio-image pair.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .adapter import Adapter
from .checkpoint import CheckpointError, Pretrained
from .loss import ContrastiveLoss


@dataclass
class ModalitySpec:
    encoder: str  # model id (or path) of the frozen encoder whose latents this adapter reads
    dim: int  # width of those latents
    pooling: str = ""  # how the encoder's output was pooled, for the record

    def __post_init__(self):
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"a modality's latent dim must be a positive integer, got {self.dim!r}")


@dataclass
class FusionConfig:
    modalities: dict[str, ModalitySpec]
    proj_dim: int = 512
    depth: int = 4
    expansion: int = 4
    dropout: float = 0.6
    head_depth: int = 0  # residual blocks after the projection, in the shared space
    init_temperature: float = 0.07
    extra: dict = field(default_factory=dict)  # free-form notes: training data, steps, metrics

    def __post_init__(self):
        self.modalities = {k: v if isinstance(v, ModalitySpec) else ModalitySpec(**v) for k, v in self.modalities.items()}
        if not self.modalities:
            raise ValueError("a FusionModel needs at least one modality")

    def to_dict(self) -> dict:
        return {"model_type": FusionModel.MODEL_TYPE, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "FusionConfig":
        return cls(**{k: v for k, v in d.items() if k != "model_type"})


class FusionModel(nn.Module, Pretrained):
    MODEL_TYPE = "fusemix.FusionModel"

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.config = config
        self.pair: tuple[str, str] | None = None  # set by prepare_for_data
        self.adapters = nn.ModuleDict({name: self._adapter(spec.dim) for name, spec in config.modalities.items()})
        self.loss_fn = ContrastiveLoss(init_temperature=config.init_temperature)

    def _adapter(self, dim: int) -> Adapter:
        """An adapter of this model's shape (the config's widths, depths and dropout) for latents of ``dim``."""
        c = self.config
        return Adapter(dim, c.proj_dim, c.depth, c.expansion, c.dropout, c.head_depth)

    @property
    def modalities(self) -> list[str]:
        return list(self.adapters)

    def add_modality(self, name: str, spec: ModalitySpec) -> None:
        """A new adapter into the existing space (e.g. audio, trained against a frozen text anchor)."""
        if name in self.adapters:
            raise ValueError(f"the model already has a {name!r} adapter")
        self.adapters[name] = self._adapter(spec.dim).to(self.loss_fn.log_temperature.device)
        self.config.modalities[name] = spec

    def embed(self, modality: str, latents: torch.Tensor) -> torch.Tensor:
        """Adapter output, L2-normalised: cosine similarity in the shared space is a dot product."""
        if modality not in self.adapters:
            raise ValueError(f"this model has no {modality!r} adapter; it knows {self.modalities}")
        dim = self.config.modalities[modality].dim
        if latents.ndim != 2 or latents.shape[1] != dim:
            raise ValueError(f"{modality} latents must have shape [B, {dim}] "
                             f"(from {self.config.modalities[modality].encoder}), got {tuple(latents.shape)}")
        return F.normalize(self.adapters[modality](latents.to(self.loss_fn.log_temperature.dtype)), dim=-1)

    def forward(self, modality_a: str, a: torch.Tensor, modality_b: str, b: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE between two modalities' batches (row i of a pairs with row i of b)."""
        return self.loss_fn(self.embed(modality_a, a), self.embed(modality_b, b))

    # ---- the model interface train.py uses, shared with fusemix.bridge.ConditioningBridge

    def prepare_for_data(self, pairs) -> dict:
        """Bind the two modalities of the training ``LatentPairs`` that the loss and eval compare."""
        for m in (pairs.x_modality, pairs.y_modality):
            if m not in self.adapters:
                raise ValueError(f"this model has no {m!r} adapter; it knows {self.modalities}")
        self.pair = (pairs.x_modality, pairs.y_modality)
        return {}

    def _bound(self) -> tuple[str, str]:
        if self.pair is None:
            raise ValueError("call prepare_for_data(training_pairs) before training or evaluating")
        return self.pair

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        a, b = self._bound()
        return self(a, x, b, y), {}

    @torch.no_grad()
    def eval_embeddings(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self._bound()
        return self.embed(a, x), self.embed(b, y)

    @classmethod
    def _from_config(cls, cfg_path: Path, raw: dict) -> "FusionModel":
        try:
            return cls(FusionConfig.from_dict(raw))
        except (TypeError, ValueError, AttributeError, RuntimeError) as e:  # unknown, missing or ill-typed fields
            raise CheckpointError(f"{cfg_path} is not a valid FusionModel config: {e}") from e

    @classmethod
    def from_pretrained(cls, directory: str | Path, expect: dict[str, ModalitySpec] | None = None) -> "FusionModel":
        """Load a saved model; ``expect`` (modality -> encoder/dim) makes mismatched encoders an error."""
        return cls._load_pretrained(directory, (lambda m: check_encoders(m.config, expect)) if expect else None)


def check_encoders(config: FusionConfig, expect: dict[str, ModalitySpec]) -> None:
    """Refuse latents from another encoder: an adapter is only meaningful for its own encoder."""
    for name, spec in expect.items():
        have = config.modalities.get(name)
        if have is None:
            raise CheckpointError(f"checkpoint has no {name!r} adapter (it has {list(config.modalities)})")
        if have.dim != spec.dim:
            raise CheckpointError(f"{name} adapter was trained on {have.dim}-d latents of {have.encoder}, "
                                  f"but the given encoder {spec.encoder} produces {spec.dim}-d latents")
        if spec.encoder and have.encoder != spec.encoder:
            raise CheckpointError(f"{name} adapter was trained on latents of {have.encoder}, not {spec.encoder}")
