"""Train FuseMix fusion adapters on cached latents of frozen encoders.

Read top to bottom: config -> latents -> model -> optimiser -> loop (mix, adapters, InfoNCE)
-> held-out retrieval -> atomic checkpoints. Every field of TrainConfig is a flag:

    python train.py --latents pairs.safetensors --out runs/demo            # bring your own latents
    python train.py --data my_audiofolder --x_encoder clap-audio:laion/clap-htsat-unfused \
        --y_encoder sentence:BAAI/bge-large-en-v1.5 --out runs/audio_text  # extract, then train
    python train.py --model bridge --latents clap_to_sd.safetensors ...    # audio -> SD text space
    accelerate launch train.py ...  (or torchrun)                          # data-parallel, global-batch loss

Every step is a pure function of (seed, step): batch order, mixing lambda and partners, and
dropout are re-seeded from them, so `--resume` continues bit-for-bit.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fusemix.bridge import BridgeConfig, ConditioningBridge, combine_clap_towers
from fusemix.conventions import cache_root
from fusemix.dropout import dropout_generator
from fusemix.hardware import bf16_is_native, cpu_name
from fusemix.io import atomic_write_json
from fusemix.latents import LatentFileError, LatentPairs, load_latent_pairs
from fusemix.metrics import contrastive_loss, retrieval_metrics
from fusemix.mixing import SCHEMES, alpha_at, fusemix_mix, mix_partners, sample_lambda
from fusemix.model import FusionConfig, FusionModel, ModalitySpec
from fusemix.optim import lr_at, make_optimizer
from fusemix.plotting import plot_metrics
from fusemix.recipe import CV_FROM, CV_TEMPERATURE, Recipe, linear_start, recipe
from fusemix.train_state import latest_checkpoint, load_trainer_state, save_checkpoint


def opt(default, help):  # a config field with its help text (becomes the flag's help)
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # --- data ---
    latents: str = opt("", "latent-pair safetensors file (x, y, optional y_item); skips extraction. --model bridge: "
                           "FILE_A,FILE_B combines CLAP audio- and text-tower pairs (route c)")
    data: str = opt("", "dataset folder (audiofolder/imagefolder + metadata) or CSV/JSONL manifest to extract from")
    x_encoder: str = opt("", "KIND:MODEL_ID of the item encoder for --data, e.g. clap-audio:laion/clap-htsat-unfused")
    y_encoder: str = opt("", "KIND:MODEL_ID of the caption encoder for --data, e.g. sentence:BAAI/bge-large-en-v1.5")
    caption_column: str = opt("caption", "caption column of the dataset metadata / manifest")
    cache_dir: str = opt("", "where extracted latents are cached, reused across runs (empty: the fusemix cache "
                             "root's latents/: $FUSEMIX_CACHE, else $XDG_CACHE_HOME/fusemix, else ~/.cache/fusemix)")
    num_workers: int = opt(-1, "decoding processes for extraction (-1: one per CPU core beside this one, at least 2)")
    heldout_fraction: float = opt(None, "fraction of items held out for retrieval evaluation and the best checkpoint "
                                        "(default: by --preset)")
    out: str = opt("runs/fusemix", "output directory: checkpoints, metrics.jsonl, metrics.png")
    # --- model ---
    model: str = opt("two_tower", "two_tower (retrieval adapters) or bridge (CLAP -> Stable Diffusion text space)")
    preset: str = opt("auto", "where flags not given come from: auto (chosen from the number of pairs, "
                              "fusemix/recipe.py) or paper (the paper's adapters and optimiser, batch clipped "
                              "to the pairs)")
    proj_dim: int = opt(None, "shared space width (default: by --preset; paper: 512)")
    depth: int = opt(None, "residual blocks per adapter (default: by --preset; paper: 4)")
    head_depth: int = opt(None, "residual blocks after the projection, in the shared space (default: by --preset; "
                                "paper: 0)")
    expansion: int = opt(None, "hidden width multiplier inside a block (default: by --preset; paper: 4)")
    dropout: float = opt(None, "dropout inside blocks (default: by --preset; paper: 0.6)")
    bridge_head: str = opt(BridgeConfig.head, "--model bridge: output head, lowrank or direct (docs/audio_to_image.md)")
    bridge_rank: int = opt(BridgeConfig.rank, "--model bridge: basis sequences of the lowrank head")
    regression_weight: float = opt(BridgeConfig.regression_weight, "--model bridge: weight of the sequence MSE beside InfoNCE")
    init_from: str = opt("", "start from a saved FusionModel dir; new modalities get fresh adapters")
    freeze: str = opt("", "comma-separated modalities whose adapters stay fixed (e.g. text, as the shared anchor)")
    adapter_init: str = opt(None, "linear: start at the closed-form CCA/ridge map chosen by cross-validation on the "
                                  "training pairs, residual MLPs at zero (fusemix/recipe.py); random: the usual "
                                  "init (default: by --preset)")
    # --- FuseMix ---
    mixup_alpha: float = opt(1.0, "Beta(alpha, alpha) for the shared mixing coefficient; <= 0 turns mixing off")
    mix_scheme: str = opt("permutation", f"how partners are chosen: {' or '.join(SCHEMES)} (official code: half)")
    alpha_schedule: str = opt("constant", "constant, linear_decay, cosine_decay or warmup (alpha as a function of step)")
    # --- optimisation ---
    epochs: int = opt(None, "passes over the training pairs; 0 with --adapter_init linear: the closed-form map alone "
                            "(default: by --preset; official run: 500)")
    batch_size: int = opt(None, "global batch (split over processes); negatives come from it (default: by --preset; "
                                "official run: 40960)")
    lr: float = opt(None, "peak learning rate (AdamW; default: by --preset; official code: 1e-3)")
    min_lr: float = opt(1e-6, "learning rate at the end of the cosine decay (official code: 1e-6)")
    weight_decay: float = opt(0.1, "AdamW weight decay on matrices (none on biases, norms, temperature)")
    warmup_steps: int = opt(None, "linear warm-up steps before the cosine decay (default: by --preset; official: 100)")
    grad_clip: float = opt(0.0, "max gradient norm; 0 disables")
    bf16: bool = opt(False, "bf16 autocast for the adapters (CPUs with bf16 units and GPUs)")
    tf32: bool = opt(False, "on CUDA, fp32 matmuls on TF32 tensor cores (10-bit mantissa inputs): several times "
                            "faster than full fp32; no effect on CPU")
    # --- bookkeeping ---
    eval_every: int = opt(None, "evaluate held-out retrieval every N epochs (and at the end; default: by --preset)")
    log_every: int = opt(10, "write a training-loss line every N steps")
    save_every: int = opt(None, "checkpoint every N epochs (and at the end; default: by --preset)")
    max_steps: int = opt(0, "stop after this many steps in this invocation (0: run to the end); for tests and time limits")
    resume: bool = opt(False, "continue from the latest checkpoint in --out")
    seed: int = opt(0, "seed for the split, initialisation, batch order, mixing and dropout")
    device: str = opt("auto", "auto, cpu or cuda")
    progress: bool = opt(True, "show a tqdm progress bar")


def parse_args(argv=None) -> TrainConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(TrainConfig):
        kw = {"default": f.default, "help": f.metadata["help"]}
        if f.type in ("bool", bool):
            p.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, **kw)
        else:
            p.add_argument(f"--{f.name}", type={"int": int, "float": float, "str": str}[str(f.type)], **kw)
    return TrainConfig(**vars(p.parse_args(argv)))


class TrainingError(ValueError):
    """A configuration or data problem found before training starts."""


def choose_settings(cfg: TrainConfig, n_pairs: int, n_train: int | None, x_dim: int, y_dim: int, processes: int,
                    only=None) -> tuple[TrainConfig, Recipe, list[str]]:
    """Fill the flags left at None (those in ``only``, else all) from fusemix.recipe; given flags win."""
    try:
        rec = recipe(n_pairs, x_dim, y_dim, cfg.preset, processes, n_train=n_train, model=cfg.model)
    except ValueError as e:
        raise TrainingError(str(e)) from e
    chosen = [k for k in rec.settings if getattr(cfg, k, 0) is None and (only is None or k in only)]
    return dataclasses.replace(cfg, **{k: rec.settings[k] for k in chosen}), rec, chosen


def load_pairs(cfg: TrainConfig) -> LatentPairs:
    if cfg.latents:
        files = [f for f in cfg.latents.split(",") if f]
        if len(files) == 1:
            return load_latent_pairs(files[0])
        if cfg.model != "bridge":
            raise TrainingError("several --latents files are combined only for --model bridge "
                                "(CLAP audio- and text-tower pairs); merge two-tower latents into one file")
        return combine_clap_towers([load_latent_pairs(f) for f in files])
    if not (cfg.data and cfg.x_encoder and cfg.y_encoder):
        raise TrainingError("give --latents FILE, or --data with --x_encoder and --y_encoder")
    from fusemix.extract import extract_pairs  # heavy imports only when extracting

    return extract_pairs(cfg.data, cfg.x_encoder, cfg.y_encoder, cache_root=cfg.cache_dir or cache_root("latents"),
                         caption_column=cfg.caption_column, num_workers=None if cfg.num_workers < 0 else cfg.num_workers)


def build_model(cfg: TrainConfig, pairs: LatentPairs) -> torch.nn.Module:
    """The one place that chooses the model kind; both kinds offer train.py the same methods:
    ``prepare_for_data``, ``training_loss``, ``eval_embeddings``, ``loss_fn`` and ``save_pretrained``."""
    torch.manual_seed(cfg.seed)
    frozen = [s.strip() for s in cfg.freeze.split(",") if s.strip()]
    if cfg.model == "bridge":
        if frozen:
            raise TrainingError(f"--freeze {frozen[0]}: the model has no such adapter")
        return ConditioningBridge.from_latents(pairs, depth=cfg.depth, expansion=cfg.expansion, dropout=cfg.dropout,
                                               head=cfg.bridge_head, rank=cfg.bridge_rank,
                                               regression_weight=cfg.regression_weight)
    if cfg.model != "two_tower":
        raise TrainingError(f"--model must be two_tower or bridge, got {cfg.model!r}")
    if pairs.y.ndim != 2:
        raise TrainingError(f"two_tower adapters need pooled caption latents [M, D]; y has shape {tuple(pairs.y.shape)}")
    specs = {pairs.x_modality: ModalitySpec(pairs.x_encoder, pairs.x.shape[1]),
             pairs.y_modality: ModalitySpec(pairs.y_encoder, pairs.y.shape[1])}
    if len(specs) != 2:
        raise TrainingError(f"x and y are both called {pairs.x_modality!r}; name the modalities apart in the latent file")
    if not cfg.init_from:
        model = FusionModel(FusionConfig(specs, cfg.proj_dim, cfg.depth, cfg.expansion, cfg.dropout, cfg.head_depth))
    else:
        model = FusionModel.from_pretrained(cfg.init_from).train()
        for name, spec in specs.items():
            if name not in model.adapters:
                model.add_modality(name, spec)
            elif model.config.modalities[name].dim != spec.dim:
                raise TrainingError(f"{cfg.init_from} has a {name} adapter for {model.config.modalities[name].dim}-d "
                                    f"latents, but the latent file's {name} is {spec.dim}-d")
    for name in frozen:
        if name not in model.adapters:
            raise TrainingError(f"--freeze {name}: the model has no such adapter")
        model.adapters[name].requires_grad_(False)
    return model


class PairLoss(torch.nn.Module):
    """What data parallelism wraps: a batch of (x, y) latents in, the model's (loss, logs) out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y):
        return self.model.training_loss(x, y)


