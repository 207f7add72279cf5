"""Training settings that fit the data: a pure function of the number of pairs and the latent widths.

The paper's settings (4 blocks, dropout 0.6, batch 40,960, 500 epochs) were tuned for millions of
pairs; with a few hundred they lose to a ridge regression. ``recipe(n, x_dim, y_dim)`` returns the
settings train.py uses when a flag is not given, each with a one-line reason; ``preset="paper"``
returns the paper's values instead (the batch clipped to the pairs there are). The numbers behind
the choices are in docs/real_encoders.md (benchmarks/real_encoders.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

PRESETS = ("auto", "paper")
LARGE = 20_000  # training pairs from which the paper's adapter shape takes over (not measured here)

# The paper's released run, as flags of train.py (epochs and batch are this project's former defaults:
# the official 500 epochs of batch 40,960 are for millions of pairs; below that the batch is clipped).
PAPER = {"adapter_init": "random", "depth": 4, "expansion": 4, "dropout": 0.6, "proj_dim": 512, "batch_size": 1024, "epochs": 50,
         "lr": 1e-3, "warmup_steps": 100, "heldout_fraction": 0.05, "eval_every": 5, "save_every": 5}


@dataclass
class Recipe:
    settings: dict
    reasons: dict = field(default_factory=dict)

    def describe(self, only=None) -> str:
        keys = [k for k in self.settings if only is None or k in only]
        return "\n".join(f"  {k} = {self.settings[k]}: {self.reasons.get(k, '')}" for k in keys)


def clip_batch(batch: int, n_train: int, processes: int = 1) -> int:
    """The largest batch <= ``batch`` that fits ``n_train`` pairs and splits evenly over processes."""
    b = min(batch, n_train)
    return max(b - b % processes, processes)


REFINE_FROM = 2_000  # pairs from which FuseMix refines the closed form: below, refining it lost R@1 (measured)


def _heldout_fraction(n: int) -> float:
    return 0.0 if n < REFINE_FROM else min(0.1, 200 / n) if n < LARGE else 0.05


def recipe(n_pairs: int, x_dim: int, y_dim: int, preset: str = "auto", processes: int = 1,
           n_train: int | None = None, model: str = "two_tower") -> Recipe:
    """Settings for ``n_pairs`` pairs of ``x_dim``- and ``y_dim``-wide latents.

    ``n_train``: the pairs left for training once the held-out slice is cut (default: as this recipe
    cuts it); batch and step counts follow it. ``model="bridge"`` keeps the paper's adapter shape
    (the bridge's own measurements chose it) and only fits the batch and schedule to the data.
    """
    if preset not in PRESETS:
        raise ValueError(f"--preset must be one of {PRESETS}, got {preset!r}")
    if n_pairs < 2 or x_dim < 1 or y_dim < 1:
        raise ValueError(f"need at least 2 pairs and positive widths, got n={n_pairs}, dims={x_dim}, {y_dim}")
    if model == "bridge" and preset == "auto":  # measured on real token sequences: docs/real_bridge.md
        s = {**PAPER, "depth": 2, "dropout": 0.1}
        n_train = n_train or n_pairs - int(round(n_pairs * s["heldout_fraction"]))
        s["batch_size"] = clip_batch(128, max(n_train // 2, 2), processes)
        s["epochs"] = max(20, math.ceil(150 / max(n_train // s["batch_size"], 1)))
        s["warmup_steps"] = max(s["epochs"] * (n_train // s["batch_size"]) // 10, 1)
        r = {k: "the paper's value" for k in s}
        r.update(depth="two blocks (no depth was clearly worse, four no better)",
                 dropout="light dropout: +0.05 R@1 over 0.6 on real sequences", batch_size="128 (at most half the pairs)",
                 epochs="at least 150 optimiser steps (doubling them from 75 gained 0.06 R@1)",
                 warmup_steps="10% of the steps")
        return Recipe(s, r)
    if preset == "paper" or model == "bridge":
        s = dict(PAPER) if model == "bridge" else {**PAPER, "head_depth": 0}
        n_train = n_train or n_pairs - int(round(n_pairs * s["heldout_fraction"]))
        s["batch_size"] = clip_batch(s["batch_size"], n_train, processes)
        r = {k: "the paper's value" for k in s}
        r["epochs"] = "this project's former default (the official run: 500 epochs of 40,960 pairs)"
        r["batch_size"] = (f"the paper's adapters at batch 1024, clipped to the {n_train} training pairs"
                           if s["batch_size"] < 1024 else "the project's former default (official: 40,960)")
        return Recipe(s, r)

    refine = n_pairs >= REFINE_FROM
    frac = _heldout_fraction(n_pairs)
    s, r = {"adapter_init": "linear", "heldout_fraction": frac}, {}
    r["heldout_fraction"] = (f"none below {REFINE_FROM} pairs: nothing is refined, so every pair fits the closed form"
                             if frac == 0 else f"{int(round(n_pairs * frac))} pairs held out to keep the best checkpoint")
    n_train = n_train or n_pairs - int(round(n_pairs * frac))
    r["adapter_init"] = ("start at the closed-form map"
                         + (" (its regularisation fixed: too few pairs to cross-validate)" if n_train < CV_FROM
                            else " (its regularisation cross-validated)")
                         + (", refine with FuseMix" if refine else ""))
    large = n_train >= LARGE
    if large:  # beyond what docs/real_encoders.md measured: the paper's regime
        s.update(depth=4, head_depth=0, expansion=4, dropout=0.6, lr=1e-3)
        r.update(depth="the paper's depth (plenty of pairs)", head_depth="none, as in the paper", expansion="the paper's block width",
                 dropout="the paper's dropout", lr="the paper's peak learning rate")
    else:
        s.update(depth=0, head_depth=1, expansion=1, dropout=0.1, lr=1e-3)
        r["depth"] = "no block before the projection: the linear map reads the latents directly"
        r["head_depth"] = ("one residual block after the linear map (starting at zero), correcting it in the shared "
                           "space: +0.016 R@1 over a block before it at 4,000 pairs")
        r["expansion"] = "a narrow block: the linear start carries the map at this size"
        r["dropout"] = "light dropout (the paper's 0.6 discards too much of a small set)"
        r["lr"] = ("the block after the map tolerates 10x the steps of one before it (which lost 0.07 R@1 at 1e-3); "
                   "the held-out slice's InfoNCE picks the checkpoint" if refine
                   else "as from 2,000 pairs, if --epochs asks for any refinement")
    s["proj_dim"], r["proj_dim"] = 512, "the paper's shared width"
    s["batch_size"] = clip_batch(1024, n_train, processes)
    r["batch_size"] = ("every training pair in one batch (most negatives per step)" if s["batch_size"] >= n_train - processes
                       else "1024 pairs a step")
    steps_per_epoch = max(n_train // s["batch_size"], 1)
    target = 0 if not refine else 150 if not large else 5_000
    s["epochs"] = math.ceil(target / steps_per_epoch)
    r["epochs"] = (f"about {target} optimiser steps from the linear start" if target else
                   f"none: below {REFINE_FROM} pairs the closed-form map is the model (FuseMix refinement of it "
                   "lost 0.005-0.02 R@1 there; docs/real_encoders.md)")
    total = s["epochs"] * steps_per_epoch
    s["warmup_steps"], r["warmup_steps"] = max(total // 20, 1), "5% of the steps"
    every = max(s["epochs"] // 30, 1)
    s["eval_every"] = s["save_every"] = every
    r["eval_every"] = r["save_every"] = "about 30 evaluations a run; the best is kept"
    return Recipe(s, r)


# --------------------------------------------------------------------------- closed-form start

# Regularisation of each side's covariance, C_r = (1 - r) C + r mean(diag C) I: r = 1 does not whiten
# that side at all, so (r_x small, r_y = 1) is a reduced-rank ridge regression x -> y and the reverse
# is y -> x; both small is CCA. Components are weighted by (canonical correlation) ** power: the higher
# powers quiet the weakly correlated components a few pairs estimate badly (docs/real_encoders.md).
CCA_REGS = (0.01, 0.1, 0.3, 0.6, 1.0)
CCA_POWERS = (0.5, 1.0, 2.0, 4.0)
CV_TEMPERATURE = 0.05  # of the validation InfoNCE that scores each member
# Below CV_FROM pairs, 3-fold CV (folds of 8-16 pairs) picks a member by noise; a fixed, strongly shrunk
# member (90% of each side's covariance replaced by its mean variance, components weighted by rho) did
# better at 25 pairs on both encoder pairs measured (docs/real_encoders.md).
CV_FROM = 50
SMALL_SET_MEMBER = (0.9, 0.9, 1.0)


@dataclass
class LinearMap:
    """Two linear maps into one space: za = (x - mx) @ a, zb = (y - my) @ b (compare by cosine)."""
    a: "torch.Tensor"
    b: "torch.Tensor"
    mx: "torch.Tensor"
    my: "torch.Tensor"
    params: tuple = ()
    cv_r1: float = float("nan")

    def embed(self, x, y):
        return (x - self.mx).double() @ self.a, (y - self.my).double() @ self.b


def _pca(zc):
    """Coordinates of centred rows in their own principal basis: (basis [d, k], per-coordinate variance, mean var)."""
    import torch

    if len(zc) > zc.shape[1]:  # more rows than columns: the d x d covariance's eigh is far cheaper than an SVD
        ev, vecs = torch.linalg.eigh(zc.T @ zc)
        ev, basis = ev.flip(0).clamp(min=0), vecs.flip(1)
    else:
        _, sv, vt = torch.linalg.svd(zc, full_matrices=False)
        ev, basis = sv ** 2, vt.T
    keep = ev > ev[0] * 1e-18 if len(ev) else ev > 0
    return basis[:, keep], ev[keep] / len(zc), float((zc ** 2).sum() / (len(zc) * zc.shape[1]))


def _cca_family(x, y, regs=CCA_REGS, powers=CCA_POWERS):
    """Every (r_x, r_y, power) of the family fitted on (x, y): yields (params, LinearMap).

    Computed in each side's principal basis (rank <= n - 1): the regularised covariances are
    diagonal there and the canonical directions lie in the data's span, so a few pairs in a wide
    space cost a tiny SVD instead of a full-width one.
    """
    import torch

    mx, my = x.mean(0), y.mean(0)
    xc, yc = (x - mx).double(), (y - my).double()
    n = len(x)
    (vx, ex, sx), (vy, ey, sy) = _pca(xc), _pca(yc)
    cxy = (xc @ vx).T @ (yc @ vy) / n
    k = max(min(n - 1, len(ex), len(ey)), 1)
    for rx in regs:
        wx = ((1 - rx) * ex + rx * sx).rsqrt()
        for ry in regs:
            wy = ((1 - ry) * ey + ry * sy).rsqrt()
            u, s, vt = torch.linalg.svd(wx[:, None] * cxy * wy[None, :], full_matrices=False)
            a0, b0 = vx @ (wx[:, None] * u[:, :k]), vy @ (wy[:, None] * vt[:k].T)
            for p in powers:
                w = s[:k].clamp(min=0) ** p
                yield (rx, ry, p), LinearMap(a0 * w, b0 * w, mx, my, (rx, ry, p))


def cv_scores(za, zb) -> tuple[float, float]:
    """(selection score, R@1 a->b plus b->a) of row-aligned validation pairs, by cosine. The score is minus
    the symmetric InfoNCE at CV_TEMPERATURE: a validation fold of a few dozen pairs ranks its true partner
    first so often that R@1 there ties most members and picks by noise; the loss still separates them
    (measured in docs/real_encoders.md)."""
    import torch
    import torch.nn.functional as F

    sim = F.normalize(za, dim=-1) @ F.normalize(zb, dim=-1).T
    target = torch.arange(len(sim))
    logits = sim / CV_TEMPERATURE
    loss = F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)
    r1 = (sim.argmax(1) == target).double().mean() + (sim.argmax(0) == target).double().mean()
    return -float(loss), float(r1)


def cv_splits(n: int, folds: int = 3, seed: int = 0, repeats: int | None = None):
    """(train, validation) index pairs of repeated k-fold CV on n pairs. Repeats default to 3 up to 500
    pairs and 1 above: a small set's single split picks its regularisation by noise (measured in
    docs/real_encoders.md); a large one's is stable and costs more."""
    import torch

    k = min(folds, n)
    for rep in range(repeats or (3 if n <= 500 else 1)):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(10_007 + seed + 7_919 * rep))
        parts = [order[i::k] for i in range(k)]
        for i in range(k):
            yield torch.cat([p for j, p in enumerate(parts) if j != i]), parts[i]


