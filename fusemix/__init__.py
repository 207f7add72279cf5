"""fusemix: FuseMix fusion adapters over frozen encoders (Vouitsis et al., CVPR 2024).

The public API is small: the pieces a user composes, each in its own module.
"""
from .adapter import Adapter
from .latents import LatentPairs, load_latent_pairs, save_latent_pairs
from .loss import ContrastiveLoss
from .metrics import retrieval_metrics
from .mixing import fusemix_mix, mix_partners, sample_lambda
from .model import FusionConfig, FusionModel, ModalitySpec

__version__ = "0.1.0"
__all__ = ["Adapter", "ContrastiveLoss", "FusionConfig", "FusionModel", "LatentPairs", "ModalitySpec",
           "fusemix_mix", "load_latent_pairs", "mix_partners", "retrieval_metrics", "sample_lambda", "save_latent_pairs"]
