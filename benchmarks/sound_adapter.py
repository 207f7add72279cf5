"""The Sound -> Images adapter's design on two real text encoders: a one-token bridge into a pooled space.

The adapter maps CLAP latents into CLIP's text space and is searched against items that space embedded,
so a query must be good *uncentred*. Without CLAP/CLIP weights here, the cached real-encoder latents of
benchmarks/real_encoders.py stand in: x = all-MiniLM-L6-v2 of style-A scene captions, y = all-mpnet-base-v2
of their style-B paraphrases (both real, independently trained). For n training pairs, train_bridge's own
settings train a ``clip-text``-style bridge (pooled targets, ``seq_len = 1``); it is scored on the fixed
1,000 test scenes by R@1 of its query among the uncentred test targets, beside a cross-validated ridge:

- ``ridge``: x -> y ridge (cross-validated on the training pairs as benchmarks/real_encoders.py does), prediction + the targets' mean;
- ``raw``: the bridge's output, normalised; ``embed``: ``ConditioningBridge.embed`` (what the app uses);
- from the checkpoint train.py kept (``fusemix.train_state.kept_checkpoint``: the best held-out R@1, of
  equals the latest); with the ``lowrank`` head (the SD bridge's) or the ``direct`` one (``train_bridge.TARGET_ARGS["clip-text"]``, the default for this target).

    python benchmarks/sound_adapter.py --mpnet /path/to/all-mpnet-base-v2 [--sizes 250 800]   # ~2 min cached
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def r1(q: torch.Tensor, y: torch.Tensor) -> float:
    sim = F.normalize(q.float(), dim=-1) @ F.normalize(y.float(), dim=-1).T
    return float(sim.argmax(1).eq(torch.arange(len(y))).float().mean())


def main(argv=None) -> None:
    import real_encoders as re_
    import scene_corpus
    import train
    import train_bridge
    from common import goal_line, machine_line
    from fusemix.bridge import ConditioningBridge
    from fusemix.latents import LatentPairs, save_latent_pairs
    from fusemix.train_state import kept_checkpoint

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mpnet", help="all-mpnet-base-v2 folder (or $FUSEMIX_MPNET)")
    p.add_argument("--sizes", type=int, nargs="+", default=[250, 800], help="training pairs (800: the app's default)")
    args = p.parse_args(argv)
    print(machine_line(), flush=True)
    x, y, _ = re_.load_latents(re_.find_mpnet(args.mpnet))
    test = torch.tensor(list(scene_corpus.test_indices(len(x))))
    rows = {}
    for n in args.sizes:
        idx = torch.randperm(len(x) - len(test), generator=torch.Generator().manual_seed(0))[:n]
        ridge, lam = re_.fit_linear("ridge_x2y", x[idx], y[idx], 0)
        pred, _ = ridge.embed(x[test], y[test])
        row = {"ridge": r1(pred + ridge.md, y[test])}
        for head in ("lowrank", "direct"):
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                lat = save_latent_pairs(tmp / "p.safetensors", LatentPairs(
                    x[idx].contiguous(), y[idx].contiguous(), None, "text", "text", "clap-text:minilm", "clip-text:m"))
                train.main([*train_bridge.BRIDGE_ARGS, "--bridge_head", head, "--latents", str(lat),
                            "--out", str(tmp / "run"), "--no-progress"])
                b = ConditioningBridge.from_pretrained(kept_checkpoint(tmp / "run")).eval()
                with torch.no_grad():
                    row[f"{head}_raw"] = r1(b(x[test], "text").squeeze(1), y[test])
                    row[f"{head}_embed"] = r1(b.embed(x[test], "text"), y[test])
        rows[n] = row
        print(f"n={n}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()) + f" (ridge lambda {lam:g})", flush=True)
    n = max(rows)
    print(goal_line("sound_adapter_embed_vs_ridge", rows[n]["direct_embed"] / rows[n]["ridge"], ">=", 0.95))


if __name__ == "__main__":
    main()
