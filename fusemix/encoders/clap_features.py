"""CLAP log-mel features for unfused checkpoints (``truncation="rand_trunc"``), on the encoder's device.

Why: transformers' ``ClapFeatureExtractor`` runs its STFT in numpy, one ``rfft`` per frame in a
Python loop (about 1000 calls per 10 s window at 48 kHz), and that was most of the extraction
stage's CPU cost. At a GPU encoder's rate the CPU side is the bound (the DataLoader workers must
decode, resample and extract features as fast as the GPU embeds), so the work is split as LAION's
own CLAP model splits it (its spectrogram layers are part of the model):

- :func:`pad_window`, per clip on the CPU: the extractor's padding of a window to
  ``nb_max_samples`` (``repeatpad``, ``repeat`` or ``pad``) and its centring reflection, a copy;
  :func:`pad_windows`, the same for a batch in torch, where the model is on an accelerator (the
  windows were resampled there: :mod:`fusemix.device_resample`).
- :class:`LogMel`, per batch on the tensors' device: ``torch.stft`` with the extractor's periodic
  Hann window, then its Slaney mel matrix and dB, in float64 like the extractor where the device has
  float64 (CPU, CUDA).

:func:`clap_log_mel` chains both for a list of windows; its output equals the extractor's
(``return_tensors="np"``) within float32 rounding (tests: max abs difference < 1e-4 dB).
Configurations this does not reproduce raise ``ValueError`` (:func:`check_supported`) so callers
can keep the extractor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

PADDING_MODES = ("repeatpad", "repeat", "pad")
MIN_DB_POWER = 1e-10  # the extractor's mel floor and dB clip: -100 dB
# Windows per torch.stft call. On a CPU one at a time is fastest: a 10 s window's float64 spectrum is
# 8 MB, and batching more only adds memory traffic (measured 14 ms per window one at a time vs 28 ms
# eight at a time). On a GPU a batch amortises the kernel launches.
CPU_CHUNK_WINDOWS, DEVICE_CHUNK_WINDOWS = 1, 16


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
    """A mono window of 1..``nb_max_samples`` samples, padded and centred as ``fe`` does it (float64).

    The window is padded to ``nb_max_samples`` by ``fe.padding`` (``repeatpad``: whole repeats, then
    zeros; ``repeat``: repeats cut at the length; ``pad``: zeros), then reflected by half the FFT
    window at each end so that STFT frame t is centred on sample t * hop (the extractor's
    ``center=True``). One pass here instead of three in torch: torch's reflection pad and dtype copy
    took 0.8 and 0.4 ms of a 10 s window's log-mel on a CPU (profiler, one thread).
    :func:`pad_windows` does the same for a batch on a device.
    """
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


def pad_windows(body: torch.Tensor, lengths: torch.Tensor, fe: Any) -> torch.Tensor:
    """:func:`pad_window` for a batch, in torch on the batch's device.

    ``body[i, :lengths[i]]`` is window i (``body`` ``[N, nb_max_samples]``, the rest ignored);
    returns ``[N, nb_max_samples + n_fft]`` in ``body``'s dtype, each row padded by ``fe.padding``
    and reflected as :func:`pad_window` does it (tests hold the two equal).
    """
    length, half = int(fe.nb_max_samples), int(fe.fft_window_size) // 2
    if body.ndim != 2 or body.shape[1] != length or lengths.shape != (len(body),):
        raise ValueError(f"expected body [N, {length}] and lengths [N], got {tuple(body.shape)} "
                         f"and {tuple(lengths.shape)}")
    n = lengths.to(body.device, torch.int64)[:, None]
    if len(n) and not bool(((n >= 1) & (n <= length)).all()):
        raise ValueError(f"window lengths must be in 1..{length}, got {lengths.tolist()}")
    pos = torch.arange(length, device=body.device)[None]
    copies = torch.ones_like(n) if fe.padding == "pad" else length // n
    keep = pos < copies * n if fe.padding != "repeat" else torch.ones_like(pos, dtype=torch.bool)
    padded = torch.where(keep, body.gather(1, (pos % n).expand(len(n), -1)), 0.0)
    return torch.nn.functional.pad(padded[:, None], (half, half), mode="reflect")[:, 0]


def compute_dtype(device: torch.device | str) -> torch.dtype:
    """float64 (the extractor's precision) where the device has it, else float32 (e.g. Apple MPS)."""
    return torch.float64 if torch.device(device).type in ("cpu", "cuda") else torch.float32


class LogMel:
    """``fe``'s log-mel spectrogram of windows from :func:`pad_window` ``[N, nb_max_samples + n_fft]``,
    batched on their device.

    Returns float32 ``[N, 1, frames, n_mels]`` dB (the extractor's ``input_features`` layout).
    The Hann window and mel matrix are kept per device.
    """

    def __init__(self, fe: Any) -> None:
        check_supported(fe)
        self.fe = fe
        self.n_fft, self.hop, self.length = int(fe.fft_window_size), int(fe.hop_length), int(fe.nb_max_samples)
        self.window = np.hanning(self.n_fft + 1)[:-1]  # periodic Hann: the extractor's window_function
        filters = np.asarray(fe.mel_filters_slaney, dtype=np.float64)
        used = np.flatnonzero(filters.any(axis=1))  # FFT bins above the last filter's reach are dropped
        self.mel = filters[:used[-1] + 1] if len(used) else filters
        self._on: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _constants(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (str(device), dtype)
        if key not in self._on:
            self._on[key] = (torch.from_numpy(self.window).to(device, dtype),
                             torch.from_numpy(self.mel).to(device, dtype))
        return self._on[key]

    def pad(self, windows: list[np.ndarray]) -> torch.Tensor:
        """:func:`pad_window` of each window, stacked: the input of a call."""
        return torch.from_numpy(np.stack([pad_window(w, self.fe) for w in windows]))

    def features(self, windows: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Windows -> the extractor's output dict, computed here on the CPU (see :func:`clap_log_mel`)."""
        return {"input_features": self(self.pad(windows)).numpy(),
                "is_longer": np.zeros((len(windows), 1), dtype=bool)}

    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor:
        width = self.length + 2 * (self.n_fft // 2)
        if waveforms.ndim != 2 or waveforms.shape[1] != width:
            raise ValueError(f"expected windows from pad_window [N, {width}], got {tuple(waveforms.shape)}")
        dtype = compute_dtype(waveforms.device)
        window, mel = self._constants(waveforms.device, dtype)
        out = []
        chunk_size = CPU_CHUNK_WINDOWS if waveforms.device.type == "cpu" else DEVICE_CHUNK_WINDOWS
        for chunk in waveforms.split(chunk_size):
            spec = torch.stft(chunk.to(dtype), self.n_fft, self.hop, window=window, center=False,
                              return_complex=True)[:, :len(mel)]  # [n, bins, frames]; centred by pad_window
            re_im = torch.view_as_real(spec)
            power = re_im[..., 0].square() + re_im[..., 1].square()  # |X|^2; .sum(-1) over 2 is 3x slower
            db = 10.0 * torch.log10(torch.clamp(power.transpose(1, 2) @ mel, min=MIN_DB_POWER))
            out.append(db.float())
        return torch.cat(out)[:, None]


def clap_log_mel(windows: list[np.ndarray], fe: Any) -> dict[str, np.ndarray]:
    """Log-mel features of mono windows at ``fe.sampling_rate``, as ``fe(windows, return_tensors="np")``.

    Returns ``input_features`` float32 ``[n_windows, 1, frames, n_mels]`` and ``is_longer`` bool
    ``[n_windows, 1]`` (all False: no window is longer than ``nb_max_samples``), computed on the CPU.
    """
    return LogMel(fe).features(windows)


__all__ = ["LogMel", "clap_log_mel", "check_supported", "compute_dtype", "pad_window", "pad_windows",
           "PADDING_MODES"]
