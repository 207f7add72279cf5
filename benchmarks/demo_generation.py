"""Seconds per image of the demo's audio -> image generation, in the configuration the demo picks for the device.

The demo's own loader (``demo.models.DemoModels.audio_to_image``: SD pipeline, CLAP, caption bank) and the
defaults it offers (``demo.zerogpu.generation_ranges``): on CUDA that is float16, the checkpoint's full VAE
and sd-turbo's 2 steps at 512 px; on a CPU float32, TAESD and 1 step (unless ``--vae full``). Nothing downloads:

- ``real-arch`` (default): sd-turbo's architecture with RANDOM weights (SD 2.1 UNet, OpenCLIP-H text encoder,
  the full SD VAE; saved once to a temporary folder), so the time is a real one; the CLAP is the tiny stand-in
  (its audio tower is ~12 of the ~4,200 GFLOP of a 512 px image, docs/space.md).
- ``tiny``: the demo's tiny profile (stand-ins at 64 px): a smoke test of the same path, seconds mean nothing.

Needs the demo's loaders but not Gradio. The last line: ``GOAL demo_seconds_per_image: <s> (goal <= 1: ...)``.

    python benchmarks/demo_generation.py                       # CUDA when present
    python benchmarks/demo_generation.py --profile tiny --repeats 1
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import goal_line, machine_line  # noqa: E402

GOAL = 1.0  # seconds per 512 px image on a GPU: what makes a ZeroGPU call feel immediate


def save_random_sd_turbo(path: Path, tokenizer_dir: Path, dev: torch.device) -> Path:
    """sd-turbo's components with random weights (the shapes of benchmarks/generation_overhead.py), saved in
    diffusers' layout; built on ``dev`` (fast on a GPU) and saved in float16 there."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from generation_overhead import ARCHS, TEXT, VAE
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    with torch.device(dev), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**ARCHS["sd-turbo"])
        vae = AutoencoderKL(**VAE)
        text = CLIPTextModel(CLIPTextConfig(max_position_embeddings=77, **TEXT["sd-turbo"]))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="trailing", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae.to(dtype), text_encoder=text.to(dtype), unet=unet.to(dtype),
                                   tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir), scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path)
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", choices=("real-arch", "tiny"), default="real-arch")
    p.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    p.add_argument("--vae", default="auto", help="auto (the demo's choice for the device), full, or a TAESD id")
    p.add_argument("--size", type=int, default=0, help="image side (0: the demo's default for the device)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    from demo import zerogpu
    from demo.models import DemoModels, Resolution, Settings
    from fusemix.audio import load_audio
    from fusemix.generation import GenerationError
    from fusemix.tiny import save_tiny_clap, save_tiny_sd_pipeline

    dev = zerogpu.device(args.device)
    print(machine_line(dev), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["FUSEMIX_CACHE"] = str(tmp / "cache")  # the caption bank's embeddings: never a user's cache
        common = dict(env={}, device=str(dev), vae=args.vae, live_bridge=False, tiny_root=str(tmp / "tiny"),
                      weights=str(tmp / "no-adapters"))
        (tmp / "no-adapters").mkdir()
        if args.profile == "tiny":
            settings, res = Settings.from_env(profile="tiny", **common), Resolution("tiny", "tiny")
        else:
            t0 = time.perf_counter()
            tokenizer = save_tiny_sd_pipeline(tmp / "tiny-sd") / "tokenizer"  # any CLIP tokenizer: timing only
            sd = save_random_sd_turbo(tmp / "sd-turbo-random", tokenizer, dev)
            clap = save_tiny_clap(tmp / "tiny-clap")
            print(f"random sd-turbo architecture built and saved in {time.perf_counter() - t0:.1f} s", flush=True)
            settings = Settings.from_env(profile="real", sd_model=str(sd), clap_model=str(clap),
                                         reference_model=str(clap), **common)
            if settings.vae_id() and not Path(settings.vae_id()).exists():  # TAESD's shape, random, local
                from diffusers import AutoencoderTiny

                AutoencoderTiny().save_pretrained(tmp / "taesd-random")
                settings.vae = str(tmp / "taesd-random")
            res = Resolution("real", "real")
        models = DemoModels(settings, res)
        g = zerogpu.generation_ranges(models.standin, models.device, settings.sd_model)
        size = args.size or g["size"]
        t0 = time.perf_counter()
        a2i = models.audio_to_image()
        print(f"loaded in {time.perf_counter() - t0:.1f} s: UNet {a2i.pipe.unet.dtype}, VAE "
              f"{type(a2i.pipe.vae).__name__}, device {models.device}; {size} px, {g['steps']} step(s), "
              f"guidance {g['guidance']:g}", flush=True)
        wav = load_audio(ROOT / "demo" / "examples" / "bell.wav", a2i.audio_encoder.sample_rate)

        void = set()  # random weights may overflow float16 in the VAE: the work is done, the image is void

        def one(seed: int) -> float:
            t = time.perf_counter()
            try:
                out = a2i.generate(wav, route="captions", sampling_rate=a2i.audio_encoder.sample_rate, seed=seed,
                                   steps=g["steps"], guidance=g["guidance"], height=size, width=size, top_k=3)
                assert out.image.size == (size, size), out.image.size
            except GenerationError as exc:  # raised after the decode only for these two: the timing stands
                if "NaN pixels" not in str(exc) and "all-black" not in str(exc):
                    raise
                void.add(str(exc))
            if models.device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - t

        first = one(0)  # warm-up: kernels chosen, caches filled
        times = [one(i + 1) for i in range(args.repeats)]
    per_image = statistics.median(times)
    print(f"first image {first:.3f} s; then per image: median {per_image:.3f} s, min {min(times):.3f} s, "
          f"max {max(times):.3f} s over {len(times)} (CLAP + caption bank + text encoder + UNet + VAE decode)")
    for why in sorted(void):
        print(f"note: some images were void (random weights): {why}")
    if args.profile == "tiny":
        print("note: tiny stand-ins: this checks the path, the figure is not the goal's measure")
    print(goal_line("demo_seconds_per_image", per_image, "<=", GOAL))


if __name__ == "__main__":
    main()
