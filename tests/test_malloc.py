"""fusemix.malloc and the decoding workers' setup: freed memory is kept (no page faults on repeated
multi-MB arrays) and workers run at the lowest CPU priority.

Each case runs in a fresh interpreter: mallopt changes the whole process, and pytest's must not.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fusemix.malloc import _glibc_mallopt

ROOT = Path(__file__).resolve().parents[1]

# A worker's pattern: per item, three arrays of 20 MB (above glibc's default mmap threshold once
# they are all live, and together over its default trim threshold), written, then all freed.
CHURN = """
import json, resource, sys
import numpy as np
sys.path.insert(0, {root!r})
from fusemix.malloc import keep_freed_memory
applied = keep_freed_memory() if {keep} else None
def item():
    arrays = [np.empty(5 << 20, np.float32) for _ in range(3)]
    for a in arrays:
        a.fill(1.0)  # touch every page
for _ in range(3):
    item()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    item()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
print(json.dumps({{"applied": applied, "faults": faults}}))
"""


def _churn(keep: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHURN.format(root=str(ROOT), keep=keep)],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


needs_glibc = pytest.mark.skipif(_glibc_mallopt() is None, reason="mallopt is glibc's")


@needs_glibc
def test_kept_memory_stops_page_faults_on_repeated_arrays():
    plain, kept = _churn(False), _churn(True)
    assert kept["applied"] is True
    # 60 MB per item is 15,360 small pages (fewer where the kernel backs some with huge pages):
    assert plain["faults"] > 200, plain  # the default really does give the pages back...
    assert kept["faults"] < plain["faults"] / 20, (plain, kept)  # ...and kept memory does not


def test_without_glibc_nothing_is_changed(monkeypatch):
    import fusemix.malloc as m

    monkeypatch.setattr(m, "_glibc_mallopt", lambda: None)
    assert m.keep_freed_memory() is False


def test_refused_setting_is_reported(monkeypatch):
    import fusemix.malloc as m

    calls = []

    def mallopt(param, value):
        calls.append(param)
        return 0 if param == m.M_MMAP_THRESHOLD else 1  # glibc returns 0 for a refused value

    monkeypatch.setattr(m, "_glibc_mallopt", lambda: mallopt)
    assert m.keep_freed_memory() is False
    assert sorted(calls) == sorted([m.M_MMAP_THRESHOLD, m.M_TRIM_THRESHOLD, m.M_TOP_PAD])  # all still tried


class WorkerProbe:
    """A split encoder whose latent of unit i is what its ``prepare`` saw in the process it ran
    in: the niceness, and the page faults of re-allocating the churn test's arrays there."""

    modality, pooling, dim, model_id = "text", "mean", 2, "probe"

    def describe(self):
        return {"kind": "probe", "model_id": self.model_id, "revision": None, "modality": "text", "dim": 2}

    def prepare(self, x):
        import os
        import resource

        import numpy as np

        def item():
            for a in [np.empty(5 << 20, np.float32) for _ in range(3)]:
                a.fill(1.0)

        item()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            item()
        return [float(os.nice(0)), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5]

    def collate(self, xs):
        return xs

    def forward(self, batch):
        import torch

        return torch.tensor(batch)


@needs_glibc
def test_decoding_workers_run_at_lowest_priority_and_keep_freed_memory(tmp_path):
    from fusemix.cache import LatentCache, SingleProcess, Units

    units = Units([f"u{i}" for i in range(4)], "fp", float, kind="probe")
    cache = LatentCache(tmp_path, units, WorkerProbe(), shard_size=4)
    cache.build(batch_size=2, num_workers=1, progress=False, state=SingleProcess())
    nice, faults = cache.load().latents.T.tolist()
    assert nice == [19.0] * 4  # niceness can only go up, so never asked of pytest's own process
    assert max(faults) < 200, faults  # 60 MB per item: ~15,000 faults where memory is given back
