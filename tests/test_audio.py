"""Audio decoding: every entry point gives float32 mono in [-1, 1] at the target rate, bad input a clear AudioError."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from fusemix.audio import (
    AudioError,
    decode_audio,
    is_silent,
    load_audio,
    probe_audio,
    resample,
)


def tone(sr: int, seconds: float = 0.5, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encoded(x: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def dominant_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


@pytest.mark.parametrize("sr", [8000, 44100, 192000])
def test_rates_are_resampled_keeping_pitch_and_length(tmp_path, sr):
    path = tmp_path / "a.flac"
    sf.write(path, tone(sr, 0.5, freq=1000.0), sr)
    y = load_audio(path, 48000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 24000) <= 2
    assert abs(dominant_freq(y, 48000) - 1000.0) < 5
    assert 0.45 < np.abs(y).max() <= 0.55


@pytest.mark.parametrize("sr", [8000, 32000, 44100, 44101, 192000])
def test_decode_audio_is_load_audio_before_resampling(sr):
    """decode_audio keeps the file's rate; load_audio's length is soxr's: the nearest whole number
    of target samples."""
    data = encoded(np.stack([tone(sr, 0.7), 0.5 * tone(sr, 0.7)], axis=1), sr, subtype="FLOAT")
    mono, rate = decode_audio(data)
    assert rate == sr and mono.dtype == np.float32 and len(mono) == int(sr * 0.7)
    np.testing.assert_array_equal(mono, 0.75 * tone(sr, 0.7))
    for n in (1, 2, 3, 999, len(mono)):
        want = (2 * n * 48000 + sr) // (2 * sr)
        assert len(load_audio(mono[:n], 48000, source_sr=sr, min_seconds=0)) == want


TONES = ((440.0, 0.3), (1234.5, 0.2), (3001.0, 0.1))  # well inside every tested pass band


def tones(n: int, sr: int, offset: float = 0.0) -> np.ndarray:
    t = offset + np.arange(n) / sr
    return sum(a * np.sin(2 * np.pi * f * t) for f, a in TONES)


@pytest.mark.parametrize("sr", [16000, 32000, 44100, 96000])
def test_resampled_samples_land_on_the_target_rates_instants(sr):
    """Checked against the analytic signal at the target rate's sample times (independent of any
    resampler): no delay, no drift over 20 s; one sample late would be far outside the bound."""
    x = tones(20 * sr, sr).astype(np.float32)
    y = load_audio(x, 48000, source_sr=sr)
    keep = slice(200, len(y) - 200)  # the clip's own ends, where a resampler sees zeros
    assert np.abs(y - tones(len(y), 48000))[keep].max() < 2e-3
    assert np.abs(y - tones(len(y), 48000, offset=1 / 48000))[keep].max() > 1e-2


def test_six_channels_are_averaged(tmp_path):
    sr = 16000
    chans = np.stack([tone(sr, 0.3, amp=0.1 * (i + 1)) for i in range(6)], axis=1)
    path = tmp_path / "six.wav"
    sf.write(path, chans, sr, subtype="FLOAT")
    assert probe_audio(path).channels == 6
    y = load_audio(path, sr)
    np.testing.assert_allclose(y, chans.mean(axis=1), atol=1e-6)


def test_gradio_int16_tuple_is_scaled_and_channels_first_arrays_understood():
    sr = 22050
    x = tone(sr, 0.4, amp=0.25)
    pcm = np.round(x * 32767).astype(np.int16)
    y = load_audio((sr, np.stack([pcm, pcm], axis=1)), sr)
    np.testing.assert_allclose(y, pcm / 32768.0, atol=1e-6)
    y2 = load_audio(np.stack([x, -x * 0]), 48000, source_sr=sr)  # (channels, frames)
    assert abs(len(y2) - int(0.4 * 48000)) <= 2
    assert np.abs(y2).max() == pytest.approx(0.125, abs=0.01)


def test_int_dtypes_use_their_full_scale():
    full = {np.int8: 2**7, np.int16: 2**15, np.int32: 2**31}
    for dtype, scale in full.items():
        a = np.array([scale // 2, -scale // 4] * 1000, dtype=dtype)
        y = load_audio(a, 8000, source_sr=8000)
        np.testing.assert_allclose(y[:2], [0.5, -0.25], atol=1e-6)
    u = np.array([192, 64] * 1000, dtype=np.uint8)
    np.testing.assert_allclose(load_audio(u, 8000, source_sr=8000)[:2], [0.5, -0.5], atol=1e-6)


def test_hf_datasets_dict_and_bytes_and_file_object():
    sr = 16000
    x = tone(sr, 0.3)
    data = encoded(x, sr, "FLAC")
    a = load_audio({"array": x, "sampling_rate": sr}, sr)
    b = load_audio(data, sr)
    c = load_audio(io.BytesIO(data), sr)
    d = load_audio({"bytes": data, "path": None}, sr)
    np.testing.assert_allclose(a, x, atol=1e-6)
    np.testing.assert_allclose(b, x, atol=1e-4)  # 16-bit FLAC quantisation
    np.testing.assert_array_equal(b, c)
    np.testing.assert_array_equal(b, d)


@pytest.mark.parametrize("fmt,subtype", [("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_lossy_formats_decode(fmt, subtype):
    if fmt not in sf.available_formats():
        pytest.skip(f"libsndfile here lacks {fmt}")
    sr = 44100
    y = load_audio(encoded(tone(sr, 1.0, freq=880.0), sr, fmt, subtype), 48000)
    assert abs(dominant_freq(y, 48000) - 880.0) < 10
    assert probe_audio(encoded(tone(sr, 1.0), sr, fmt, subtype)).format == fmt


def test_clipping_is_tolerated_and_input_not_mutated():
    x = np.concatenate([np.full(800, 1.7, np.float32), np.full(800, -3.0, np.float32)])
    keep = x.copy()
    y = load_audio(x, 8000, source_sr=8000)
    assert y.max() == 1.0 and y.min() == -1.0
    np.testing.assert_array_equal(x, keep)


def test_silence_is_returned_unless_rejected(tmp_path):
    z = np.zeros(16000, np.float32)
    y = load_audio(z, 16000, source_sr=16000)
    assert is_silent(y) and not is_silent(tone(16000))
    with pytest.raises(AudioError, match="silent"):
        load_audio(z, 16000, source_sr=16000, reject_silent=True)
    path = tmp_path / "quiet.wav"
    sf.write(path, z, 16000)
    with pytest.raises(AudioError, match="silent.*quiet.wav"):  # a datasets dict names its file
        load_audio({"path": str(path), "bytes": None}, 16000, reject_silent=True)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"this is plain text, not a sound file " * 20), "not a decodable"),
        (lambda p: p.write_bytes(encoded(np.array([0.1, np.nan] * 4000, np.float32), 8000, subtype="FLOAT")), "NaN"),
        (lambda p: p.write_bytes(encoded(tone(8000, 0.01), 8000)), "shorter"),
        (lambda p: sf.write(p, np.zeros((0,), np.float32), 8000, format="WAV"), "no samples|empty|shorter"),
    ],
    ids=["zero-byte", "not-audio", "nan", "too-short", "no-frames"],
)
def test_bad_files_give_audio_error(tmp_path, make, match):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=match):
        load_audio(path)


def test_missing_file_and_unsupported_sources():
    with pytest.raises(AudioError, match="not found"):
        load_audio("/nonexistent/clip.wav")
    with pytest.raises(AudioError, match="unsupported"):
        load_audio(12345)
    with pytest.raises(AudioError, match="source_sr"):
        load_audio(np.zeros(100, np.float32))
    with pytest.raises(AudioError, match="supported range"):
        load_audio((100, np.zeros(100, np.int16)))
    with pytest.raises(AudioError, match="dtype"):
        load_audio(np.zeros(1000, complex), source_sr=8000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(b"")
    assert issubclass(AudioError, ValueError)


def test_too_long_is_caught_from_header_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(8000 * 30, np.int16), 8000)
    assert probe_audio(path).duration == pytest.approx(30.0)

    def no_decode(*a, **k):
        raise AssertionError("decoded a file whose header already says it is too long")

    monkeypatch.setattr(sf.SoundFile, "read", no_decode)
    with pytest.raises(AudioError, match="over the 10 s limit"):
        load_audio(path, max_seconds=10)


def test_size_limit_checked_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.wav"
    sf.write(path, np.zeros(8000 * 2, np.int16), 8000)
    monkeypatch.setattr(type(path), "read_bytes", lambda self: pytest.fail("read an oversized file"))
    with pytest.raises(AudioError, match="limit"):
        load_audio(path, max_bytes=1000)


def test_bad_limits_are_value_errors():
    x = tone(8000)
    with pytest.raises(ValueError, match="max_seconds"):
        load_audio(x, source_sr=8000, max_seconds=0.0)
    with pytest.raises(ValueError, match="target_sr"):
        load_audio(x, 0, source_sr=8000)


@pytest.mark.parametrize("channels", [2, 3])
def test_downmix_is_the_channel_mean_exactly(channels):
    rng = np.random.default_rng(11)
    x = (0.4 * rng.standard_normal((4801, channels))).astype(np.float32)
    want = np.clip(x.mean(axis=1, dtype=np.float32), -1, 1)  # load_audio clips to [-1, 1]
    from_file = load_audio(encoded(x, 48_000, subtype="FLOAT"), 48_000)
    from_array = load_audio(x, 48_000, source_sr=48_000)
    np.testing.assert_array_equal(from_file, want)
    np.testing.assert_array_equal(from_array, want)
    assert not np.shares_memory(from_array, x)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_16_bit_pcm_gives_libsndfiles_float_samples_exactly(fmt, channels):
    """16-bit files are read as int16 and scaled by fusemix; the samples must be libsndfile's own."""
    rng = np.random.default_rng(5)
    x = rng.integers(-32768, 32768, (70_001, channels), dtype=np.int16)  # full scale, both extremes
    x[:2] = [[-32768] * channels, [32767] * channels]
    data = encoded(x, 44_100, fmt, "PCM_16")
    frames, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # libsndfile's conversion
    want = frames.mean(axis=1, dtype=np.float32) if channels > 2 else (
        frames[:, 0] if channels == 1 else (frames[:, 0] + frames[:, 1]) / np.float32(2))
    np.testing.assert_array_equal(load_audio(data, 44_100), np.clip(want, -1, 1))
