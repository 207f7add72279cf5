"""Windows cut at the source rate and resampled on the device (``fusemix.device_resample``) are
the windows of the resampled-first clip: same instants, same lengths, same samples up to the
resampler.

Alignment is checked against the analytic signal (band-limited sines evaluated at the target
rate's sample times), which does not depend on either resampler; the remaining difference from
the CPU path (soxr) is bounded on the log-mel, where a one-sample shift of a noisy clip moves the
mean absolute difference to 0.019 dB and the resamplers differ by 0.0002-0.0025 dB (measured).
"""

from __future__ import annotations

import julius
import numpy as np
import pytest
import torch
from transformers import ClapFeatureExtractor

from fusemix.audio import resample, resampled_length
from fusemix.device_resample import (
    DeviceResampler,
    collate_windows,
    cut_windows,
    filter_reach,
    resamples_on_device,
)
from fusemix.encoders.clap import window_starts
from fusemix.encoders.clap_features import LogMel, pad_windows

TARGET, WINDOW = 48_000, 480_000
TONES = ((440.0, 0.3), (1234.5, 0.2), (3001.0, 0.1))  # well inside every tested pass band


def tones(n: int, sr: int, offset: float = 0.0) -> np.ndarray:
    t = offset + np.arange(n) / sr
    return sum(a * np.sin(2 * np.pi * f * t) for f, a in TONES).astype(np.float64)


def windows_on_device(items: list[tuple[np.ndarray, int, list[int]]], window: int = WINDOW):
    batch = collate_windows([cut_windows(x, sr, TARGET, starts, window) for x, sr, starts in items])
    return DeviceResampler(TARGET, window)(batch["audio"], batch["table"])


@pytest.mark.parametrize("sr", [8000, 22050, 32000, 44100, 96000, 192000, 11025])
def test_filter_reach_is_julius_width(sr):
    assert filter_reach(sr, TARGET) == julius.ResampleFrac(sr, TARGET)._width


def test_which_rates_are_resampled_on_the_device():
    band = 14_000  # CLAP's mel range ends here
    assert all(resamples_on_device(sr, TARGET, band) for sr in (48_000, 32_000, 44_100, 96_000, 192_000))
    # Pass band ending inside the features, or a filter bank of 48000 filters: the CPU's job.
    assert not any(resamples_on_device(sr, TARGET, band) for sr in (8_000, 16_000, 22_050, 24_000, 44_101))
    assert resamples_on_device(16_000, TARGET, 7_000)


@pytest.mark.parametrize("sr", [44100, 32000, 96000, 48000])
@pytest.mark.parametrize("seconds,mode", [(23.7, "center"), (31.0, "mean"), (4.2, "center")])
def test_windows_land_on_the_target_rates_instants(sr, seconds, mode):
    """Each window holds the clip's samples at the target rate from its start on, with the CPU
    path's starts and lengths, however the window sits on the source grid."""
    window = 96_000  # 2 s: several windows per clip, starts on and off the grids' common points
    x = tones(int(seconds * sr), sr).astype(np.float32)
    total = resampled_length(len(x), sr, TARGET)
    starts = window_starts(total, window, mode, 5)
    if mode == "mean":
        starts = starts + [s + 1 for s in starts[:-1]] + [7]  # any start, not only the mode's
    body, lengths = windows_on_device([(x, sr, starts)], window)
    assert lengths.tolist() == [min(window, total - s) for s in starts]
    edge = 200  # the clip's own ends, where resamplers differ by design
    for row, (start, n) in enumerate(zip(starts, lengths.tolist())):
        expect = tones(n, TARGET, offset=start / TARGET)
        keep = slice(max(0, edge - start), min(n, total - edge - start))
        err = np.abs(body[row, :n].numpy() - expect)[keep].max()
        assert err < (1e-6 if sr == TARGET else 2e-3), (start, err)
        assert not body[row, n:].any()


def test_a_shifted_window_would_be_caught():
    """The alignment check above can fail: one target sample late is far outside its tolerance."""
    sr = 44100
    x = tones(sr * 5, sr).astype(np.float32)
    body, _ = windows_on_device([(x, sr, [1000])], 48_000)
    assert np.abs(body[0, :40_000].numpy() - tones(40_000, TARGET, offset=1001 / TARGET)).max() > 1e-2


