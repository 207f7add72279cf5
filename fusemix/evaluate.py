"""How good are the images? Every audio -> image route on the same clips and seeds, scored by CLIP.

For each (audio, caption) pair, images come from each route of an :class:`AudioToImage` (the
FuseMix ``bridge``, the ``captions`` bank) and from two references made with the same pipeline,
seed and settings: the pair's ``true caption`` typed as the prompt (the upper bound) and a
``random caption`` of the corpus (the floor). A reference CLIP scores each image against the
pair's true caption; ``normalised = (route - floor) / (upper - floor)`` puts 0 at the floor and 1
at the upper bound. The entry point that loads models is ``evaluate.py`` at the repository root.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """(audio path, caption) rows of a CSV or JSONL manifest with ``file_name`` and ``caption`` columns."""
    import csv

    path = Path(path)
    rows = ([json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if path.suffix == ".jsonl" else list(csv.DictReader(path.open(newline=""))))
    pairs = []
    for n, row in enumerate(rows, 1):
        if not row.get("file_name") or not row.get("caption"):
            raise ValueError(f"{path} row {n}: needs file_name and caption")
        pairs.append((str((path.parent / row["file_name"]).resolve()), row["caption"]))
    return pairs
