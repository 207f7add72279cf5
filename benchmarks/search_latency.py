"""Is fusemix's exact search at least as fast as the fastest exact search beside it? And HNSW?

For each gallery size (N unit vectors, dim 512) and query batch size (1: the demo's case; 8: a small
batch), times in one run, interleaved:

* ours   - ``fusemix.search.ExactIndex.search``, the whole public call (input checks included),
* numpy  - ``q @ X.T`` + ``argpartition`` + sorting the k survivors,
* faiss  - FAISS ``IndexFlatIP``,
* torch  - ``torch.topk(q @ X.T, k)``.

Each round runs every method once, in a shuffled order, as one untimed call then ``--calls`` timed
ones (median kept); the fastest baseline is the one with the lowest median over all rounds, and each
round's own ratio (that baseline's time / ours, paired: the same minute of a shared machine) gives the
figure, summarised by its median. The goal figure is the worst (size, batch) cell: > 1 means ours is
faster than the fastest baseline. Then FAISS HNSW at ``--hnsw-size``: build time, single-query
latency and recall@k against the exact top-k over an efSearch sweep.

Data: ``--data lowdim`` (default) draws vectors near a random 16-dimensional subspace plus noise, like
real embeddings, where HNSW works as intended; ``--data uniform`` draws i.i.d. unit vectors, the known
worst case for any approximate index (exact search times are the same on both).

    python benchmarks/search_latency.py                      # 10k and 100k, batches 1 and 8, HNSW at 100k
    python benchmarks/search_latency.py --sizes 2000 --rounds 3 --hnsw-size 2000   # a smoke run
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import goal_line, machine_line  # noqa: E402

from fusemix.search import ExactIndex, HNSWIndex, recall_at_k  # noqa: E402


def make_data(kind: str, n: int, dim: int, seed: int, intrinsic: int = 16, noise: float = 0.3) -> np.ndarray:
    """``n`` float32 unit vectors [n, dim], generated in chunks (``kind``: lowdim or uniform)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((intrinsic, dim), dtype=np.float32) / np.sqrt(intrinsic)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        if kind == "uniform":
            out[s:e] = rng.standard_normal((e - s, dim), dtype=np.float32)
        else:
            z = rng.standard_normal((e - s, intrinsic), dtype=np.float32) @ basis
            z /= np.linalg.norm(z, axis=1, keepdims=True)
            out[s:e] = z + noise / np.sqrt(dim) * rng.standard_normal((e - s, dim), dtype=np.float32)
        out[s:e] /= np.linalg.norm(out[s:e], axis=1, keepdims=True)
    return out


def exact_methods(base: np.ndarray, k: int) -> dict:
    """name -> fn(queries [Q, D]) -> ids [Q, k], best first; "ours" is fusemix's exact path."""
    import faiss

    ours = ExactIndex(base.shape[1])
    ours.add(base)
    flat = faiss.IndexFlatIP(base.shape[1])
    flat.add(base)
    tb = torch.from_numpy(base)

    def numpy_topk(q):
        s = q @ base.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        return np.take_along_axis(part, np.argsort(-np.take_along_axis(s, part, 1), axis=1), 1)

    def torch_topk(q):
        with torch.inference_mode():
            return torch.topk(torch.from_numpy(q) @ tb.T, k, dim=1).indices.numpy()

    return {"ours": lambda q: ours.search(q, k).ids, "numpy": numpy_topk,
            "faiss": lambda q: flat.search(q, k)[1], "torch": torch_topk}


