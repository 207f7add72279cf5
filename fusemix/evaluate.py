"""Score every audio -> image route with a reference CLIP and write a table and an image grid.

    python -m fusemix.evaluate --profile tiny                      # offline: stand-ins, numbers meaningless
    python -m fusemix.evaluate --pairs clips.csv --clap laion/clap-htsat-unfused --sd stabilityai/sd-turbo \
        --clip openai/clip-vit-base-patch32 [--bridge weights/bridge]   # real models (needs the hub)

Routes: the FuseMix bridge (without --bridge: the one the app trains from captions, by the repository's
``train_bridge.py`` in a child process, cached), the caption bank, the true caption as the prompt (upper
bound) and a random corpus caption (floor); see
docs/audio_to_image.md. For each (audio, caption) pair, every route makes images with the same
pipeline, seeds and settings; a reference CLIP scores each against the pair's true caption, and
``normalised = (route - floor) / (upper - floor)`` puts 0 at the floor and 1 at the upper bound.
Outputs: OUT/table.md, report.json, grid.png.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]  # the repository, when fusemix runs from a checkout
EXAMPLES = ROOT / "demo" / "examples"  # the demo's example sounds (read as data; demo/ is never imported)
# The shipped example sounds, described in words of our own (they were synthesised: see tools/make_examples.py).
EXAMPLE_CAPTIONS = {
    "bell.wav": "a bell ringing and fading away",
    "birdsong.wav": "birds chirping and singing",
    "engine.wav": "an engine idling with a low rumble",
    "rain.wav": "rain falling steadily",
    "siren.wav": "an emergency siren wailing up and down",
    "speech.wav": "a man speaking in a calm voice",
}
UPPER, FLOOR = "true caption", "random caption"


@dataclass
class EvalReport:
    routes: list[str]
    clips: list[str]
    captions: list[str]
    scores: dict[str, list[list[float]]]  # route -> [clip][seed] CLIP score against the true caption
    images: dict[str, list[Any]] = field(repr=False, default_factory=dict)  # route -> first seed's image per clip
    notes: list[str] = field(default_factory=list)

    def mean(self, route: str) -> float:
        vals = [s for row in self.scores[route] for s in row]
        return sum(vals) / len(vals)

    def normalised(self, route: str) -> float:
        span = self.mean(UPPER) - self.mean(FLOOR)
        return (self.mean(route) - self.mean(FLOOR)) / span if span > 0 else math.nan

    def table(self) -> str:
        rows = ["| route | CLIP score | normalised |", "| --- | --- | --- |"]
        for r in self.routes:
            rows.append(f"| {r} | {self.mean(r):.4f} | {self.normalised(r):.3f} |")
        return "\n".join(rows + [""] + [f"Note: {n}" for n in self.notes])

    def to_dict(self) -> dict:
        return {"routes": self.routes, "clips": self.clips, "captions": self.captions, "scores": self.scores,
                "mean": {r: self.mean(r) for r in self.routes},
                "normalised": {r: self.normalised(r) for r in self.routes}, "notes": self.notes}


def evaluate_routes(a2i, scorer, pairs: list[tuple[str, str]], corpus: list[str], *, seeds=(0,),
                    rng_seed: int = 0, **params) -> EvalReport:
    """Generate and score every route for ``pairs`` of (audio, true caption); ``params`` go to the pipeline."""
    if not pairs:
        raise ValueError("evaluation needs at least one (audio, caption) pair")
    rng = random.Random(rng_seed)
    routes = [*a2i.routes, UPPER, FLOOR]
    scores: dict[str, list[list[float]]] = {r: [] for r in routes}
    images: dict[str, list[Any]] = {r: [] for r in routes}
    for audio, caption in pairs:
        others = [c for c in corpus if c != caption]
        if not others:
            raise ValueError("the corpus needs captions other than the pairs' own for the random-caption floor")
        floor_caption = rng.choice(others)
        for route in routes:
            made = []
            for seed in seeds:
                if route == UPPER:
                    made.append(a2i.generate_from_text(caption, seed=seed, **params).image)
                elif route == FLOOR:
                    made.append(a2i.generate_from_text(floor_caption, seed=seed, **params).image)
                else:
                    made.append(a2i.generate(audio, route=route, seed=seed, **params).image)
            scores[route].append([float(s) for s in scorer.score(caption, made)])
            images[route].append(made[0])
    return EvalReport(routes, [Path(str(a)).name for a, _ in pairs], [c for _, c in pairs], scores, images,
                      list(a2i.notes()))


def save_grid(report: EvalReport, path: str | Path, cell: int = 160) -> Path:
    """A PNG a person can look at: a row per clip, a column per route, labelled."""
    from PIL import Image, ImageDraw

    label_h, left = 18, 150
    grid = Image.new("RGB", (left + cell * len(report.routes), label_h + cell * len(report.clips)), "white")
    draw = ImageDraw.Draw(grid)
    for j, route in enumerate(report.routes):
        draw.text((left + j * cell + 4, 3), route, fill="black")
    for i, (clip, caption) in enumerate(zip(report.clips, report.captions)):
        y = label_h + i * cell
        draw.text((4, y + 4), clip, fill="black")
        for k in range(0, len(caption), 22):
            draw.text((4, y + 20 + 12 * (k // 22)), caption[k:k + 22], fill="gray")
        for j, route in enumerate(report.routes):
            grid.paste(report.images[route][i].convert("RGB").resize((cell, cell)), (left + j * cell, y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from .io import atomic_write

    atomic_write(path, lambda tmp: grid.save(tmp, format="PNG"))
    return path


def save_report(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    """table.md, report.json and grid.png under ``out_dir``."""
    from .io import atomic_write_json, atomic_write_text

    out = Path(out_dir)
    return {"table": atomic_write_text(out / "table.md", report.table() + "\n"),
            "report": atomic_write_json(out / "report.json", report.to_dict()),
            "grid": save_grid(report, out / "grid.png")}


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(audio path, first caption) of each item of a manifest (CSV/JSONL with ``file_name`` and ``caption``),
    read and checked by fusemix's own manifest reader."""
    from .pairs import open_source

    src = open_source(path)
    if not src.ids:
        raise ValueError(f"{path} has no usable (audio, caption) rows: "
                         + "; ".join(f"{s.item_id}: {s.reason}" for s in src.skipped[:5]))
    return [(src.item(i), caps[0]) for i, caps in enumerate(src.captions)]


