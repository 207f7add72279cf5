"""Clips/s of the whole extraction stage vs. the encoder's forward alone, measured in one run.

Baseline: the CLAP audio encoder's ``forward(collate(batch))`` over batches whose items went
through ``prepare`` beforehand, i.e. the model-bound rate. With the model on an accelerator,
``prepare`` decodes, mixes down and cuts 10 s windows at the file's rate, and the forward resamples
them to 48 kHz, pads them and computes the log-mel on the device (``fusemix.device_resample``,
``fusemix.encoders.clap_features``); with the model on the CPU all of that but the model is in
``prepare``. ``--split accelerator`` times the accelerator's split with the model on the CPU, so
that its CPU side (the "prepare alone" line) can be measured on a machine without a GPU. With the
accelerator's split, the forward's parts before the model are also timed alone ("forward part").
Stage: ``fusemix.cache.LatentCache.build`` over the same clips on disk, starting from the files:
``prepare`` in DataLoader workers, forward in the main process, shard writes, checksums and
manifest updates. Ratio = stage / baseline (goal >= 0.9: decoding is hidden behind compute), read from the median over ``--repeats`` interleaved rounds of
each round's stage vs. that round's forward; best-of-rounds figures are printed as well. Also
printed: the stage vs. the no-overlap rate 1 / (1/prepare + 1/forward), which shows the machinery's
own overhead (about 1.0 with ``num_workers=0``) and the gain from overlap (above 1.0 with workers),
and the CPU side's ceiling with W workers, W x the one-process prepare rate: where it is below the
forward's rate (a fast GPU, few cores), the workers cannot keep up and the goal is out of reach
without more cores.

Where the encoder runs on the same few CPU cores as the decoders (a 2-core laptop), the workers
can only use what the forward leaves idle; they run at the lowest CPU priority for that reason
(``fusemix.cache._worker_init``). On a GPU the question turns round: one 10 s window is about 12
GFLOP of HTSAT forward (torch's FLOP counter), so a GPU embeds clips far faster than one CPU core
prepares them, and the CPU-side ceiling line says how many workers keep up.

The clips are synthesised (tones + noise, ``--source-sr`` Hz, ``--channels`` channels, WAV), so
every clip is decoded, mixed to mono and resampled to 48 kHz like a real dataset's.

Models: the tiny random CLAP from ``fusemix.tiny`` (default: runs offline, but its forward is so
cheap that preprocessing dominates), ``--full-size-random`` (a randomly initialised full-size
``ClapModel(ClapConfig())``, 153M parameters: realistic compute, offline), or ``--model ID_OR_DIR``
(a real checkpoint, e.g. laion/clap-htsat-unfused, on a machine that has it).

    python benchmarks/extract_throughput.py --clips 32 --num-workers 0,1,2
    python benchmarks/extract_throughput.py --full-size-random --clips 32 --seconds 10
"""
from __future__ import annotations

import argparse
import os
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
from fusemix.extract import RawItemLoader  # noqa: E402
from fusemix.pairs import open_folder  # noqa: E402


