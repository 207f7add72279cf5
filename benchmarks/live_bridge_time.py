"""How long the app's start-up bridge takes on this machine, with the real architectures.

CLAP (``ClapConfig()``: HTSAT + RoBERTa-base, the laion/clap-htsat-unfused shape) and the
sd-turbo / SD 2.x text encoder (OpenCLIP ViT-H text tower, 23 layers x 1024) are built with RANDOM
weights (speed does not depend on weight values) and saved in Hugging Face format; then the product
path (``train_bridge.train_caption_bridge``) runs on a sample of the caption corpus and the time is
extrapolated to the default corpus size (encoding is linear in captions; training steps too).

The tokenizers are fusemix.tiny's byte-level ones: the SD text encoder always runs all 77
positions, so its time is exact; CLAP's text tower sees longer sequences than with the real BPE
vocabulary, so its share is an over-estimate.

    python benchmarks/live_bridge_time.py                 # ~3-5 minutes on 2 cores
    python benchmarks/live_bridge_time.py --clip          # the Sound -> Images adapter (CLIP ViT-B/32 text tower)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def build_clip_b32(root: Path) -> str:
    """openai/clip-vit-base-patch32's text tower and projection (12 layers x 512), random, with a tiny tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    from fusemix.tiny import build_tiny_suite

    tiny = build_tiny_suite(root / "tiny", extras=("clip",))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        CLIPTextModelWithProjection(CLIPTextConfig(projection_dim=512)).save_pretrained(root / "clip")
    CLIPTokenizer.from_pretrained(tiny["clip"]).save_pretrained(root / "clip")
    return str(root / "clip")


def build_real_arch(root: Path) -> tuple[str, str]:
    from transformers import ClapConfig, ClapModel, ClapProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from fusemix.tiny import build_tiny_suite

    tiny = build_tiny_suite(root / "tiny")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ClapModel(ClapConfig()).save_pretrained(root / "clap")
        CLIPTextModel(CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                                     num_attention_heads=16, hidden_act="gelu", projection_dim=1024,
                                     max_position_embeddings=77)).save_pretrained(root / "sd" / "text_encoder")
    ClapProcessor.from_pretrained(tiny["clap"]).save_pretrained(root / "clap")
    CLIPTokenizer.from_pretrained(tiny["sd"], subfolder="tokenizer").save_pretrained(root / "sd" / "tokenizer")
    (root / "clap" / "STANDIN.txt").write_text("random weights, real architecture (timing only)\n")
    return str(root / "clap"), str(root / "sd")


def main(argv=None) -> None:
    import train_bridge

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sample", type=int, default=200, help="captions actually encoded and trained on")
    p.add_argument("--captions", type=int, default=train_bridge.DEFAULT_MAX_CAPTIONS,
                   help="corpus size to extrapolate to (the app's default)")
    p.add_argument("--clip", action="store_true", help="time the Sound -> Images adapter (CLAP -> CLIP text space)")
    args = p.parse_args(argv)
    from common import goal_line, machine_line

    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["FUSEMIX_CACHE"] = str(tmp / "cache")
        t = time.perf_counter()
        clap, sd = build_real_arch(tmp)
        print(f"built the random real-architecture models in {time.perf_counter() - t:.0f} s", flush=True)
        marks: list[tuple[str, float]] = []  # (stage, time it started)

        def progress(stage, done, total):
            if not marks or marks[-1][0] != stage:
                marks.append((stage, time.perf_counter()))
            if stage == "encoding captions" and done == total:
                marks.append(("training", time.perf_counter()))

        target = build_clip_b32(tmp) if args.clip else sd
        job = train_bridge.make_job(clap, target, max_captions=args.sample, target="clip-text" if args.clip else "sd-text")
        t0 = time.perf_counter()
        train_bridge.train_caption_bridge(job, tmp / "bridge", audio=[ROOT / "demo" / "examples"], progress=progress)
        total = time.perf_counter() - t0
    ends = [t for _, t in marks[1:]] + [t0 + total]
    took = {stage: end - start for (stage, start), end in zip(marks, ends)}
    encode, training = took.get("encoding captions", 0.0), took.get("training", 0.0)
    fixed = total - encode - training  # audio mean of the example clips, saving: independent of the corpus
    scale = args.captions / args.sample
    est = (encode + training) * scale + fixed  # encoding is linear in captions; so are the steps at fixed epochs
    print(f"{args.sample} captions: encoding {encode:.1f} s ({encode / args.sample * 1000:.0f} ms per caption, both "
          f"text encoders), training {training:.1f} s, audio mean + saving {fixed:.1f} s, total {total:.1f} s")
    print(f"estimate for {args.captions} captions: {est / 60:.1f} min")
    print(goal_line("live_bridge_minutes", est / 60, "<=", 10))


if __name__ == "__main__":
    main()
