"""Latent cache: keys, resume after a crash, corrupt shards, per-item failures, workers."""
from __future__ import annotations

import json

import pytest
import torch

from fusemix.cache import CacheError, LatentCache, SingleProcess, Units, cache_key, encode_rows


STATE = SingleProcess()


class FakeEncoder:
    """Deterministic: the latent of input v is [v, 2v, sin v, 1]; counts its forward calls.

    ``crash_on_call`` raises a RuntimeError (an encoder or machine fault) on that call;
    ``reject`` values raise ValueError (a bad item); ``nan`` values come out as NaN.
    """

    modality, pooling, dim = "text", "mean", 4

    def __init__(self, model_id="fake/enc", crash_on_call=None, reject=(), nan=()):
        self.model_id, self.crash_on_call, self.reject, self.nan = model_id, crash_on_call, set(reject), set(nan)
        self.calls = 0
        self.seen: list[float] = []

    def describe(self):
        return {"kind": "fake", "model_id": self.model_id, "revision": "r1", "modality": self.modality,
                "dim": self.dim, "pooling": self.pooling}

    def encode(self, items):
        self.calls += 1
        if self.calls == self.crash_on_call:
            raise RuntimeError("simulated crash")
        if any(v in self.reject for v in items):
            raise ValueError("rejected input")
        self.seen += list(items)
        v = torch.tensor(items, dtype=torch.float32)
        out = torch.stack([v, 2 * v, torch.sin(v), torch.ones_like(v)], dim=1)
        out[[i for i, x in enumerate(items) if x in self.nan]] = float("nan")
        return out


class Loader:
    """Unit i -> float(i); positions in ``broken`` fail to 'decode'."""

    def __init__(self, broken=()):
        self.broken = set(broken)

    def __call__(self, i):
        if i in self.broken:
            raise OSError(f"cannot decode unit {i}")
        return float(i)


def units(n=10, broken=(), fingerprint="fp-1"):
    return Units([f"u{i}" for i in range(n)], fingerprint, Loader(broken), kind="captions")


def build(root, u, enc, shard_size=4, batch_size=2, **kw):
    cache = LatentCache(root, u, enc, shard_size=shard_size)
    stats = cache.build(batch_size=batch_size, progress=False, state=STATE, **kw)
    return cache, stats


def test_build_then_load_round_trips_with_a_complete_manifest(tmp_path):
    enc = FakeEncoder()
    cache, stats = build(tmp_path, units(10), enc)
    assert stats.encoded_shards == [0, 1, 2] and stats.reused_shards == []
    got = cache.load()
    assert got.ids == [f"u{i}" for i in range(10)]
    assert torch.equal(got.index, torch.arange(10))
    assert torch.allclose(got.latents[:, 0], torch.arange(10.0)) and got.latents.shape == (10, 4)
    m = json.loads((cache.dir / "manifest.json").read_text())
    assert m["complete"] and m["count"] == 10 and m["num_shards"] == 3 and m["dim"] == 4
    assert m["model_id"] == "fake/enc" and m["revision"] == "r1" and m["pooling"] == "mean"
    assert m["dtype"] == "float32" and m["item_shape"] == [4]
    assert [e["count"] for e in m["shards"].values()] == [4, 4, 2]
    assert sorted(p.name for p in cache.dir.iterdir()) == [
        "item_ids.json", "manifest.json", "shard-00000.safetensors", "shard-00001.safetensors",
        "shard-00002.safetensors"]
    # batches never straddle shards: 2+2 | 2+2 | 2
    assert enc.calls == 5


def test_a_complete_cache_is_reused_without_encoding(tmp_path):
    build(tmp_path, units(10), FakeEncoder())
    enc = FakeEncoder()
    cache, stats = build(tmp_path, units(10), enc)
    assert enc.calls == 0 and stats.reused_shards == [0, 1, 2] and stats.encoded_shards == []
    assert cache.load().latents.shape == (10, 4)


