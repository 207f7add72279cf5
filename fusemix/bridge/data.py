"""Training data for a bridge that train.py cannot assemble alone: both CLAP towers as one set."""
from __future__ import annotations

import torch

from ..conventions import kind_of, model_id_of, same_model
from ..latents import LatentPairs
from .compat import BridgeConfigError


def combine_clap_towers(parts) -> LatentPairs:
    """Latent pairs from the audio and text towers of one CLAP checkpoint, mapped to one SD text encoder,
    as one training set (items renumbered; ``x_modality`` "audio+text" reads as ``train_modality="both"``)."""
    if not parts:
        raise BridgeConfigError("no latent pairs to combine")
    first = parts[0]
    clap_id = model_id_of(first.x_encoder)
    towers = []
    for i, p in enumerate(parts):
        kind = kind_of(p.x_encoder)
        if kind not in ("clap-audio", "clap-text") or not same_model(model_id_of(p.x_encoder), clap_id):
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
    return LatentPairs(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]),
                       torch.cat([p.item_of + int(o) for p, o in zip(parts, offsets)]),
                       "+".join(sorted(set(towers))), first.y_modality, first.x_encoder, first.y_encoder)