def fit_linear_map(x, y, seed: int = 0, folds: int = 3, repeats: int | None = None) -> LinearMap:
    """The member of the CCA/ridge family with the best repeated k-fold score (``cv_scores``, both
    directions) on (x, y), refitted on all of it. Ties go to the more regularised member (the grid's order).
    With fewer than ``CV_FROM`` pairs, the fixed ``SMALL_SET_MEMBER`` (no CV: ``cv_r1`` stays NaN)."""
    if len(x) < CV_FROM:
        return _member(x, y, SMALL_SET_MEMBER)
    scores: dict[tuple, float] = {}
    r1: dict[tuple, float] = {}
    validated = 0
    for tr, va in cv_splits(len(x), folds, seed, repeats):
        validated += len(va)
        xv, yv = x[va].double(), y[va].double()
        for params, m in _cca_family(x[tr], y[tr]):  # scored in float32: ranking needs no more, and it is 2x faster
            za, zb = ((xv - m.mx).float() @ m.a.float()), ((yv - m.my).float() @ m.b.float())
            score, hits = cv_scores(za, zb)
            scores[params] = scores.get(params, 0.0) + score * len(va)
            r1[params] = r1.get(params, 0.0) + hits * len(va)
    strength = lambda p: (-(p[0] + p[1]), p[2])  # noqa: E731  more regularisation first
    best = max(sorted(scores, key=strength), key=lambda p: scores[p])
    m = _member(x, y, best)
    m.cv_r1 = r1[best] / (2 * validated)
    return m