def synth_clips(root: Path, n: int, seconds: float, sr: int, channels: int, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    rows = []
    for i in range(n):
        tone = np.sin(2 * np.pi * rng.uniform(100, 4000) * t)[:, None]
        wav = 0.3 * tone + 0.05 * rng.standard_normal((len(t), channels))
        sf.write(root / f"clip{i:05d}.wav", wav.astype(np.float32), sr, subtype="PCM_16")
        rows.append(f"clip{i:05d}.wav,clip number {i}\n")
    (root / "metadata.csv").write_text("file_name,caption\n" + "".join(rows))
    return root


def build_model(args: argparse.Namespace, tmp: Path) -> str:
    if args.model:
        return args.model
    from fusemix.tiny import save_tiny_clap

    path = save_tiny_clap(tmp / "clap")
    if args.full_size_random:
        from transformers import AutoTokenizer, ClapConfig, ClapModel

        vocab = len(AutoTokenizer.from_pretrained(path))
        cfg = ClapConfig(text_config={"vocab_size": vocab}, audio_config={"enable_fusion": False})
        ClapModel(cfg).eval().save_pretrained(path)  # same processor files, full-size random weights
    return str(path)


def time_forward(enc, prepared: list, batch_size: int) -> float:
    enc.forward(enc.collate(prepared[:batch_size]))  # warm-up
    start = time.perf_counter()
    for i in range(0, len(prepared), batch_size):
        enc.forward(enc.collate(prepared[i:i + batch_size]))
    return len(prepared) / (time.perf_counter() - start)


def time_device_front(enc, prepared: list, batch_size: int) -> dict[str, float]:
    """clips/s of the forward's work before the model, on the model's device: resampling alone in
    float64 (fusemix's choice) and float32, and resampling + padding + log-mel (accelerator split)."""
    from fusemix.device_resample import DeviceResampler
    from fusemix.encoders.clap_features import pad_windows

    batches = [enc.collate(prepared[i:i + batch_size]) for i in range(0, len(prepared), batch_size)]
    batches = [(b["audio"].to(enc.device), b["table"]) for b in batches]
    fe = enc.bundle.feature_extractor
    runs = {"resample float64": (DeviceResampler(enc.sample_rate, enc.window, torch.float64), False),
            "resample float32": (DeviceResampler(enc.sample_rate, enc.window, torch.float32), False),
            "resample+pad+log-mel": (enc.resampler, True)}
    rates = {}
    for name, (resampler, features) in runs.items():
        for _ in range(2):  # the first pass warms up (filter banks, kernels); the second is timed
            start = time.perf_counter()
            for audio, table in batches:
                body, lengths = resampler(audio, table)
                out = enc.log_mel(pad_windows(body, lengths, fe)) if features else body
            float(out.sum())  # waits for the device
        rates[name] = len(prepared) / (time.perf_counter() - start)
    return rates


def time_stage(enc, source, root: Path, batch_size: int, num_workers: int, shard_size: int, run: int) -> float:
    units = Units(list(source.ids), f"{source.items_fingerprint()}:bench{run}", RawItemLoader(source), "audio")
    cache = LatentCache(root, units, enc, shard_size=shard_size)
    start = time.perf_counter()
    cache.build(batch_size=batch_size, num_workers=num_workers, progress=False, state=SingleProcess())
    rate = len(units.ids) / (time.perf_counter() - start)
    got = cache.load()
    if len(got.index) != len(units.ids):
        raise SystemExit(f"benchmark clips failed to encode: {got.failed[:3]}")
    return rate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="CLAP checkpoint id or directory (default: tiny random CLAP)")
    p.add_argument("--full-size-random", action="store_true", help="random full-size ClapModel (offline)")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--source-sr", type=int, default=44100)
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--shard-size", type=int, default=1024)
    p.add_argument("--num-workers", default="2", help="comma-separated list, each measured")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default=None, help="encoder device (default: cuda if available)")
    p.add_argument("--split", choices=("auto", "accelerator"), default="auto",
                   help="auto: the device's own split; accelerator: resampling and log-mel in forward")
    args = p.parse_args(argv)
    workers = [int(w) for w in args.num_workers.split(",")]

    with tempfile.TemporaryDirectory(prefix="fusemix-bench-") as tmp_s:
        tmp = Path(tmp_s)
        model = build_model(args, tmp)
        enc = load_encoder("clap-audio", model, device=args.device)
        if args.split == "accelerator":
            enc.features_in_forward = enc.fast_features
        source = open_folder(synth_clips(tmp / "clips", args.clips, args.seconds, args.source_sr, args.channels))
        print(f"model: {model}{' (random full-size)' if args.full_size_random else ''}; device {enc.device}, "
              f"{enc.dtype}; resampling and log-mel in {'forward' if enc.features_in_forward else 'prepare'}; torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
        print(f"data: {args.clips} clips x {args.seconds:g} s, {args.source_sr} Hz, {args.channels} ch WAV; "
              f"batch {args.batch_size}")

        # Interleaved rounds: each round times prepare, the forward alone, then each stage, and
        # each stage's ratio is taken against its own round's forward (paired); the median of those
        # is the figure. A shared machine's speed drifts by tens of percent within minutes, so the
        # best-of figures (also printed) can pair a fast moment of one with a slow moment of the other.
        best: dict[str, float] = {}
        ratios: dict[int, list[float]] = {w: [] for w in workers}
        for r in range(args.repeats):
            start = time.perf_counter()
            prepared = [enc.prepare(source.item(i)) for i in range(len(source))]
            best["prepare"] = max(best.get("prepare", 0.0), len(prepared) / (time.perf_counter() - start))
            forward = time_forward(enc, prepared, args.batch_size)
            if enc.features_in_forward:
                for name, rate in time_device_front(enc, prepared, args.batch_size).items():
                    best[name] = max(best.get(name, 0.0), rate)
            del prepared
            best["forward"] = max(best.get("forward", 0.0), forward)
            for w in workers:
                rate = time_stage(enc, source, tmp / f"cache-w{w}", args.batch_size, w, args.shard_size, r)
                best[f"w{w}"] = max(best.get(f"w{w}", 0.0), rate)
                ratios[w].append(rate / forward)
        prep_rate, forward = best["prepare"], best["forward"]
        serial = 1 / (1 / prep_rate + 1 / forward)
        print(f"best of {args.repeats} rounds:")
        print(f"decode+prepare alone, 1 process: {prep_rate:8.1f} clips/s   ({1e3 / prep_rate:.1f} ms per clip)")
        print(f"forward alone (pre-decoded):     {forward:8.1f} clips/s   <- baseline")
        print(f"prepare then forward, no overlap:{serial:8.1f} clips/s   (computed: the rate without overlap)")
        for name in ("resample float64", "resample float32", "resample+pad+log-mel"):
            if name in best:
                print(f"  forward part: {name:18s}{best[name]:8.1f} clips/s   "
                      f"({100 * forward / best[name]:.0f}% of the forward's time)")
        for w in workers:
            stage = best[f"w{w}"]
            ceiling = f"; CPU-side ceiling {w * prep_rate:.0f} clips/s" if w else ""
            print(f"whole stage, num_workers={w}:     {stage:8.1f} clips/s   ratio {stage / forward:.2f} "
                  f"(best vs best); vs no-overlap {stage / serial:.2f}{ceiling}")
        for w in workers:
            print(f"stage / forward, num_workers={w}, per round: "
                  f"{' '.join(f'{x:.2f}' for x in ratios[w])}; median {statistics.median(ratios[w]):.2f} "
                  f"(goal >= 0.90)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
