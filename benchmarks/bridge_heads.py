"""Which output head should the conditioning bridge use, how should its losses be weighted, and
how much does the captions-only route lose to CLAP's modality gap?

``--section heads`` (default) trains each head of ``fusemix.bridge`` with the same FuseMix loop on
the same training pairs and prints, on the same held-out pairs: bridge -> caption R@1 (pooled, see
fusemix/bridge/model.py), sequence relative MSE (1.0 = no better than the mean caption encoding), centred
token cosine, output/target norm ratio, parameter count, forward time and training time.
``--sweep-weights`` adds runs of the default head with several regression weights.

Data (``--data``):
- ``synthetic`` (default): real sizes (512-d CLAP-like latents -> 77 x D sequences) generated from a
  shared hidden concept, with the structure of CLIP text encodings: a constant BOS token, content
  tokens for a concept-dependent length, then padding tokens carrying a summary of the content,
  token-level noise, and caption content the latent cannot see. A STAND-IN for real CLAP/SD pairs.
- ``tiny``: tiny random CLAP text tower latents of ~2500 captions (caption bank + combinations)
  -> tiny random SD text-encoder prompt_embeds of the same captions.

``--section gap``: route (b) on synthetic latents whose "audio" and "text" versions differ by a
constant offset: trained on text, tested on audio, without and with mean-centering.

    python benchmarks/bridge_heads.py                       # synthetic, all heads
    python benchmarks/bridge_heads.py --heads lowrank --sweep-weights --reg-weights 0.1 0.3 1
    python benchmarks/bridge_heads.py --section gap --x-noise 1.0 --gaps 0 1.5 3
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import goal_line  # noqa: E402
from fusemix.bridge import HEADS, BridgeConfig, ConditioningBridge  # noqa: E402
from fusemix.metrics import retrieval_metrics  # noqa: E402
from fusemix.mixing import fusemix_mix, mix_partners, sample_lambda  # noqa: E402
from fusemix.optim import lr_at, param_groups  # noqa: E402


# --------------------------------------------------------------------------- data


class SyntheticWorld:
    """Fixed random "encoders" from a concept z to CLAP-like latents and CLIP-like sequences.

    The last ``hidden_dim`` concept dims shape the caption only (what a caption says that the
    sound does not show); ``x_noise`` (noise norm / signal norm) blurs what the latent sees;
    ``offset`` moves a whole modality along a fixed direction (a modality gap).
    """

    def __init__(self, in_dim: int = 512, seq_len: int = 77, out_dim: int = 768, concept_dim: int = 32,
                 hidden_dim: int = 8, x_noise: float = 3.0):
        w = torch.Generator().manual_seed(1234)
        self.in_dim, self.seq_len, self.out_dim, self.concept_dim = in_dim, seq_len, out_dim, concept_dim
        self.seen, self.x_noise = concept_dim - hidden_dim, x_noise
        self.a1 = torch.randn(self.seen, 256, generator=w) / math.sqrt(self.seen)
        self.a2 = torch.randn(256, in_dim, generator=w) / 16
        self.gap_dir = F.normalize(torch.randn(in_dim, generator=w), dim=0)
        self.b1 = torch.randn(concept_dim, 128, generator=w) / math.sqrt(concept_dim)
        self.pos = torch.randn(seq_len, 128, generator=w)
        self.b2 = torch.randn(128, out_dim, generator=w) / math.sqrt(128)
        self.bos = torch.randn(out_dim, generator=w) * 3
        self.pad = torch.randn(out_dim, generator=w)

    def concepts(self, n: int, seed: int) -> torch.Tensor:
        return torch.randn(n, self.concept_dim, generator=torch.Generator().manual_seed(seed))

    def latents(self, z: torch.Tensor, seed: int, offset: float = 0.0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        clean = F.normalize(torch.tanh(z[:, :self.seen] @ self.a1) @ self.a2, dim=-1)
        noise = self.x_noise * torch.randn(z.shape[0], self.in_dim, generator=g) / math.sqrt(self.in_dim)
        return F.normalize(clean + noise + offset * self.gap_dir, dim=-1)

    def sequences(self, z: torch.Tensor, seed: int) -> torch.Tensor:
        """Constant BOS, content tokens for a z-dependent length, then padding carrying a summary."""
        g = torch.Generator().manual_seed(seed)
        n, T, D = z.shape[0], self.seq_len, self.out_dim
        length = 3 + (torch.sigmoid(z[:, 0]) * 15).long()
        y = torch.empty(n, T, D)
        t = torch.arange(T)
        for s in range(0, n, 256):  # chunks keep the peak memory small
            zz = z[s:s + 256]
            h = torch.tanh((zz @ self.b1).unsqueeze(1) + self.pos)
            content = h @ self.b2 + 0.3 * torch.randn(zz.shape[0], T, D, generator=g)  # token-level noise
            is_content = (t >= 1) & (t.unsqueeze(0) <= length[s:s + 256].unsqueeze(1))
            summary = (content * is_content.unsqueeze(-1)).cumsum(1) / is_content.cumsum(1).clamp_min(1).unsqueeze(-1)
            seq = torch.where(is_content.unsqueeze(-1), content, self.pad + 0.7 * summary)
            seq[:, 0] = self.bos
            y[s:s + 256] = F.layer_norm(seq, (D,)) * 0.9 + 0.1 * seq  # LN-like token scale
        return y


def synthetic_pairs(n: int, out_dim: int = 768, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [n, 512] unit-norm latents, y [n, 77, out_dim] CLIP-like sequences) of one world."""
    world = SyntheticWorld(out_dim=out_dim)
    z = world.concepts(n, seed)
    return world.latents(z, seed + 1), world.sequences(z, seed + 2)


