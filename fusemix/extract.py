"""Pairs + two frozen encoders -> the latent-pair file ``train.py`` trains from.

Each side goes through its own :class:`fusemix.cache.LatentCache`; undecodable items are dropped with
their captions, rejected captions alone, and :class:`ExtractionReport` lists each.

CLI::

    python -m fusemix.extract --data DIR_OR_MANIFEST --x-encoder KIND:ID --y-encoder KIND:ID \\
        --out pairs.safetensors [--cache-root DIR] [--num-workers 2] [--batch-size 32]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import conventions
from .cache import BuildStats, CachedLatents, LatentCache, Units, default_state, prepares
from .io import atomic_write_json
from .latents import LatentPairs, save_latent_pairs
from .pairs import PairSource, hub_source, open_source

log = logging.getLogger(__name__)


class ExtractionError(ValueError):
    """Extraction cannot produce a latent-pair file (mismatched encoders, nothing usable)."""


# Item loaders are picklable callables: they run in DataLoader worker processes.
@dataclass(frozen=True)
class RawItemLoader:
    """Item ``i`` as stored (path, PIL image, bytes), for encoders that decode in ``prepare``."""

    source: PairSource

    def __call__(self, i: int) -> Any:
        item = self.source.item(i)
        if not isinstance(item, dict):
            return item
        if item.get("bytes"):  # an undecoded ``datasets`` Audio/Image {"path", "bytes"}
            return bytes(item["bytes"])
        if item.get("path"):
            return item["path"]
        raise ValueError(f"item dict has neither bytes nor path (keys {sorted(item)})")


@dataclass(frozen=True)
class AudioItemLoader:
    """Decodes item ``i`` to a mono float32 waveform at the encoder's sampling rate."""

    source: PairSource
    sampling_rate: int

    def __call__(self, i: int) -> Any:
        from .audio import load_audio

        return load_audio(self.source.item(i), target_sr=self.sampling_rate)


class ImageItemLoader(RawItemLoader):
    """Decodes item ``i`` to an RGB PIL image, with :func:`fusemix.encoders.image.open_image`'s checks."""

    def __call__(self, i: int) -> Any:
        from .encoders.image import open_image

        return open_image(super().__call__(i))


@dataclass
class ExtractionReport:
    """What went in, what came out, and every item or caption left out (with its reason)."""

    source: dict[str, Any]
    items_in_source: int
    captions_in_source: int
    items_kept: int = 0
    captions_kept: int = 0
    source_skips: list[dict[str, str]] = field(default_factory=list)
    x_failures: list[dict[str, str]] = field(default_factory=list)
    y_failures: list[dict[str, str]] = field(default_factory=list)
    dropped_items: list[dict[str, str]] = field(default_factory=list)
    x_cache: str = ""
    y_cache: str = ""
    x_shards: dict[str, list[int]] = field(default_factory=dict)
    y_shards: dict[str, list[int]] = field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        return len(self.source_skips) + len(self.x_failures) + len(self.y_failures) + len(self.dropped_items)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"num_skipped": self.num_skipped}

    def summary(self) -> str:
        lines = [f"kept {self.items_kept}/{self.items_in_source} items and {self.captions_kept}/"
                 f"{self.captions_in_source} captions; left out: {len(self.source_skips)} at the source, "
                 f"{len(self.x_failures)} x failures, {len(self.y_failures)} caption failures, "
                 f"{len(self.dropped_items)} items without a usable caption"]
        for name, rows in (("source", self.source_skips), ("x", self.x_failures), ("y", self.y_failures),
                           ("dropped", self.dropped_items)):
            lines += [f"  {name}: {r['id']}: {r['reason']}" for r in rows[:5]]
            if len(rows) > 5:
                lines.append(f"  {name}: ... {len(rows) - 5} more (see the report file)")
        return "\n".join(lines)


@dataclass
class ExtractionResult:
    pairs: LatentPairs
    report: ExtractionReport


def encoder_spec(encoder: Any) -> str:
    """``KIND:MODEL_ID``: what ``load_encoder`` needs to rebuild the encoder at inference."""
    desc = encoder.describe()
    return f"{desc.get('kind', type(encoder).__name__)}:{desc.get('model_id', encoder.model_id)}"


def _as_encoder(enc: Any, **kw: Any) -> Any:
    if isinstance(enc, str):
        try:
            kind, model_id = conventions.parse_spec(enc)
        except conventions.SpecError as e:
            raise ExtractionError(str(e)) from None
        from .encoders import load_encoder

        return load_encoder(kind, model_id, **kw)
    for attr in ("modality", "encode", "describe"):
        if not hasattr(enc, attr):
            raise ExtractionError(f"{type(enc).__name__} is not an encoder: it has no {attr!r}")
    return enc


