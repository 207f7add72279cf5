"""Top-k search: exact paths agree with brute force, approximate recall is measured, bad input is refused."""

import numpy as np
import pytest
import torch

from fusemix.search import (
    AUTO_APPROX_MIN,
    FaissFlatIndex,
    FaissHNSWIndex,
    FaissIVFIndex,
    SearchInputError,
    TorchIndex,
    build_index,
    exact_topk,
    recall_at_k,
)

ALL_KINDS = ["torch", "flat", "hnsw", "ivf"]


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    base = unit(rng.standard_normal((3000, 32)))
    queries = unit(rng.standard_normal((40, 32)))
    return base, queries


@pytest.fixture(scope="module")
def structured():
    """Vectors near a low-dimensional subspace, like real embeddings (where ANN indexes are meant to work)."""
    rng = np.random.default_rng(1)
    basis = rng.standard_normal((6, 48))
    def draw(n):
        return unit(unit(rng.standard_normal((n, 6)) @ basis) + 0.2 / np.sqrt(48) * rng.standard_normal((n, 48)))
    return draw(4000), draw(50)


def brute_force(base, queries, k):
    s = queries @ base.T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), order


@pytest.mark.parametrize("k", [1, 7, 50])
def test_torch_exact_equals_numpy_argsort(data, k):
    base, queries = data
    ref_s, ref_i = brute_force(base, queries, k)
    res = build_index(base, "torch").search(queries, k)
    np.testing.assert_array_equal(res.ids, ref_i)
    np.testing.assert_allclose(res.scores, ref_s, atol=1e-5)
    assert res.scores.dtype == np.float32 and res.ids.dtype == np.int64


def test_blocked_topk_equals_one_shot(data):
    base, queries = data
    q, b = torch.from_numpy(queries), torch.from_numpy(base)
    s1, i1 = exact_topk(q, b, 10)
    s2, i2 = exact_topk(q, b, 10, max_scores_bytes=4 * 40 * 128)  # forces ~24 blocks of 128 rows
    assert torch.equal(i1, i2)
    assert torch.allclose(s1, s2)


def test_faiss_flat_equals_torch(data):
    base, queries = data
    t = build_index(base, "torch").search(queries, 10)
    f = build_index(base, "flat").search(queries, 10)
    np.testing.assert_array_equal(f.ids, t.ids)
    np.testing.assert_allclose(f.scores, t.scores, atol=1e-5)


def test_approximate_recall_is_measured(structured):
    base, queries = structured
    exact = build_index(base, "flat").search(queries, 10).ids
    hnsw = build_index(base, "hnsw", m=16, ef_construction=40, ef_search=64)
    r_hnsw = recall_at_k(hnsw.search(queries, 10).ids, exact)
    hnsw.set_ef_search(8)
    r_low = recall_at_k(hnsw.search(queries, 10).ids, exact)
    assert r_hnsw >= 0.95, r_hnsw
    assert r_low <= r_hnsw  # a narrower beam cannot find more
    wide = hnsw.search(queries[:2], 100)  # k above efSearch widens the beam instead of returning -1s
    assert wide.ids.shape == (2, 100) and (wide.ids >= 0).all()
    ivf = build_index(base, "ivf", nlist=32, nprobe=32)  # visiting every list is exhaustive
    assert recall_at_k(ivf.search(queries, 10).ids, exact) == 1.0
    ivf.set_nprobe(1)
    r_ivf1 = recall_at_k(ivf.search(queries, 10).ids, exact)
    assert 0.0 < r_ivf1 < 1.0


def test_recall_at_k_counts_overlap():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, -1], [5, 6, 7, 8]])
    assert recall_at_k(approx, exact) == pytest.approx((2 + 4) / 8)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_k_larger_than_index_is_clamped(kind):
    base = unit(np.random.default_rng(2).standard_normal((64, 8)))
    res = build_index(base, kind, **({"nlist": 4, "nprobe": 4} if kind == "ivf" else {})).search(base[:3], 500)
    assert res.ids.shape == (3, 64) and res.scores.shape == (3, 64)
    assert sorted(res.ids[0].tolist()) == list(range(64))
    assert (np.diff(res.scores, axis=1) <= 1e-6).all()  # best first


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_add_and_remove_keep_ids(kind):
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal((200, 16)))
    opts = {"nlist": 8, "nprobe": 8} if kind == "ivf" else {}
    index = build_index(base[:150], kind, ids=np.arange(1000, 1150), **opts)
    new_ids = index.add(base[150:])
    assert new_ids.tolist() == list(range(1150, 1200))
    assert len(index) == 200
    assert index.search(base[160], 1).ids[0, 0] == 1160
    assert index.remove([1160, 1003, 424242]) == 2
    assert len(index) == 198
    got = index.search(base[[160, 3]], 5).ids
    assert 1160 not in got and 1003 not in got
    assert index.search(base[10], 1).ids[0, 0] == 1010  # survivors keep their ids
    with pytest.raises(SearchInputError, match="already in the index"):
        index.add(base[:1], ids=[1010])


def test_vectors_round_trip():
    base = unit(np.random.default_rng(4).standard_normal((20, 8)))
    for cls in (TorchIndex, FaissFlatIndex, FaissHNSWIndex):
        idx = cls(8)
        idx.add(base)
        idx.remove([0])
        np.testing.assert_allclose(idx.vectors(), base[1:], atol=1e-6)
    ivf = FaissIVFIndex(8, nlist=2)
    ivf.add(base)
    np.testing.assert_allclose(ivf.vectors(), base, atol=1e-6)


def test_bad_input_is_refused(data):
    base, _ = data
    index = build_index(base, "torch")
    with pytest.raises(SearchInputError, match="k must be an integer >= 1"):
        index.search(base[:1], 0)
    with pytest.raises(SearchInputError, match="dim 16, but this index holds dim 32"):
        index.search(np.ones((1, 16), np.float32) / 4, 3)
    with pytest.raises(SearchInputError, match="L2-normalised"):
        index.search(base[:1] * 3, 3)
    with pytest.raises(SearchInputError, match="NaN"):
        index.search(np.full((1, 32), np.nan, np.float32), 3)
    with pytest.raises(SearchInputError, match="kind must be one of"):
        build_index(base, "annoy")
    with pytest.raises(SearchInputError, match="0 vectors"):
        build_index(np.empty((0, 4), np.float32))
    with pytest.raises(SearchInputError, match="empty index"):
        TorchIndex(4).search(np.eye(4, dtype=np.float32)[:1], 1)
    with pytest.raises(SearchInputError, match="all-zero"):
        build_index(np.zeros((2, 4), np.float32), normalize=True)
    with pytest.raises(SearchInputError, match="unsupported option"):
        build_index(base, "torch", ef_search=3)


def test_normalize_option_and_auto_kind(data):
    base, queries = data
    index = build_index(base * 5.0, normalize=True)
    assert index.kind == "torch" and len(index) < AUTO_APPROX_MIN
    np.testing.assert_array_equal(index.search(queries * 2, 5).ids, brute_force(base, queries, 5)[1])