def combined_captions(n: int, seed: int = 0) -> list[str]:
    """Caption bank lines plus 'A while B' combinations, ``n`` distinct captions."""
    from fusemix.caption_bank import load_captions

    bank = load_captions()
    g = torch.Generator().manual_seed(seed)
    out = list(bank)
    seen = set(out)
    while len(out) < n:
        i, j = torch.randint(len(bank), (2,), generator=g).tolist()
        cap = f"{bank[i]} while {bank[j]}"
        if i != j and cap not in seen:
            seen.add(cap)
            out.append(cap)
    order = torch.randperm(len(out), generator=g)
    return [out[i] for i in order[:n]]


def tiny_pairs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiny random CLAP text latents -> tiny random SD prompt_embeds of the same captions."""
    from diffusers import StableDiffusionPipeline
    from transformers import ClapModel, ClapProcessor

    from fusemix.tiny import save_tiny_clap, save_tiny_sd_pipeline

    captions = combined_captions(n, seed)
    with tempfile.TemporaryDirectory() as tmp:
        save_tiny_clap(Path(tmp) / "clap")
        save_tiny_sd_pipeline(Path(tmp) / "sd")
        clap = ClapModel.from_pretrained(Path(tmp) / "clap").eval()
        proc = ClapProcessor.from_pretrained(Path(tmp) / "clap")
        pipe = StableDiffusionPipeline.from_pretrained(Path(tmp) / "sd")
        xs, ys = [], []
        with torch.inference_mode():
            for s in range(0, n, 128):
                batch = captions[s:s + 128]
                tok = proc.tokenizer(batch, padding=True, return_tensors="pt")
                xs.append(clap.get_text_features(**tok).pooler_output)
                ys.append(pipe.encode_prompt(batch, "cpu", 1, False)[0])
    return torch.cat(xs).clone(), torch.cat(ys).clone()


# --------------------------------------------------------------------------- training


def fit(bridge: ConditioningBridge, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int = 128,
        lr: float = 1e-3, alpha: float = 1.0, seed: int = 0) -> float:
    """The train.py recipe in miniature: FuseMix mixing, AdamW, warm-up + cosine. Returns seconds."""
    torch.manual_seed(seed)
    bridge.initialize_from_data(x, y)
    opt = torch.optim.AdamW(param_groups(bridge, 0.01), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    g = torch.Generator().manual_seed(seed)
    bridge.train()
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randperm(x.shape[0], generator=g)[:batch]
        lam = sample_lambda(alpha, g)
        xb, yb = fusemix_mix(x[idx], y[idx], lam, mix_partners(len(idx), "permutation", g))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, max(steps // 20, 1))
        loss, _ = bridge.training_loss(xb, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    bridge.eval()
    return time.perf_counter() - t0


def evaluate(bridge: ConditioningBridge, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    za, zb = bridge.eval_embeddings(x, y)
    r = retrieval_metrics(za, zb, prefix=("x", "cap"))
    out = {"R@1": r["x2cap_R@1"], "R@5": r["x2cap_R@5"], **bridge.sequence_metrics(x, y)}
    with torch.inference_mode():
        xb = x[:1]
        bridge(xb)
        t0 = time.perf_counter()
        for _ in range(20):
            bridge(xb)
        out["forward_ms_b1"] = (time.perf_counter() - t0) / 20 * 1e3
    out["params_M"] = sum(p.numel() for p in bridge.parameters()) / 1e6
    return out


def run(name: str, cfg: BridgeConfig, data, args) -> dict:
    (xt, yt), (xh, yh) = data
    bridge = ConditioningBridge(cfg)
    secs = fit(bridge, xt, yt, args.steps, args.batch, args.lr, args.alpha, args.seed)
    res = {"run": name, **evaluate(bridge, xh, yh), "train_s": secs}
    print(" | ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()), flush=True)
    return res


def gap_study(args) -> list[dict]:
    """Route b (captions only) on synthetic latents with a modality gap: train on 'text' latents,
    test on held-out 'audio' latents of the same concepts, without and with mean-centering
    (the audio mean comes from *other*, unlabelled audio). Route a (trained on paired audio) and
    the text latents themselves are the references."""
    world = SyntheticWorld(out_dim=args.out_dim, x_noise=args.x_noise)
    n, m, seed = args.n_train, args.n_heldout, args.seed
    z_tr, z_he, z_unlab = world.concepts(n, seed), world.concepts(m, seed + 100), world.concepts(n, seed + 200)
    y_tr, y_he = world.sequences(z_tr, seed + 1), world.sequences(z_he, seed + 2)
    rows = []
    for gap in args.gaps:
        xt_tr, xt_he = world.latents(z_tr, seed + 3, -gap / 2), world.latents(z_he, seed + 4, -gap / 2)
        xa_tr, xa_he = world.latents(z_tr, seed + 5, gap / 2), world.latents(z_he, seed + 6, gap / 2)
        xa_unlab = world.latents(z_unlab, seed + 7, gap / 2)
        common = dict(in_dim=512, seq_len=77, out_dim=args.out_dim, depth=args.depth, dropout=args.dropout,
                      rank=args.rank, clap_model="benchmark", sd_model="benchmark")
        route_b = ConditioningBridge(BridgeConfig(train_modality="text", **common))
        fit(route_b, xt_tr, y_tr, args.steps, args.batch, args.lr, args.alpha, args.seed)
        route_a = ConditioningBridge(BridgeConfig(train_modality="audio", **common))
        fit(route_a, xa_tr, y_tr, args.steps, args.batch, args.lr, args.alpha, args.seed)

        def r1(bridge, x, modality):
            za, zb = bridge.eval_embeddings(x, y_he, modality=modality)
            return retrieval_metrics(za, zb, prefix=("x", "cap"))["x2cap_R@1"]

        row = {"gap_norm": float((xa_unlab.mean(0) - xt_tr.mean(0)).norm()),
               "paired_cos": float((xa_he * xt_he).sum(1).mean()),
               "b_text_R@1": r1(route_b, xt_he, "text"),
               "b_audio_raw_R@1": r1(route_b, xa_he, "audio")}
        for k in sorted(args.audio_clips):  # how few unlabelled clips the mean correction needs
            route_b.set_modality_mean("audio", xa_unlab[:k], shrink=False)
            row[f"b_audio_centred_{k}_clips_R@1"] = r1(route_b, xa_he, "audio")
            route_b.set_modality_mean("audio", xa_unlab[:k], shrink=True)
            row[f"b_audio_shrunk_{k}_clips_R@1"] = r1(route_b, xa_he, "audio")
        route_b.set_modality_mean("audio", xa_unlab, shrink=False)
        row["b_audio_centred_R@1"] = r1(route_b, xa_he, "audio")
        row["a_audio_R@1"] = r1(route_a, xa_he, "audio")
        rows.append({"run": f"gap offset {gap}", **row})
        print(" | ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()),
              flush=True)
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", choices=("synthetic", "tiny"), default="synthetic")
    p.add_argument("--section", choices=("heads", "gap"), default="heads",
                   help="heads: compare output heads (and --sweep-weights); gap: modality-gap study (synthetic)")
    p.add_argument("--gaps", type=float, nargs="+", default=[0.0, 0.75, 1.5], help="gap study: offsets to try")
    p.add_argument("--audio-clips", type=int, nargs="*", default=[],
                   help="gap study: also centre audio on the mean of only this many unlabelled clips")
    p.add_argument("--x-noise", type=float, default=3.0, help="gap study: latent noise (norm relative to signal)")
    p.add_argument("--heads", default=",".join(HEADS))
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-heldout", type=int, default=500)
    p.add_argument("--out-dim", type=int, default=768, help="synthetic only: D (768 SD 1.x, 1024 SD 2.x)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--alpha", type=float, default=1.0, help="FuseMix Beta(alpha, alpha)")
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--rank", type=int, default=128)
    p.add_argument("--sweep-weights", action="store_true")
    p.add_argument("--sweep-head", default="", help="head for the weight sweep (default: BridgeConfig's default)")
    p.add_argument("--reg-weights", type=float, nargs="+", default=[0.0, 0.1, 1.0, 10.0],
                   help="regression weights of the sweep (contrastive weight 1); regression alone is added")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.section == "gap":
        print(f"modality-gap study on synthetic latents (stand-in): {args.n_train} train / {args.n_heldout} "
              f"held-out, chance R@1 = {1 / args.n_heldout:.4f}, {args.steps} steps", flush=True)
        results = gap_study(args)
        if args.json:
            Path(args.json).write_text(json.dumps({"section": "gap", "args": vars(args), "results": results}, indent=2))
        worst = min(r["b_audio_centred_R@1"] - r["b_audio_raw_R@1"] for r in results)
        print("(the mean-centred captions-only bridge against no correction, worst gap)")
        print(goal_line("bridge_gap_correction_gain", worst, ">=", 0))
        return results
    n = args.n_train + args.n_heldout
    t0 = time.perf_counter()
    if args.data == "synthetic":
        x, y = synthetic_pairs(n, out_dim=args.out_dim, seed=args.seed)
        label = f"synthetic stand-in, 512 -> 77 x {args.out_dim}"
    else:
        x, y = tiny_pairs(n, seed=args.seed)
        label = f"tiny random CLAP text ({x.shape[1]}-d) -> tiny random SD text (77 x {y.shape[2]})"
    data = ((x[:args.n_train], y[:args.n_train]), (x[args.n_train:], y[args.n_train:]))
    print(f"data: {label}; {args.n_train} train / {args.n_heldout} held-out pairs "
          f"({time.perf_counter() - t0:.1f}s); chance R@1 = {1 / args.n_heldout:.4f}; "
          f"{args.steps} steps x batch {args.batch}, torch threads {torch.get_num_threads()}", flush=True)
    common = dict(in_dim=x.shape[1], seq_len=y.shape[1], out_dim=y.shape[2], depth=args.depth,
                  dropout=args.dropout, rank=args.rank,
                  clap_model="benchmark", sd_model="benchmark")
    results = []
    for head in filter(None, args.heads.split(",")):
        results.append(run(f"head={head}", BridgeConfig(head=head, **common), data, args))
    if args.sweep_weights:
        head = args.sweep_head or BridgeConfig().head
        for wc, wr in [(1.0, w) for w in args.reg_weights] + [(0.0, 1.0)]:
            cfg = BridgeConfig(head=head, contrastive_weight=wc, regression_weight=wr, **common)
            results.append(run(f"head={head} w_con={wc} w_reg={wr}", cfg, data, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"data": label, "args": vars(args), "results": results}, indent=2))
    heads = [r for r in results if r["run"].startswith("head=") and " " not in r["run"]]
    default = next((r for r in heads if r["run"] == f"head={BridgeConfig().head}"), None)
    if default is not None:
        print(f"(R@1 of the default head, {BridgeConfig().head}, over the best head's)")
        print(goal_line("bridge_default_head_vs_best", default["R@1"] / max(max(r["R@1"] for r in heads), 1e-12),
                        ">=", 0.95))
    return results


if __name__ == "__main__":
    main()
