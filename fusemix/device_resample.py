"""Audio windows cut at their file's own rate on the CPU, resampled on the model's device.

Why: with the model on a GPU the CPU side is the bound of extraction (DataLoader workers must
decode as fast as the GPU embeds), and resampling was most of a worker's time per clip: soxr
(high quality) took 4.5-7 ms of 6-9 ms for a 10 s 44.1 kHz clip on one core here. On the device
it is a strided convolution (julius' windowed-sinc ``ResampleFrac``): 0.19 GFLOP per 10 s window
44.1 -> 48 kHz (torch's FLOP counter), 1.6 % of the CLAP audio tower's 11.8.

- :func:`cut_windows` (worker): for each window the encoder chose on the target rate's time line
  (as if the whole clip had been resampled first), the slice of source samples that the resampler
  needs for it, with a margin for the filter's reach; no arithmetic on the samples, which may be
  int16 (mono 16-bit files: half the bytes to move; scaled by 1 / 32768 on the device, exactly).
- :class:`DeviceResampler` (``forward``, on the device): resamples slices of equal rate and length
  together, in float64 where the device has it (no TF32 rounding), keeps each window's samples and
  clips them to [-1, 1] as :func:`fusemix.audio.resample` does.

The window starts on exactly the same instant as in the resampled-first clip (slices begin on a
source sample where both rates' sample grids meet), so the only difference from the CPU path is
the resampler: julius' filter vs soxr's, log-mel within 0.0002-0.0025 dB on average for 32, 44.1
and 96 kHz clips (measured; tests bound it). Rates whose reduced ratio would need a huge filter bank (e.g. 44101 Hz) are
refused by :func:`resamples_on_device`, and so are rates whose pass band would end inside the
features' frequency range (there soxr and julius differ); callers resample those on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .audio import resampled_length

ZEROS, ROLLOFF = 24, 0.945  # julius' defaults, spelled out: the margin below depends on them
MAX_FILTER_TAPS = 1 << 20  # taps in the filter bank of one rate pair (4 MB in float32)
TABLE_COLUMNS = ("offset", "length", "rate", "skip", "valid")  # one row per window


def reduced(sr: int, target_sr: int) -> tuple[int, int]:
    """The rate pair divided by its greatest common divisor."""
    g = math.gcd(sr, target_sr)
    return sr // g, target_sr // g


def filter_reach(sr: int, target_sr: int) -> int:
    """Source samples the resampling filter reads on each side of an output sample (julius' width)."""
    old, new = reduced(sr, target_sr)
    return math.ceil(ZEROS * old / (min(old, new) * ROLLOFF))


def filter_taps(sr: int, target_sr: int) -> int:
    """Taps in the julius filter bank for a rate pair (one filter per reduced target sample)."""
    old, new = reduced(sr, target_sr)
    return new * (2 * filter_reach(sr, target_sr) + old)


def resamples_on_device(sr: int, target_sr: int, band_hz: float) -> bool:
    """Whether windows at ``sr`` are resampled on the device for features up to ``band_hz``.

    Only where julius' pass band (``ROLLOFF`` x the lower Nyquist frequency) clears ``band_hz`` by
    5 %: below that the two resamplers' transition bands fall inside the features and differ by
    tens of dB in the top mel bins (measured: 8 and 22.05 kHz sources, CLAP's 14 kHz mel range),
    while from 32 kHz up the log-mel differs by ~0.003 dB on average. Also only where the rate
    pair's filter bank stays small (not, e.g., 44101 Hz). Other rates are resampled on the CPU.
    """
    if sr == target_sr:
        return True
    small = filter_taps(sr, target_sr) <= MAX_FILTER_TAPS
    return small and ROLLOFF * min(sr, target_sr) / 2 >= 1.05 * band_hz


def cut_windows(mono: np.ndarray, sr: int, target_sr: int, starts: Sequence[int], window: int) -> dict:
    """Slices of ``mono`` (float32, or int16 PCM for x / 32768, at ``sr``) from which the device
    resamples windows ``[start, start + window)`` of the clip at ``target_sr`` (fewer samples where
    the clip ends).

    Returns ``{"audio": tensor [total] in mono's dtype, "table": int64 tensor [len(starts), 5]}``
    with one row per window (:data:`TABLE_COLUMNS`): where its slice lies in ``audio``, its length
    and rate, and which ``valid`` resampled samples, from ``skip`` on, are the window.
    """
    if mono.dtype not in (np.float32, np.int16):
        raise ValueError(f"samples must be float32 or int16, got {mono.dtype}")
    total = resampled_length(len(mono), sr, target_sr)
    old, new = reduced(sr, target_sr)
    # Whole blocks of `old` source samples (= `new` target samples) keep both grids aligned.
    margin = 0 if sr == target_sr else -(-filter_reach(sr, target_sr) // old) + 1
    slices, rows, offset = [], [], 0
    for start in starts:
        valid = min(window, total - start)
        if not 0 <= start < total or valid < 1:
            raise ValueError(f"window start {start} is outside a clip of {total} samples")
        block = max(0, start // new - margin)
        skip = start - block * new
        begin = block * old
        end = min(len(mono), begin + -(-(skip + valid) * old // new) + margin * old)
        slices.append(mono[begin:end])
        rows.append((offset, end - begin, sr, skip, valid))
        offset += end - begin
    audio = np.concatenate(slices) if len(slices) > 1 else slices[0].copy()  # never the caller's memory
    return {"audio": torch.from_numpy(audio), "table": torch.tensor(rows, dtype=torch.int64).reshape(-1, 5)}


def collate_windows(items: Sequence[dict]) -> dict:
    """:func:`cut_windows` outputs of several clips -> one batch (offsets made batch-wide).

    int16 when every clip is int16 (a dataset of mono 16-bit files: half the bytes to move), else
    float32 with int16 clips scaled (exactly) on the way.
    """
    audio = [np.asarray(it["audio"]) for it in items]
    if any(a.dtype != np.int16 for a in audio):
        audio = [a * np.float32(1 / 32768) if a.dtype == np.int16 else a for a in audio]
    audio = np.concatenate(audio)  # numpy: single-threaded
    tables = [torch.as_tensor(it["table"]).numpy().copy() for it in items]
    base = 0
    for table, item in zip(tables, items):
        table[:, 0] += base
        base += len(item["audio"])
    return {"audio": torch.from_numpy(audio), "table": torch.from_numpy(np.concatenate(tables)),
            "counts": [len(t) for t in tables]}


class DeviceResampler:
    """Windows from :func:`cut_windows` -> ``(body [N, window], lengths [N])`` on ``audio``'s device.

    ``body[i, :lengths[i]]`` is window i at ``target_sr``, clipped to [-1, 1]; the rest is zero.
    julius filter banks are built once per (rate, device, dtype). ``dtype``: of the arithmetic;
    default float64 where the device has it (as the log-mel; CUDA's float32 convolutions may round
    to TF32), else float32.
    """

    def __init__(self, target_sr: int, window: int, dtype: torch.dtype | None = None) -> None:
        self.target_sr, self.window, self.dtype = int(target_sr), int(window), dtype
        self._banks: dict[tuple, torch.nn.Module] = {}

    def _bank(self, sr: int, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        key = (sr, str(device), dtype)
        if key not in self._banks:
            import julius

            if filter_taps(sr, self.target_sr) > MAX_FILTER_TAPS:
                raise ValueError(f"{sr} -> {self.target_sr} Hz needs too large a filter bank; resample on the CPU")
            self._banks[key] = julius.ResampleFrac(sr, self.target_sr, ZEROS, ROLLOFF).to(device, dtype)
        return self._banks[key]

    def __call__(self, audio: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        table = table.cpu()
        if audio.ndim != 1 or table.ndim != 2 or table.shape[1] != len(TABLE_COLUMNS):
            raise ValueError(f"expected audio [T] and table [N, {len(TABLE_COLUMNS)}], got "
                             f"{tuple(audio.shape)} and {tuple(table.shape)}")
        offset, length, rate, skip, valid = table.T.tolist() if len(table) else ([],) * 5
        if len(table) and (min(offset) < 0 or max(o + n for o, n in zip(offset, length)) > len(audio)
                           or min(valid) < 1 or max(valid) > self.window):
            raise ValueError("window table does not fit its audio")
        from .encoders.clap_features import compute_dtype  # here: fusemix.encoders imports this module

        dtype = self.dtype or compute_dtype(audio.device)
        if audio.dtype == torch.int16:
            audio = audio.to(dtype) * (1 / 32768)  # exact: a power of two
        elif audio.dtype == torch.float32:
            audio = audio.to(dtype)
        else:
            raise ValueError(f"audio must be float32 or int16 samples, got {audio.dtype}")
        body = torch.zeros(len(table), self.window, dtype=dtype, device=audio.device)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, key in enumerate(zip(rate, length)):
            groups.setdefault(key, []).append(i)
        for (sr, n), rows in groups.items():
            slices = torch.stack([audio[offset[i]:offset[i] + n] for i in rows])
            out = slices if sr == self.target_sr else self._bank(sr, audio.device, dtype)(slices, full=True)
            for j, i in enumerate(rows):
                if skip[i] + valid[i] > out.shape[1]:
                    raise ValueError(f"window {i} needs {skip[i] + valid[i]} samples, its slice gives {out.shape[1]}")
                body[i, :valid[i]] = out[j, skip[i]:skip[i] + valid[i]]
        return body.clamp_(-1.0, 1.0), torch.tensor(valid, dtype=torch.int64, device=audio.device)


__all__ = ["DeviceResampler", "collate_windows", "cut_windows", "filter_reach", "resamples_on_device",
           "TABLE_COLUMNS"]
