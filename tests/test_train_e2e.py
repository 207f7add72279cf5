"""train.py end to end from a dataset folder: extract latents with real (tiny) encoders, train, save."""
import csv
import json

import numpy as np
import soundfile as sf
import torch

import train
from fusemix.model import FusionModel
from fusemix.tiny import save_tiny_clap, save_tiny_sentence_encoder

WORDS = ["a dog barks", "rain on a roof", "a car engine idles", "birds sing at dawn", "a bell rings"]


def _audiofolder(root, n=30, sr=16000):
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        cls = i % len(WORDS)
        t = np.arange(int(0.5 * sr)) / sr
        wave = 0.3 * np.sin(2 * np.pi * (220 * (cls + 1)) * t) + 0.01 * rng.standard_normal(t.shape)
        sf.write(root / f"clip{i:03d}.wav", wave.astype(np.float32), sr)
        rows.append({"file_name": f"clip{i:03d}.wav", "caption": f"{WORDS[cls]} ({i})"})
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file_name", "caption"])
        w.writeheader()
        w.writerows(rows)
    return root


def test_audiofolder_to_trained_adapters(tmp_path):
    clap = save_tiny_clap(tmp_path / "clap")
    sent = save_tiny_sentence_encoder(tmp_path / "sentence")
    data = _audiofolder(tmp_path / "sounds")
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ["--data", str(data), "--x_encoder", f"clap-audio:{clap}", "--y_encoder", f"sentence:{sent}",
            "--cache_dir", str(cache), "--batch_size", "8", "--heldout_fraction", "0.2", "--proj_dim", "16",
            "--depth", "1", "--no-progress", "--warmup_steps", "2"]
    res = train.main(args + ["--out", str(out), "--epochs", "3"])
    assert res["step"] == 3 * (24 // 8)
    ckpt = out / json.loads((out / "latest.json").read_text())["checkpoint"]
    model = FusionModel.from_pretrained(ckpt)
    # The checkpoint names the encoders whose latents it needs, as load_encoder takes them.
    assert model.config.modalities["audio"].encoder == f"clap-audio:{clap}"
    assert model.config.modalities["text"].encoder == f"sentence:{sent}"
    assert model.config.modalities["audio"].dim == 16  # tiny CLAP's projection size, read from its config
    # A second run reuses the cached latents instead of encoding again.
    stamp = {p: p.stat().st_mtime_ns for p in cache.rglob("*.safetensors")}
    assert stamp
    train.main(args + ["--out", str(tmp_path / "run2"), "--epochs", "1"])
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.safetensors")} == stamp
    assert torch.isfinite(model.embed("audio", torch.randn(2, 16))).all()