def _member(x, y, params: tuple) -> LinearMap:
    """The family's (r_x, r_y, power) member fitted on all of (x, y)."""
    rx, ry, power = params
    return dict(_cca_family(x, y, regs=sorted({rx, ry}), powers=(power,)))[params]


def linear_start(model, x_modality: str, x, y_modality: str, y, seed: int = 0) -> LinearMap:
    """Start a FusionModel at the closed-form map that FuseMix then refines.

    Each residual block's output layer is zeroed (the block starts as the identity, its MLP as a
    zero residual), so an adapter starts as LayerNorm -> proj; proj is set from ``fit_linear_map`` on
    the LayerNormed training latents (x row i pairs with y row i) and rescaled to the norm of its
    random init, so that AdamW's steps keep their usual relative size. Output dims beyond the
    map's rank start at zero.
    """
    import torch

    with torch.no_grad():
        feats = {}
        for name, z in ((x_modality, x), (y_modality, y)):
            ad = model.adapters[name]
            for block in (*ad.blocks, *ad.head):
                block.fc2.weight.zero_()
                block.fc2.bias.zero_()
            feats[name] = ad.norm(ad.blocks(z.to(ad.proj.weight.dtype))).double().cpu()
        m = fit_linear_map(feats[x_modality], feats[y_modality], seed)
        for name, w, mu in ((x_modality, m.a, m.mx), (y_modality, m.b, m.my)):
            proj = model.adapters[name].proj
            k = min(w.shape[1], proj.out_features)
            new = torch.zeros(proj.out_features, w.shape[0], dtype=torch.float64)
            new[:k] = w[:, :k].T
            new *= proj.weight[:k].double().norm().cpu() / new.norm().clamp(min=1e-12)
            proj.weight.copy_(new.to(proj.weight))
            proj.bias.copy_((-(new @ mu)).to(proj.bias))
    return m
