"""Score every audio -> image route with a reference CLIP and write a table and an image grid.

    python evaluate.py --profile tiny                      # offline: stand-ins, numbers meaningless
    python evaluate.py --pairs clips.csv --clap laion/clap-htsat-unfused --sd stabilityai/sd-turbo \
        --clip openai/clip-vit-base-patch32 [--bridge weights/bridge]   # real models (needs the hub)

Routes: the FuseMix bridge (trained here from captions when --bridge is not given), the caption
bank, the true caption as the prompt (upper bound) and a random corpus caption (floor); see
fusemix/evaluate.py and docs/audio_to_image.md. Outputs: OUT/table.md, report.json, grid.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "demo" / "examples"
# The shipped example sounds, described in words of our own (they were synthesised: see tools/make_examples.py).
EXAMPLE_CAPTIONS = {
    "bell.wav": "a bell ringing and fading away",
    "birdsong.wav": "birds chirping and singing",
    "engine.wav": "an engine idling with a low rumble",
    "rain.wav": "rain falling steadily",
    "siren.wav": "an emergency siren wailing up and down",
    "speech.wav": "a man speaking in a calm voice",
}
STANDIN_NOTE = "tiny RANDOM stand-in models: the numbers show the evaluation runs, not image quality"


def tiny_models(root: Path) -> dict[str, str]:
    from fusemix.tiny import build_tiny_suite

    suite = build_tiny_suite(root, extras=("clip",))
    return {"clap": str(suite["clap"]), "sd": str(suite["sd"]), "clip": str(suite["clip"])}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", choices=["tiny", "real"], default="real")
    p.add_argument("--pairs", help="CSV/JSONL manifest with file_name and caption (default on tiny: the example sounds)")
    p.add_argument("--clap", default="laion/clap-htsat-unfused")
    p.add_argument("--sd", default="stabilityai/sd-turbo")
    p.add_argument("--clip", default="openai/clip-vit-base-patch32")
    p.add_argument("--bridge", help="a trained bridge folder (default: train one from captions, cached)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the checkpoint's)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default: the pipeline's)")
    p.add_argument("--out", default="runs/evaluate")
    args = p.parse_args(argv)

    import train_bridge
    from fusemix.caption_bank import load_captions
    from fusemix.conventions import cache_root
    from fusemix.evaluate import evaluate_routes, read_pairs, save_report
    from fusemix.generation import AudioToImage
    from fusemix.reference import ReferenceScorer

    standin = args.profile == "tiny"
    ids = tiny_models(cache_root("evaluate-tiny")) if standin else {"clap": args.clap, "sd": args.sd, "clip": args.clip}
    pairs = read_pairs(args.pairs) if args.pairs else [(str(EXAMPLES / f), c) for f, c in EXAMPLE_CAPTIONS.items()]
    bridge = args.bridge
    if bridge is None:
        job = train_bridge.make_job(ids["clap"], ids["sd"], max_captions=300 if standin else None)
        bridge = str(train_bridge.ensure_bridge(job, audio=[EXAMPLES], standin=standin))
    a2i = AudioToImage.from_pretrained(ids["sd"], ids["clap"], bridge=bridge, caption_bank=str(train_bridge.DEFAULT_CORPUS),
                                       standin=standin)
    scorer = ReferenceScorer.from_pretrained(ids["clip"], standin=standin)
    corpus = load_captions(train_bridge.DEFAULT_CORPUS)
    params = {k: v for k, v in {"steps": args.steps, "height": args.size, "width": args.size}.items() if v}
    report = evaluate_routes(a2i, scorer, pairs, corpus, seeds=args.seeds, **params)
    if standin:
        report.notes.insert(0, STANDIN_NOTE)
    files = save_report(report, args.out)
    print(report.table())
    print(json.dumps({k: str(v) for k, v in files.items()}))
    return {"report": report, "files": files, "a2i": a2i, "scorer": scorer, "corpus": corpus}


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
