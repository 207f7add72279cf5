"""ConditioningBridge: a CLAP latent -> the ``prompt_embeds`` sequence a Stable Diffusion UNet reads.

The SD text encoder is frozen; its encodings of captions are the regression targets, so the
bridge learns to *speak the text encoder's language* and any diffusers SD pipeline of the same
text-encoder family can be conditioned on a sound. Three output heads, compared on the same
held-out data in ``benchmarks/bridge_heads.py`` (numbers in ``docs/audio_to_image.md``):

- ``direct``:  residual MLP -> Linear(in_dim, T*D), the whole sequence at once;
- ``lowrank``: residual MLP -> ``rank`` coefficients of a PCA basis fitted on caption encodings,
  so every output lies in the span of real caption encodings (``initialize_from_data`` fits it);
- ``decoder``: a small transformer decoder whose T learned queries attend to a few memory tokens
  made from the latent.

All heads predict ``seq_mean + scale * head(x)``: the dataset's mean caption encoding plus a
residual in units of the targets' standard deviation, so training starts at the right scale.

Loss (``training_loss``) = ``contrastive_weight`` * symmetric InfoNCE between *pooled* bridge
outputs and pooled caption encodings (other captions of the batch are the negatives)
+ ``regression_weight`` * sequence MSE divided by the targets' variance (a fraction of variance
unexplained, so 1.0 means "predicts the mean"). Pooling = mean over tokens 1..T-1 minus the
dataset's mean pooled vector, L2-normalised: token 0 (BOS) is identical for every prompt in a
causal CLIP text encoder, the EOS position depends on the prompt's length (unknown for a sound),
and without centering every pooled vector shares one large common direction.

Inputs are centred and scaled before the head: ``(x - mean) / input_scale`` with statistics of
the training latents (CLAP embeddings share one large common direction; the class information is
in what is left). Captions-only training (route b): train on CLAP *text* latents, use CLAP
*audio* latents at inference. CLAP's two towers share a space but with a modality gap, so the
bridge can store the mean latent of each tower (``modality_means``) and centre an input on its
own tower's mean (mean-centering correction); without it, audio is centred on the text mean.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .adapter import Adapter
from .checkpoint import CheckpointError, load_state_strict, read_model_config, read_safetensors
from .io import atomic_save_safetensors, atomic_write_json
from .loss import ContrastiveLoss

MODEL_TYPE = "fusemix.ConditioningBridge"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
HEADS = ("direct", "lowrank", "decoder")
MODALITIES = ("audio", "text")
TRAIN_MODALITIES = ("audio", "text", "both")

# Text-encoder families: SD checkpoints in one family share the *same frozen text encoder*
# weights, so a bridge trained against one is valid for all of them. From the model cards:
# SD 1.x all use OpenAI CLIP ViT-L/14; SD 2.x and sd-turbo (distilled from SD 2.1) use
# OpenCLIP ViT-H/14. Ids not listed here are only compatible with themselves.
TEXT_ENCODER_FAMILIES: dict[str, tuple[str, ...]] = {
    "clip-vit-l-14": (
        "openai/clip-vit-large-patch14",
        "CompVis/stable-diffusion-v1-4",
        "runwayml/stable-diffusion-v1-5",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "benjamin-paine/stable-diffusion-v1-5",
    ),
    "openclip-vit-h-14": (
        "stabilityai/stable-diffusion-2",
        "stabilityai/stable-diffusion-2-base",
        "stabilityai/stable-diffusion-2-1",
        "stabilityai/stable-diffusion-2-1-base",
        "stabilityai/sd-turbo",
    ),
}


class BridgeConfigError(ValueError):
    """A bridge configuration or input that cannot work, naming the allowed values."""


class IncompatibleBridgeError(CheckpointError):
    """The bridge was trained for other encoders (another CLAP, another SD text encoder or width)."""


def text_encoder_family(model_id: str) -> str:
    """The family name of an SD repo / text-encoder id, or the id itself when unknown."""
    norm = model_id.strip().rstrip("/")
    for family, members in TEXT_ENCODER_FAMILIES.items():
        if norm in members:
            return family
    return norm


ENCODER_KINDS = ("clap-audio", "clap-text", "sd-text")


def split_encoder_spec(spec: str) -> tuple[str | None, str]:
    """``"clap-audio:laion/clap-htsat-unfused"`` -> ``("clap-audio", "laion/clap-htsat-unfused")``;
    a bare id or path -> ``(None, spec)`` (latent files name encoders as KIND:MODEL_ID)."""
    kind, sep, rest = str(spec).partition(":")
    if sep and kind in ENCODER_KINDS and rest:
        return kind, rest
    return None, str(spec)


def combine_clap_towers(parts) -> "LatentPairs":
    """Route (c): latent pairs from CLAP's audio tower and from its text tower as one training set.

    Every part must map the same CLAP checkpoint's latents (``clap-audio:ID`` / ``clap-text:ID``) to
    the same SD text encoder's sequences; items are renumbered and ``x_modality`` becomes
    ``"audio+text"`` when both towers are present, which :meth:`ConditioningBridge.from_latents`
    reads as ``train_modality="both"``.
    """
    from .latents import LatentPairs

    if not parts:
        raise BridgeConfigError("no latent pairs to combine")
    first = parts[0]
    _, clap_id = split_encoder_spec(first.x_encoder)
    towers = []
    for i, p in enumerate(parts):
        kind, pid = split_encoder_spec(p.x_encoder)
        if kind not in ("clap-audio", "clap-text") or not _same_model(pid, clap_id):
            raise BridgeConfigError(
                f"latent set {i}: x comes from {p.x_encoder!r}; combined sets must all come from the towers "
                f"of one CLAP checkpoint (clap-audio:{clap_id} or clap-text:{clap_id})")
        if p.y_encoder != first.y_encoder or p.y.shape[1:] != first.y.shape[1:] or p.x.shape[1] != first.x.shape[1]:
            raise BridgeConfigError(
                f"latent set {i} ({p.x_encoder} -> {p.y_encoder}, x {tuple(p.x.shape)}, y {tuple(p.y.shape)}) "
                f"does not match set 0 ({first.x_encoder} -> {first.y_encoder}, x {tuple(first.x.shape)}, "
                f"y {tuple(first.y.shape)})")
        towers.append(kind.removeprefix("clap-"))
    offsets = torch.tensor([0] + [p.x.shape[0] for p in parts]).cumsum(0)
    names = sorted(set(towers))
    return LatentPairs(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]),
                       torch.cat([p.item_of + int(o) for p, o in zip(parts, offsets)]),
                       "+".join(names), first.y_modality, first.x_encoder, first.y_encoder)


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return False


@dataclass
class BridgeConfig:
    """Everything needed to rebuild a bridge and to refuse the wrong encoders."""

    clap_model: str = "laion/clap-htsat-unfused"  # CLAP whose latents are the input
    sd_model: str = "stabilityai/sd-turbo"  # SD repo (or text-encoder id) whose prompt_embeds are the output
    in_dim: int = 512  # CLAP projection width
    seq_len: int = 77  # tokenizer.model_max_length of the SD text encoder
    out_dim: int = 1024  # SD text-encoder hidden size (768 for SD 1.x, 1024 for SD 2.x / sd-turbo)
    head: str = "lowrank"  # measured winner of benchmarks/bridge_heads.py (docs/audio_to_image.md)
    depth: int = 2
    expansion: int = 4
    dropout: float = 0.6  # measured: +5 R@1 points over 0.1 at equal sequence error (docs/audio_to_image.md)
    rank: int = 128  # lowrank head: number of basis sequences
    decoder_dim: int = 256  # decoder head: model width
    decoder_layers: int = 2
    decoder_heads: int = 4
    memory_tokens: int = 8
    contrastive_weight: float = 1.0
    regression_weight: float = 0.3  # measured: benchmarks/bridge_heads.py --sweep-weights (docs/audio_to_image.md)
    init_temperature: float = 0.07
    train_modality: str = "audio"  # which CLAP tower produced the training latents: audio, text or both
    extra: dict = field(default_factory=dict)  # free-form provenance: data, steps, metrics

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        problems = []
        if self.head not in HEADS:
            problems.append(f"head={self.head!r} (choose one of {HEADS})")
        if self.train_modality not in TRAIN_MODALITIES:
            problems.append(f"train_modality={self.train_modality!r} (choose one of {TRAIN_MODALITIES})")
        for name in ("in_dim", "seq_len", "out_dim", "rank", "decoder_dim", "decoder_layers",
                     "decoder_heads", "memory_tokens", "expansion"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be >= 1)")
        if self.depth < 0:
            problems.append(f"depth={self.depth} (must be >= 0)")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout} (allowed range [0, 1))")
        if self.decoder_dim % max(self.decoder_heads, 1):
            problems.append(f"decoder_dim={self.decoder_dim} must be a multiple of decoder_heads={self.decoder_heads}")
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
        unknown = sorted(set(d) - known - {"model_type"})
        if unknown:
            raise CheckpointError(f"bridge config has unknown fields {unknown}; written by a newer fusemix?")
        return cls(**{k: v for k, v in d.items() if k in known})


# --------------------------------------------------------------------------- heads


class DirectHead(nn.Module):
    """Residual MLP straight to all T*D numbers; simple, but T*D*in_dim parameters."""

    def __init__(self, c: BridgeConfig):
        super().__init__()
        self.seq_len, self.out_dim = c.seq_len, c.out_dim
        self.mlp = Adapter(c.in_dim, c.seq_len * c.out_dim, c.depth, c.expansion, c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).view(x.shape[0], self.seq_len, self.out_dim)


class LowRankHead(nn.Module):
    """Residual MLP to ``rank`` whitened coefficients of a frozen PCA basis of caption encodings."""

    def __init__(self, c: BridgeConfig):
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
        rank = self.basis.shape[0]
        q = min(rank, n, centred.shape[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, s, v = torch.svd_lowrank(centred, q=min(q + 8, n, centred.shape[1]), niter=3)
        self.basis.zero_()
        self.basis_scale.zero_()
        self.basis[:q] = v[:, :q].t()
        self.basis_scale[:q] = s[:q] / math.sqrt(max(n - 1, 1))
        total = centred.pow(2).sum().clamp_min(1e-12)
        return float(s[:q].pow(2).sum() / total)


class DecoderHead(nn.Module):
    """T learned queries cross-attend to ``memory_tokens`` tokens built from the latent."""

    def __init__(self, c: BridgeConfig):
        super().__init__()
        self.m, self.d = c.memory_tokens, c.decoder_dim
        self.memory = Adapter(c.in_dim, c.memory_tokens * c.decoder_dim, c.depth, c.expansion, c.dropout)
        self.queries = nn.Parameter(torch.randn(c.seq_len, c.decoder_dim) * 0.02)
        layer = nn.TransformerDecoderLayer(c.decoder_dim, c.decoder_heads, c.expansion * c.decoder_dim,
                                           dropout=c.dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, c.decoder_layers)
        self.norm = nn.LayerNorm(c.decoder_dim)
        self.out = nn.Linear(c.decoder_dim, c.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem = self.memory(x).view(x.shape[0], self.m, self.d)
        q = self.queries.unsqueeze(0).expand(x.shape[0], -1, -1)
        return self.out(self.norm(self.decoder(q, mem)))


_HEAD_CLASSES = {"direct": DirectHead, "lowrank": LowRankHead, "decoder": DecoderHead}


# --------------------------------------------------------------------------- the bridge


class ConditioningBridge(nn.Module):
    """CLAP latent [B, in_dim] -> prompt_embeds [B, seq_len, out_dim] for a diffusers SD pipeline."""

    def __init__(self, config: BridgeConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config
        self.head = _HEAD_CLASSES[c.head](c)
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

    requires_data_init = True  # train.py: call initialize_from_data(x_train, y_train) before training

    @classmethod
    def from_latents(cls, pairs, **overrides) -> "ConditioningBridge":
        """Build a bridge for a ``LatentPairs`` whose ``y`` is [M, T, D] SD caption encodings."""
        if pairs.y.ndim != 3:
            raise BridgeConfigError(
                f"a conditioning bridge needs y latents of shape [M, T, D] (SD prompt_embeds), got "
                f"{tuple(pairs.y.shape)}; extract them with the 'sd-text' encoder")
        x_kind, clap_id = split_encoder_spec(pairs.x_encoder)
        _, sd_id = split_encoder_spec(pairs.y_encoder)
        x_mod = f"{pairs.x_modality} {x_kind or ''}".lower()
        modality = ("both" if "text" in x_mod and "audio" in x_mod else "text" if "text" in x_mod
                    else "audio" if "audio" in x_mod else None)
        base = dict(clap_model=clap_id, sd_model=sd_id, in_dim=int(pairs.x.shape[1]),
                    seq_len=int(pairs.y.shape[1]), out_dim=int(pairs.y.shape[2]))
        if modality is not None:
            base["train_modality"] = modality
        elif "train_modality" not in overrides:
            raise BridgeConfigError(
                f"cannot tell which CLAP tower produced x (x_modality={pairs.x_modality!r}); "
                f"pass train_modality= one of {TRAIN_MODALITIES}")
        fixed = {"in_dim", "seq_len", "out_dim"} & set(overrides)
        if fixed:
            raise BridgeConfigError(f"{sorted(fixed)} come from the latent file's shapes and cannot be overridden")
        return cls(BridgeConfig(**{**base, **overrides}))

    @torch.no_grad()
    def initialize_from_data(self, x: torch.Tensor, y: torch.Tensor, max_rows: int = 4096, seed: int = 0) -> dict:
        """Fit the target statistics (and the low-rank basis) on training data; returns what it measured.

        Uses at most ``max_rows`` rows (a seeded random subset) so it stays cheap on big caches.
        """
        self._check_x(x)
        self._check_y(y)
        if x.shape[0] != y.shape[0]:
            raise BridgeConfigError(f"x and y must be row-aligned pairs, got {x.shape[0]} and {y.shape[0]} rows")
        g = torch.Generator().manual_seed(seed)
        if y.shape[0] > max_rows:
            idx = torch.randperm(y.shape[0], generator=g)[:max_rows]
            x, y = x[idx], y[idx]
        dev = self.seq_mean.device
        y = y.to(dev, torch.float32)
        mean = y.mean(0)
        centred = y - mean
        self.seq_mean.copy_(mean)
        self.target_std.fill_(float(centred.pow(2).mean().sqrt().clamp_min(1e-8)))
        self.pool_center.copy_(y[:, 1:].mean(1).mean(0))
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
    def set_modality_mean(self, modality: str, latents: torch.Tensor) -> None:
        """Record the mean CLAP latent of one tower (e.g. of unlabelled audio for route b)."""
        i = self._modality_index(modality)
        self._check_x(latents)
        self.modality_means[i] = latents.to(self.modality_means.device, torch.float32).mean(0)
        self.modality_counts[i] = latents.shape[0]

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor, modality: str | None = None) -> torch.Tensor:
        """prompt_embeds [B, T, D] for CLAP latents [B, in_dim] of the given tower.

        ``modality`` (audio or text) names the tower ``x`` came from; when that tower's mean is
        known (``set_modality_mean``) the input is centred on it (the modality-gap correction).
        """
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
        """L2-normalised, centred mean of tokens 1..T-1 (see the module docstring for why)."""
        return F.normalize(seq[:, 1:].float().mean(1) - self.pool_center.float(), dim=-1)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss on one (already FuseMix-mixed) batch of CLAP latents and caption encodings."""
        self._check_x(x)
        self._check_y(y)
        if x.shape[0] != y.shape[0]:
            raise BridgeConfigError(f"x and y must be row-aligned pairs, got {x.shape[0]} and {y.shape[0]} rows")
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
        was_training = self.training
        self.eval()
        try:
            za = torch.cat([self.pool(self(x[i:i + chunk], modality)) for i in range(0, x.shape[0], chunk)])
            zb = torch.cat([self.pool(y[i:i + chunk].to(self.seq_mean.device)) for i in range(0, y.shape[0], chunk)])
        finally:
            self.train(was_training)
        return za, zb

    @torch.no_grad()
    def sequence_metrics(self, x: torch.Tensor, y: torch.Tensor, modality: str | None = None) -> dict[str, float]:
        """How close predicted sequences are to the targets: relative MSE and mean token cosine."""
        was_training = self.training
        self.eval()
        try:
            pred = self(x, modality).float()
        finally:
            self.train(was_training)
        y = y.to(pred.device, torch.float32)
        rel_mse = float((pred - y).pow(2).mean() / (y - self.seq_mean).pow(2).mean().clamp_min(1e-12))
        # token cosine after removing the mean sequence: 0 = no better than the mean, 1 = exact
        cos = F.cosine_similarity((pred - self.seq_mean).flatten(1), (y - self.seq_mean).flatten(1), dim=-1)
        return {"seq_rel_mse": rel_mse, "seq_centred_cosine": float(cos.mean()),
                "norm_ratio": float(pred.norm(dim=-1).mean() / y.norm(dim=-1).mean().clamp_min(1e-12))}

    # ------------------------------------------------------------------ compatibility, I/O

    def check_compatible(self, *, clap_model: str | None = None, sd_model: str | None = None,
                         out_dim: int | None = None, seq_len: int | None = None, in_dim: int | None = None) -> None:
        """Raise IncompatibleBridgeError unless the given encoders are the ones it was trained for.

        SD ids match when they are equal, name the same local directory, or belong to one
        text-encoder family (``TEXT_ENCODER_FAMILIES``); CLAP ids must be equal (or the same path).
        """
        c = self.config
        if out_dim is not None and int(out_dim) != c.out_dim:
            raise IncompatibleBridgeError(
                f"bridge outputs {c.out_dim}-d prompt_embeds (trained for {c.sd_model}), but this pipeline's "
                f"text encoder is {out_dim}-d: another Stable Diffusion family; use a bridge trained for it")
        if seq_len is not None and int(seq_len) != c.seq_len:
            raise IncompatibleBridgeError(
                f"bridge outputs {c.seq_len} tokens (trained for {c.sd_model}) but the pipeline expects {seq_len}")
        if in_dim is not None and int(in_dim) != c.in_dim:
            raise IncompatibleBridgeError(
                f"bridge reads {c.in_dim}-d CLAP latents of {c.clap_model}, the given CLAP gives {in_dim}-d")
        if sd_model is not None and not _same_model(sd_model, c.sd_model) and \
                text_encoder_family(sd_model) != text_encoder_family(c.sd_model):
            raise IncompatibleBridgeError(
                f"bridge was trained on the text encoder of {c.sd_model!r} "
                f"(family {text_encoder_family(c.sd_model)!r}), not {sd_model!r}: its prompt_embeds would be "
                f"meaningless to that pipeline")
        if clap_model is not None and not _same_model(clap_model, c.clap_model):
            raise IncompatibleBridgeError(
                f"bridge was trained on latents of CLAP {c.clap_model!r}, not {clap_model!r}")

    def save_pretrained(self, directory: str | Path) -> Path:
        """model.safetensors then config.json (config last: its presence marks a complete save)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"format": "pt", "model_type": MODEL_TYPE, "clap_model": self.config.clap_model,
                "sd_model": self.config.sd_model, "out_dim": str(self.config.out_dim)}
        atomic_save_safetensors(directory / WEIGHTS_NAME, self.state_dict(), meta)
        atomic_write_json(directory / CONFIG_NAME, self.config.to_dict())
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, clap_model: str | None = None,
                        sd_model: str | None = None, out_dim: int | None = None,
                        map_location: str | torch.device = "cpu") -> "ConditioningBridge":
        """Load a saved bridge; the keyword ids/dims (when given) must be compatible with it."""
        directory = Path(directory)
        cfg_path, raw = read_model_config(directory, CONFIG_NAME, MODEL_TYPE)
        try:
            config = BridgeConfig.from_dict(raw)
        except (TypeError, BridgeConfigError) as e:
            raise CheckpointError(f"{cfg_path}: {e}") from e
        model = cls(config)
        model.check_compatible(clap_model=clap_model, sd_model=sd_model, out_dim=out_dim)
        load_state_strict(model, read_safetensors(directory / WEIGHTS_NAME), str(directory / WEIGHTS_NAME))
        return model.to(map_location).eval()

    def describe(self) -> dict:
        c = self.config
        return {"head": c.head, "clap_model": c.clap_model, "sd_model": c.sd_model, "in_dim": c.in_dim,
                "seq_len": c.seq_len, "out_dim": c.out_dim, "train_modality": c.train_modality,
                "initialized": bool(self.initialized),
                "modality_means": [m for m, n in zip(MODALITIES, self.modality_counts.tolist()) if n > 0],
                "parameters": sum(p.numel() for p in self.parameters())}

    # ------------------------------------------------------------------ validation helpers

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

    def _check_y(self, y: torch.Tensor) -> None:
        c = self.config
        if y.ndim != 3 or tuple(y.shape[1:]) != (c.seq_len, c.out_dim):
            raise BridgeConfigError(
                f"caption encodings must have shape [B, {c.seq_len}, {c.out_dim}] "
                f"(prompt_embeds of {c.sd_model}), got {tuple(y.shape)}")


# --------------------------------------------------------------------------- CLI: route (b)'s audio mean

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


def set_audio_mean_main(argv=None) -> int:
    """``python -m fusemix.bridge BRIDGE_DIR (--audio DIR_OR_FILE ... | --latents FILE)``

    Record the mean CLAP audio latent in a bridge trained on captions only (route b), so audio is
    centred on its own tower's mean at inference. Unlabelled audio is enough; the bridge is re-saved
    in place. ``--latents`` takes a latent-pair file whose ``x`` holds CLAP audio latents.
    """
    import argparse

    p = argparse.ArgumentParser(description=set_audio_mean_main.__doc__.split("\n")[0])
    p.add_argument("bridge", help="a saved ConditioningBridge directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", nargs="+", help="audio files or folders (searched recursively)")
    src.add_argument("--latents", help="latent-pair safetensors file whose x are CLAP audio latents")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    bridge = ConditioningBridge.from_pretrained(args.bridge)
    if args.latents:
        from .latents import load_latent_pairs

        pairs = load_latent_pairs(args.latents)
        kind, clap_id = split_encoder_spec(pairs.x_encoder)
        if kind not in (None, "clap-audio") or "audio" not in str(pairs.x_modality):
            raise BridgeConfigError(
                f"{args.latents} holds {pairs.x_modality} latents ({pairs.x_encoder}), not CLAP audio")
        bridge.check_compatible(clap_model=clap_id)
        latents = pairs.x.float()
    else:
        from .encoders import load_encoder

        files = []
        for item in map(Path, args.audio):
            if not item.exists():
                raise BridgeConfigError(f"{item} does not exist")
            if item.is_dir():
                files += sorted(f for f in item.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
            else:
                files.append(item)
        if not files:
            raise BridgeConfigError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found in {args.audio}")
        encoder = load_encoder("clap-audio", bridge.config.clap_model, device=args.device)
        # In slices: encode() holds every prepared item (a 10 s clip's padded waveform is 1.9 MB).
        step = 256
        latents = torch.cat([encoder.encode([str(f) for f in files[i:i + step]], progress=False)
                             for i in tqdm(range(0, len(files), step), desc="CLAP audio", unit="slice",
                                           disable=len(files) <= step)])
    bridge.set_modality_mean("audio", latents)
    bridge.save_pretrained(args.bridge)
    print(f"recorded the mean of {latents.shape[0]} CLAP audio latents in {args.bridge}")
    return 0


if __name__ == "__main__":
    import sys

    try:
        sys.exit(set_audio_mean_main())
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