def test_resume_after_a_crash_skips_complete_shards_and_matches_an_uninterrupted_run(tmp_path):
    reference, _ = build(tmp_path / "ref", units(10), FakeEncoder())
    # Call 4 is the 2nd batch of shard 1: shard 0 is on disk, shard 1 is not.
    crashing = FakeEncoder(crash_on_call=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(tmp_path / "run", units(10), crashing)
    partial = LatentCache(tmp_path / "run", units(10), FakeEncoder(), shard_size=4)
    m = partial.read_manifest()
    assert not m["complete"] and list(m["shards"]) == ["shard-00000.safetensors"]
    with pytest.raises(CacheError, match="incomplete"):
        partial.load()

    resumed = FakeEncoder()
    cache, stats = build(tmp_path / "run", units(10), resumed)
    assert stats.reused_shards == [0] and stats.encoded_shards == [1, 2]
    assert resumed.seen == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # nothing of shard 0 recomputed
    a, b = cache.load(), reference.load()
    assert torch.equal(a.latents, b.latents) and torch.equal(a.index, b.index) and a.ids == b.ids


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_corrupt_or_missing_shard_is_detected_and_redone(tmp_path, damage):
    cache, _ = build(tmp_path, units(10), FakeEncoder())
    before = cache.load()
    shard = cache.dir / "shard-00001.safetensors"
    data = shard.read_bytes()
    if damage == "flip":
        shard.write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    elif damage == "truncate":
        shard.write_bytes(data[: len(data) // 2])
    else:
        shard.unlink()
    with pytest.raises(CacheError, match="corrupt|missing"):
        cache.load()
    enc = FakeEncoder()
    _, stats = build(tmp_path, units(10), enc)
    assert stats.encoded_shards == [1] and stats.reused_shards == [0, 2]
    assert stats.redone_shards == [1] and enc.seen == [4.0, 5.0, 6.0, 7.0]
    assert torch.equal(cache.load().latents, before.latents)


def test_the_key_changes_with_encoder_data_dtype_and_shard_size(tmp_path):
    base = cache_key(units(), FakeEncoder())
    assert cache_key(units(), FakeEncoder()) == base
    assert cache_key(units(), FakeEncoder(model_id="other/enc")) != base
    enc = FakeEncoder()
    enc.pooling = "cls"
    assert cache_key(units(), enc) != base
    assert cache_key(units(fingerprint="fp-2"), FakeEncoder()) != base
    assert cache_key(units(), FakeEncoder(), dtype="float16") != base
    assert cache_key(units(), FakeEncoder(), shard_size=8) != base

    a, _ = build(tmp_path, units(6), FakeEncoder())
    b, _ = build(tmp_path, units(6), FakeEncoder(model_id="other/enc"))
    assert a.dir != b.dir and a.dir.is_dir() and b.dir.is_dir()


def test_bad_items_are_recorded_and_the_rest_is_encoded(tmp_path):
    # unit 1 fails to decode, unit 5 is rejected by the encoder, unit 8 comes out NaN
    enc = FakeEncoder(reject={5.0}, nan={8.0})
    cache, _ = build(tmp_path, units(10, broken={1}), enc, batch_size=4)
    got = cache.load()
    assert got.index.tolist() == [0, 2, 3, 4, 6, 7, 9]
    assert torch.allclose(got.latents[:, 0], got.index.float())
    reasons = {uid: r for _, uid, r in got.failed}
    assert set(reasons) == {"u1", "u5", "u8"}
    assert "decode failed: OSError: cannot decode unit 1" in reasons["u1"]
    assert "rejected" in reasons["u5"] and "NaN" in reasons["u8"]
    assert cache.read_manifest()["failed_count"] == 3 and cache.read_manifest()["ok_count"] == 7


def test_a_shard_where_everything_failed_is_still_complete(tmp_path):
    cache, _ = build(tmp_path, units(6, broken={0, 1, 2, 3}), FakeEncoder())
    got = cache.load()
    assert got.index.tolist() == [4, 5] and got.latents.shape == (2, 4) and len(got.failed) == 4


def test_decoding_in_worker_processes_gives_the_same_latents(tmp_path):
    ref, _ = build(tmp_path / "a", units(10, broken={3}), FakeEncoder())
    par, _ = build(tmp_path / "b", units(10, broken={3}), FakeEncoder(), num_workers=2)
    a, b = ref.load(), par.load()
    assert torch.equal(a.latents, b.latents) and a.failed == b.failed


def test_half_precision_storage(tmp_path):
    cache = LatentCache(tmp_path, units(5), FakeEncoder(), shard_size=4, dtype="float16")
    cache.build(progress=False, state=STATE)
    assert cache.load().latents.dtype == torch.float16


def test_bad_settings_and_foreign_manifests_are_clear_errors(tmp_path):
    with pytest.raises(CacheError, match="shard_size"):
        LatentCache(tmp_path, units(), FakeEncoder(), shard_size=0)
    with pytest.raises(CacheError, match="dtype"):
        LatentCache(tmp_path, units(), FakeEncoder(), dtype="int8")
    with pytest.raises(CacheError, match="nothing to encode"):
        LatentCache(tmp_path, units(0), FakeEncoder())
    with pytest.raises(CacheError, match="not unique"):
        LatentCache(tmp_path, Units(["a", "a"], "fp", Loader()), FakeEncoder())
    cache, _ = build(tmp_path, units(4), FakeEncoder())
    m = json.loads((cache.dir / "manifest.json").read_text())
    m["key"] = "somethingelse"
    (cache.dir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CacheError, match="another cache"):
        cache.load()


def test_an_encoder_returning_the_wrong_batch_size_stops_the_run(tmp_path):
    class Broken(FakeEncoder):
        def encode(self, items):
            return super().encode(items)[:1]

    with pytest.raises(RuntimeError, match="shape"):
        build(tmp_path, units(4), Broken())


class SplitEncoder(FakeEncoder):
    """FakeEncoder with the prepare/collate/forward split; ``collate`` rejects some values."""

    def __init__(self, reject_in_collate=(), **kw):
        super().__init__(**kw)
        self.reject_in_collate = set(reject_in_collate)

    def prepare(self, x):
        return x

    def collate(self, xs):
        if any(x in self.reject_in_collate for x in xs):
            raise ValueError("cannot batch this input")
        return list(xs)

    def forward(self, batch):
        return self.encode(batch)


@pytest.mark.parametrize("workers", [0, 2])
def test_split_encoders_keep_every_per_item_outcome(tmp_path, workers):
    enc = SplitEncoder(reject={5.0}, nan={7.0}, reject_in_collate={8.0})
    cache, _ = build(tmp_path, units(10, broken={2}), enc, num_workers=workers)
    got = cache.load()
    want = [i for i in range(10) if i not in (2, 5, 7, 8)]
    assert got.index.tolist() == want
    assert torch.allclose(got.latents[:, 0], torch.tensor(want, dtype=torch.float32))
    reasons = {pos: reason for pos, _, reason in got.failed}
    assert set(reasons) == {2, 5, 7, 8}
    assert "decode" in reasons[2] and "rejected" in reasons[5] and "NaN" in reasons[7]
    assert "cannot batch" in reasons[8]
    # [0,1] [3] [4,5]->4,5 alone [6,7] [8,9]->9 alone (8 never reaches forward)
    assert enc.calls == 1 + 1 + 3 + 1 + 1


def test_encode_rows_isolates_rejected_items_and_lets_faults_through():
    calls = []

    def fn(xs):
        calls.append(list(xs))
        if "bad" in xs:
            raise ValueError(f"cannot use {xs}")
        return torch.tensor([[float(len(x))] for x in xs])

    got = encode_rows(fn, ["a", "bad", "ccc"])
    assert calls == [["a", "bad", "ccc"], ["a"], ["bad"], ["ccc"]]  # the batch, then each item alone
    assert [r.tolist() if r is not None else None for r, _ in got] == [[1.0], None, [3.0]]
    assert isinstance(got[1][1], ValueError) and got[0][1] is None
    assert encode_rows(fn, []) == [] and len(calls) == 4  # nothing to run

    def crash(xs):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):  # not in rejects: a fault
        encode_rows(crash, ["a", "b"])
    assert encode_rows(crash, ["a"], rejects=(Exception,))[0][0] is None
    with pytest.raises(RuntimeError, match="shape"):  # a wrong output shape is a fault too
        encode_rows(lambda xs: torch.zeros(1, 2), ["a", "b"])