@torch.no_grad()
def evaluate(model, held: LatentPairs, device) -> dict[str, float]:
    model.eval()
    za, zb = model.eval_embeddings(held.x.to(device), held.y.to(device))
    a, b = held.x_modality, held.y_modality
    prefix = (a[0], b[0]) if a[0] != b[0] else (a, b)
    out = retrieval_metrics(za, zb, held.item_of, prefix=prefix)
    out["mean_R@1"] = 0.5 * (out[f"{prefix[0]}2{prefix[1]}_R@1"] + out[f"{prefix[1]}2{prefix[0]}_R@1"])
    out["infonce"] = contrastive_loss(za, zb, held.item_of, CV_TEMPERATURE)  # fixed temperature: comparable across steps
    model.train()
    return out


def main(argv=None) -> dict:
    cfg = parse_args(argv)
    from accelerate import Accelerator

    # Without a GPU, accelerate needs cpu=True to join a torchrun group (gloo) instead of running alone.
    acc = Accelerator(cpu=cfg.device == "cpu" or not torch.cuda.is_available())
    device = acc.device
    if cfg.bf16 and not bf16_is_native(device) and acc.is_local_main_process:
        where = cpu_name() if device.type == "cpu" else str(device)
        print(f"warning: --bf16 on {where}, which has no native bf16 matmul units: bf16 is emulated there and "
              "many times slower than fp32; drop --bf16 to train in fp32", file=sys.stderr, flush=True)
    if device.type == "cuda":  # this process's CUDA matmuls only; the CPU path is never changed
        torch.backends.cuda.matmul.fp32_precision = "tf32" if cfg.tf32 else "ieee"
    out = Path(cfg.out)

    # ---- data: everything validated before a single step ----
    pairs = load_pairs(cfg)
    dims = (pairs.x.shape[-1], pairs.y.shape[-1])
    cfg, _, chosen = choose_settings(cfg, pairs.num_pairs, None, *dims, acc.num_processes,
                                     only=("heldout_fraction",))  # the split first
    train, held = pairs.split(cfg.heldout_fraction, seed=cfg.seed) if cfg.heldout_fraction > 0 else (pairs, None)
    n = train.num_pairs
    cfg, rec, rest = choose_settings(cfg, pairs.num_pairs, n, *dims, acc.num_processes)  # then batch, steps, ...
    if chosen + rest:
        acc.print(f"settings chosen by --preset {cfg.preset} for {pairs.num_pairs} pairs ({n} for training):\n"
                  + rec.describe(chosen + rest))
    if cfg.batch_size < 2 or cfg.batch_size > n:
        raise TrainingError(f"--batch_size must be between 2 and the {n} training pairs, got {cfg.batch_size}")
    if cfg.batch_size % acc.num_processes:
        raise TrainingError(f"--batch_size {cfg.batch_size} must divide evenly over {acc.num_processes} processes")
    if cfg.epochs < 0 or (cfg.epochs == 0 and (cfg.adapter_init != "linear" or cfg.model != "two_tower")):
        raise TrainingError(f"--epochs must be at least 1 (0, the closed-form map alone, only for two-tower "
                            f"adapters with --adapter_init linear), got {cfg.epochs}")
    if cfg.mix_scheme not in SCHEMES:
        raise TrainingError(f"--mix_scheme must be one of {SCHEMES}, got {cfg.mix_scheme!r}")
    x_all, y_all, item_of = train.x.to(device).float(), train.y.to(device).float(), train.item_of.to(device)
    steps_per_epoch = n // cfg.batch_size
    total_steps = cfg.epochs * steps_per_epoch

    # ---- model and optimiser ----
    model = build_model(cfg, pairs).to(device)
    model.prepare_for_data(train)
    model.loss_fn.gather = acc.num_processes > 1
    if cfg.adapter_init not in ("linear", "random"):
        raise TrainingError(f"--adapter_init must be linear or random, got {cfg.adapter_init!r}")
    if cfg.adapter_init == "linear" and cfg.model == "two_tower" and not cfg.init_from:  # (a resume overwrites it)
        lin = linear_start(model, train.x_modality, x_all[item_of], train.y_modality, y_all, cfg.seed)
        how = (f"cross-validated R@1 {lin.cv_r1:.3f}" if not math.isnan(lin.cv_r1)
               else f"fixed below {CV_FROM} pairs, too few to cross-validate")
        acc.print(f"linear start: CCA/ridge map (r_x, r_y, power) = {lin.params}, {how}")
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    # The kept checkpoint: two-tower adapters by held-out InfoNCE (R@1 on a few hundred held-out pairs is 1.0
    # for most steps and kept a barely trained one), the bridge by its R@1 as measured (docs/real_bridge.md).
    selection = (lambda m: -m["infonce"]) if cfg.model == "two_tower" else (lambda m: m["mean_R@1"])
    state = {"best_metric": -1.0, "best_score": None, "best_checkpoint": None, "config": dataclasses.asdict(cfg)}
    start_step = 0
    if cfg.resume and (ckpt := latest_checkpoint(out)) is not None:
        from fusemix.checkpoint import load_state_strict, read_safetensors

        load_state_strict(model, read_safetensors(ckpt / "model.safetensors"), str(ckpt))
        state = load_trainer_state(ckpt, optimizer)
        start_step = state["step"]
        acc.print(f"resumed from {ckpt} at step {start_step}")
    state["num_processes"] = acc.num_processes
    loss_module = acc.prepare(PairLoss(model))
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "train_config.json", dataclasses.asdict(cfg))
    log_path = out / "metrics.jsonl"
    if acc.is_main_process and log_path.exists():
        # Steps after the checkpoint (all of them, for a fresh run or a kill before the first checkpoint)
        # are about to be redone: drop their rows so that no step is logged twice.
        from fusemix.io import atomic_write_text
        from fusemix.plotting import read_metrics

        kept = [r for r in read_metrics(log_path) if r.get("step", 0) <= start_step]
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in kept))

    def log(row: dict) -> None:
        if acc.is_main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def checkpoint(step: int) -> None:
        if acc.is_main_process:
            path = save_checkpoint(out, step, model.save_pretrained, optimizer, state)
            acc.print(f"checkpoint: {path}")

    # ---- the loop ----
    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=start_step, disable=not (cfg.progress and acc.is_main_process),
               desc="train", dynamic_ncols=True)
    shard = cfg.batch_size // acc.num_processes
    rank = acc.process_index
    model.train()
    t0, step = time.time(), start_step
    stop_at = min(total_steps, start_step + cfg.max_steps) if cfg.max_steps else total_steps
    while step < stop_at:
        epoch, k = divmod(step, steps_per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch))
        idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size].to(device)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7919 * step + 1)
        lam = sample_lambda(alpha_at(step, total_steps, cfg.mixup_alpha, cfg.alpha_schedule), g)
        xb, yb = fusemix_mix(x_all[item_of[idx]], y_all[idx], lam, mix_partners(len(idx), cfg.mix_scheme, g))
        xb, yb = xb[rank * shard:(rank + 1) * shard], yb[rank * shard:(rank + 1) * shard]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps, cfg.lr, cfg.warmup_steps, cfg.min_lr / cfg.lr)
        drop_seed = cfg.seed * 1_000_003 + 104_729 * step + rank  # dropout, reproducible per step
        torch.manual_seed(drop_seed)  # CUDA's dropout; CPU masks come from a generator of this thread only
        with dropout_generator(torch.Generator().manual_seed(drop_seed)), \
                torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss, extra = loss_module(xb, yb)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower --lr or check the latents")
        optimizer.zero_grad(set_to_none=True)
        acc.backward(loss)
        if cfg.grad_clip > 0:
            acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == stop_at:
            row = {"kind": "train", "step": step, "epoch": step / steps_per_epoch, "loss": loss.item(),
                   "lambda": lam, "lr": optimizer.param_groups[0]["lr"], "temperature": float(model.loss_fn.temperature.detach()),
                   "elapsed_s": round(time.time() - t0, 3), **{k: float(v) for k, v in extra.items()}}
            log(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
        epoch_done, epoch_no = step % steps_per_epoch == 0, step // steps_per_epoch
        ended = step == total_steps
        save = (epoch_done and epoch_no % cfg.save_every == 0) or step == stop_at
        if held is not None and ((epoch_done and epoch_no % cfg.eval_every == 0) or ended):
            metrics = evaluate(model, held, device)
            log({"kind": "eval", "step": step, **metrics})
            if state.get("best_score") is None or selection(metrics) >= state["best_score"]:  # of equals, the latest
                state["best_score"], state["best_metric"] = selection(metrics), metrics["mean_R@1"]
                state["best_checkpoint"], save = f"ckpt-{step:09d}", True
            bar.write(f"step {step}: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if "R@1" in k))
        if save:
            checkpoint(step)
    bar.close()
    if total_steps == 0 and start_step == 0:  # --epochs 0: the closed-form map is the model
        checkpoint(0)
    if acc.is_main_process and log_path.exists():
        plot_metrics(log_path, out / "metrics.png")
    acc.wait_for_everyone()
    return {"step": step, "best_metric": state["best_metric"], "heldout_pairs": held.num_pairs if held is not None else 0,
            "out": str(out)}


if __name__ == "__main__":
    try:
        result = main()
    except (TrainingError, LatentFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result))
