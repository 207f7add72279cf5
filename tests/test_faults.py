"""Faults: kill -9 mid-training and mid-extraction, a full or read-only disk while checkpointing,
and two processes writing one latent cache or gallery cache at once. Nothing may be lost or mixed.

- kill -9: ``python train.py`` (and an extraction run) is killed several times, each time 0-50 ms
  after a randomly chosen training step (or number of cache shards) is reached, and rerun with
  ``--resume``; the end result equals an uninterrupted run bit for bit.
- disk full: the checkpoint writer fails with ENOSPC at each stage (monkeypatched), and for real on
  a tiny tmpfs (and EROFS on a read-only remount) where this machine lets root mount one: the
  previous checkpoint stays intact and loadable, the error says why, and a later resume catches up.
- concurrent writers: two processes build the same latent cache (and the same gallery cache) at
  once; the cache's own integrity checks pass and the content is what one writer alone makes.

The seed of the random kill times is printed (FUSEMIX_FAULT_SEED overrides it).
"""
from __future__ import annotations

import errno
import json
import os
import random
import runpy
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import train
from fusemix.latents import save_latent_pairs
from fusemix.model import FusionModel
from fusemix.train_state import latest_checkpoint
from synthetic import make_pairs

REPO = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("FUSEMIX_FAULT_SEED", "20261128"))
SMALL = ["--proj_dim", "32", "--depth", "2", "--expansion", "2", "--warmup_steps", "5", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _final_weights(run: Path) -> tuple[dict, dict]:
    ckpt = latest_checkpoint(run)
    return load_file(str(ckpt / "model.safetensors")), load_file(str(ckpt / "optimizer.safetensors"))


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _wait_for(pred, proc: subprocess.Popen, timeout: float) -> bool:
    """Poll ``pred()`` until true; False when the process ended first (or the timeout passed)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def _kill_loop(cmd: list[str], reached, kill_points: list, rng: random.Random, log: Path, after_kill=None) -> list[str]:
    """Run ``cmd`` once per kill point: when ``reached(point)`` says the run got there, wait a random
    0-50 ms more (so kills land mid-step, mid-write or mid-rename) and SIGKILL it. Then run it to the end."""
    events = []
    for i, point in enumerate(kill_points):
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, env=ENV, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            if not _wait_for(lambda: reached(point), proc, timeout=180):
                proc.wait(timeout=180)
                assert proc.returncode == 0, log.read_text()[-3000:]
                events.append(f"run {i}: finished before reaching {point}")
                return events
            time.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            events.append(f"run {i}: SIGKILL at {point} (+ up to 50 ms)")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if after_kill is not None:
            events[-1] += after_kill()
    with open(log, "ab") as out:
        proc = subprocess.run(cmd, env=ENV, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, timeout=300)
    assert proc.returncode == 0, log.read_text()[-3000:]
    events.append("final run: completed")
    return events


# --------------------------------------------------------------------------------------- training
def test_kill_9_during_training_then_resume_equals_an_uninterrupted_run(tmp_path, capsys):
    lat = save_latent_pairs(tmp_path / "pairs.safetensors", make_pairs(600, seed=5))
    common = ["--latents", str(lat), "--epochs", "4", "--batch_size", "30", "--heldout_fraction", "0.05",
              "--eval_every", "2", "--save_every", "1", "--log_every", "1", "--dropout", "0.2", *SMALL]
    t0 = time.monotonic()
    train.main(common + ["--out", str(tmp_path / "straight")])
    straight_s = time.monotonic() - t0
    out = tmp_path / "killed"
    rng = random.Random(SEED)
    total = 4 * (570 // 30)
    thirds = [(2, total // 3), (total // 3, 2 * total // 3), (2 * total // 3, total - 1)]
    points = [rng.randrange(a, b) for a, b in thirds]  # a random training step in each third of the run

    def step_reached(step: int) -> bool:  # the training log (one line per step) has got to ``step``
        log = out / "metrics.jsonl"
        try:
            last = log.read_text().splitlines()[-1]
            return json.loads(last)["step"] >= step
        except (OSError, IndexError, ValueError, KeyError):
            return False

    def check_after_kill() -> str:
        ckpt = latest_checkpoint(out)  # the pointer is never left dangling or half-written
        if ckpt is None:
            return " -> no checkpoint yet: starts over"
        FusionModel.from_pretrained(ckpt)  # and what it points to loads whole
        state = json.loads((ckpt / "trainer_state.json").read_text())
        return f" -> resumes from step {state['step']}"

    cmd = [sys.executable, str(REPO / "train.py"), *common, "--out", str(out), "--resume"]
    events = _kill_loop(cmd, step_reached, points, rng,
                        tmp_path / "train.log", after_kill=check_after_kill)
    leftovers = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    logged = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in l]
    with capsys.disabled():
        print(f"\nkill -9 during training (seed {SEED}; uninterrupted run {straight_s:.1f} s in-process):")
        print("\n".join("  " + e.replace("SIGKILL at ", "SIGKILL after step ") for e in events))
        print(f"  hidden leftovers of killed writes: {len(leftovers)} {leftovers[:4]}")
        print(f"  metrics.jsonl: {len(logged)} training rows for {len(set(logged))} steps "
              f"({len(logged) - len(set(logged))} logged twice: steps redone after a kill)")
    wa, oa = _final_weights(tmp_path / "straight")
    wb, ob = _final_weights(out)
    _assert_same(wa, wb)
    _assert_same(oa, ob)
    assert json.loads((out / "latest.json").read_text())["step"] == total
    assert len(logged) == len(set(logged)) == total  # steps redone after a kill are logged once


def test_a_half_written_checkpoint_left_by_a_kill_is_cleaned_up_by_the_next_save(tmp_path):
    out = tmp_path / "run"
    common = _small_run(tmp_path, out)
    stale = out / ".ckpt-000000004.x1y2z3"  # what kill -9 in the middle of save_checkpoint leaves
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"\0" * 1000)
    train.main(common + ["--max_steps", "4"])
    assert not stale.exists()


# --------------------------------------------------------------------------------------- disk full
def _small_run(tmp_path: Path, out: Path) -> list[str]:
    lat = tmp_path / "pairs.safetensors"
    if not lat.exists():
        save_latent_pairs(lat, make_pairs(200, seed=2))
    return ["--latents", str(lat), "--out", str(out), "--epochs", "4", "--batch_size", "50",
            "--heldout_fraction", "0", "--save_every", "1", "--dropout", "0.1", *SMALL]


@pytest.fixture(scope="module")
def small_straight(tmp_path_factory) -> dict:
    """Final weights of the uninterrupted small run every disk-full test must end up equal to."""
    tmp = tmp_path_factory.mktemp("straight")
    train.main(_small_run(tmp, tmp / "run"))
    return _final_weights(tmp / "run")[0]


def _snapshot(run: Path) -> tuple[dict, dict, dict]:
    w, o = _final_weights(run)
    return json.loads((run / "latest.json").read_text()), w, o


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("stage", ["model weights", "optimizer state", "trainer state", "rename into place",
                                   "latest pointer"])
def test_disk_full_at_each_checkpoint_stage_keeps_the_previous_one(tmp_path, monkeypatch, stage, small_straight):
    import fusemix.io
    import fusemix.train_state as ts

    out = tmp_path / "run"
    common = _small_run(tmp_path, out)
    train.main(common + ["--max_steps", "4"])  # one epoch: checkpoint at step 4
    before = _snapshot(out)
    real_json, real_replace = ts.atomic_write_json, os.replace
    if stage == "model weights":
        monkeypatch.setattr(fusemix.io, "save_file", _enospc)
    elif stage == "optimizer state":
        monkeypatch.setattr(ts, "atomic_write_json",
                            lambda p, o: _enospc() if Path(p).name == "optimizer.json" else real_json(p, o))
    elif stage == "trainer state":
        monkeypatch.setattr(ts, "atomic_write_json",
                            lambda p, o: _enospc() if Path(p).name == "trainer_state.json" else real_json(p, o))
    elif stage == "latest pointer":
        monkeypatch.setattr(ts, "atomic_write_json",
                            lambda p, o: _enospc() if Path(p).name == "latest.json" else real_json(p, o))
    else:
        def replace(src, dst):
            if Path(dst).name.startswith("ckpt-"):
                _enospc()
            return real_replace(src, dst)

        monkeypatch.setattr(ts.os, "replace", replace)
    with pytest.raises(OSError, match="No space left on device"):
        train.main(common + ["--resume", "--max_steps", "4"])
    monkeypatch.undo()
    after = _snapshot(out)
    assert after[0] == before[0]  # latest.json still names the previous checkpoint
    _assert_same(before[1], after[1])
    _assert_same(before[2], after[2])
    assert not [p for p in out.iterdir() if p.name.startswith(".ckpt-")], "half-written checkpoint left behind"
    # Space is back: resuming catches up and ends exactly where an uninterrupted run ends.
    train.main(common + ["--resume"])
    _assert_same(small_straight, _final_weights(out)[0])


def test_a_full_disk_inside_safetensors_is_an_oserror_and_the_gallery_keeps_serving(tmp_path, monkeypatch):
    """safetensors reports a full disk as SafetensorError, which ``except OSError`` misses: the
    gallery's "an unwritable cache must not break search" would crash instead. fusemix.io turns it
    into OSError(ENOSPC) naming the file."""
    import warnings

    import fusemix.io
    from safetensors import SafetensorError

    from fusemix.gallery import Gallery

    def full(*a, **k):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(fusemix.io, "save_file", full)
    with pytest.raises(OSError) as exc:
        fusemix.io.atomic_save_safetensors(tmp_path / "x.safetensors", {"a": torch.zeros(2)})
    assert exc.value.errno == errno.ENOSPC and "x.safetensors" in str(exc.value)
    assert not list(tmp_path.iterdir())  # no temporary file left behind
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = Gallery.from_items(["a", "b"], lambda items: torch.eye(2)[: len(items)], "fp", modality="text",
                               cache_dir=tmp_path / "cache")
    assert len(g) == 2 and any("could not write the gallery cache" in str(w.message) for w in caught)


@contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(path: Path, leave_bytes: int) -> Path:
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    filler = path / "filler.bin"
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * max(0, free - leave_bytes))
        except OSError:
            pass
    return filler


def test_real_full_and_read_only_filesystem_keep_the_previous_checkpoint(tmp_path, capsys, small_straight):
    with _tmpfs(tmp_path / "tmpfs", "4m") as fs:
        out = fs / "run"
        common = _small_run(tmp_path, out)
        train.main(common + ["--max_steps", "4"])
        before = _snapshot(out)
        filler = _fill(fs, leave_bytes=24 * 1024)  # room for a log line, not for a checkpoint
        with pytest.raises(OSError) as exc:
            train.main(common + ["--resume", "--max_steps", "4"])
        full_msg = str(exc.value)
        assert exc.value.errno == errno.ENOSPC, full_msg
        after = _snapshot(out)
        assert after[0] == before[0]
        _assert_same(before[1], after[1])
        assert not [p for p in out.iterdir() if p.name.startswith(".ckpt-")]
        filler.unlink()
        r = subprocess.run(["mount", "-o", "remount,ro", str(fs)], capture_output=True, text=True)
        ro_msg = "not tried: " + r.stderr.strip()
        if r.returncode == 0:
            with pytest.raises(OSError) as exc:
                train.main(common + ["--resume", "--max_steps", "4"])
            ro_msg = str(exc.value)
            assert exc.value.errno == errno.EROFS, ro_msg
            _assert_same(before[1], _snapshot(out)[1])
            subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)
        train.main(common + ["--resume"])  # room again: it catches up from the intact checkpoint
        _assert_same(small_straight, _final_weights(out)[0])
    with capsys.disabled():
        print(f"\nfull tmpfs while checkpointing: {full_msg}; read-only: {ro_msg}; previous checkpoint intact")


# --------------------------------------------------------------------------------------- extraction
TOYS = textwrap.dedent('''
    """Cheap deterministic stand-in encoders for fault tests (no transformers import)."""
    import sys, time, zlib
    import numpy as np
    import torch

    SLEEP = 0.04

    class ToyAudio:
        modality, pooling, dim, sample_rate, model_id = "audio", "toy", 8, 16000, "toy/audio"
        def describe(self):
            return {"kind": "toy-audio", "model_id": self.model_id, "revision": "1", "modality": "audio",
                    "dim": self.dim, "pooling": self.pooling}
        def encode(self, items):
            time.sleep(SLEEP)
            rows = []
            for w in items:
                spec = np.abs(np.fft.rfft(w, 64))[:6]
                rows.append([len(w) / 16000, float(np.sqrt(np.mean(w ** 2))), *spec.tolist()])
            return torch.tensor(rows, dtype=torch.float32)

    class ToyText:
        modality, pooling, dim, model_id = "text", "toy", 8, "toy/text"
        def describe(self):
            return {"kind": "toy-text", "model_id": self.model_id, "revision": "1", "modality": "text",
                    "dim": self.dim, "pooling": self.pooling}
        def encode(self, items):
            time.sleep(SLEEP)
            return torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(zlib.crc32(t.encode())))
                                for t in items])


    def extract(data, cache, out):
        from fusemix.cache import SingleProcess
        from fusemix.extract import run_extraction
        from fusemix.latents import save_latent_pairs
        res = run_extraction(data, ToyAudio(), ToyText(), cache, batch_size=2, shard_size=4, num_workers=0,
                             progress=False, state=SingleProcess())
        if out:
            save_latent_pairs(out, res.pairs)
        return res

    if __name__ == "__main__":
        res = extract(*sys.argv[1:4])
        print("REUSED", len(res.report.x_shards["reused"]) + len(res.report.y_shards["reused"]),
              "ENCODED", len(res.report.x_shards["encoded"]) + len(res.report.y_shards["encoded"]))
''')


@pytest.fixture(scope="module")
def audio_dataset(tmp_path_factory) -> Path:
    import soundfile as sf

    root = tmp_path_factory.mktemp("faults-audio")
    rng = np.random.default_rng(0)
    lines = ["file_name,caption"]
    for i in range(28):
        sf.write(root / f"{i:02d}.wav", (0.3 * rng.standard_normal(4800)).astype(np.float32), 16000, subtype="PCM_16")
        lines += [f"{i:02d}.wav,clip number {i}", f"{i:02d}.wav,another caption for {i}"]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_kill_9_during_extraction_then_rerun_gives_the_same_latents(tmp_path, audio_dataset, capsys):
    script = tmp_path / "toys.py"
    script.write_text(TOYS)
    toys = runpy.run_path(str(script), run_name="toys")
    t0 = time.monotonic()
    ref = toys["extract"](audio_dataset, tmp_path / "cache-ref", None).pairs
    ref_s = time.monotonic() - t0
    cache, out = tmp_path / "cache", tmp_path / "pairs.safetensors"
    rng = random.Random(SEED + 1)

    def shards_written() -> int:
        return len(list(cache.glob("*/shard-*.safetensors")))

    def check_after_kill() -> str:
        return f" ({shards_written()} shard files on disk)"

    # 7 audio shards + 14 caption shards: kill when the cache holds k of them, k random and increasing.
    points = [rng.randrange(a, b) for a, b in ((1, 7), (7, 14), (14, 20))]
    cmd = [sys.executable, str(script), str(audio_dataset), str(cache), str(out)]
    events = _kill_loop(cmd, lambda k: shards_written() >= k, points, rng, tmp_path / "extract.log",
                        after_kill=check_after_kill)
    final = [l for l in (tmp_path / "extract.log").read_text().splitlines() if l.startswith("REUSED")]
    with capsys.disabled():
        print(f"\nkill -9 during extraction (seed {SEED + 1}; uninterrupted {ref_s:.1f} s in-process):")
        print("\n".join("  " + e.replace("SIGKILL at ", "SIGKILL once the cache held shards: ") for e in events) + f"\n  last run: {final[-1] if final else '?'}")
    from fusemix.latents import load_latent_pairs

    got = load_latent_pairs(out)
    assert torch.equal(got.x, ref.x) and torch.equal(got.y, ref.y)
    assert (got.y_item is None and ref.y_item is None) or torch.equal(got.y_item, ref.y_item)


# --------------------------------------------------------------------------------------- concurrency
CACHE_WRITER = textwrap.dedent('''
    import os, sys, time, zlib
    import torch
    from fusemix.cache import LatentCache, SingleProcess, Units

    UNITS, SHARD = 30, 1  # one unit per shard: as many chances as possible for the writers to interleave

    class Load:
        def __call__(self, i):
            return f"caption number {i}"

    class Toy:
        modality, pooling, model_id = "text", "toy", "toy/text"
        def describe(self):
            return {"kind": "toy-text", "model_id": self.model_id, "revision": "1", "modality": "text", "dim": 8,
                    "pooling": "toy"}
        def encode(self, items):
            time.sleep(0.01)
            return torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(zlib.crc32(t.encode())))
                                for t in items])


    def make(root):
        units = Units([f"c{i}" for i in range(UNITS)], "fixed-fingerprint", Load(), "captions")
        return LatentCache(root, units, Toy(), shard_size=SHARD)

    def build(root):
        make(root).build(batch_size=SHARD, progress=False, state=SingleProcess())

    if __name__ == "__main__":
        root, gate = sys.argv[1], sys.argv[2]
        open(f"{gate}.ready.{os.getpid()}", "w").close()
        while not os.path.exists(gate):  # start all writers at the same moment
            time.sleep(0.002)
        build(root)
''')


def _run_together(cmds: list[list[str]], gate: Path, log: Path) -> None:
    """Start every command, wait until all have imported and say ready, then open the gate at once."""
    procs = [subprocess.Popen(c + [str(gate)], env=ENV, stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=REPO)
             for c in cmds]
    try:
        end = time.monotonic() + 120
        while len(list(gate.parent.glob(gate.name + ".ready.*"))) < len(cmds) and time.monotonic() < end:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.01)
        gate.touch()
        for p in procs:
            p.wait(timeout=240)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def cache_writers(tmp_path_factory):
    """Two processes build one latent cache at once; a third builds the same cache on its own; and
    this process builds it too. Returns the module of the writer script and the directories."""
    tmp = tmp_path_factory.mktemp("cache-writers")
    script = tmp / "writer.py"
    script.write_text(CACHE_WRITER)
    w = runpy.run_path(str(script), run_name="writer")
    w["build"](tmp / "here")
    cmds = [[sys.executable, str(script), str(tmp / d)] for d in ("shared", "shared", "alone")]
    _run_together(cmds, tmp / "gate", tmp / "w.log")
    return w, tmp


def test_two_processes_writing_one_latent_cache_never_mix_it_silently(cache_writers, capsys):
    """What holds today: every shard is checked against the manifest, so an interleaving of two
    writers is either consistent or refused by load() (then a rebuild repairs it) - never silently
    mixed, never half-written."""
    from fusemix.cache import CacheError, SingleProcess

    w, tmp = cache_writers
    alone = w["make"](tmp / "here").load()
    cache = w["make"](tmp / "shared")
    assert cache.is_complete()
    try:
        got = cache.load()  # verifies every shard against the manifest's sha256
        outcome = "every shard verified against the manifest"
    except CacheError as e:
        stats = cache.build(batch_size=1, progress=False, state=SingleProcess())
        got = cache.load()
        outcome = (f"manifest and shards disagree after the race ({str(e).split('/')[-1]}); load() refused it; "
                   f"a rebuild redid {len(stats.redone_shards)} of {cache.num_shards} shards")
    assert got.ids == alone.ids and torch.equal(got.index, alone.index)
    assert torch.equal(got.latents, alone.latents)
    with capsys.disabled():
        print(f"\nconcurrent latent-cache writers: {outcome}")


def test_a_shard_has_the_same_bytes_whichever_process_writes_it(cache_writers):
    w, tmp = cache_writers
    here, alone = w["make"](tmp / "here"), w["make"](tmp / "alone")
    for s in range(here.num_shards):
        assert (here.dir / here.shard_name(s)).read_bytes() == (alone.dir / alone.shard_name(s)).read_bytes(), s


GALLERY_WRITER = textwrap.dedent('''
    import sys, time
    import numpy as np
    import torch
    from fusemix.gallery import Gallery

    def embed(images):
        time.sleep(0.02)
        return torch.tensor(np.stack([np.asarray(im, dtype=np.float32).mean(axis=(0, 1)) + 1 for im in images]))

    if __name__ == "__main__":
        import os
        root, cache, gate = sys.argv[1], sys.argv[2], sys.argv[3]
        open(f"{gate}.ready.{os.getpid()}", "w").close()
        while not os.path.exists(gate):
            time.sleep(0.002)
        g = Gallery.from_folder(root, embed, "mean-colour-v1", cache_dir=cache, batch_size=4, progress=False)
        print("ITEMS", len(g))
''')


def test_two_processes_writing_one_gallery_cache_do_not_corrupt_it(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(3)
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(root / f"{i:02d}.png")
    script = tmp_path / "gwriter.py"
    script.write_text(GALLERY_WRITER)
    w = runpy.run_path(str(script), run_name="gwriter")
    from fusemix.gallery import Gallery

    expected = Gallery.from_folder(root, w["embed"], "mean-colour-v1", cache_dir=False, progress=False)
    outcomes = []
    for round_ in range(1):
        cache = tmp_path / f"gcache-{round_}"
        _run_together([[sys.executable, str(script), str(root), str(cache)]] * 2, tmp_path / f"gate{round_}",
                      tmp_path / "g.log")
        calls = []

        def counting(images):
            calls.append(len(images))
            return w["embed"](images)

        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            g = Gallery.from_folder(root, counting, "mean-colour-v1", cache_dir=cache, progress=False)
        assert g.keys == expected.keys
        assert torch.allclose(g.embeddings, expected.embeddings, atol=1e-6)
        if sum(calls) == 0:
            outcomes.append("cache consistent, all 24 reused")
        else:
            assert any("unusable gallery cache" in str(x.message) for x in caught), [str(x.message) for x in caught]
            outcomes.append(f"mismatch detected and rebuilt ({sum(calls)} re-embedded)")
    with capsys.disabled():
        print("\nconcurrent gallery-cache writers: " + "; ".join(outcomes))
