"""Tiny, randomly initialised stand-ins for the Hugging Face models fusemix uses.

Tests and the demo's offline "tiny" profile build them, ``save_pretrained`` them and load them back
with the real ``from_pretrained`` code. Each directory holds a ``STANDIN.txt`` marker (:func:`is_standin`).
Builds are deterministic under ``seed`` (the global RNG is forked) and atomic (temporary sibling, renamed).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from .io import usual_permissions

STANDIN_FILE = "STANDIN.txt"

_STANDIN_TEXT = (
    "RANDOM STAND-IN MODEL built by fusemix.tiny ({kind}, seed={seed}).\n"
    "Weights are random: outputs are meaningless. Used for offline tests and the demo's tiny profile.\n"
)

# Small English-ish merges so BPE merging is exercised; every byte stays covered by the alphabet.
_COMMON_PAIRS = [tuple(p) for p in ("th", "he", "an", "in", "er", "on", "re", "at", "en", "or")]


def is_standin(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory written by this module (a random stand-in)."""
    return (Path(path) / STANDIN_FILE).is_file()


def _byte_alphabet() -> list[str]:
    """The 256 byte-level symbols of GPT-2-style BPE, so any text tokenizes without <unk>."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _atomic_build(path: str | os.PathLike, kind: str, seed: int, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmpdir)`` under a fixed seed, then move the result to ``path``."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"refusing to overwrite non-empty directory {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            build(tmp)
        text = _STANDIN_TEXT.format(kind=kind, seed=seed)
        (tmp / STANDIN_FILE).write_text(text)
        (tmp / "README.md").write_text(f"# {kind} (random stand-in)\n\n{text}")
        for p in [tmp, *tmp.rglob("*")]:  # mkdtemp's 0700; safetensors writes 0600 files
            usual_permissions(p)
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _roberta_tokenizer(model_max_length: int):
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(specials + _byte_alphabet()))}
    for a, b in _COMMON_PAIRS:
        vocab.setdefault(a + b, len(vocab))
    return RobertaTokenizer(vocab=vocab, merges=list(_COMMON_PAIRS), model_max_length=model_max_length)


def _clip_tokenizer(model_max_length: int = 77):
    from transformers import CLIPTokenizer

    alphabet = _byte_alphabet()
    vocab = {tok: i for i, tok in enumerate(alphabet + [ch + "</w>" for ch in alphabet])}
    merges = []
    for a, b in _COMMON_PAIRS:
        merges.append((a, b))
        vocab.setdefault(a + b, len(vocab))
        merges.append((a, b + "</w>"))
        vocab.setdefault(a + b + "</w>", len(vocab))
    for tok in ("<|startoftext|>", "<|endoftext|>"):
        vocab[tok] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def _bert_tokenizer(model_max_length: int = 512):
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,;:!?'\"-()/&%$#@+*=")
    words = ["the", "a", "an", "and", "of", "in", "on", "dog", "cat", "man", "woman", "with", "is"]
    vocab_list = specials + chars + ["##" + c for c in chars] + words
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    return BertTokenizer(vocab=vocab, model_max_length=model_max_length)


def save_tiny_clap(path: str | os.PathLike, seed: int = 0) -> Path:
    """A tiny random ``ClapModel`` + ``ClapProcessor``: unfused, with ``laion/clap-htsat-unfused``'s
    feature extractor settings, so the audio path runs exactly as with the real checkpoint."""

    def build(tmp: Path) -> None:
        from transformers import (ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor,
                                  ClapTextConfig)

        tokenizer = _roberta_tokenizer(model_max_length=512)
        text_cfg = ClapTextConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=514, projection_dim=16,
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id)
        audio_cfg = ClapAudioConfig(depths=[1, 1], num_attention_heads=[2, 4], patch_embeds_hidden_size=32,
                                    hidden_size=64, projection_dim=16, enable_fusion=False)
        config = ClapConfig(text_config=text_cfg.to_dict(), audio_config=audio_cfg.to_dict(), projection_dim=16)
        ClapModel(config).eval().save_pretrained(tmp)
        fe = ClapFeatureExtractor(truncation="rand_trunc")
        ClapProcessor(feature_extractor=fe, tokenizer=tokenizer).save_pretrained(tmp)

    return _atomic_build(path, "tiny ClapModel", seed, build)


def _clip_text_config(tokenizer, **extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **extra)


def save_tiny_sd_pipeline(path: str | os.PathLike, seed: int = 0) -> Path:
    """A tiny random diffusers ``StableDiffusionPipeline`` folder (SD's layout, 77 tokens, 64x64 images);
    DDIM with ``steps_offset=1`` so a saved and reloaded pipeline reproduces its images under a seed."""

    def build(tmp: Path) -> None:
        from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
        from transformers import CLIPTextModel

        tokenizer = _clip_tokenizer(model_max_length=77)
        text_encoder = CLIPTextModel(_clip_text_config(tokenizer)).eval()
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,  # latent side: 64 px / vae scale 4
            block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
            norm_num_groups=32)
        vae = AutoencoderKL(  # 3 blocks: vae_scale_factor 4, 64x64 images
            in_channels=3, out_channels=3, block_out_channels=(8, 16, 32), down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
            sample_size=64)
        scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                  set_alpha_to_one=False, steps_offset=1)
        StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                safety_checker=None, feature_extractor=None,
                                requires_safety_checker=False).save_pretrained(tmp)

    return _atomic_build(path, "tiny StableDiffusionPipeline", seed, build)


def save_tiny_image_encoder(path: str | os.PathLike, seed: int = 0) -> Path:
    """A tiny random ``Dinov2Model`` + PIL-based ``BitImageProcessor`` (32x32 input)."""

    def build(tmp: Path) -> None:
        from transformers import Dinov2Config, Dinov2Model
        from transformers.models.bit import BitImageProcessorPil

        cfg = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, image_size=32,
                           patch_size=8)
        Dinov2Model(cfg).eval().save_pretrained(tmp)
        BitImageProcessorPil(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}, do_center_crop=True,
                             do_convert_rgb=True, image_mean=[0.485, 0.456, 0.406],
                             image_std=[0.229, 0.224, 0.225]).save_pretrained(tmp)

    return _atomic_build(path, "tiny Dinov2Model", seed, build)


def save_tiny_sentence_encoder(path: str | os.PathLike, seed: int = 0) -> Path:
    """A tiny random ``BertModel`` + WordPiece ``BertTokenizer`` (lower-case, char-level fallback),
    with sentence-transformers' ``1_Pooling/config.json`` (mean) and ``max_seq_length`` 128."""

    def build(tmp: Path) -> None:
        from transformers import BertConfig, BertModel

        tokenizer = _bert_tokenizer(model_max_length=512)
        cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
        BertModel(cfg).eval().save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # sentence-transformers side files, as real sentence encoders ship them (mean pooling).
        (tmp / "1_Pooling").mkdir()
        pooling = {"word_embedding_dimension": cfg.hidden_size, "pooling_mode_cls_token": False,
                   "pooling_mode_mean_tokens": True}
        (tmp / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
        (tmp / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))

    return _atomic_build(path, "tiny BertModel", seed, build)


def save_tiny_clip(path: str | os.PathLike, seed: int = 0) -> Path:
    """A tiny random ``CLIPModel`` with a PIL image processor (32x32): the stand-in for :mod:`fusemix.reference`."""

    def build(tmp: Path) -> None:
        from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig
        from transformers.models.clip import CLIPImageProcessorPil

        tokenizer = _clip_tokenizer(model_max_length=77)
        vision_cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      image_size=32, patch_size=8, projection_dim=16)
        config = CLIPConfig(text_config=_clip_text_config(tokenizer, projection_dim=16).to_dict(),
                            vision_config=vision_cfg.to_dict(), projection_dim=16)
        CLIPModel(config).eval().save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_center_crop=True,
                              do_convert_rgb=True).save_pretrained(tmp)

    return _atomic_build(path, "tiny CLIPModel", seed, build)