def _rows_of(c: CachedLatents) -> torch.Tensor:
    """Unit position -> row in ``c.latents`` (-1 for failed units)."""
    rows = torch.full((len(c.ids),), -1, dtype=torch.long)
    rows[c.index] = torch.arange(len(c.index))
    return rows


def _build(units: Units, encoder: Any, root: Path, opts: dict[str, Any]) -> tuple[LatentCache, BuildStats, CachedLatents]:
    cache = LatentCache(root, units, encoder, shard_size=opts.pop("shard_size"), dtype=opts.pop("dtype"))
    return cache, cache.build(**opts), cache.load()


def default_num_workers() -> int:
    """Decoding processes per extraction process: the CPU cores beside it, at least 2, with cores
    shared among the local ``torchrun`` processes and counted by ``joblib`` (affinity, cgroups)."""
    import joblib

    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return max(2, joblib.cpu_count() // local - 1)


def run_extraction(source: Any, x_encoder: Any, y_encoder: Any, cache_root: str | os.PathLike | None = None,
                   *, batch_size: int = 32, shard_size: int = 1024, num_workers: int | None = 0, dtype: str = "float32",
                   progress: bool = True, state: Any = None, caption_column: str | list[str] = "caption",
                   item_column: str | None = None, id_column: str | None = None,
                   split: str | None = None) -> ExtractionResult:
    """Encode (or reuse cached) latents for a pair source; see :func:`extract_pairs`."""
    num_workers = default_num_workers() if num_workers is None else num_workers
    src = open_source(source, caption_column=caption_column, item_column=item_column, id_column=id_column,
                      split=split)
    state = state if state is not None else default_state()
    device = getattr(state, "device", None)  # each process's own GPU under accelerate / torchrun
    kw = {"device": str(device)} if device is not None and device.type == "cuda" else {}
    x_enc, y_enc = _as_encoder(x_encoder, **kw), _as_encoder(y_encoder, **kw)
    if y_enc.modality != "text":
        raise ExtractionError(f"the y encoder must encode captions (modality 'text'), got {y_enc.modality!r}")
    x_from_captions = x_enc.modality == "text"
    if not x_from_captions and src.modality not in (None, x_enc.modality):
        raise ExtractionError(f"the source holds {src.modality} items but the x encoder encodes {x_enc.modality!r}")
    report = ExtractionReport(source=src.describe(), items_in_source=len(src), captions_in_source=src.num_captions,
                              source_skips=[s.to_dict() for s in src.skipped])
    if len(src) == 0:
        raise ExtractionError("no usable pairs in the source:\n" + report.summary())

    cap_item = torch.tensor([i for i, caps in enumerate(src.captions) for _ in caps], dtype=torch.long)
    cap_ids = [f"{item_id}#{k}" for item_id, caps in zip(src.ids, src.captions) for k in range(len(caps))]
    cap_loader = tuple(c for caps in src.captions for c in caps).__getitem__  # picklable, for the workers
    cap_units = Units(cap_ids, src.captions_fingerprint(), cap_loader, kind="captions")
    if x_from_captions:
        x_units = cap_units
    elif x_enc.modality not in ("audio", "image"):
        raise ExtractionError(f"unsupported x modality {x_enc.modality!r}")
    elif prepares(x_enc):  # the encoder decodes in prepare(), in the DataLoader workers
        x_units = Units(list(src.ids), f"{src.items_fingerprint()}:raw", RawItemLoader(src), x_enc.modality)
    elif x_enc.modality == "audio":
        sr = int(getattr(x_enc, "sample_rate", getattr(x_enc, "sampling_rate", 48000)))
        x_units = Units(list(src.ids), f"{src.items_fingerprint()}:audio@{sr}", AudioItemLoader(src, sr), "audio")
    else:
        x_units = Units(list(src.ids), f"{src.items_fingerprint()}:image-rgb", ImageItemLoader(src), "image")

    opts = dict(batch_size=batch_size, shard_size=shard_size, num_workers=num_workers, dtype=dtype,
                progress=progress, state=state)
    root = Path(cache_root) if cache_root is not None else conventions.cache_root("latents")  # read now, not at import
    x_cache, x_stats, xl = _build(x_units, x_enc, root, dict(opts))
    y_cache, y_stats, yl = _build(cap_units, y_enc, root, dict(opts))
    report.x_cache, report.y_cache = str(x_cache.dir), str(y_cache.dir)
    report.x_shards = {"encoded": x_stats.encoded_shards, "reused": x_stats.reused_shards}
    report.y_shards = {"encoded": y_stats.encoded_shards, "reused": y_stats.reused_shards}
    report.x_failures, report.y_failures = ([{"id": i, "reason": r} for _, i, r in c.failed] for c in (xl, yl))

    x_rows, y_rows = _rows_of(xl), _rows_of(yl)
    if x_from_captions:
        keep = (x_rows >= 0) & (y_rows >= 0)
        x, y, y_item = xl.latents[x_rows[keep]], yl.latents[y_rows[keep]], None
        report.items_kept, report.captions_kept = len(torch.unique(cap_item[keep])), int(keep.sum())
    else:
        keep_cap = (y_rows >= 0) & (x_rows[cap_item] >= 0)
        has_cap = torch.zeros(len(src), dtype=torch.bool)
        has_cap[cap_item[keep_cap]] = True
        keep_item = (x_rows >= 0) & has_cap
        report.dropped_items = [{"id": src.ids[i], "reason": "none of its captions could be encoded"}
                                for i in ((x_rows >= 0) & ~has_cap).nonzero().flatten().tolist()]
        remap = torch.full((len(src),), -1, dtype=torch.long)
        remap[keep_item] = torch.arange(int(keep_item.sum()))
        x, y = xl.latents[x_rows[keep_item]], yl.latents[y_rows[keep_cap]]
        y_item = remap[cap_item[keep_cap]]
        if len(y_item) == len(x) and torch.equal(y_item, torch.arange(len(x))):
            y_item = None
        report.items_kept, report.captions_kept = int(keep_item.sum()), int(keep_cap.sum())
    if report.captions_kept == 0:
        raise ExtractionError("no pair survived extraction:\n" + report.summary())
    pairs = LatentPairs(x=x, y=y, y_item=y_item, x_modality=x_enc.modality, y_modality=y_enc.modality,
                        x_encoder=encoder_spec(x_enc), y_encoder=encoder_spec(y_enc))
    if report.num_skipped:
        log.warning("extraction left items out:\n%s", report.summary())
    return ExtractionResult(pairs, report)


def extract_pairs(source: Any, x_encoder: Any, y_encoder: Any, cache_root: str | os.PathLike | None = None,
                  **kwargs: Any) -> LatentPairs:
    """Latent pairs for ``source`` (a folder, a manifest, a ``datasets.Dataset`` or a PairSource) from encoders
    or ``"KIND:MODEL_ID"`` strings; options as :func:`run_extraction`, which also gives the report."""
    return run_extraction(source, x_encoder, y_encoder, cache_root, **kwargs).pairs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fusemix.extract", description=__doc__.split("\n\n")[0])
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="audiofolder/imagefolder directory, or a CSV/JSONL manifest")
    data.add_argument("--hub", help="a Hugging Face hub dataset name (needs the network)")
    p.add_argument("--x-encoder", required=True, help="KIND:MODEL_ID for the items, e.g. clap-audio:laion/clap-htsat-unfused")
    p.add_argument("--y-encoder", required=True, help="KIND:MODEL_ID for the captions, e.g. sd-text:stabilityai/sd-turbo")
    p.add_argument("--out", required=True, help="latent-pair file to write (.safetensors)")
    p.add_argument("--report", help="JSON report of left-out items (default: OUT with .report.json)")
    p.add_argument("--cache-root", help="latent cache folder (default: $FUSEMIX_CACHE/latents or ~/.cache/fusemix/latents)")
    p.add_argument("--caption-column", default="caption", help="column name(s), comma-separated")
    p.add_argument("--item-column", help="item column (manifests: default file_name; hub: required)")
    p.add_argument("--id-column")
    p.add_argument("--split", help="split subfolder (folders) or split name (hub, default train)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard-size", type=int, default=1024)
    p.add_argument("--num-workers", type=int, default=None,
                   help="decoding processes (default: one per CPU core beside this process, at least 2)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = default_state()
    caption_column = [c.strip() for c in args.caption_column.split(",") if c.strip()]
    try:
        if args.hub:
            if not args.item_column:
                raise ExtractionError("--hub needs --item-column (e.g. audio or image)")
            source: Any = hub_source(args.hub, split=args.split or "train", item_column=args.item_column,
                                     caption_column=caption_column, id_column=args.id_column)
        else:
            source = open_source(args.data, caption_column=caption_column, item_column=args.item_column,
                                 id_column=args.id_column, split=args.split)
        result = run_extraction(source, args.x_encoder, args.y_encoder, args.cache_root, batch_size=args.batch_size,
                                shard_size=args.shard_size, num_workers=args.num_workers, dtype=args.dtype,
                                progress=not args.no_progress, state=state)
    except (ValueError, OSError) as e:  # bad input, or a model/dataset that cannot be read
        print(f"error: {e}", file=sys.stderr)
        return 2
    if state.is_main_process:
        out = Path(args.out)
        save_latent_pairs(out, result.pairs)
        report_path = Path(args.report) if args.report else out.with_suffix(".report.json")
        atomic_write_json(report_path, result.report.to_dict())
        print(result.report.summary())
        print(f"wrote {out} (x {tuple(result.pairs.x.shape)}, y {tuple(result.pairs.y.shape)}) and {report_path}")
    state.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
