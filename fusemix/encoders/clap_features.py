"""CLAP log-mel features for unfused checkpoints (``truncation="rand_trunc"``), from ``torch.stft``.

Why: ``ClapFeatureExtractor`` runs a Python loop of per-frame ``rfft``, most of the extraction's CPU cost.
Same values within float32 rounding; configurations it does not reproduce raise ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

PADDING_MODES = ("repeatpad", "repeat", "pad")
MIN_DB_POWER = 1e-10  # the extractor's mel floor and dB clip: -100 dB


def check_supported(fe: Any) -> None:
    """Raise ``ValueError`` unless ``fe`` is a configuration :class:`LogMel` reproduces."""
    from transformers import ClapFeatureExtractor

    if type(fe) is not ClapFeatureExtractor:  # a subclass may compute features differently
        raise ValueError(f"only ClapFeatureExtractor is reproduced, got {type(fe).__name__}")
    if fe.truncation != "rand_trunc":
        raise ValueError(f"truncation={fe.truncation!r} is not reproduced (only 'rand_trunc')")
    if fe.padding not in PADDING_MODES:
        raise ValueError(f"padding={fe.padding!r} is not reproduced (only {PADDING_MODES})")
    bins = int(fe.fft_window_size) // 2 + 1
    if np.shape(fe.mel_filters_slaney) != (bins, fe.feature_size):
        raise ValueError(f"mel filters {np.shape(fe.mel_filters_slaney)} do not fit "
                         f"{bins} FFT bins x {fe.feature_size} mel bins")
    if not fe.hop_length > 0 or int(fe.nb_max_samples) != fe.nb_max_samples:
        raise ValueError(f"hop_length {fe.hop_length} must be positive and nb_max_samples "
                         f"{fe.nb_max_samples} a whole number")
    if fe.nb_max_samples <= fe.fft_window_size // 2:  # the centring reflection needs that much audio
        raise ValueError(f"nb_max_samples {fe.nb_max_samples} must exceed half the FFT window")


def pad_window(wav: np.ndarray, fe: Any) -> np.ndarray:
    """A mono window padded to ``nb_max_samples`` by ``fe.padding`` and reflected by half the FFT
    window at each end (the extractor's ``center=True``), in float64 and one numpy pass."""
    wav = np.asarray(wav)
    length, half, n = int(fe.nb_max_samples), int(fe.fft_window_size) // 2, len(wav)
    if wav.ndim != 1 or not 0 < n <= length:
        raise ValueError(f"window must be mono with 1..{length} samples, got shape {wav.shape}")
    out = np.empty(length + 2 * half, np.float64)
    body = out[half:half + length]
    copies = 1 if fe.padding == "pad" else length // n
    body[:copies * n].reshape(copies, n)[:] = wav
    rest = body[copies * n:]
    rest[:] = wav[:len(rest)] if fe.padding == "repeat" else 0.0
    out[:half] = body[1:half + 1][::-1]
    out[half + length:] = body[length - half - 1:length - 1][::-1]
    return out


class LogMel:
    """``fe``'s log-mel spectrogram: mono windows at ``fe.sampling_rate`` -> the extractor's output
    dict, ``input_features`` float32 ``[N, 1, frames, n_mels]`` dB and ``is_longer`` (all False)."""

    def __init__(self, fe: Any) -> None:
        check_supported(fe)
        self.fe, self.n_fft, self.hop = fe, int(fe.fft_window_size), int(fe.hop_length)
        self.window = torch.from_numpy(np.hanning(self.n_fft + 1)[:-1])  # periodic Hann, as the extractor
        filters = np.asarray(fe.mel_filters_slaney, dtype=np.float64)
        used = np.flatnonzero(filters.any(axis=1))  # FFT bins above the last filter's reach are dropped
        self.mel = torch.from_numpy(filters[:used[-1] + 1] if len(used) else filters)

    def features(self, windows: list[np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for w in windows:  # one window per torch.stft call: larger batches only add memory traffic
            spec = torch.stft(torch.from_numpy(pad_window(w, self.fe))[None], self.n_fft, self.hop,
                              window=self.window, center=False, return_complex=True)[:, :len(self.mel)]
            re_im = torch.view_as_real(spec)  # [1, bins, frames, 2]; centred by pad_window
            power = re_im[..., 0].square() + re_im[..., 1].square()  # |X|^2, cheaper than .abs().square()
            out.append(10.0 * torch.log10(torch.clamp(power.transpose(1, 2) @ self.mel, min=MIN_DB_POWER)).float())
        return {"input_features": torch.cat(out)[:, None].numpy(), "is_longer": np.zeros((len(windows), 1), dtype=bool)}
