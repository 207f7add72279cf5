"""How close does a FuseMix training step come to the machine's matmul rate?

Measures, in one run: the matmul rate (GFLOP/s) in fp32 and bf16, two ways: one [B, d] @ [d, 4d]
GEMM (the adapters' largest shape), and all of a step's GEMMs run back to back with nothing else
(the step's own matmul work; its ratio says what fraction of a step is spent at matmul speed);
then full training steps (mix -> two adapters -> InfoNCE -> backward -> AdamW) at the
paper's sizes (1536-d and 1024-d inputs -> 512, 4 blocks, expansion 4), and prints samples/s,
achieved GFLOP/s and the ratio. The same step with torch's own ``nn.Dropout`` is timed as the
baseline that fusemix's fused GELU-dropout (fusemix/dropout.py) is measured against. Matmul
and step timings are interleaved, best of several rounds each, and each round's own ratio is
printed too (paired: the same minute of the machine's drifting speed); the one-GEMM baseline is
timed over windows as long as a step. Runs on CUDA when present (--device cuda).

bf16 is timed only where it is native (``fusemix.hardware.bf16_is_native``: CUDA, or a CPU with
AMX-BF16 / AVX512-BF16); elsewhere torch emulates it many times slower than fp32, so it is skipped
and the output says so (``--bf16 on`` times it anyway, at small sizes only to keep the run short).

The goal (fp32 step >= 85% of the matmul rate) is read against the step's own GEMMs, paired per
round: those are the products a step cannot avoid, in the shapes it needs (backward's transposed
products run up to 15% slower than the forward [B, d] @ [d, 4d] on this CPU's MKL), so the ratio says
what the rest of the step costs. The one-GEMM ratio is printed beside it.

    python benchmarks/train_throughput.py                 # paper sizes, batch 1024, 5 rounds
    python benchmarks/train_throughput.py --quick         # small sizes, a smoke run

The last line is ``GOAL train_fp32_vs_gemms: <per-round median> (goal >= 0.85: met|NOT met)``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import goal_line, machine_line  # noqa: E402 (benchmarks/common.py, beside this file)

from fusemix.hardware import bf16_is_native
from fusemix.mixing import fusemix_mix, mix_partners, sample_lambda
from fusemix.model import FusionConfig, FusionModel, ModalitySpec
from fusemix.optim import make_optimizer


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def matmul_fn(m: int, k: int, n: int, dtype, device):
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    return (lambda: a @ b), 2 * m * k * n


@contextlib.contextmanager
def fp32_matmuls(precision: str):
    """CUDA fp32 matmul precision for a block ("ieee" or "tf32"), restored after."""
    before = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = precision
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision = before


def repeated(fn, flops: int, seconds: float, device):
    """``fn`` called back to back for about ``seconds`` (at least once), and its total FLOPs."""
    reps = max(1, round(seconds / max(timed(fn, device), 1e-9)))

    def run():
        for _ in range(reps):
            fn()

    return run, reps * flops


def matmul_rate(fns: list, times: dict[str, float], kind: str) -> float:
    """Mean FLOP/s of the one-GEMM baselines of ``kind`` ("fp32" / "bf16") given their timings."""
    return sum(flops / times[f"{kind}_{i}"] for i, (_, flops) in enumerate(fns)) / len(fns)


def step_gemms_fn(model: FusionModel, batch: int, dtype, device):
    """Every GEMM of one training step, back to back on ready operands, and its FLOPs.

    Per Linear [out, in]: X @ W.T forward, G @ W and G.T @ X backward; plus the loss's three
    [B, P] x [P, B] products. This is the step's own matmul work with nothing else around it:
    the rate a step could reach if everything but its GEMMs cost nothing.
    """
    ops = []
    for w in (p for p in model.parameters() if p.ndim == 2):
        out_f, in_f = w.shape
        wt = torch.randn(out_f, in_f, device=device, dtype=dtype)
        x = torch.randn(batch, in_f, device=device, dtype=dtype)
        g = torch.randn(batch, out_f, device=device, dtype=dtype)
        ops += [(x, wt.t()), (g, wt), (g.t(), x)]
    p = model.config.proj_dim
    za = torch.randn(batch, p, device=device, dtype=dtype)
    ops += [(za, za.t())] * 3
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in ops)

    def run():
        for a, b in ops:
            torch.mm(a, b)

    return run, flops


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--dims", default="1536,1024", help="input widths of the two adapters (paper: DINOv2-G, BGE-L)")
    ap.add_argument("--steps", type=int, default=5, help="interleaved timing rounds (best of each is kept)")
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                    help="time bf16 autocast: auto = only where bf16 is native on this device")
    args = ap.parse_args()
    device = torch.device(args.device)
    native = bf16_is_native(device)
    with_bf16 = args.bf16 == "on" or (args.bf16 == "auto" and native)
    print(machine_line(device))
    if not native and args.bf16 == "on":  # emulated bf16 at paper sizes would run for many minutes
        print("bf16 is emulated here (many times slower than fp32): --bf16 on times it at the --quick sizes")
        args.quick = True
    elif not with_bf16:
        why = "skipped (--bf16 off)" if args.bf16 == "off" else (
            f"skipped: {device.type} has no native bf16 matmul units, so torch emulates bf16 there, many times "
            "slower than fp32 (--bf16 on times it anyway)")
        print(f"bf16: {why}")
    if args.quick:
        args.batch, args.dims, args.steps = 256, "384,256", 3
    dx, dy = map(int, args.dims.split(","))
    kinds = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if with_bf16 else {})}
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} dims={dx},{dy} rounds={args.steps}")

    # The adapters' dominant GEMMs: [B, d] @ [d, 4d] for both widths (backward's transposed
    # products run at the same rate here, checked with the profiler).
    matmuls = {name: [matmul_fn(args.batch, d, 4 * d, dtype, device) for d in (dx, dy)]
               for name, dtype in kinds.items()}

    torch.manual_seed(0)
    x = torch.randn(8 * args.batch, dx, device=device)
    y = torch.randn(8 * args.batch, dy, device=device)

    def make_step(bf16: bool, plain_dropout: bool, tf32: bool = False):
        model = FusionModel(FusionConfig({"image": ModalitySpec("bench-x", dx), "text": ModalitySpec("bench-y", dy)},
                                         proj_dim=512, depth=4, expansion=4, dropout=0.6)).to(device).train()
        if plain_dropout:  # the baseline: torch's own GELU and dropout (bernoulli_ mask) in every block
            for adapter in model.adapters.values():
                for block in adapter.blocks:
                    block.act_drop = torch.nn.Sequential(torch.nn.GELU(), torch.nn.Dropout(block.act_drop.p))
        opt = make_optimizer(model, 1e-4, 0.1)
        g = torch.Generator().manual_seed(0)

        def step():
            with fp32_matmuls("tf32" if tf32 else "ieee"):
                idx = torch.randint(0, x.shape[0], (args.batch,), generator=g).to(device)
                xb, yb = fusemix_mix(x[idx], y[idx], sample_lambda(1.0, g), mix_partners(args.batch, "permutation", g))
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = model("image", xb, "text", yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        return step, model

    variants = {"fp32": make_step(False, False), "fp32_plain_dropout": make_step(False, True)}
    if with_bf16:
        variants["bf16"] = make_step(True, False)
    if device.type == "cuda":  # train.py --tf32: fp32 matmuls on TF32 tensor cores (CUDA only)
        variants["fp32_tf32"] = make_step(False, False, tf32=True)
    # A step's FLOPs are those of its GEMMs (elementwise work is not counted).
    gemms = {name: step_gemms_fn(variants["fp32"][1], args.batch, dtype, device) for name, dtype in kinds.items()}
    for fn, _ in variants.values():  # warm-up: first-touch allocations, thread pools
        fn()
    for fns in matmuls.values():
        for fn, _ in fns:
            fn()
    for fn, _ in gemms.values():
        fn()
    # Each timed window of the one-GEMM baseline repeats the GEMM for about as long as an fp32
    # step takes: best-of-N over a 70 ms window catches the machine's fastest moments far more
    # often than best-of-N over a 3 s one, which would bias the ratio against the step.
    step_t = timed(variants["fp32"][0], device)
    matmuls = {name: [repeated(fn, flops, step_t, device) for fn, flops in fns] for name, fns in matmuls.items()}
    # Interleaved rounds: baseline and steps see the same machine conditions (a shared machine's
    # speed drifts by tens of percent within minutes). Kept: the best of each, and each round's
    # own step/matmul ratio (paired, so drift between rounds cancels), summarised by its median.
    best: dict[str, float] = {}
    paired: dict[str, list[float]] = {name: [] for name in variants}  # step vs one GEMM, per round
    paired_gemms: dict[str, list[float]] = {name: [] for name in variants}  # step vs its own GEMMs, per round
    for _ in range(args.steps):
        now: dict[str, float] = {}
        for name, fns in matmuls.items():
            for i, (fn, _) in enumerate(fns):
                now[f"{name}_{i}"] = timed(fn, device)
        for name, (fn, _) in gemms.items():
            now[f"gemms_{name}"] = timed(fn, device)
        for name, (fn, _) in variants.items():
            now[name] = timed(fn, device)
        for key, t in now.items():
            best[key] = min(best.get(key, float("inf")), t)
        for name in variants:
            kind = name[:4]
            paired[name].append(gemms[kind][1] / now[name] / matmul_rate(matmuls[kind], now, kind))
            paired_gemms[name].append(now[f"gemms_{kind}"] / now[name])

    results = {}
    for name, fns in matmuls.items():
        results[f"matmul_{name}_gflops"] = matmul_rate(fns, best, name) / 1e9
        results[f"step_gemms_{name}_gflops"] = gemms[name][1] / best[f"gemms_{name}"] / 1e9
    for name in variants:
        t, flops = best[name], gemms[name[:4]][1]
        results[f"step_{name}_s"] = t
        results[f"step_{name}_samples_per_s"] = args.batch / t
        results[f"step_{name}_gflops"] = flops / t / 1e9
        results[f"step_{name}_vs_matmul"] = flops / t / 1e9 / results[f"matmul_{name[:4]}_gflops"]
        results[f"step_{name}_vs_step_gemms"] = best[f"gemms_{name[:4]}"] / t
        results[f"step_{name}_vs_matmul_paired_median"] = statistics.median(paired[name])
        results[f"step_{name}_vs_step_gemms_paired_median"] = statistics.median(paired_gemms[name])
    if with_bf16:
        results["bf16_speedup"] = results["step_fp32_s"] / results["step_bf16_s"]
    results["speedup_over_plain_dropout"] = results["step_fp32_plain_dropout_s"] / results["step_fp32_s"]
    if "fp32_tf32" in variants:
        results["tf32_speedup"] = results["step_fp32_s"] / results["step_fp32_tf32_s"]

    print("matmul, one [B, d] @ [d, 4d] GEMM: "
          + ", ".join(f"{name} {results[f'matmul_{name}_gflops']:.1f} GFLOP/s" for name in kinds))
    print("matmul, all of a step's GEMMs back to back: "
          + ", ".join(f"{name} {results[f'step_gemms_{name}_gflops']:.1f} GFLOP/s" for name in kinds))
    for name in variants:
        print(f"train step {name}: {results[f'step_{name}_samples_per_s']:.0f} samples/s, "
              f"{results[f'step_{name}_gflops']:.1f} GFLOP/s = {100 * results[f'step_{name}_vs_matmul']:.1f}% of "
              f"the one-GEMM rate, {100 * results[f'step_{name}_vs_step_gemms']:.1f}% of the step-GEMMs rate; "
              f"per-round one-GEMM ratios {' '.join(f'{100 * r:.0f}%' for r in paired[name])} "
              f"(median {100 * results[f'step_{name}_vs_matmul_paired_median']:.1f}%); per-round step-GEMMs ratios "
              f"{' '.join(f'{100 * r:.0f}%' for r in paired_gemms[name])} "
              f"(median {100 * results[f'step_{name}_vs_step_gemms_paired_median']:.1f}%)")
    print(f"fusemix GELU-dropout vs torch GELU + dropout: step {results['speedup_over_plain_dropout']:.2f}x faster")
    if "tf32_speedup" in results:
        print(f"TF32 (train.py --tf32) speed-up over fp32: {results['tf32_speedup']:.2f}x")
    if with_bf16:
        print(f"bf16 autocast speed-up over fp32: {results['bf16_speedup']:.2f}x "
              f"({'faster' if results['bf16_speedup'] > 1 else 'NOT faster'} than fp32)")
    print(json.dumps({k: round(v, 4) for k, v in results.items()}))
    print("train_fp32_vs_gemms = an fp32 training step's rate / the rate of its own GEMMs run alone, "
          "per-round median (1.0: the step costs nothing beyond its matmuls)")
    print(goal_line("train_fp32_vs_gemms", results["step_fp32_vs_step_gemms_paired_median"], ">=", 0.85))


if __name__ == "__main__":
    main()
