"""Top-k inner-product search over unit vectors (ids 0, 1, 2, ... in the order added): one exact path,
and FAISS HNSW for large galleries (which may leave id -1, score -inf). ``build_index(vectors, "auto")``
is the app's rule: exact below ``AUTO_APPROX_MIN`` vectors, HNSW from there on.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["SearchInputError", "SearchResult", "SearchIndex", "ExactIndex", "HNSWIndex", "KINDS",
           "AUTO_APPROX_MIN", "build_index", "exact_topk", "recall_at_k"]

KINDS = ("auto", "exact", "hnsw")
# "auto": exact below this many vectors, HNSW from here on (exact search reads every vector per query;
# benchmarks/search_latency.py measures both, docs/performance.md has the figures).
AUTO_APPROX_MIN = 200_000
_NORM_TOL = 1e-3


class SearchInputError(ValueError):
    """Bad vectors, k or index kind; the message names what was wrong and what is allowed."""


class SearchResult(NamedTuple):
    """Best-first hits per query: ``scores[q, j]`` (float32) is the inner product with vector ``ids[q, j]``."""

    scores: np.ndarray
    ids: np.ndarray


def _as_matrix(x, dim: int | None, what: str, normalize: bool) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 [N, dim] array of unit rows, or raise SearchInputError."""
    x = x.detach().to("cpu", torch.float32).numpy() if isinstance(x, torch.Tensor) else x
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise SearchInputError(f"{what} must be a numeric array, got {type(x).__name__}: {exc}") from None
    arr = arr[None, :] if arr.ndim == 1 else arr
    if arr.ndim != 2:
        raise SearchInputError(f"{what} must have shape [N, dim] (or [dim]), got shape {tuple(arr.shape)}")
    if dim is not None and arr.shape[1] != dim:
        raise SearchInputError(f"{what} have dim {arr.shape[1]}, but this index holds dim {dim}")
    if arr.shape[1] == 0:
        raise SearchInputError(f"{what} must have dim >= 1, got 0")
    if arr.shape[0]:
        if not np.isfinite(arr).all():
            raise SearchInputError(f"{what} contain NaN or infinite values")
        norms = np.linalg.norm(arr, axis=1)
        if normalize:
            if (norms == 0).any():
                raise SearchInputError(f"{what} contain an all-zero vector, which cannot be normalised")
            arr = arr / norms[:, None]
        elif np.abs(norms - 1.0).max() > _NORM_TOL:
            raise SearchInputError(
                f"{what} must be L2-normalised (norms within 1 +- {_NORM_TOL}), got norms in "
                f"[{norms.min():.4g}, {norms.max():.4g}]; pass normalize=True to normalise them")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_int(name: str, v, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise SearchInputError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


def exact_topk(queries: np.ndarray, base_t: torch.Tensor, k: int, max_scores_bytes: int = 256 << 20):
    """Exact top-``min(k, N)`` (scores, rows) of float32 ``queries`` [Q, D] against the gallery transposed
    (``base_t`` [D, N]), in query chunks whose scores fit in ``max_scores_bytes``. Why [D, N] in torch: D
    streaming passes over contiguous rows ran faster than numpy, FAISS or torch on [N, D] (docs/performance.md).
    """
    n, scores, rows = base_t.shape[1], [], []
    chunk = max(1, max_scores_bytes // (4 * n))
    with torch.inference_mode():
        for start in range(0, queries.shape[0], chunk):
            s, i = torch.topk(torch.from_numpy(queries[start:start + chunk]) @ base_t, min(k, n), dim=1)
            scores.append(s.numpy())
            rows.append(i.numpy())
    return np.concatenate(scores), np.concatenate(rows).astype(np.int64)


class SearchIndex:
    """Checks shared by the engines, which define ``kind``, ``__len__``, ``_add`` and ``_search``."""

    def __init__(self, dim: int, normalize: bool = False):
        self.dim, self.normalize = _check_int("dim", dim, 1), bool(normalize)

    def add(self, vectors) -> np.ndarray:
        """Store ``vectors`` [N, dim]; return their ids (the next N integers)."""
        x = _as_matrix(vectors, self.dim, "vectors", self.normalize)
        start = len(self)
        if x.shape[0]:
            self._add(x)
        return np.arange(start, start + x.shape[0], dtype=np.int64)

    def search(self, queries, k: int) -> SearchResult:
        """Top-``min(k, len(self))`` ids and inner-product scores per query, best first."""
        k = _check_int("k", k, 1)
        q = _as_matrix(queries, self.dim, "queries", self.normalize)
        if len(self) == 0:
            raise SearchInputError("cannot search an empty index: add vectors first")
        k = min(k, len(self))
        if q.shape[0] == 0:
            return SearchResult(np.empty((0, k), np.float32), np.empty((0, k), np.int64))
        scores, ids = self._search(q, k)
        return SearchResult(np.where(ids >= 0, scores, -np.inf).astype(np.float32), ids.astype(np.int64))


class ExactIndex(SearchIndex):
    """Exact search (``exact_topk``) over the stored vectors, kept transposed in a float32 [D, capacity] buffer."""

    kind = "exact"

    def __init__(self, dim: int, normalize: bool = False):
        super().__init__(dim, normalize)
        self._buf, self._n = torch.empty((self.dim, 0), dtype=torch.float32), 0

    def __len__(self) -> int:
        return self._n

    def _add(self, x):
        n_old, n_new = self._n, self._n + x.shape[0]
        if n_new > self._buf.shape[1]:  # grow by doubling: many small adds stay cheap
            grown = torch.empty((self.dim, max(n_new, 2 * n_old)), dtype=torch.float32)
            grown[:, :n_old] = self._buf[:, :n_old]
            self._buf = grown
        self._buf[:, n_old:n_new] = torch.from_numpy(x).T
        self._n = n_new

    def _search(self, q, k):
        return exact_topk(q, self._buf[:, : len(self)], k)


class HNSWIndex(SearchIndex):
    """FAISS ``IndexHNSWFlat`` (inner product) for galleries too big to scan: ``m`` is the graph degree,
    ``ef_construction`` / ``ef_search`` the build / query beam (more: recall, less: speed)."""

    kind = "hnsw"

    def __init__(self, dim, normalize=False, m: int = 16, ef_construction: int = 64, ef_search: int = 64):
        super().__init__(dim, normalize)
        import faiss  # imported lazily: users of exact search never pay for it
        self._faiss, self.m = faiss, _check_int("m", m, 2)
        self.ef_construction = _check_int("ef_construction", ef_construction, 2)
        self.ef_search = _check_int("ef_search", ef_search, 2)
        self._index = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        self._index.hnsw.efConstruction = self.ef_construction

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def set_ef_search(self, ef: int) -> None:
        self.ef_search = _check_int("ef_search", ef, 1)

    def _add(self, x):
        self._index.add(x)

    def _search(self, q, k):
        params = self._faiss.SearchParametersHNSW(efSearch=max(k, self.ef_search))  # at most efSearch hits
        return self._index.search(q, k, params=params)


def build_index(vectors, kind: str = "auto", normalize: bool = False, **options) -> SearchIndex:
    """An index over ``vectors`` [N, dim] (unit rows, or ``normalize=True``): ``kind`` "exact", "hnsw"
    (``options`` such as ``ef_search=`` go to ``HNSWIndex``) or "auto" (above)."""
    if kind not in KINDS:
        raise SearchInputError(f"kind must be one of {KINDS}, got {kind!r}")
    x = _as_matrix(vectors, None, "vectors", normalize)
    if x.shape[0] == 0:
        raise SearchInputError("cannot build an index from 0 vectors")
    if kind == "auto":
        kind = "hnsw" if x.shape[0] >= AUTO_APPROX_MIN else "exact"
    try:
        index = (HNSWIndex if kind == "hnsw" else ExactIndex)(x.shape[1], normalize=normalize, **options)
    except TypeError as exc:
        raise SearchInputError(f"unsupported option for kind={kind!r}: {exc}") from None
    index.add(x)
    return index


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int | None = None) -> float:
    """Mean fraction of the exact top-k ids that the approximate top-k also returned."""
    a, e = np.asarray(approx_ids), np.asarray(exact_ids)
    if a.shape[0] != e.shape[0]:
        raise SearchInputError(f"need the same number of queries, got {a.shape[0]} and {e.shape[0]}")
    k = k or e.shape[1]
    hits = [np.intersect1d(a[i, :k][a[i, :k] >= 0], e[i, :k]).size for i in range(e.shape[0])]
    return float(np.mean(hits) / k) if hits else float("nan")