def time_cell(methods: dict, queries: np.ndarray, batch: int, rounds: int, calls: int, rng: random.Random):
    """Per method, each round's median seconds per call; also checks that all methods agree."""
    batches = [queries[i * batch:(i + 1) * batch] for i in range(len(queries) // batch)]
    ref = methods["ours"](queries)
    for name, fn in methods.items():
        agree = recall_at_k(fn(queries), ref)
        if agree < 0.99:  # float sums in another order may swap a near-tie, nothing more
            raise SystemExit(f"{name} and ours disagree on {100 * (1 - agree):.1f}% of the top-k ids")
    times = {name: [] for name in methods}
    order = list(methods)
    for r in range(rounds):
        rng.shuffle(order)
        for name in order:
            fn = methods[name]
            fn(batches[(r * calls) % len(batches)])  # untimed: wakes this library's threads
            t = []
            for c in range(calls):
                q = batches[(r * calls + c) % len(batches)]
                t0 = time.perf_counter()
                fn(q)
                t.append(time.perf_counter() - t0)
            times[name].append(statistics.median(t))
    return times


def hnsw_sweep(args, base: np.ndarray, queries: np.ndarray) -> None:
    exact = ExactIndex(base.shape[1])
    exact.add(base)
    truth = exact.search(queries, args.k).ids
    t0 = time.perf_counter()
    index = HNSWIndex(base.shape[1], m=args.hnsw_m, ef_construction=args.ef_construction)
    index.add(base)
    print(f"HNSW N={len(base):,} m={args.hnsw_m} efConstruction={args.ef_construction}: "
          f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    for ef in args.ef_search:
        index.set_ef_search(ef)
        t, ids = [], []
        for i in range(len(queries)):
            t0 = time.perf_counter()
            ids.append(index.search(queries[i:i + 1], args.k).ids[0])
            t.append(time.perf_counter() - t0)
        print(f"  efSearch={ef:<4} p50 {1e3 * statistics.median(t):7.3f} ms  "
              f"recall@{args.k} {recall_at_k(np.stack(ids), truth):.3f}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000", help="comma-separated gallery sizes")
    p.add_argument("--batches", default="1,8", help="comma-separated query batch sizes")
    p.add_argument("--data", default="lowdim", choices=("lowdim", "uniform"))
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds per (size, batch)")
    p.add_argument("--calls", type=int, default=8, help="timed calls per method per round")
    p.add_argument("--hnsw-size", type=int, default=100_000, help="HNSW gallery size (0: skip HNSW)")
    p.add_argument("--hnsw-m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument("--ef-search", default="16,32,64,128")
    p.add_argument("--hnsw-queries", type=int, default=200)
    p.add_argument("--threads", type=int, default=0, help="torch and FAISS threads (0: library default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="also write every cell's per-round times to this file")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    batch_sizes = [int(s) for s in args.batches.split(",") if s]
    args.ef_search = [int(s) for s in args.ef_search.split(",") if s]
    if not sizes or not batch_sizes or min(sizes + batch_sizes) < 1 or args.k > min(sizes):
        p.error("--sizes and --batches need positive integers, and --k at most the smallest size")
    import faiss

    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    print(f"{machine_line('cpu')}; faiss {faiss.__version__}, numpy {np.__version__}")
    print(f"k={args.k}, dim={args.dim}, {args.data} data, {args.rounds} rounds x {args.calls} timed calls per "
          f"method and cell; times are medians of the per-round medians, ms per call", flush=True)

    rng, cells, worst = random.Random(args.seed), [], None
    for n in sizes:
        base = make_data(args.data, n, args.dim, args.seed)
        queries = make_data(args.data, max(batch_sizes) * max(args.calls, 4), args.dim, args.seed + 1)
        methods = exact_methods(base, args.k)
        for batch in batch_sizes:
            times = time_cell(methods, queries, batch, args.rounds, args.calls, rng)
            p50 = {name: statistics.median(t) for name, t in times.items()}
            fastest = min((name for name in p50 if name != "ours"), key=p50.get)
            ratios = [b / o for b, o in zip(times[fastest], times["ours"])]
            ratio = statistics.median(ratios)
            print(f"N={n:<7,} batch {batch:<3} " + "  ".join(f"{name} {1e3 * t:8.3f}" for name, t in p50.items())
                  + f"  | {fastest} / ours per round: {' '.join(f'{r:.2f}' for r in ratios)} "
                  f"(median {ratio:.3f})", flush=True)
            cells.append({"n": n, "batch": batch, "fastest_baseline": fastest, "ratio": ratio, "times_s": times})
            if worst is None or ratio < worst["ratio"]:
                worst = cells[-1]
        del methods
    if args.json:
        Path(args.json).write_text(json.dumps(cells, indent=1))
    if args.hnsw_size:
        base = make_data(args.data, args.hnsw_size, args.dim, args.seed + 2)
        hnsw_sweep(args, base, make_data(args.data, args.hnsw_queries, args.dim, args.seed + 3))
    print(f"search_exact_vs_fastest = the fastest exact baseline's time / ours (per-round median), in the worst "
          f"cell: N={worst['n']:,}, batch {worst['batch']}, against {worst['fastest_baseline']} (> 1: ours faster)")
    print(goal_line("search_exact_vs_fastest", worst["ratio"], ">=", 1.0))
    return cells


if __name__ == "__main__":
    main()
