"""ConditioningBridge: a CLAP latent -> the ``prompt_embeds`` sequence a Stable Diffusion UNet reads.

The frozen SD text encoder's caption encodings are the regression targets, so the bridge speaks that
encoder's language. Heads predict ``seq_mean + target_std * head(x)`` (training starts at the right
scale); the loss is InfoNCE on pooled sequences plus a sequence MSE. Captions-only training (CLAP text
latents in, audio served) corrects CLAP's modality gap by centring each tower on its own mean.
A pooled target ``[M, D]`` (``target="clip-text"``: CLIP's image-text space, for Sound -> Images) is a
sequence of one token: the same bridge, heads and training serve both.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..adapter import Adapter
from ..checkpoint import CheckpointError, Pretrained
from ..conventions import kind_of, model_id_of
from ..loss import ContrastiveLoss
from .compat import BridgeConfigError, check_compatible

MODEL_TYPE = "fusemix.ConditioningBridge"
HEADS = ("direct", "lowrank")
MODALITIES = ("audio", "text")
TRAIN_MODALITIES = ("audio", "text", "both")
TARGETS = ("sd-text", "clip-text")  # encoder kinds a bridge maps into
# Fields of the removed "decoder" head: configs saved before its removal still load.
REMOVED_FIELDS = ("decoder_dim", "decoder_layers", "decoder_heads", "memory_tokens")


@dataclass
class BridgeConfig:
    """Everything needed to rebuild a bridge and to refuse the wrong encoders."""

    clap_model: str = "laion/clap-htsat-unfused"  # CLAP whose latents are the input
    sd_model: str = "stabilityai/sd-turbo"  # SD repo (or text-encoder id) whose prompt_embeds are the output
    target: str = "sd-text"  # the target encoder's kind: sd-text (prompt_embeds) or clip-text (sd_model: a CLIP)
    in_dim: int = 512  # CLAP projection width
    seq_len: int = 77  # tokenizer.model_max_length of the SD text encoder
    out_dim: int = 1024  # SD text-encoder hidden size (768 for SD 1.x, 1024 for SD 2.x / sd-turbo)
    head: str = "lowrank"  # measured winner (docs/audio_to_image.md)
    depth: int = 2
    expansion: int = 4
    dropout: float = 0.1  # measured on real token sequences: docs/real_bridge.md
    rank: int = 128  # lowrank head: number of basis sequences
    contrastive_weight: float = 1.0
    regression_weight: float = 0.3  # measured: benchmarks/bridge_heads.py --sweep-weights
    init_temperature: float = 0.07
    train_modality: str = "audio"  # which CLAP tower produced the training latents: audio, text or both
    extra: dict = field(default_factory=dict)  # free-form provenance: data, steps, metrics

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        problems = []
        if self.head == "decoder":
            problems.append("head='decoder' was removed (it measured worst on every column and trained 13x "
                            f"slower, docs/audio_to_image.md); retrain with one of {HEADS}")
        elif self.head not in HEADS:
            problems.append(f"head={self.head!r} (choose one of {HEADS})")
        if self.target not in TARGETS:
            problems.append(f"target={self.target!r} (choose one of {TARGETS})")
        if self.train_modality not in TRAIN_MODALITIES:
            problems.append(f"train_modality={self.train_modality!r} (choose one of {TRAIN_MODALITIES})")
        for name in ("in_dim", "seq_len", "out_dim", "rank", "expansion"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be >= 1)")
        if self.depth < 0:
            problems.append(f"depth={self.depth} (must be >= 0)")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout} (allowed range [0, 1))")
        for name in ("contrastive_weight", "regression_weight"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                problems.append(f"{name}={v} (must be a finite number >= 0)")
        if self.contrastive_weight == 0 and self.regression_weight == 0:
            problems.append("contrastive_weight and regression_weight are both 0 (nothing to train)")
        if problems:
            raise BridgeConfigError("invalid BridgeConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return {"model_type": MODEL_TYPE, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "BridgeConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"model_type", *REMOVED_FIELDS})
        if unknown:
            raise CheckpointError(f"bridge config has unknown fields {unknown}; written by a newer fusemix?")
        return cls(**{k: v for k, v in d.items() if k in known})


# --------------------------------------------------------------------------- heads: [B, in_dim] -> [B, T, D]


class DirectHead(nn.Module):
    """Residual MLP straight to all T*D numbers; simple, but T*D*in_dim parameters."""

    def __init__(self, c):
        super().__init__()
        self.seq_len, self.out_dim = c.seq_len, c.out_dim
        self.mlp = Adapter(c.in_dim, c.seq_len * c.out_dim, c.depth, c.expansion, c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).view(x.shape[0], self.seq_len, self.out_dim)


class LowRankHead(nn.Module):
    """Residual MLP to ``rank`` whitened coefficients of a frozen PCA basis of caption encodings,
    so every output lies in the span of real caption encodings."""

    def __init__(self, c):
        super().__init__()
        self.seq_len, self.out_dim = c.seq_len, c.out_dim
        self.mlp = Adapter(c.in_dim, c.rank, c.depth, c.expansion, c.dropout)
        self.register_buffer("basis", torch.zeros(c.rank, c.seq_len * c.out_dim))
        self.register_buffer("basis_scale", torch.zeros(c.rank))  # std of each coefficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coef = self.mlp(x) * self.basis_scale
        return (coef @ self.basis).view(x.shape[0], self.seq_len, self.out_dim)

    @torch.no_grad()
    def fit(self, centred: torch.Tensor, seed: int = 0) -> float:
        """PCA of centred targets [N, T*D]; returns the fraction of variance the basis keeps."""
        n = centred.shape[0]
        q = min(self.basis.shape[0], n, centred.shape[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, s, v = torch.svd_lowrank(centred, q=min(q + 8, n, centred.shape[1]), niter=3)
        self.basis.zero_()
        self.basis_scale.zero_()
        self.basis[:q] = v[:, :q].t()
        self.basis_scale[:q] = s[:q] / math.sqrt(max(n - 1, 1))
        return float(s[:q].pow(2).sum() / centred.pow(2).sum().clamp_min(1e-12))


HEAD_CLASSES = {"direct": DirectHead, "lowrank": LowRankHead}  # the keys are HEADS


def _as_seq(y: torch.Tensor) -> torch.Tensor:
    """Pooled targets [B, D] as sequences of one token [B, 1, D]; sequences unchanged."""
    return y.unsqueeze(1) if isinstance(y, torch.Tensor) and y.ndim == 2 else y


def _tokens(seq: torch.Tensor) -> torch.Tensor:
    """The tokens a pooled view averages: 1..T-1 (BOS is the same for every prompt), or the one token."""
    return seq[:, 1:] if seq.shape[1] > 1 else seq


class ConditioningBridge(nn.Module, Pretrained):
    """CLAP latent [B, in_dim] -> prompt_embeds [B, seq_len, out_dim] for a diffusers SD pipeline."""

    MODEL_TYPE = MODEL_TYPE

    def __init__(self, config: BridgeConfig):
        super().__init__()
        config.validate()
        self.config = c = config
        self.head = HEAD_CLASSES[c.head](c)
        self.loss_fn = ContrastiveLoss(init_temperature=c.init_temperature)
        # Statistics of the training targets / inputs, set by initialize_from_data.
        self.register_buffer("seq_mean", torch.zeros(c.seq_len, c.out_dim))
        self.register_buffer("target_std", torch.ones(()))
        self.register_buffer("pool_center", torch.zeros(c.out_dim))
        self.register_buffer("input_mean", torch.zeros(c.in_dim))
        self.register_buffer("input_scale", torch.ones(()))
        self.register_buffer("modality_means", torch.zeros(len(MODALITIES), c.in_dim))
        self.register_buffer("modality_counts", torch.zeros(len(MODALITIES), dtype=torch.long))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_latents(cls, pairs, **overrides) -> "ConditioningBridge":
        """Build a bridge for a ``LatentPairs`` whose ``y`` is [M, T, D] SD caption encodings (or pooled
        [M, D] CLIP text embeddings: ``T = 1``)."""
        target = kind_of(pairs.y_encoder) or "sd-text"
        if pairs.y.ndim != {"clip-text": 2}.get(target, 3):
            raise BridgeConfigError(
                f"a conditioning bridge needs y latents of shape [M, T, D] (SD prompt_embeds) or [M, D] (clip-text), "
                f"got {tuple(pairs.y.shape)} from {pairs.y_encoder!r}; extract them with the 'sd-text' or "
                f"'clip-text' encoder")
        x_mod = f"{pairs.x_modality} {kind_of(pairs.x_encoder) or ''}".lower()
        modality = ("both" if "text" in x_mod and "audio" in x_mod else "text" if "text" in x_mod
                    else "audio" if "audio" in x_mod else None)
        base = dict(clap_model=model_id_of(pairs.x_encoder), sd_model=model_id_of(pairs.y_encoder),
                    in_dim=int(pairs.x.shape[1]), seq_len=int(_as_seq(pairs.y).shape[1]),
                    out_dim=int(pairs.y.shape[-1]), target=target)
        if modality is not None:
            base["train_modality"] = modality
        elif "train_modality" not in overrides:
            raise BridgeConfigError(
                f"cannot tell which CLAP tower produced x (x_modality={pairs.x_modality!r}); "
                f"pass train_modality= one of {TRAIN_MODALITIES}")
        fixed = {"in_dim", "seq_len", "out_dim", "target"} & set(overrides)
        if fixed:
            raise BridgeConfigError(f"{sorted(fixed)} come from the latent file's shapes and cannot be overridden")
        return cls(BridgeConfig(**{**base, **overrides}))

    @torch.no_grad()
    def initialize_from_data(self, x: torch.Tensor, y: torch.Tensor, max_rows: int = 4096, seed: int = 0) -> dict:
        """Fit the target statistics (and the low-rank basis) on at most ``max_rows`` seeded random rows of
        the training data, so it stays cheap on big caches; returns what it measured."""
        y = _as_seq(y)
        self._check_pairs(x, y)
        if y.shape[0] > max_rows:
            idx = torch.randperm(y.shape[0], generator=torch.Generator().manual_seed(seed))[:max_rows]
            x, y = x[idx], y[idx]
        dev = self.seq_mean.device
        y = y.to(dev, torch.float32)
        mean = y.mean(0)
        centred = y - mean
        self.seq_mean.copy_(mean)
        self.target_std.fill_(float(centred.pow(2).mean().sqrt().clamp_min(1e-8)))
        self.pool_center.copy_(_tokens(y).mean(1).mean(0))
        xf = x.to(dev, torch.float32)
        self.input_mean.copy_(xf.mean(0))
        self.input_scale.fill_(float((xf - self.input_mean).norm(dim=-1).pow(2).mean().sqrt().clamp_min(1e-8)))
        info = {"rows": int(y.shape[0]), "target_std": float(self.target_std), "input_scale": float(self.input_scale)}
        if self.config.train_modality in MODALITIES:
            self.set_modality_mean(self.config.train_modality, x)
        if isinstance(self.head, LowRankHead):
            info["basis_variance_kept"] = self.head.fit(centred.reshape(y.shape[0], -1), seed=seed)
        self.initialized.fill_(True)
        return info

    @torch.no_grad()
    def set_modality_mean(self, modality: str, latents: torch.Tensor, shrink: bool = True) -> None:
        """Record the mean CLAP latent of one tower (e.g. of unlabelled audio for captions-only training).

        With ``shrink``, the mean's offset from the training tower's mean is shrunk by its estimated
        noise (positive-part James-Stein): from a few clips an unshrunk mean hurts more than it helps.
        """
        i = self._modality_index(modality)
        self._check_x(latents)
        x = latents.to(self.modality_means.device, torch.float32)
        mean = x.mean(0)
        if shrink and x.shape[0] > 1 and self.config.train_modality in MODALITIES and \
                modality != self.config.train_modality:
            base = self.modality_means[MODALITIES.index(self.config.train_modality)]
            offset = mean - base
            noise = x.var(0).sum() / x.shape[0]  # expected squared norm of the mean's error
            mean = base + offset * (1 - noise / offset.pow(2).sum().clamp_min(1e-12)).clamp(0, 1)
        self.modality_means[i] = mean
        self.modality_counts[i] = latents.shape[0]

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor, modality: str | None = None) -> torch.Tensor:
        """prompt_embeds [B, T, D] for CLAP latents [B, in_dim] from the ``modality`` tower (audio or text),
        centred on that tower's mean when known (the modality-gap correction)."""
        self._check_x(x)
        x = self.center_inputs(x.to(self.seq_mean.dtype), modality)
        return self.seq_mean + self.target_std * self.head(x)

    def center_inputs(self, x: torch.Tensor, modality: str | None = None) -> torch.Tensor:
        """(x - mean) / input_scale; the mean is the given tower's own when known, else the training mean."""
        center = self.input_mean
        if modality is not None:
            i = self._modality_index(modality)
            if self.config.train_modality != "both" and self.modality_counts[i] > 0:
                center = self.modality_means[i]
        return (x - center.to(x.dtype)) / self.input_scale.to(x.dtype)

    def pool(self, seq: torch.Tensor) -> torch.Tensor:
        """L2-normalised, centred mean of tokens 1..T-1: BOS is the same for every prompt, EOS's
        position depends on the prompt's length, and uncentred vectors share one common direction."""
        return F.normalize(_tokens(_as_seq(seq)).float().mean(1) - self.pool_center.float(), dim=-1)

    @torch.no_grad()
    def embed(self, x: torch.Tensor, modality: str | None = None) -> torch.Tensor:
        """Unit vectors [B, D] in the target's own, uncentred space (for a clip-text bridge: comparable with
        CLIP image embeddings): the pooled direction InfoNCE trained, placed at the targets' RMS distance
        from their mean. Why: the raw output shrinks toward the mean, which then outweighs the sound."""
        radius = self.target_std.float() * math.sqrt(self.config.out_dim)  # exact for one-token targets
        return F.normalize(self.pool_center.float() + radius * self.pool(self._predict(x, modality)), dim=-1)

    # ---- the model interface train.py uses, shared with fusemix.model.FusionModel

    def prepare_for_data(self, pairs) -> dict:
        """Fit the statistics the bridge needs on the training ``LatentPairs`` (``initialize_from_data``)."""
        return self.initialize_from_data(pairs.x[pairs.item_of], pairs.y)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss on one (already FuseMix-mixed) batch of CLAP latents and caption encodings."""
        y = _as_seq(y)
        self._check_pairs(x, y)
        if not bool(self.initialized) and self.config.head == "lowrank":
            raise BridgeConfigError("the lowrank head needs initialize_from_data(x_train, y_train) before training")
        pred = self(x)
        y = y.to(pred.dtype)
        c = self.config
        loss = pred.new_zeros(())
        logs: dict[str, float] = {}
        if c.contrastive_weight > 0:
            l_con = self.loss_fn(self.pool(pred), self.pool(y))
            loss = loss + c.contrastive_weight * l_con
            logs["contrastive"] = float(l_con.detach())
        l_reg = (pred - y).pow(2).mean() / self.target_std.pow(2)
        if c.regression_weight > 0:
            loss = loss + c.regression_weight * l_reg
        logs["regression"] = float(l_reg.detach())  # fraction of variance unexplained, logged always
        logs["temperature"] = float(self.loss_fn.temperature.detach())
        logs["loss"] = float(loss.detach())
        return loss, logs

    @torch.no_grad()
    def eval_embeddings(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024,
                        modality: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled, L2-normalised (bridge output, caption encoding) pairs for retrieval R@K."""
        za = torch.cat([self.pool(self._predict(x[i:i + chunk], modality)) for i in range(0, x.shape[0], chunk)])
        zb = torch.cat([self.pool(_as_seq(y[i:i + chunk]).to(self.seq_mean.device)) for i in range(0, y.shape[0], chunk)])
        return za, zb

    @torch.no_grad()
    def sequence_metrics(self, x: torch.Tensor, y: torch.Tensor, modality: str | None = None) -> dict[str, float]:
        """How close predicted sequences are to the targets: relative MSE and mean token cosine."""
        pred = self._predict(x, modality).float()
        y = _as_seq(y).to(pred.device, torch.float32)
        rel_mse = float((pred - y).pow(2).mean() / (y - self.seq_mean).pow(2).mean().clamp_min(1e-12))
        # token cosine after removing the mean sequence: 0 = no better than the mean, 1 = exact
        cos = F.cosine_similarity((pred - self.seq_mean).flatten(1), (y - self.seq_mean).flatten(1), dim=-1)
        return {"seq_rel_mse": rel_mse, "seq_centred_cosine": float(cos.mean()),
                "norm_ratio": float(pred.norm(dim=-1).mean() / y.norm(dim=-1).mean().clamp_min(1e-12))}

    # ------------------------------------------------------------------ compatibility, I/O

    def check_compatible(self, **encoders) -> None:
        """Raise IncompatibleBridgeError unless the given encoders are the ones it was trained for."""
        check_compatible(self.config, **encoders)

    def _weights_metadata(self) -> dict[str, str]:
        c = self.config
        return {"model_type": MODEL_TYPE, "clap_model": c.clap_model, "sd_model": c.sd_model, "out_dim": str(c.out_dim),
                "target": c.target}

    @classmethod
    def _from_config(cls, cfg_path: Path, raw: dict) -> "ConditioningBridge":
        try:
            return cls(BridgeConfig.from_dict(raw))
        except (TypeError, BridgeConfigError) as e:
            raise CheckpointError(f"{cfg_path}: {e}") from e

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, clap_model: str | None = None,
                        sd_model: str | None = None, out_dim: int | None = None,
                        map_location: str | torch.device = "cpu") -> "ConditioningBridge":
        """Load a saved bridge; the keyword ids/dims (when given) must be compatible with it."""
        return cls._load_pretrained(
            directory, lambda m: m.check_compatible(clap_model=clap_model, sd_model=sd_model, out_dim=out_dim),
            map_location)

    # ------------------------------------------------------------------ validation helpers

    def _predict(self, x: torch.Tensor, modality: str | None) -> torch.Tensor:
        """The forward pass in eval mode (no dropout), leaving the training flag as it was."""
        was_training = self.training
        try:
            return self.eval()(x, modality)
        finally:
            self.train(was_training)

    def _modality_index(self, modality: str) -> int:
        if modality not in MODALITIES:
            raise BridgeConfigError(f"modality must be one of {MODALITIES}, got {modality!r}")
        return MODALITIES.index(modality)

    def _check_x(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.config.in_dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise BridgeConfigError(
                f"bridge expects CLAP latents of shape [B, {self.config.in_dim}] "
                f"(from {self.config.clap_model}), got {shape}")
        if not x.is_floating_point() or not torch.isfinite(x).all():
            raise BridgeConfigError("CLAP latents must be finite floating-point numbers (got NaN/inf or ints)")

    def _check_pairs(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._check_x(x)
        c = self.config
        if y.ndim != 3 or tuple(y.shape[1:]) != (c.seq_len, c.out_dim):
            raise BridgeConfigError(
                f"caption encodings must have shape [B, {c.seq_len}, {c.out_dim}] "
                f"(prompt_embeds of {c.sd_model}), got {tuple(y.shape)}")
        if x.shape[0] != y.shape[0]:
            raise BridgeConfigError(f"x and y must be row-aligned pairs, got {x.shape[0]} and {y.shape[0]} rows")
