"""Top-k search: the exact path agrees with brute force, HNSW recall is measured, bad input is refused."""

import numpy as np
import pytest
import torch

from fusemix import search
from fusemix.search import (
    AUTO_APPROX_MIN,
    ExactIndex,
    SearchInputError,
    build_index,
    exact_topk,
    recall_at_k,
)

ALL_KINDS = ["exact", "hnsw"]


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
@pytest.mark.parametrize("n_queries", [1, 2, 40])
def test_exact_equals_numpy_argsort(data, k, n_queries):
    base, queries = data
    ref_s, ref_i = brute_force(base, queries[:n_queries], k)
    res = build_index(base, "exact").search(queries[:n_queries], k)
    np.testing.assert_array_equal(res.ids, ref_i)
    np.testing.assert_allclose(res.scores, ref_s, atol=1e-5)
    assert res.scores.dtype == np.float32 and res.ids.dtype == np.int64


def test_query_chunks_equal_one_shot(data):
    base, queries = data
    base_t = torch.from_numpy(base.T.copy())  # exact_topk takes the gallery transposed, [D, N]
    s1, i1 = exact_topk(queries, base_t, 10)
    s2, i2 = exact_topk(queries, base_t, 10, max_scores_bytes=4 * 3000 * 7)  # chunks of 7 queries
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    assert s2.shape == (40, 10) and i2.dtype == np.int64


def test_approximate_recall_is_measured(structured):
    base, queries = structured
    exact = build_index(base, "exact").search(queries, 10).ids
    hnsw = build_index(base, "hnsw", m=16, ef_construction=40, ef_search=64)
    r_hnsw = recall_at_k(hnsw.search(queries, 10).ids, exact)
    hnsw.set_ef_search(8)
    r_low = recall_at_k(hnsw.search(queries, 10).ids, exact)
    assert r_hnsw >= 0.95, r_hnsw
    assert r_low <= r_hnsw  # a narrower beam cannot find more
    wide = hnsw.search(queries[:2], 100)  # k above efSearch widens the beam instead of returning -1s
    assert wide.ids.shape == (2, 100) and (wide.ids >= 0).all()


def test_recall_at_k_counts_overlap():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, -1], [5, 6, 7, 8]])
    assert recall_at_k(approx, exact) == pytest.approx((2 + 4) / 8)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_k_larger_than_index_is_clamped(kind):
    base = unit(np.random.default_rng(2).standard_normal((64, 8)))
    res = build_index(base, kind).search(base[:3], 500)
    assert res.ids.shape == (3, 64) and res.scores.shape == (3, 64)
    assert sorted(res.ids[0].tolist()) == list(range(64))
    assert (np.diff(res.scores, axis=1) <= 1e-6).all()  # best first


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_added_vectors_get_the_next_ids(kind):
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal((200, 16)))
    index = build_index(base[:150], kind)
    new_ids = index.add(base[150:])
    assert new_ids.tolist() == list(range(150, 200))
    assert len(index) == 200
    assert index.search(base[160], 1).ids[0, 0] == 160
    scores, ids = index.search(base[[160, 3]], 5)  # a result unpacks as (scores, ids)
    assert ids[:, 0].tolist() == [160, 3] and scores.dtype == np.float32
    assert index.add(np.empty((0, 16), np.float32)).tolist() == [] and len(index) == 200


def test_bad_input_is_refused(data):
    base, _ = data
    index = build_index(base, "exact")
    with pytest.raises(SearchInputError, match="k must be an integer >= 1"):
        index.search(base[:1], 0)
    with pytest.raises(SearchInputError, match="dim 16, but this index holds dim 32"):
        index.search(np.ones((1, 16), np.float32) / 4, 3)
    with pytest.raises(SearchInputError, match="L2-normalised"):
        index.search(base[:1] * 3, 3)
    with pytest.raises(SearchInputError, match="NaN"):
        index.search(np.full((1, 32), np.nan, np.float32), 3)
    for gone in ("annoy", "torch", "flat", "ivf"):
        with pytest.raises(SearchInputError, match="kind must be one of"):
            build_index(base, gone)
    with pytest.raises(SearchInputError, match="0 vectors"):
        build_index(np.empty((0, 4), np.float32))
    with pytest.raises(SearchInputError, match="empty index"):
        ExactIndex(4).search(np.eye(4, dtype=np.float32)[:1], 1)
    with pytest.raises(SearchInputError, match="all-zero"):
        build_index(np.zeros((2, 4), np.float32), normalize=True)
    with pytest.raises(SearchInputError, match="unsupported option"):
        build_index(base, "exact", ef_search=3)
    with pytest.raises(SearchInputError, match="ef_search must be an integer >= 2"):
        build_index(base, "hnsw", ef_search=1)
    with pytest.raises(SearchInputError, match="unsupported option"):
        build_index(base[:3], ids=[4, 4, 5])  # ids are the order of insertion, never given


def test_normalize_option_and_auto_kind(data, monkeypatch):
    base, queries = data
    index = build_index(base * 5.0, normalize=True)
    assert index.kind == "exact" and len(index) < AUTO_APPROX_MIN
    np.testing.assert_array_equal(index.search(queries * 2, 5).ids, brute_force(base, queries, 5)[1])
    np.testing.assert_array_equal(index.search(torch.from_numpy(queries[0]), 5).ids, brute_force(base, queries[:1], 5)[1])
    monkeypatch.setattr(search, "AUTO_APPROX_MIN", len(base))  # the app's rule: HNSW from this size on
    assert build_index(base).kind == "hnsw" and build_index(base[:-1]).kind == "exact"
