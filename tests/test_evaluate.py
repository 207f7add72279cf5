"""``python -m fusemix.evaluate`` on the tiny profile: every route is generated, scored and drawn; the
scoring pairs each clip's images with its own true caption (checked with a stand-in CLIP fitted to make it so)."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fusemix import evaluate
from fusemix.evaluate import FLOOR, UPPER, evaluate_routes

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_profile_runs_every_route_and_writes_table_and_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "eval"
    res = evaluate.main(["--profile", "tiny", "--out", str(out), "--seeds", "0"])
    report = res["report"]
    assert report.routes == ["bridge", "captions", UPPER, FLOOR]
    assert len(report.clips) == len(evaluate.EXAMPLE_CAPTIONS)
    table = (out / "table.md").read_text()
    assert all(f"| {r} |" in table for r in report.routes) and "RANDOM stand-in" in table
    saved = json.loads((out / "report.json").read_text())
    assert set(saved["normalised"]) == set(report.routes)
    from PIL import Image

    with Image.open(out / "grid.png") as grid:  # a row per clip, a column per route
        assert grid.width > 4 * 160 and grid.height > 6 * 160
    # A stand-in CLIP fitted so that each caption's text embedding is its own true-caption image's
    # embedding and every image gets an embedding of its own (orthogonal targets): then, and only
    # then, the upper bound must score ~1 and the floor ~0.
    a2i, scorer = res["a2i"], res["scorer"]
    pairs = [(str(evaluate.EXAMPLES / f), c) for f, c in evaluate.EXAMPLE_CAPTIONS.items()]
    first = evaluate_routes(a2i, scorer, pairs, res["corpus"], seeds=(0,), guidance=15.0)
    images = first.images[UPPER] + first.images[FLOOR]
    m = scorer.model
    with torch.no_grad():
        pix = scorer.image_processor(images=[i.convert("RGB") for i in images], return_tensors="pt")["pixel_values"]
        feats = m.vision_model(pixel_values=pix).pooler_output.double()
        targets = torch.linalg.qr(torch.randn(m.config.projection_dim, len(images), dtype=torch.float64,
                                              generator=torch.Generator().manual_seed(0)))[0].T
        m.visual_projection.weight.copy_(torch.linalg.lstsq(feats, targets).solution.T.float())
        tok = scorer.tokenizer(first.captions, padding=True, return_tensors="pt")
        hidden = m.text_model(**tok).pooler_output.double()
        m.text_projection.weight.copy_(torch.linalg.lstsq(hidden, targets[:len(pairs)]).solution.T.float())
    fitted = evaluate_routes(a2i, scorer, pairs, res["corpus"], seeds=(0,), guidance=15.0)
    assert fitted.mean(UPPER) > 0.9 and fitted.mean(FLOOR) < 0.3, fitted.table()
    assert fitted.normalised(UPPER) == 1.0 and fitted.normalised(FLOOR) == 0.0


def test_pairs_come_from_a_manifest_and_a_useless_one_is_refused(tmp_path):
    import shutil

    for name in ("bell.wav", "rain.wav"):
        shutil.copy(evaluate.EXAMPLES / name, tmp_path / name)
    (tmp_path / "m.csv").write_text("file_name,caption\nbell.wav,a bell rings\nrain.wav,rain falls\n")
    assert evaluate.read_pairs(tmp_path / "m.csv") == [(str(tmp_path / "bell.wav"), "a bell rings"),
                                                      (str(tmp_path / "rain.wav"), "rain falls")]
    (tmp_path / "bad.csv").write_text("file_name,caption\nnope.wav,x\n")
    with pytest.raises(ValueError, match="no usable"):
        evaluate.read_pairs(tmp_path / "bad.csv")


def test_the_entry_points_and_the_layer_rule(tmp_path):
    for cmd in ([sys.executable, "-m", "fusemix.evaluate", "--help"], [sys.executable, "evaluate.py", "--help"]):
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "--profile" in out.stdout, out.stderr
    # the library's evaluation sits beside generation: it imports neither the app nor the scripts above it
    tree = ast.parse(Path(evaluate.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in names if m.split(".")[0] in ("demo", "train", "train_bridge")}, names
    with pytest.raises(FileNotFoundError, match="pass --bridge"):  # fusemix outside its repository
        evaluate.train_bridge("clap", "sd", script=tmp_path / "train_bridge.py")
