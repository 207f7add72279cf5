"""The demo's prose, apart from its layout: titles, notes, labels, examples and the About text.

A tab's note depends on its FuseMix adapters: "trained", "standin" (the tiny profile's random ones) or
"none" installed.
"""

TITLE = "FuseMix demo"
HEADER = ("# FuseMix: sounds, captions and images through frozen encoders\n"
          "Frozen pre-trained encoders, small fusion adapters trained with FuseMix (Vouitsis et al., CVPR 2024), "
          "and zero-training baselines where no adapter is trained yet.")
BANNER = ("⚠️ **Untrained stand-ins: every output on this page comes from tiny random models, not from trained "
          "checkpoints, and means nothing.**")
BANNER_WHY = " {reason} The app started on the tiny profile instead."
STANDIN_LINE = ("**Untrained stand-ins:** this output comes from tiny random models (tiny profile), not from "
                "trained checkpoints; it carries no meaning.\n\n")
CSS = """
.standin-banner {background: #fff4d6; border: 2px solid #d49b00; border-radius: 8px; padding: 4px 12px;}
.standin-banner p, .standin-banner strong {color: #4a3500 !important;}
.route-note {opacity: 0.9;}
#audio-image-results img {width: 100%; height: 100%; object-fit: contain;}
"""

_BRIDGE = ("The FuseMix bridge maps the sound's CLAP embedding straight into Stable Diffusion's prompt space. "
           "With no trained bridge installed, the app trains one here from captions alone (status below); until "
           "it is ready the bridge route answers through the caption-bank baseline, which stays available.")
LIVE_PENDING = "The FuseMix bridge has not started training yet."
_SHARED = ("FuseMix audio and image adapters share one space (trained against a common text anchor), so a sound "
           "ranks images directly. The zero-training baseline stays available for comparison.")
_SCORER = {
    "trained": "FuseMix {pair} adapters are installed and used by default; the reference CLIP (zero training) "
               "stays selectable for comparison.",
    "standin": "Random, untrained stand-in FuseMix {pair} adapters run here (so the FuseMix route runs end to "
               "end); the reference CLIP (a tiny random stand-in too) stays selectable.",
    "none": "**No trained FuseMix {pair} adapters are installed** (weights/ holds none yet), so this tab uses the "
            "zero-training reference: a CLIP model scores the captions and images as it ships.",
}
NOTES = {
    "audio_to_image": {
        "trained": _BRIDGE,
        "standin": "Here the bridge is trained on this machine from captions alone, but on random stand-in "
                   "models, so its images are meaningless; the route runs end to end. " + _BRIDGE,
        "none": "No trained FuseMix bridge is installed (weights/ holds none yet), so sounds go through the "
                "zero-training caption-bank baseline: CLAP finds the captions closest to the sound, and the best "
                "one becomes the prompt.",
    },
    "sound_to_images": {
        "trained": _SHARED,
        "standin": "Here the adapters are random, untrained stand-ins. " + _SHARED,
        "none": "**No trained FuseMix audio and image adapters are installed**, so the shared-space route is not "
                "available here. The zero-training baseline below matches the sound to a caption with CLAP, then "
                "ranks the images for it with the reference CLIP.",
    },
    "caption_to_images": {k: v.format(pair="text and image") for k, v in _SCORER.items()},
    "image_to_captions": {k: v.format(pair="image and text") for k, v in _SCORER.items()},
}
# tab -> (title, tab id, button, radio label, FuseMix choice, baseline choice); a choice is
# (label, label on the tiny profile, value), and the FuseMix one is offered only when its adapters are installed
TABS = {
    "audio_to_image": ("Audio → Image", "audio-image", "Generate image", "Route",
                       ("FuseMix bridge", "FuseMix bridge (on stand-ins)", "bridge"),
                       ("Caption-bank baseline (zero training)",) * 2 + ("captions",)),
    "caption_to_images": ("Caption → Images", "caption-images", "Search", "Scorer",
                          ("FuseMix adapters", "FuseMix adapters (untrained stand-ins)", "fusemix"),
                          ("Reference CLIP (zero training)", "Reference CLIP (zero training, untrained stand-in)",
                           "reference")),
    "sound_to_images": ("Sound → Images", "sound-images", "Find images", "Route",
                        ("FuseMix shared space", "FuseMix shared space (untrained stand-ins)", "fusemix"),
                        ("Baseline: CLAP caption → reference CLIP (zero training)",) * 2 + ("baseline",)),
    "image_to_captions": ("Image → Captions", "image-captions", "Find captions", "Scorer",
                          ("FuseMix adapters", "FuseMix adapters (untrained stand-ins)", "fusemix"),
                          ("Reference CLIP (zero training)", "Reference CLIP (zero training, untrained stand-in)",
                           "reference")),
}

CAPTION_EXAMPLES = ["a cat with green eyes", "a rocket on a launch pad at dusk", "ancient silver coins",
                    "a cup of coffee on a table", "galaxies in deep space"]
IMAGE_EXAMPLE_FILES = ["chelsea.png", "rocket.jpg", "coffee.png"]
EXAMPLE_LABELS = {"audio": "Example sounds (synthesized)", "image": "Example photos (scikit-image)",
                  "caption": "Example captions"}

# what each route or scorer did, as the info line under a result says it
ROUTE_TEXT = {
    "bridge": "FuseMix conditioning bridge ({trained})",
    "captions": "zero-training caption-bank baseline: CLAP matched the sound to the captions below, and the best "
                "one was used as the prompt",
    "fusemix": "FuseMix shared space: the sound's audio adapter output ranks the images directly (no audio-image "
               "pairs were used in training)",
    "baseline": "zero-training baseline: CLAP matched the sound to a caption, and the reference CLIP ranked the "
                "images for that caption",
}

ABOUT_LIMITS = """
## Limits
- uploads up to {max_upload_mb} MB; sounds {min_audio_seconds:g}–{max_audio_seconds:g} s (checked from the file \
header before decoding); captions up to {max_caption_chars} characters
- image generation runs {generation_concurrency} at a time; at most {queue_size} requests wait in the queue

## Default gallery
Real photographs shipped with scikit-image:
"""
ABOUT_SOUNDS = "Example sounds were synthesized for this project (numpy tones and noise, espeak-ng speech)."
NO_ADAPTERS = "- FuseMix adapters: none installed (see weights/README.md for how to train and publish them)"

# command-line flags: Settings field -> help (the environment variable is added to each)
FLAGS = {
    "profile": "real: hub checkpoints (default); tiny: untrained random stand-ins",
    "strict": "exit instead of falling back to the tiny stand-ins",
    "gallery": "a folder of images offered next to the default gallery",
    "weights": "folder or hub repo id with trained FuseMix adapters (default: weights/)",
    "host": "interface to bind, e.g. 0.0.0.0 (else GRADIO_SERVER_NAME)",
    "port": "port (else GRADIO_SERVER_PORT)",
    "sd_model": "Stable Diffusion checkpoint",
    "clap_model": "CLAP checkpoint",
    "reference_model": "reference CLIP checkpoint",
    "vae": "auto (TAESD decoder on CPU, the checkpoint's VAE on GPU), full, or an AutoencoderTiny id",
    "device": "cpu, cuda, cuda:1, ... (default: cuda when present)",
}