@pytest.mark.parametrize("sr", [44100, 32000, 96000])
def test_log_mel_is_close_to_the_cpu_paths(sr):
    fe = ClapFeatureExtractor(truncation="rand_trunc")
    log_mel = LogMel(fe)
    rng = np.random.default_rng(sr)
    n = int(12.3 * sr)
    t = np.arange(n) / sr
    x = (0.3 * np.sin(2 * np.pi * 440 * t * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t)))
         + 0.3 * rng.standard_normal(n) * np.sin(2 * np.pi * 1.3 * t) ** 2).astype(np.float32)
    cpu = resample(x, sr, TARGET)
    assert len(cpu) == resampled_length(n, sr, TARGET)
    start = window_starts(len(cpu), WINDOW, "center", 1)[0]
    ref = log_mel(log_mel.pad([cpu[start:start + WINDOW]])).numpy()
    body, lengths = windows_on_device([(x, sr, [start])])
    got = log_mel(pad_windows(body, lengths, fe)).numpy()
    assert np.abs(got - ref).mean() < 0.006  # measured 0.0002-0.0025; one sample of shift: 0.019
    late = log_mel(log_mel.pad([cpu[start + 1:start + 1 + WINDOW]])).numpy()
    assert np.abs(late - ref).mean() > 0.015


def test_clips_batched_together_equal_clips_alone():
    rng = np.random.default_rng(5)
    items = [(rng.uniform(-0.5, 0.5, 44100 * 3).astype(np.float32), 44100, [0]),
             (rng.uniform(-0.5, 0.5, 48000 * 2).astype(np.float32), 48000, [0, 50_000]),
             (rng.uniform(-0.5, 0.5, 44100 * 12).astype(np.float32), 44100, [20_000]),
             (rng.uniform(-0.5, 0.5, 32000 * 3).astype(np.float32), 32000, [1])]
    window = 100_000
    together, lengths = windows_on_device(items, window)
    alone = [windows_on_device([it], window) for it in items]
    torch.testing.assert_close(together, torch.cat([b for b, _ in alone]), atol=1e-12, rtol=0)
    assert lengths.tolist() == [n for _, ls in alone for n in ls.tolist()]


def test_samples_are_clipped_and_input_left_alone():
    x = np.full(48000, 1.5, np.float32)
    body, _ = windows_on_device([(x, 44100, [0])], 40_000)
    assert body.max() == 1.0 and (x == 1.5).all()


def test_bad_tables_and_rates_are_refused():
    cut = cut_windows(np.zeros(48000, np.float32), 48000, TARGET, [0], 1000)
    resampler = DeviceResampler(TARGET, 1000)
    with pytest.raises(ValueError, match="does not fit"):
        resampler(cut["audio"][:10], cut["table"])
    with pytest.raises(ValueError, match="expected audio"):
        resampler(cut["audio"][None], cut["table"])
    with pytest.raises(ValueError, match="outside"):
        cut_windows(np.zeros(100, np.float32), 48000, TARGET, [100], 1000)
    bad = cut_windows(np.zeros(44101, np.float32), 44101, TARGET, [0], 1000)
    with pytest.raises(ValueError, match="filter bank"):
        resampler(bad["audio"], bad["table"])
    with pytest.raises(ValueError, match="lengths"):
        pad_windows(torch.zeros(1, WINDOW), torch.tensor([0]), ClapFeatureExtractor(truncation="rand_trunc"))


def test_int16_clips_give_the_windows_of_their_float_samples():
    """Mono 16-bit files travel as int16 (half the bytes): same windows as x / 32768 in float32,
    alone, in an all-int16 batch (which stays int16) and in a batch mixed with float32 clips."""
    rng = np.random.default_rng(9)
    pcm = [rng.integers(-32768, 32768, n, dtype=np.int16) for n in (44100 * 3, 48000 * 2)]
    floats = [x / np.float32(32768) for x in pcm]
    rates, starts, window = (44100, 48000), ([0, 30_000], [5]), 60_000
    as_float, _ = windows_on_device([(x, sr, st) for x, sr, st in zip(floats, rates, starts)], window)
    batch = collate_windows([cut_windows(x, sr, TARGET, st, window) for x, sr, st in zip(pcm, rates, starts)])
    assert batch["audio"].dtype == torch.int16
    as_int16, _ = DeviceResampler(TARGET, window)(batch["audio"], batch["table"])
    assert torch.equal(as_int16, as_float)
    mixed, _ = windows_on_device([(pcm[0], 44100, starts[0]), (floats[1], 48000, starts[1])], window)
    assert torch.equal(mixed, as_float)
    with pytest.raises(ValueError, match="float32 or int16"):
        cut_windows(np.zeros(100, np.float64), 48000, TARGET, [0], 10)
    with pytest.raises(ValueError, match="float32 or int16"):
        DeviceResampler(TARGET, 10)(torch.zeros(100, dtype=torch.float64), batch["table"][:0])