STANDIN_NOTE = "tiny RANDOM stand-in models: the numbers show the evaluation runs, not image quality"


def tiny_models(root: Path) -> dict[str, str]:
    """The stand-ins of ``--profile tiny``: the one place fusemix's library loads them, for this CLI, which
    labels every output (the demo's tiny profile does the same)."""
    from .tiny import build_tiny_suite

    suite = build_tiny_suite(root, extras=("clip",))
    return {"clap": str(suite["clap"]), "sd": str(suite["sd"]), "clip": str(suite["clip"])}


def train_bridge(clap: str, sd: str, *, standin: bool = False, script: Path = ROOT / "train_bridge.py") -> str:
    """The captions-only bridge the app trains for ``clap`` -> ``sd`` (the same job, so its cache is shared),
    trained by ``train_bridge.py`` in a child process unless cached; returns its folder."""
    if not script.is_file():
        raise FileNotFoundError(f"{script} is not here to train a bridge (fusemix runs outside its repository?); "
                                "pass --bridge with a trained bridge folder")
    cmd = [sys.executable, str(script), "--clap", clap, "--sd", sd, "--audio", str(EXAMPLES),
           *(["--standin", "--max_captions", "300"] if standin else [])]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise RuntimeError(f"training the bridge failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])["bridge"]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", choices=["tiny", "real"], default="real")
    p.add_argument("--pairs", help="CSV/JSONL manifest with file_name and caption (default on tiny: the example sounds)")
    p.add_argument("--clap", default="laion/clap-htsat-unfused")
    p.add_argument("--sd", default="stabilityai/sd-turbo")
    p.add_argument("--clip", default="openai/clip-vit-base-patch32")
    p.add_argument("--bridge", help="a trained bridge folder (default: train one from captions, cached)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the checkpoint's)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default: the pipeline's)")
    p.add_argument("--out", default="runs/evaluate")
    args = p.parse_args(argv)

    from .caption_bank import CaptionBank, load_captions
    from .conventions import cache_root
    from .encoders import load_encoder
    from .generation import AudioToImage
    from .reference import ReferenceScorer

    standin = args.profile == "tiny"
    ids = tiny_models(cache_root("evaluate-tiny")) if standin else {"clap": args.clap, "sd": args.sd, "clip": args.clip}
    pairs = read_pairs(args.pairs) if args.pairs else [(str(EXAMPLES / f), c) for f, c in EXAMPLE_CAPTIONS.items()]
    bridge = args.bridge or train_bridge(ids["clap"], ids["sd"], standin=standin)
    # the sound corpus as the bank (on tiny a sample of it: the numbers are meaningless anyway)
    bank = CaptionBank.build(load_encoder("clap-text", ids["clap"]), sample=300 if standin else None)
    a2i = AudioToImage.from_pretrained(ids["sd"], ids["clap"], bridge=bridge, caption_bank=bank, standin=standin)
    scorer = ReferenceScorer.from_pretrained(ids["clip"], standin=standin)
    corpus = load_captions()
    params = {k: v for k, v in {"steps": args.steps, "height": args.size, "width": args.size}.items() if v}
    report = evaluate_routes(a2i, scorer, pairs, corpus, seeds=args.seeds, **params)
    if standin:
        report.notes.insert(0, STANDIN_NOTE)
    files = save_report(report, args.out)
    print(report.table())
    print(json.dumps({k: str(v) for k, v in files.items()}))
    return {"report": report, "files": files, "a2i": a2i, "scorer": scorer, "corpus": corpus}


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
