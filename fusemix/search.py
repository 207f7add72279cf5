"""Top-k search over L2-normalised vectors: exact (torch matmul, FAISS flat) and approximate (FAISS HNSW, IVF).

Why one small interface: a gallery of 25 photos and one of a million embeddings need different
engines, but galleries, the retriever and the demo should not care which one answers.  Every index

* stores unit vectors with integer ids (given, or assigned 0, 1, 2, ... in insertion order),
* scores by inner product (= cosine similarity for unit vectors),
* ``search(queries, k)`` returns ``SearchResult(scores [Q, k'], ids [Q, k'])`` best first, where
  ``k' = min(k, len(index))``: asking for more neighbours than the index holds is *clamped*, not an
  error, so a caller asking a 25-image gallery for 30 hits simply gets 25.  Approximate indexes may find
  fewer than ``k'`` hits for some query; those slots hold id ``-1`` and score ``-inf``.
* ``add(vectors, ids=None)`` and ``remove(ids)`` keep it current (HNSW cannot delete in place, so it is
  rebuilt from its own stored vectors).

Inputs are checked: wrong rank or width, non-finite values, or vectors that are not unit length raise
``SearchInputError`` naming the problem (pass ``normalize=True`` to have them normalised instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

__all__ = [
    "SearchInputError",
    "SearchResult",
    "SearchIndex",
    "TorchIndex",
    "FaissFlatIndex",
    "FaissHNSWIndex",
    "FaissIVFIndex",
    "KINDS",
    "AUTO_APPROX_MIN",
    "build_index",
    "exact_topk",
    "recall_at_k",
]

KINDS = ("auto", "torch", "flat", "hnsw", "ivf")
# "auto" picks exact torch search below this many vectors and HNSW at or above it.  Measured with
# benchmarks/search_latency.py on the shared 2-core dev machine (dim 512, single queries): exact search
# reads every vector per query (p50 ~25-50 ms at 100k, ~400 ms at 1M); HNSW (m=16, efConstruction=64,
# efSearch=64) answered in ~2 ms p50 at 1M with recall@10 0.986 on embedding-like data, but took ~20 min
# to build there, and IVF (nlist 4000) built slower and reached 0.943 at nprobe 64 / 12 ms.
AUTO_APPROX_MIN = 200_000
_NORM_TOL = 1e-3


class SearchInputError(ValueError):
    """Bad vectors, ids, k or index kind; the message names what was wrong and what is allowed."""


@dataclass(frozen=True)
class SearchResult:
    """Best-first hits per query: ``scores[q, j]`` is the inner product with vector ``ids[q, j]``."""

    scores: np.ndarray  # float32 [Q, k']
    ids: np.ndarray  # int64 [Q, k']

    def __iter__(self):  # allows ``scores, ids = index.search(q, k)``
        yield self.scores
        yield self.ids


def _as_matrix(x, dim: int | None, what: str, normalize: bool) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 [N, dim] array of unit rows, or raise SearchInputError."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise SearchInputError(f"{what} must be a numeric array, got {type(x).__name__}: {exc}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise SearchInputError(f"{what} must have shape [N, dim] (or [dim]), got shape {tuple(arr.shape)}")
    if dim is not None and arr.shape[1] != dim:
        raise SearchInputError(f"{what} have dim {arr.shape[1]}, but this index holds dim {dim}")
    if arr.shape[1] == 0:
        raise SearchInputError(f"{what} must have dim >= 1, got 0")
    if arr.shape[0] and not np.isfinite(arr).all():
        raise SearchInputError(f"{what} contain NaN or infinite values")
    if arr.shape[0]:
        norms = np.linalg.norm(arr, axis=1)
        if normalize:
            if (norms == 0).any():
                raise SearchInputError(f"{what} contain an all-zero vector, which cannot be normalised")
            arr = arr / norms[:, None]
        elif np.abs(norms - 1.0).max() > _NORM_TOL:
            raise SearchInputError(
                f"{what} must be L2-normalised (norms within 1 +- {_NORM_TOL}), got norms in "
                f"[{norms.min():.4g}, {norms.max():.4g}]; pass normalize=True to normalise them"
            )
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise SearchInputError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def _as_ids(ids, n: int) -> np.ndarray:
    if isinstance(ids, torch.Tensor):
        arr = ids.detach().cpu().numpy()
    else:
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
    if arr.ndim != 1 or arr.shape[0] != n:
        raise SearchInputError(f"ids must be a 1-D sequence of {n} integers, got shape {tuple(arr.shape)}")
    if n and not np.issubdtype(arr.dtype, np.integer):
        raise SearchInputError(f"ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if n and arr.min() < 0:
        raise SearchInputError(f"ids must be >= 0 (-1 marks 'no hit'), got {arr.min()}")
    if np.unique(arr).shape[0] != n:
        raise SearchInputError("ids must be unique within one add() call")
    return arr


class SearchIndex:
    """Common bookkeeping: dim, the id of each stored row, id assignment, argument checks."""

    kind = "base"
    exact = True

    def __init__(self, dim: int, normalize: bool = False):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise SearchInputError(f"dim must be an integer >= 1, got {dim!r}")
        self.dim = int(dim)
        self.normalize = bool(normalize)
        self._ids = np.empty(0, dtype=np.int64)  # external id of each stored row, in storage order
        self._next_id = 0

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    @property
    def ids(self) -> np.ndarray:
        """External ids of the stored vectors (a copy)."""
        return self._ids.copy()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, dim={self.dim})"

    # -- public API -------------------------------------------------------------------------------
    def add(self, vectors, ids: Iterable[int] | None = None) -> np.ndarray:
        """Store ``vectors`` [N, dim]; return their ids (given ones, or the next free integers)."""
        x = _as_matrix(vectors, self.dim, "vectors", self.normalize)
        n = x.shape[0]
        if ids is None:
            new_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        else:
            new_ids = _as_ids(ids, n)
            clash = np.intersect1d(new_ids, self._ids)
            if clash.size:
                raise SearchInputError(f"ids already in the index: {clash[:5].tolist()}; remove them first")
        if n == 0:
            return new_ids
        self._add(x, new_ids)
        self._ids = np.concatenate([self._ids, new_ids])
        self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        return new_ids

    def remove(self, ids: Iterable[int]) -> int:
        """Delete the vectors with these ids (unknown ids are ignored); return how many were removed."""
        arr = np.asarray(ids.cpu().numpy() if isinstance(ids, torch.Tensor) else list(ids), dtype=np.int64)
        keep = ~np.isin(self._ids, arr)
        removed = int((~keep).sum())
        if removed:
            self._remove(keep)
            self._ids = self._ids[keep]
        return removed

    def search(self, queries, k: int) -> SearchResult:
        """Top-``min(k, len(self))`` ids and inner-product scores per query, best first."""
        k = _check_k(k)
        q = _as_matrix(queries, self.dim, "queries", self.normalize)
        if len(self) == 0:
            raise SearchInputError("cannot search an empty index: add vectors first")
        k = min(k, len(self))
        if q.shape[0] == 0:
            return SearchResult(np.empty((0, k), np.float32), np.empty((0, k), np.int64))
        scores, rows = self._search(q, k)
        ids = np.where(rows >= 0, self._ids[np.clip(rows, 0, None)], -1)
        scores = np.where(rows >= 0, scores, -np.inf).astype(np.float32)
        return SearchResult(scores, ids.astype(np.int64))

    def vectors(self) -> np.ndarray:
        """All stored vectors [N, dim] in storage order (rows match ``self.ids``)."""
        raise NotImplementedError

    # -- engine hooks -----------------------------------------------------------------------------
    def _add(self, x: np.ndarray, ids: np.ndarray) -> None:
        raise NotImplementedError

    def _remove(self, keep: np.ndarray) -> None:
        raise NotImplementedError

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, storage rows) [Q, k]; row -1 = no hit."""
        raise NotImplementedError