TINY_BUILDERS: dict[str, Callable[..., Path]] = {
    "clap": save_tiny_clap, "sd": save_tiny_sd_pipeline, "image": save_tiny_image_encoder,
    "sentence": save_tiny_sentence_encoder, "clip": save_tiny_clip}
EXTRAS = ("clip",)  # built only when asked for, so the default suite stays what its callers expect


def build_tiny_suite(root: str | os.PathLike, seed: int = 0, extras: tuple[str, ...] = ()) -> dict[str, Path]:
    """Build (or reuse) the tiny stand-ins under ``root`` (plus the ``EXTRAS`` named in ``extras``); returns
    ``{name: dir}``. A directory with the marker (written last) is reused, an incomplete one rebuilt."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(extras) - set(EXTRAS))
    if unknown:
        raise ValueError(f"unknown extra stand-ins {unknown}; known: {list(EXTRAS)}")
    out: dict[str, Path] = {}
    for name, builder in TINY_BUILDERS.items():
        if name in EXTRAS and name not in extras:
            continue
        target = root / name
        if not is_standin(target):
            if target.exists():
                shutil.rmtree(target)
            try:
                builder(target, seed=seed)
            except (FileExistsError, OSError):
                if not is_standin(target):
                    raise
        out[name] = target
    (root / "suite.json").write_text(json.dumps({k: str(v) for k, v in out.items()} | {"seed": seed, "standin": True},
                                                indent=2))
    return out
