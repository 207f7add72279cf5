"""``python -m fusemix.bridge``: record the mean CLAP audio latent in a captions-only bridge."""
from __future__ import annotations

import argparse

import torch
from tqdm.auto import tqdm

from ..conventions import AUDIO_EXTENSIONS, audio_files, kind_of, model_id_of
from .compat import BridgeConfigError
from .model import ConditioningBridge


def set_audio_mean_main(argv=None) -> int:
    """``python -m fusemix.bridge BRIDGE_DIR (--audio DIR_OR_FILE ... | --latents FILE)``

    Record the mean CLAP audio latent in a bridge trained on captions only, so audio is centred
    on its own tower's mean at inference. Unlabelled audio is enough; the bridge is re-saved in
    place. ``--latents`` takes a latent-pair file whose ``x`` holds CLAP audio latents.
    """
    p = argparse.ArgumentParser(description=set_audio_mean_main.__doc__.split("\n")[0])
    p.add_argument("bridge", help="a saved ConditioningBridge directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", nargs="+", help="audio files or folders (searched recursively)")
    src.add_argument("--latents", help="latent-pair safetensors file whose x are CLAP audio latents")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    bridge = ConditioningBridge.from_pretrained(args.bridge)
    if args.latents:
        from ..latents import load_latent_pairs

        pairs = load_latent_pairs(args.latents)
        if kind_of(pairs.x_encoder) not in (None, "clap-audio") or "audio" not in str(pairs.x_modality):
            raise BridgeConfigError(
                f"{args.latents} holds {pairs.x_modality} latents ({pairs.x_encoder}), not CLAP audio")
        bridge.check_compatible(clap_model=model_id_of(pairs.x_encoder))
        latents = pairs.x.float()
    else:
        from ..encoders import load_encoder

        try:
            files = audio_files(args.audio)
        except FileNotFoundError as e:
            raise BridgeConfigError(str(e)) from None
        if not files:
            raise BridgeConfigError(f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) found in {args.audio}")
        encoder = load_encoder("clap-audio", bridge.config.clap_model, device=args.device)
        # In slices: encode() holds every prepared item (a 10 s clip's padded waveform is 1.9 MB).
        step = 256
        latents = torch.cat([encoder.encode([str(f) for f in files[i:i + step]], progress=False)
                             for i in tqdm(range(0, len(files), step), desc="CLAP audio", unit="slice",
                                           disable=len(files) <= step)])
    bridge.set_modality_mean("audio", latents)
    bridge.save_pretrained(args.bridge)
    print(f"recorded the mean of {latents.shape[0]} CLAP audio latents in {args.bridge}")
    return 0