def exact_topk(queries: torch.Tensor, base: torch.Tensor, k: int, max_scores_bytes: int = 256 << 20):
    """Exact top-k inner products of ``queries`` [Q, D] against ``base`` [N, D] (both float tensors).

    The [Q, N] score matrix is never materialised beyond ``max_scores_bytes``: the base is cut into row
    blocks, each block keeps its own top-k, and the survivors are merged.  Returns (scores, rows).
    """
    n = base.shape[0]
    k = min(k, n)
    q_rows = max(1, queries.shape[0])
    block = max(k, max_scores_bytes // (4 * q_rows))
    if block >= n:
        return torch.topk(queries @ base.T, k, dim=1)
    best_s, best_i = None, None
    for start in range(0, n, block):
        s = queries @ base[start : start + block].T
        s, i = torch.topk(s, min(k, s.shape[1]), dim=1)
        i += start
        if best_s is None:
            best_s, best_i = s, i
        else:
            cat_s, cat_i = torch.cat([best_s, s], 1), torch.cat([best_i, i], 1)
            best_s, pos = torch.topk(cat_s, k, dim=1)
            best_i = torch.gather(cat_i, 1, pos)
    return best_s, best_i


class TorchIndex(SearchIndex):
    """Exact search with one torch matmul + ``torch.topk`` (blocked for big query batches).

    Storage grows by doubling, so many small ``add`` calls stay cheap.
    """

    kind = "torch"

    def __init__(self, dim: int, normalize: bool = False, max_scores_bytes: int = 256 << 20):
        super().__init__(dim, normalize)
        self._buf = torch.empty((0, self.dim), dtype=torch.float32)
        self.max_scores_bytes = int(max_scores_bytes)

    def _add(self, x, ids):
        n_old, n_new = len(self), len(self) + x.shape[0]
        if n_new > self._buf.shape[0]:
            grown = torch.empty((max(n_new, 2 * self._buf.shape[0]), self.dim), dtype=torch.float32)
            grown[:n_old] = self._buf[:n_old]
            self._buf = grown
        self._buf[n_old:n_new] = torch.from_numpy(x)

    def _remove(self, keep):
        kept = self._buf[: len(self)][torch.from_numpy(keep)]
        self._buf = kept.clone()

    def _search(self, q, k):
        with torch.inference_mode():
            s, i = exact_topk(torch.from_numpy(q), self._buf[: len(self)], k, self.max_scores_bytes)
        return s.numpy(), i.numpy().astype(np.int64)

    def vectors(self):
        return self._buf[: len(self)].numpy().copy()


class _FaissIndex(SearchIndex):
    """Shared code for FAISS indexes that store rows in insertion order (flat, HNSW)."""

    def __init__(self, dim: int, normalize: bool = False):
        super().__init__(dim, normalize)
        import faiss  # imported lazily: torch-only users never pay for it

        self._faiss = faiss
        self._index = self._new_index()

    def _new_index(self):
        raise NotImplementedError

    def _add(self, x, ids):
        self._index.add(x)

    def _search(self, q, k):
        scores, rows = self._index.search(q, k)
        return scores, rows.astype(np.int64)

    def vectors(self):
        if len(self) == 0:
            return np.empty((0, self.dim), np.float32)
        return self._index.reconstruct_n(0, len(self))


class FaissFlatIndex(_FaissIndex):
    """Exact search with FAISS ``IndexFlatIP`` (BLAS for query batches, SIMD scans for single queries)."""

    kind = "flat"

    def _new_index(self):
        return self._faiss.IndexFlatIP(self.dim)

    def _remove(self, keep):
        # IndexFlat compacts in place and keeps the order of the surviving rows.
        self._index.remove_ids(np.flatnonzero(~keep).astype(np.int64))


class FaissHNSWIndex(_FaissIndex):
    """Approximate search with FAISS ``IndexHNSWFlat`` (inner product).

    ``m`` is the graph degree, ``ef_construction`` the build-time beam, ``ef_search`` the query-time
    beam: raise ``ef_search`` for recall, lower it for speed (``set_ef_search``).  HNSW cannot delete
    in place, so ``remove`` rebuilds the graph from the stored vectors.
    """

    kind = "hnsw"
    exact = False

    def __init__(self, dim, normalize=False, m: int = 16, ef_construction: int = 64, ef_search: int = 64):
        for name, v in (("m", m), ("ef_construction", ef_construction), ("ef_search", ef_search)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
                raise SearchInputError(f"{name} must be an integer >= 2, got {v!r}")
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)
        super().__init__(dim, normalize)

    def _new_index(self):
        index = self._faiss.IndexHNSWFlat(self.dim, self.m, self._faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def set_ef_search(self, ef: int) -> None:
        if isinstance(ef, bool) or not isinstance(ef, (int, np.integer)) or ef < 1:
            raise SearchInputError(f"ef_search must be an integer >= 1, got {ef!r}")
        self.ef_search = int(ef)
        self._index.hnsw.efSearch = self.ef_search

    def _search(self, q, k):
        # HNSW returns at most efSearch candidates; widen the beam when k asks for more.
        if k > self._index.hnsw.efSearch:
            params = self._faiss.SearchParametersHNSW()
            params.efSearch = k
            scores, rows = self._index.search(q, k, params=params)
            return scores, rows.astype(np.int64)
        return super()._search(q, k)

    def _remove(self, keep):
        kept = self.vectors()[keep]
        self._index = self._new_index()
        if kept.shape[0]:
            self._index.add(kept)


class FaissIVFIndex(SearchIndex):
    """Approximate search with FAISS ``IndexIVFFlat`` (inner product, k-means coarse quantiser).

    Needs training data: the first ``add`` trains on (a sample of) its vectors, so make it a
    representative batch of at least ``nlist`` vectors.  ``nlist`` defaults to about 4 * sqrt(N) of
    that first batch (at most N / 39); ``nprobe`` (lists visited per query) trades speed for recall.
    """

    kind = "ivf"
    exact = False

    def __init__(self, dim, normalize=False, nlist: int | None = None, nprobe: int = 16):
        super().__init__(dim, normalize)
        import faiss

        self._faiss = faiss
        if nlist is not None and (isinstance(nlist, bool) or not isinstance(nlist, (int, np.integer)) or nlist < 1):
            raise SearchInputError(f"nlist must be an integer >= 1 or None, got {nlist!r}")
        self.nlist = nlist
        self.nprobe = nprobe
        self._index = None
        self.set_nprobe(nprobe)

    def set_nprobe(self, nprobe: int) -> None:
        if isinstance(nprobe, bool) or not isinstance(nprobe, (int, np.integer)) or nprobe < 1:
            raise SearchInputError(f"nprobe must be an integer >= 1, got {nprobe!r}")
        self.nprobe = int(nprobe)
        if self._index is not None:
            self._index.nprobe = min(self.nprobe, self._index.nlist)

    def _train(self, x):
        # ~4 sqrt(N) lists, but >= 39 training points per list (FAISS's k-means minimum)
        nlist = self.nlist or max(1, min(int(round(4 * math.sqrt(x.shape[0]))), x.shape[0] // 39))
        if x.shape[0] < nlist:
            raise SearchInputError(
                f"IVF needs at least nlist={nlist} vectors in its first add() to train, got {x.shape[0]}"
            )
        quantizer = self._faiss.IndexFlatIP(self.dim)
        index = self._faiss.IndexIVFFlat(quantizer, self.dim, nlist, self._faiss.METRIC_INNER_PRODUCT)
        index.cp.max_points_per_centroid = 64  # bounds k-means cost: train on <= 64 * nlist points
        rng = np.random.default_rng(0)
        sample = x if x.shape[0] <= 64 * nlist else x[rng.choice(x.shape[0], 64 * nlist, replace=False)]
        index.train(sample)
        index.nprobe = min(self.nprobe, nlist)
        self._quantizer = quantizer  # keep the Python object alive alongside the index
        self._index = index
        self.nlist = nlist

    def _add(self, x, ids):
        if self._index is None:
            self._train(x)
        self._index.add_with_ids(x, ids)  # IVF keeps our ids natively

    def _remove(self, keep):
        self._index.remove_ids(self._ids[~keep])

    def search(self, queries, k):
        # IVF answers with external ids directly; only remap storage rows for the base class.
        k = _check_k(k)
        q = _as_matrix(queries, self.dim, "queries", self.normalize)
        if len(self) == 0:
            raise SearchInputError("cannot search an empty index: add vectors first")
        k = min(k, len(self))
        scores, ids = self._index.search(q, k)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        return SearchResult(scores, ids.astype(np.int64))

    def vectors(self):
        if len(self) == 0:
            return np.empty((0, self.dim), np.float32)
        self._index.make_direct_map()
        return np.stack([self._index.reconstruct(int(i)) for i in self._ids])


def build_index(vectors, kind: str = "auto", ids=None, normalize: bool = False, **options) -> SearchIndex:
    """Build a search index over ``vectors`` [N, dim] (unit rows; ``normalize=True`` normalises them).

    ``kind``: "torch" (exact, matmul), "flat" (exact, FAISS IndexFlatIP), "hnsw" / "ivf" (approximate,
    FAISS), or "auto": torch below ``AUTO_APPROX_MIN`` vectors, HNSW from there on.  ``options`` go to
    the index class (e.g. ``ef_search=`` for HNSW, ``nlist=`` / ``nprobe=`` for IVF).
    """
    if kind not in KINDS:
        raise SearchInputError(f"kind must be one of {KINDS}, got {kind!r}")
    x = _as_matrix(vectors, None, "vectors", normalize)
    if x.shape[0] == 0:
        raise SearchInputError("cannot build an index from 0 vectors")
    if kind == "auto":
        kind = "hnsw" if x.shape[0] >= AUTO_APPROX_MIN else "torch"
    cls = {"torch": TorchIndex, "flat": FaissFlatIndex, "hnsw": FaissHNSWIndex, "ivf": FaissIVFIndex}[kind]
    try:
        index = cls(x.shape[1], normalize=normalize, **options)
    except TypeError as exc:
        raise SearchInputError(f"unsupported option for kind={kind!r}: {exc}") from None
    index.add(x, ids=ids)
    return index


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int | None = None) -> float:
    """Mean fraction of the exact top-k ids that the approximate top-k also returned."""
    a, e = np.asarray(approx_ids), np.asarray(exact_ids)
    if a.shape[0] != e.shape[0]:
        raise SearchInputError(f"need the same number of queries, got {a.shape[0]} and {e.shape[0]}")
    k = k or e.shape[1]
    hits = [np.intersect1d(a[i, :k][a[i, :k] >= 0], e[i, :k]).size for i in range(e.shape[0])]
    return float(np.mean(hits) / k) if hits else float("nan")
