"""Clips/s of the whole extraction stage vs. the CLAP audio encoder's forward alone, in one run.

Baseline: ``forward(collate(batch))`` over items that went through ``prepare`` beforehand (the
model-bound rate). Stage: ``fusemix.cache.LatentCache.build`` over the same clips on disk, from the
files: ``prepare`` (decode, mix down, resample to 48 kHz with soxr, cut windows, log-mel) in
DataLoader workers, forward in the main process, shard writes and manifest updates. Ratio = stage /
forward, read from the median over ``--repeats`` interleaved rounds of each round's stage vs. that
round's forward (a shared machine drifts); best-of figures are printed too, with the CPU side's
ceiling (W workers x the one-process prepare rate). The goal (>= 0.9: decoding hidden behind
compute) is printed last, for the largest worker count measured.

It adapts to what it finds: the model's device (CUDA when available), batch size and worker counts
from it and the cores (``fusemix.extract.default_num_workers``), and the number of clips from a
probe of prepare and forward, so the timed rounds take about ``--budget-s`` seconds. Model:
``random-full`` (default: a randomly initialised full-size ``ClapModel``, 153M parameters,
realistic compute, offline), ``tiny`` (smoke tests) or a checkpoint id or directory.

    python benchmarks/extract_throughput.py                       # a few minutes on 2 CPU cores
    python benchmarks/extract_throughput.py --model tiny --clips 8 --seconds 2 --repeats 1
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusemix.cache import LatentCache, SingleProcess, Units  # noqa: E402
from fusemix.encoders import load_encoder  # noqa: E402
from fusemix.extract import RawItemLoader, default_num_workers  # noqa: E402
from fusemix.pairs import open_folder  # noqa: E402

GOAL = 0.9


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def synth_clips(root: Path, n: int, seconds: float, sr: int, channels: int, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    for i in range(n):
        wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)[:, None] + 0.05 * rng.standard_normal((len(t), channels))
        sf.write(root / f"clip{i:05d}.wav", wav.astype(np.float32), sr, subtype="PCM_16")
    (root / "metadata.csv").write_text("file_name,caption\n" + "".join(f"clip{i:05d}.wav,clip {i}\n" for i in range(n)))
    return root


def build_model(name: str, tmp: Path) -> str:
    if name not in ("random-full", "tiny"):
        return name
    from fusemix.tiny import save_tiny_clap

    path = save_tiny_clap(tmp / "clap")
    if name == "random-full":
        from transformers import AutoTokenizer, ClapConfig, ClapModel

        vocab = len(AutoTokenizer.from_pretrained(path))
        cfg = ClapConfig(text_config={"vocab_size": vocab}, audio_config={"enable_fusion": False})
        ClapModel(cfg).eval().save_pretrained(path)  # same processor files, full-size random weights
    return str(path)


def time_forward(enc, prepared: list, n: int, batch_size: int) -> float:
    """clips/s of the forward over ``n`` clips (the prepared ones, cycled)."""
    items = [prepared[i % len(prepared)] for i in range(n)]
    enc.forward(enc.collate(items[:batch_size]))  # warm-up
    if enc.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, n, batch_size):
        enc.forward(enc.collate(items[i:i + batch_size]))  # returns CPU tensors: waits for the device
    return n / (time.perf_counter() - start)


def time_stage(enc, source, root: Path, batch_size: int, num_workers: int, run: int) -> float:
    units = Units(list(source.ids), f"{source.items_fingerprint()}:bench{run}", RawItemLoader(source), "audio")
    cache = LatentCache(root, units, enc, shard_size=1024)
    start = time.perf_counter()
    cache.build(batch_size=batch_size, num_workers=num_workers, progress=False, state=SingleProcess())
    rate = len(units.ids) / (time.perf_counter() - start)
    got = cache.load()
    if len(got.index) != len(units.ids):
        raise SystemExit(f"benchmark clips failed to encode: {got.failed[:3]}")
    return rate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="random-full", help="random-full (default), tiny, or a CLAP id/directory")
    p.add_argument("--device", default=None, help="encoder device (default: cuda if available)")
    p.add_argument("--clips", type=int, help="default: what fits --budget-s (3 batches to 1024)")
    p.add_argument("--budget-s", type=float, default=90.0, help="seconds the timed rounds should take")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--source-sr", type=int, default=44100)
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--batch-size", type=int, help="default: 32 on CUDA, 4 on the CPU")
    p.add_argument("--num-workers", help="comma-separated list, each measured (default: from the cores)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    cores, spare = os.cpu_count(), default_num_workers()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    batch_size = args.batch_size or (32 if gpu else 4)
    workers = ([int(w) for w in args.num_workers.split(",")] if args.num_workers
               else sorted({w for w in (4, 8, spare) if w <= spare}) if gpu else [0, spare])
    print(f"found: {cpu_model()}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}; "
          f"{cores} cores ({spare} decoding workers by default); torch threads {torch.get_num_threads()}; "
          f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if gpu else ''}")

    with tempfile.TemporaryDirectory(prefix="fusemix-bench-") as tmp_s:
        tmp = Path(tmp_s)
        enc = load_encoder("clap-audio", build_model(args.model, tmp), device=device)
        probe = open_folder(synth_clips(tmp / "probe", batch_size, args.seconds, args.source_sr, args.channels))
        start = time.perf_counter()
        prepared = [enc.prepare(probe.item(i)) for i in range(len(probe))]
        prep_s = (time.perf_counter() - start) / len(prepared)
        forward_s = 1 / time_forward(enc, prepared, batch_size, batch_size)
        per_clip = args.repeats * (prep_s + forward_s * (1 + 1.2 * len(workers)))  # forward + stages, with slack
        clips = args.clips or int(min(1024, max(3 * batch_size, args.budget_s / per_clip)) // batch_size * batch_size)
        print(f"probe: prepare {1e3 * prep_s:.1f} ms, forward {1e3 * forward_s:.1f} ms per clip -> {clips} clips")
        source = open_folder(synth_clips(tmp / "clips", clips, args.seconds, args.source_sr, args.channels))
        print(f"model: {args.model}; {enc.dtype}; data: {clips} clips x {args.seconds:g} s, {args.source_sr} Hz, "
              f"{args.channels} ch 16-bit WAV; batch {batch_size}; workers {workers}")
        best: dict[str, float] = {}
        ratios: dict[int, list[float]] = {w: [] for w in workers}
        for r in range(args.repeats):  # interleaved rounds: each stage paired with its round's forward
            start = time.perf_counter()
            prepared = [enc.prepare(source.item(i)) for i in range(min(clips, 128))]
            best["prepare"] = max(best.get("prepare", 0.0), len(prepared) / (time.perf_counter() - start))
            forward = time_forward(enc, prepared, clips, batch_size)
            del prepared
            best["forward"] = max(best.get("forward", 0.0), forward)
            for w in workers:
                rate = time_stage(enc, source, tmp / f"cache-w{w}", batch_size, w, r)
                best[f"w{w}"] = max(best.get(f"w{w}", 0.0), rate)
                ratios[w].append(rate / forward)
        prep, forward = best["prepare"], best["forward"]
        print(f"best of {args.repeats} rounds:")
        print(f"decode+prepare alone, 1 process: {prep:8.1f} clips/s   ({1e3 / prep:.1f} ms per clip)")
        print(f"forward alone (pre-decoded):     {forward:8.1f} clips/s   <- baseline")
        print(f"prepare then forward, no overlap:{1 / (1 / prep + 1 / forward):8.1f} clips/s")
        for w in workers:
            ceiling = f"; CPU-side ceiling {w * prep:.0f} clips/s" if w else ""
            print(f"whole stage, num_workers={w}:     {best[f'w{w}']:8.1f} clips/s   ratio "
                  f"{best[f'w{w}'] / forward:.2f} (best vs best){ceiling}")
        for w in workers:
            print(f"stage / forward, num_workers={w}, per round: {' '.join(f'{x:.2f}' for x in ratios[w])}; "
                  f"median {statistics.median(ratios[w]):.2f}")
    figure = round(statistics.median(ratios[max(workers)]), 2)
    print(f"GOAL extract_stage_vs_forward: {figure:.2f} (goal >= {GOAL}: {'met' if figure >= GOAL else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
