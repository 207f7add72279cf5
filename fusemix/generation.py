"""AudioToImage: a sound -> an image, through CLAP and an unmodified diffusers Stable Diffusion pipeline.

Routes to ``prompt_embeds``: ``bridge`` (CLAP latent -> ConditioningBridge) or ``captions`` (the nearest
captions of a CaptionBank, returned). Deterministic under a seed; a NaN or all-black output is an error.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bridge import ConditioningBridge, IncompatibleBridgeError
from .caption_bank import CaptionBank, CaptionMatch
from .checkpoint import from_pretrained_safetensors
from .conventions import pick_device

STEPS_RANGE = (1, 100)
GUIDANCE_RANGE = (0.0, 20.0)
SIZE_RANGE = (64, 1024)
TOP_K_RANGE = (1, 10)
MAX_SEED = 2**63 - 1
BLACK_LEVEL = 2.0 / 255.0  # an image whose brightest pixel is below this is "all black"

# name -> diffusers scheduler class name; "default" keeps the checkpoint's own scheduler.
SCHEDULERS = {"default": None, "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler",
              "euler_a": "EulerAncestralDiscreteScheduler", "dpm++": "DPMSolverMultistepScheduler",
              "unipc": "UniPCMultistepScheduler", "pndm": "PNDMScheduler", "lcm": "LCMScheduler"}


class GenerationParamError(ValueError):
    """A generation parameter outside its allowed range (the message names the range)."""


class GenerationError(RuntimeError):
    """The pipeline ran but gave no usable image (NaN, all black, flagged by the safety checker)."""


@dataclass
class GenerationParams:
    """Validated knobs of one generation."""

    steps: int = 2
    guidance: float = 0.0
    seed: int = 0
    height: int | None = None  # None: the pipeline's default size
    width: int | None = None
    scheduler: str = "default"
    negative_prompt: str = ""
    steer_prompt: str | None = None  # e.g. "an oil painting": blended with the sound's conditioning
    steer_weight: float = 0.0  # 0 = the sound only, 1 = the text prompt only
    top_k: int = 3  # captions route: how many matched captions to return

    def validate(self) -> "GenerationParams":
        def num(name, v, lo, hi, integer):
            ok_type = isinstance(v, (int, np.integer)) if integer else isinstance(v, (int, float, np.number))
            if isinstance(v, bool) or not ok_type or not (math.isfinite(float(v)) and lo <= v <= hi):
                kind = "an integer" if integer else "a number"
                raise GenerationParamError(f"{name} must be {kind} in [{lo}, {hi}], got {v!r}")

        for name, lo, hi, integer in (("steps", *STEPS_RANGE, True), ("guidance", *GUIDANCE_RANGE, False),
                                      ("seed", 0, MAX_SEED, True), ("steer_weight", 0.0, 1.0, False),
                                      ("top_k", *TOP_K_RANGE, True)):
            num(name, getattr(self, name), lo, hi, integer)
        for name in ("height", "width"):
            v = getattr(self, name)
            if v is not None:
                num(name, v, *SIZE_RANGE, True)
            if v is not None and v % 8:
                raise GenerationParamError(
                    f"{name} must be a multiple of 8 in [{SIZE_RANGE[0]}, {SIZE_RANGE[1]}], got {v}")
        if self.scheduler not in SCHEDULERS:
            raise GenerationParamError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {self.scheduler!r}")
        if not isinstance(self.negative_prompt, str):
            raise GenerationParamError("negative_prompt must be a string")
        if self.steer_prompt is not None and not isinstance(self.steer_prompt, str):
            raise GenerationParamError("steer_prompt must be a string or None")
        if self.steer_weight > 0 and not (self.steer_prompt or "").strip():
            raise GenerationParamError("steer_weight > 0 needs a non-empty steer_prompt")
        return self


@dataclass
class GenerationResult:
    image: Any  # PIL.Image.Image
    route: str  # "bridge", "captions" or "text"
    captions: list[CaptionMatch] | None  # matched captions (captions route), else None
    timings: dict[str, float]  # seconds: audio, clap, condition, pipeline, total
    params: dict
    notes: list[str] = field(default_factory=list)  # e.g. which parts are random stand-ins


def default_params_for(model_id: str, standin: bool = False) -> dict:
    """Steps/guidance per checkpoint kind: turbo models are distilled for 1-4 steps, no CFG; stand-ins: cheapest."""
    mid = str(model_id).lower()
    if "turbo" in mid or "lcm" in mid:
        return {"steps": 2, "guidance": 0.0}
    if standin:
        return {"steps": 2, "guidance": 1.0}
    return {"steps": 20, "guidance": 7.0, "scheduler": "dpm++"}


class AudioToImage:
    """CLAP audio encoder + (bridge | caption bank) + a diffusers SD pipeline; ``standin=True`` labels results."""

    def __init__(self, pipeline, audio_encoder, *, bridge: ConditioningBridge | None = None,
                 caption_bank: CaptionBank | None = None, defaults: dict | None = None, standin: bool = False):
        if bridge is None and caption_bank is None:
            raise ValueError("AudioToImage needs a bridge, a caption bank, or both")
        if hasattr(pipeline, "text_encoder_2"):
            raise IncompatibleBridgeError(
                "this pipeline has two text encoders (SDXL-style); AudioToImage supports single-text-encoder "
                "StableDiffusionPipeline checkpoints (SD 1.x, SD 2.x, sd-turbo)")
        self.pipe = pipeline
        self.audio_encoder = audio_encoder
        self.bridge = None
        self.caption_bank = caption_bank
        self.sd_model = str(getattr(pipeline, "name_or_path", "") or "unknown")
        self.standin = bool(standin)
        # read once: DiffusionPipeline.device walks every module's parameters on each access
        self.device = pipeline.device
        self.dtype = pipeline.text_encoder.dtype
        self.out_dim = int(pipeline.text_encoder.config.hidden_size)
        self.seq_len = int(pipeline.tokenizer.model_max_length)
        cross = getattr(pipeline.unet.config, "cross_attention_dim", self.out_dim)
        if isinstance(cross, int) and cross != self.out_dim:
            raise IncompatibleBridgeError(
                f"pipeline's UNet cross-attends to {cross}-d tokens but its text encoder gives {self.out_dim}-d")
        if bridge is not None:
            self.set_bridge(bridge)
        if caption_bank is not None and caption_bank.model_id != audio_encoder.model_id:
            raise IncompatibleBridgeError(
                f"caption bank was embedded with CLAP {caption_bank.model_id!r}, but audio is encoded with "
                f"{audio_encoder.model_id!r}: the two must be one CLAP model")
        self.defaults = {**default_params_for(self.sd_model, self.standin), **(defaults or {})}
        self._schedulers: dict[str, Any] = {"default": pipeline.scheduler}
        self._lock = threading.Lock()
        self._uncond_cache: dict[str, torch.Tensor] = {}
        pipeline.set_progress_bar_config(disable=True)


    @classmethod
    def from_pretrained(cls, sd_model: str, clap_model: str, *, bridge: str | ConditioningBridge | None = None,
                        caption_bank: bool | str | CaptionBank = True, device: str | None = None,
                        dtype: torch.dtype | None = None, cache_dir: str | None = None,
                        defaults: dict | None = None, standin: bool = False, **pipeline_kwargs) -> "AudioToImage":
        """Load by hub id or local path. ``bridge``: a saved bridge directory or object (None: captions
        only); ``caption_bank``: True (the bundled bank), a bank file, a CaptionBank, or False."""
        from diffusers import StableDiffusionPipeline

        from .encoders import load_encoder

        dev = pick_device(device)
        dt = dtype or (torch.float16 if dev.type == "cuda" else torch.float32)
        pipe = from_pretrained_safetensors(StableDiffusionPipeline, sd_model, dtype=dt, **pipeline_kwargs).to(dev)
        audio = load_encoder("clap-audio", clap_model, device=dev)
        if isinstance(bridge, (str, Path)):
            bridge = ConditioningBridge.from_pretrained(bridge, clap_model=clap_model, sd_model=sd_model)
        if bridge is not None:
            bridge = bridge.to(dev)
        bank = None
        if isinstance(caption_bank, CaptionBank):
            bank = caption_bank
        elif caption_bank:
            path = None if caption_bank is True else caption_bank
            bank = CaptionBank.build(load_encoder("clap-text", clap_model, device=dev), path, cache_dir)
        return cls(pipe, audio, bridge=bridge, caption_bank=bank, defaults=defaults, standin=standin)

    @property
    def routes(self) -> tuple[str, ...]:
        return tuple(r for r, ok in (("bridge", self.bridge is not None), ("captions", self.caption_bank is not None))
                     if ok)

    @property
    def default_size(self) -> int:
        return int(self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor)

    def set_bridge(self, bridge: ConditioningBridge) -> None:
        """Use ``bridge`` from now on (e.g. one trained while the app ran); refused unless it fits."""
        bridge.check_compatible(clap_model=self.audio_encoder.model_id, sd_model=self.sd_model,
                                out_dim=self.out_dim, seq_len=self.seq_len, in_dim=self.audio_encoder.dim)
        self.bridge = bridge.eval()

    def notes(self) -> list[str]:
        """Plain statements about what is not a real trained model, for the UI to show."""
        out = []
        if self.standin:
            out.append("CLAP and Stable Diffusion: tiny RANDOM stand-ins, images are meaningless")
        if self.bridge is not None and not bool(self.bridge.initialized):
            out.append("bridge: never initialised or trained (random weights)")
        return out


    def params(self, **overrides) -> GenerationParams:
        known = {f for f in GenerationParams.__dataclass_fields__}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise GenerationParamError(f"unknown generation parameter(s) {unknown}; known: {sorted(known)}")
        values = {k: v for k, v in self.defaults.items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return GenerationParams(**values).validate()

    def encode_audio(self, audio, sampling_rate: int | None = None) -> torch.Tensor:
        """CLAP audio latent [1, dim]; silent / NaN / unreadable audio raises fusemix.audio.AudioError."""
        from .audio import load_audio

        sr = self.audio_encoder.sample_rate
        limits = getattr(self.audio_encoder, "limits", {})
        wav = load_audio(audio, sr, source_sr=sampling_rate, reject_silent=True, **limits)
        latent = self.audio_encoder.encode([wav], progress=False)
        if not torch.isfinite(latent).all():
            raise GenerationError("CLAP returned NaN/inf for this audio")
        return latent

    def encode_text(self, prompt: str) -> torch.Tensor:
        """prompt_embeds [1, T, D] of a text prompt, by the pipeline's own text encoder."""
        if prompt in self._uncond_cache:
            return self._uncond_cache[prompt]
        with torch.inference_mode():
            emb = self.pipe.encode_prompt(prompt, self.device, 1, False)[0]
        if prompt == "":
            self._uncond_cache[prompt] = emb
        return emb

    def bridge_embeds(self, latent: torch.Tensor) -> torch.Tensor:
        """Bridge output for CLAP audio latents, in the dtype/device the pipeline's text encoder uses."""
        if self.bridge is None:
            raise GenerationParamError(f"no bridge loaded; available routes: {self.routes}")
        dev = self.bridge.seq_mean.device
        with torch.inference_mode():
            emb = self.bridge(latent.to(dev), modality="audio")
        return emb.to(self.device, self.dtype)

    def condition(self, latent: torch.Tensor, route: str, p: GenerationParams):
        """(prompt_embeds, negative_prompt_embeds, matched captions or None) for one audio latent."""
        captions = None
        if route == "bridge":
            cond = self.bridge_embeds(latent)
        else:  # "captions" (generate checked the route against self.routes)
            captions = self.caption_bank.search(latent, k=p.top_k)[0]
            cond = self.encode_text(captions[0].caption)
        if p.steer_weight > 0:
            cond = torch.lerp(cond, self.encode_text(p.steer_prompt).to(cond.dtype), float(p.steer_weight))
        neg = self.encode_text(p.negative_prompt).to(cond.dtype)
        if cond.shape != neg.shape or not torch.isfinite(cond).all():
            raise GenerationError(f"conditioning has shape {tuple(cond.shape)} (expected {tuple(neg.shape)}) "
                                  "or non-finite values")
        return cond, neg, captions

    def _set_scheduler(self, name: str) -> None:
        if name not in self._schedulers:
            import diffusers

            cls = getattr(diffusers, SCHEDULERS[name])
            self._schedulers[name] = cls.from_config(self._schedulers["default"].config)
        self.pipe.scheduler = self._schedulers[name]

    def render(self, cond: torch.Tensor, neg: torch.Tensor, p: GenerationParams):
        """Run the pipeline on ready conditioning; returns a PIL image or raises GenerationError."""
        self._set_scheduler(p.scheduler)
        gen = torch.Generator(device="cpu").manual_seed(int(p.seed))
        size = self.default_size
        with torch.inference_mode():
            out = self.pipe(prompt_embeds=cond, negative_prompt_embeds=neg, num_inference_steps=int(p.steps),
                            guidance_scale=float(p.guidance), height=p.height or size, width=p.width or size,
                            generator=gen, output_type="np")
        img = np.asarray(out.images[0])
        flagged = getattr(out, "nsfw_content_detected", None)
        if flagged and any(flagged):
            raise GenerationError("the pipeline's safety checker replaced the image with a black one; "
                                  "try another seed or sound")
        if not np.isfinite(img).all():
            raise GenerationError("the pipeline produced NaN pixels (fp16 overflow in the VAE? try float32)")
        if float(img.max()) < BLACK_LEVEL:
            raise GenerationError("the pipeline produced an all-black image; refusing to return it as a result")
        return self.pipe.numpy_to_pil(img[None])[0]


    def generate(self, audio, *, route: str | None = None, sampling_rate: int | None = None,
                 **params) -> GenerationResult:
        """Image for a sound (anything ``fusemix.audio.load_audio`` takes). ``params``: the fields of
        :class:`GenerationParams`; unset ones take the checkpoint's defaults."""
        route = route or self.routes[0]
        if route not in self.routes:
            raise GenerationParamError(f"route must be one of {self.routes}, got {route!r}")
        p = self.params(**params)
        t = {}
        t0 = time.perf_counter()
        with self._lock:
            latent = self.encode_audio(audio, sampling_rate)
            t["clap"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            cond, neg, captions = self.condition(latent, route, p)
            t["condition"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            image = self.render(cond, neg, p)
            t["pipeline"] = time.perf_counter() - t2
        t["total"] = time.perf_counter() - t0
        return GenerationResult(image, route, captions, t, asdict(p), self.notes())

    def generate_from_text(self, prompt: str, **params) -> GenerationResult:
        """The same pipeline, seed and settings from a plain text prompt (for comparisons)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise GenerationParamError("prompt must be a non-empty string")
        p = self.params(**params)
        t0 = time.perf_counter()
        with self._lock:
            cond = self.encode_text(prompt)
            if p.steer_weight > 0:
                cond = torch.lerp(cond, self.encode_text(p.steer_prompt), float(p.steer_weight))
            neg = self.encode_text(p.negative_prompt)
            t = {"condition": time.perf_counter() - t0}
            t2 = time.perf_counter()
            image = self.render(cond, neg, p)
            t["pipeline"] = time.perf_counter() - t2
        t["total"] = time.perf_counter() - t0
        return GenerationResult(image, "text", None, t, asdict(p), self.notes())
