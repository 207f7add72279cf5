"""The audio -> Stable Diffusion bridge, by concern: ``model`` (ConditioningBridge, its config, heads and
loss), ``compat`` (which encoders a bridge fits), ``data`` (both CLAP towers as one
training set) and ``cli`` (``python -m fusemix.bridge``: record the audio mean)."""
from .cli import set_audio_mean_main
from .compat import (TEXT_ENCODER_FAMILIES, BridgeConfigError, IncompatibleBridgeError, check_compatible,
                     text_encoder_family)
from .data import combine_clap_towers
from .model import HEADS, MODALITIES, TRAIN_MODALITIES, BridgeConfig, ConditioningBridge

__all__ = ["HEADS", "MODALITIES", "TEXT_ENCODER_FAMILIES", "TRAIN_MODALITIES", "BridgeConfig", "BridgeConfigError",
           "ConditioningBridge", "IncompatibleBridgeError", "check_compatible", "combine_clap_towers",
           "set_audio_mean_main", "text_encoder_family"]
