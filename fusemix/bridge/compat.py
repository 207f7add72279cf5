"""Which encoders a bridge may be used with: its CLAP, and SD text encoders of its family."""
from __future__ import annotations

from ..checkpoint import CheckpointError
from ..conventions import same_model

# SD checkpoints of one family share the same frozen text encoder (model cards: SD 1.x use OpenAI CLIP
# ViT-L/14; SD 2.x and sd-turbo OpenCLIP ViT-H/14), so a bridge fits them all. Unlisted ids fit themselves.
TEXT_ENCODER_FAMILIES: dict[str, tuple[str, ...]] = {
    "clip-vit-l-14": ("openai/clip-vit-large-patch14", "CompVis/stable-diffusion-v1-4",
                      "runwayml/stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-v1-5",
                      "benjamin-paine/stable-diffusion-v1-5"),
    "openclip-vit-h-14": ("stabilityai/stable-diffusion-2", "stabilityai/stable-diffusion-2-base",
                          "stabilityai/stable-diffusion-2-1", "stabilityai/stable-diffusion-2-1-base",
                          "stabilityai/sd-turbo"),
}


class BridgeConfigError(ValueError):
    """A bridge configuration or input that cannot work, naming the allowed values."""


class IncompatibleBridgeError(CheckpointError):
    """The bridge was trained for other encoders (another CLAP, another SD text encoder or width)."""


def text_encoder_family(model_id: str) -> str:
    """The family name of an SD repo / text-encoder id, or the id itself when unknown."""
    norm = model_id.strip().rstrip("/")
    return next((family for family, members in TEXT_ENCODER_FAMILIES.items() if norm in members), norm)


def check_compatible(c, *, clap_model: str | None = None, sd_model: str | None = None, out_dim: int | None = None,
                     seq_len: int | None = None, in_dim: int | None = None) -> None:
    """Raise IncompatibleBridgeError unless the given encoders are the ones config ``c`` was trained for:
    the same CLAP (id or local folder), an SD text encoder of the same family, the same widths."""
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
    if sd_model is not None and not same_model(sd_model, c.sd_model) and \
            text_encoder_family(sd_model) != text_encoder_family(c.sd_model):
        raise IncompatibleBridgeError(
            f"bridge was trained on the text encoder of {c.sd_model!r} "
            f"(family {text_encoder_family(c.sd_model)!r}), not {sd_model!r}: its prompt_embeds would be "
            f"meaningless to that pipeline")
    if clap_model is not None and not same_model(clap_model, c.clap_model):
        raise IncompatibleBridgeError(f"bridge was trained on latents of CLAP {c.clap_model!r}, not {clap_model!r}")
