"""fusemix's CLAP log-mel features (padding on the CPU, batched torch.stft on the model's device)
equal transformers' ``ClapFeatureExtractor``'s.

``fusemix.encoders.clap_features`` replaces the extractor on the unfused path for speed only, so
every output is compared with the extractor's own (``return_tensors="np"``). Tolerance: max abs
difference below TOL_DB (the features are dB values in about -100..+60; measured: ~2e-6 dB, one
float32 rounding step).
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import ClapFeatureExtractor

from fusemix.encoders import load_encoder
from fusemix.encoders.clap_features import (
    LogMel,
    check_supported,
    clap_log_mel,
    compute_dtype,
    pad_window,
    pad_windows,
)
from fusemix.tiny import save_tiny_clap

TOL_DB = 1e-4

# Defaults (= laion/clap-htsat-unfused: 48 kHz, 1024-point FFT, hop 480, 64 mels, 10 s) and a
# small, non-default one (odd FFT size, fewer mels, 2 s window) that runs in milliseconds.
CONFIGS = {
    "default": {},
    "small": {"sampling_rate": 16000, "fft_window_size": 401, "hop_length": 160, "feature_size": 32,
              "max_length_s": 2, "frequency_max": 7000},
}


def extractor(config: str, padding: str = "repeatpad") -> ClapFeatureExtractor:
    return ClapFeatureExtractor(truncation="rand_trunc", padding=padding, **CONFIGS[config])


def clips(fe: ClapFeatureExtractor) -> dict[str, np.ndarray]:
    """Clips that need each kind of padding, plus edge cases of content."""
    n, sr = fe.nb_max_samples, fe.sampling_rate
    rng = np.random.default_rng(0)
    t = np.arange(n) / sr
    return {
        "short": (0.1 * rng.standard_normal(n // 7)).astype(np.float32),
        "exact": (0.1 * rng.standard_normal(n)).astype(np.float32),
        "odd": rng.uniform(-1, 1, n // 3 + 1).astype(np.float32),
        "silence": np.zeros(n // 2, dtype=np.float32),
        "loud_sine": np.sin(2 * np.pi * 997 * t[: n - 1]).astype(np.float32),
    }


def assert_same(got: dict, ref) -> None:
    ref_x, ref_longer = ref["input_features"], ref["is_longer"]
    assert got["input_features"].dtype == ref_x.dtype == np.float32
    assert got["input_features"].shape == ref_x.shape
    assert np.abs(got["input_features"] - ref_x).max() < TOL_DB
    assert got["is_longer"].dtype == ref_longer.dtype and np.array_equal(got["is_longer"], ref_longer)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("padding", ["repeatpad", "repeat", "pad"])
@pytest.mark.parametrize("name", ["short", "exact", "odd", "silence", "loud_sine"])
def test_features_equal_the_extractor(config, padding, name):
    fe = extractor(config, padding)
    clip = clips(fe)[name]
    assert_same(clap_log_mel([clip], fe), fe([clip], sampling_rate=fe.sampling_rate, return_tensors="np"))


@pytest.mark.parametrize("config", CONFIGS)
def test_several_windows_in_one_call(config):
    fe = extractor(config)
    windows = list(clips(fe).values())
    assert_same(clap_log_mel(windows, fe), fe(windows, sampling_rate=fe.sampling_rate, return_tensors="np"))


class OwnExtractor(ClapFeatureExtractor):
    """A subclass may change how features are computed: not reproduced."""


@pytest.mark.parametrize("change", [
    {"truncation": "fusion"},
    {"padding": "longest"},
    {"hop_length": 0},
])
def test_unsupported_configs_are_refused(change):
    fe = extractor("small")
    for key, value in change.items():
        setattr(fe, key, value)
    with pytest.raises(ValueError):
        check_supported(fe)
    with pytest.raises(ValueError):
        clap_log_mel([np.zeros(1000, np.float32)], fe)


def test_unsupported_extractors_and_windows_are_refused():
    with pytest.raises(ValueError):
        check_supported(OwnExtractor(truncation="rand_trunc"))
    fe = extractor("small")
    fe.mel_filters_slaney = fe.mel_filters_slaney[:-1]  # no longer fits the FFT size
    with pytest.raises(ValueError):
        check_supported(fe)
    fe = extractor("small")
    too_long = np.zeros(fe.nb_max_samples + 1, np.float32)  # would need the extractor's random crop
    for bad in (np.zeros(0, np.float32), too_long, np.zeros((1000, 2), np.float32)):
        with pytest.raises(ValueError):
            clap_log_mel([bad], fe)


# --------------------------------------------------------------------------- ClapAudioEncoder


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory):
    return save_tiny_clap(tmp_path_factory.mktemp("tiny-clap-features") / "clap")


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("padding", ["repeatpad", "repeat", "pad"])
def test_batched_torch_padding_equals_pad_window(config, padding):
    fe = extractor(config, padding)
    n = fe.nb_max_samples
    windows = list(clips(fe).values()) + [np.ones(1, np.float32), np.arange(n // 2 + 1, dtype=np.float32)]
    body = torch.zeros(len(windows), n, dtype=torch.float64)
    for row, w in zip(body, windows):
        row[:len(w)] = torch.from_numpy(w)
    got = pad_windows(body, torch.tensor([len(w) for w in windows]), fe)
    assert torch.equal(got, torch.from_numpy(np.stack([pad_window(w, fe) for w in windows])))


@pytest.mark.parametrize("in_forward", [False, True], ids=["features-in-prepare", "features-in-forward"])
@pytest.mark.parametrize("long_clip", ["center", "mean"])
def test_encoder_features_and_latents_equal_the_extractors(tiny_clap, tmp_path, monkeypatch, long_clip, in_forward):
    """Either split (log-mel in prepare for a CPU model, resampling and log-mel in forward on an
    accelerator) gives the extractor's features and latents; in forward, up to the resampler for
    a clip that needs one (julius on the device, soxr on the CPU)."""
    enc = load_encoder("clap-audio", tiny_clap, device="cpu", long_clip=long_clip, max_windows=3)
    assert enc.fast_features and not enc.features_in_forward  # CPU model: workers compute the log-mel
    monkeypatch.setattr(enc, "features_in_forward", in_forward)
    rng = np.random.default_rng(1)
    wav_file = tmp_path / "stereo.wav"
    sf.write(wav_file, 0.1 * rng.standard_normal((44100 * 3, 2)), 44100)
    items = [(0.1 * rng.standard_normal(enc.sample_rate * 2)).astype(np.float32),
             (0.1 * rng.standard_normal(enc.window * 2 + 12345)).astype(np.float32),
             wav_file]
    fast = [enc.prepare(item) for item in items]
    monkeypatch.setattr(enc, "fast_features", False)  # the extractor itself
    monkeypatch.setattr(enc, "features_in_forward", False)
    refs = [enc.prepare(item) for item in items]
    n_windows = [1, 1 if long_clip == "center" else 3, 1]
    for i, (got, ref, n) in enumerate(zip(fast, refs, n_windows)):
        if in_forward:
            assert sorted(got) == ["audio", "table"] and got["table"].shape == (n, 5)
            assert isinstance(got["audio"], torch.Tensor)  # shared memory between DataLoader workers
            resampled = i == 2  # the 44.1 kHz file; the arrays are at 48 kHz already
            assert got["audio"].numel() < (enc.window * n if resampled else enc.window * n + 1)
            got = {"input_features": enc.features_on_device(enc.collate([got])).numpy(),
                   "is_longer": np.zeros((n, 1), dtype=bool)}
            if resampled:
                assert np.abs(got["input_features"] - ref["input_features"]).mean() < 0.006
                continue
        assert got.keys() == ref.keys()
        assert_same(got, ref)
    latents, ref_latents = enc.forward(enc.collate(fast)), enc.forward(enc.collate(refs))
    assert latents.shape == (3, enc.dim)
    torch.testing.assert_close(latents[:2], ref_latents[:2], atol=1e-5, rtol=0)
    torch.testing.assert_close(latents[2:], ref_latents[2:], atol=1e-5 if not in_forward else 1e-3, rtol=0)
    if in_forward:
        with pytest.raises(RuntimeError, match="different kinds"):
            enc.collate([fast[0], refs[0]])


def test_log_mel_runs_in_the_extractors_precision_where_the_device_has_it():
    assert compute_dtype("cpu") == compute_dtype("cuda") == torch.float64
    assert compute_dtype("meta") == torch.float32  # devices without float64 (e.g. mps) fall back
    fe = extractor("small")
    with pytest.raises(ValueError, match="pad_window"):
        LogMel(fe)(torch.zeros(2, fe.nb_max_samples - 1))


def test_encoder_falls_back_when_not_reproducible(tiny_clap, monkeypatch):
    enc = load_encoder("clap-audio", tiny_clap, device="cpu")
    monkeypatch.setattr(enc.bundle.feature_extractor, "padding", "longest")
    fallback = load_encoder("clap-audio", tiny_clap, device="cpu")
    assert fallback.bundle is enc.bundle and not fallback.fast_features
    out = fallback.prepare(np.zeros(enc.sample_rate, np.float32))
    assert out["input_features"].shape == (1, 1, 1001, 64) and out["is_longer"].shape == (1, 1)


def test_cut_windows_cross_from_decoding_workers_to_the_forward(tiny_clap, tmp_path):
    """The accelerator split (source samples cut in DataLoader workers, resampling and log-mel in
    forward) caches the same latents with workers as without, and the CPU split's latents up to
    the resampler, for clips at rates resampled on the device (44.1 kHz), on the CPU (16 kHz) and
    not at all (48 kHz), stereo and mono (int16 in flight) in the same batches."""
    from fusemix.cache import LatentCache, SingleProcess, Units
    from fusemix.extract import RawItemLoader
    from fusemix.pairs import open_folder

    rng = np.random.default_rng(3)
    clips = tmp_path / "clips"
    clips.mkdir()
    rows = []
    for i, (seconds, sr, ch) in enumerate([(0.5, 44100, 2), (3.0, 48000, 1), (12.0, 44100, 1), (1.0, 16000, 1),
                                            (2.5, 44100, 2)]):
        sf.write(clips / f"c{i}.wav", 0.2 * rng.standard_normal((int(sr * seconds), ch)), sr, subtype="PCM_16")
        rows.append(f"c{i}.wav,clip {i}\n")
    (clips / "metadata.csv").write_text("file_name,caption\n" + "".join(rows))
    source = open_folder(clips)

    def build(features_in_forward: bool, workers: int):
        enc = load_encoder("clap-audio", tiny_clap, device="cpu", long_clip="mean", max_windows=2)
        enc.features_in_forward = features_in_forward
        units = Units(list(source.ids), f"{source.items_fingerprint()}:{features_in_forward}",
                      RawItemLoader(source), "audio")
        cache = LatentCache(tmp_path / f"cache-{features_in_forward}-{workers}", units, enc, shard_size=2)
        cache.build(batch_size=2, num_workers=workers, progress=False, state=SingleProcess())
        return cache.load()

    enc = load_encoder("clap-audio", tiny_clap, device="cpu")
    enc.features_in_forward = True
    dtypes = [enc.prepare(clips / f"c{i}.wav")["audio"].dtype for i in range(5)]
    assert dtypes == [torch.float32, torch.int16, torch.int16, torch.float32, torch.float32]  # 16 kHz: soxr
    ref, alone, got = build(False, 0), build(True, 0), build(True, 2)
    assert len(ref.index) == len(got.index) == 5 and not got.failed
    torch.testing.assert_close(got.latents, alone.latents, atol=1e-6, rtol=0)
    # The tiny random model barely reacts to the resamplers' ~0.003 dB (measured: 4e-6).
    torch.testing.assert_close(got.latents, ref.latents, atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh)")
def test_cuda_split_gets_pinned_batches_and_the_cpu_splits_latents(tiny_clap, tmp_path, monkeypatch):
    """On a GPU: workers cut, batches arrive page-locked, resampling and log-mel run on the GPU,
    and the latents are those of the same model fed the CPU split's features (up to the resampler
    and TF32 convolutions: loose tolerance; test_device_resample.py checks the windows closely)."""
    from fusemix.cache import LatentCache, SingleProcess, Units
    from fusemix.encoders.clap import ClapAudioEncoder
    from fusemix.extract import RawItemLoader
    from fusemix.pairs import open_folder

    rng = np.random.default_rng(4)
    clips = tmp_path / "clips"
    clips.mkdir()
    for i, (seconds, sr) in enumerate([(0.5, 44100), (3.0, 48000), (12.0, 44100), (1.0, 16000)]):
        sf.write(clips / f"c{i}.wav", 0.2 * rng.standard_normal((int(sr * seconds), 2)), sr, subtype="PCM_16")
    (clips / "metadata.csv").write_text("file_name,caption\n" + "".join(f"c{i}.wav,clip {i}\n" for i in range(4)))
    source = open_folder(clips)
    pinned, real = [], ClapAudioEncoder.features_on_device

    def spy(self, batch):
        pinned.append(batch["audio"].is_pinned())
        return real(self, batch)

    monkeypatch.setattr(ClapAudioEncoder, "features_on_device", spy)

    def build(in_forward: bool, workers: int):
        enc = load_encoder("clap-audio", tiny_clap, device="cuda", dtype=torch.float32)
        assert enc.features_in_forward  # the default on a GPU
        enc.features_in_forward = in_forward
        units = Units(list(source.ids), f"{source.items_fingerprint()}:{in_forward}", RawItemLoader(source), "audio")
        cache = LatentCache(tmp_path / f"cache-{in_forward}", units, enc, shard_size=2)
        cache.build(batch_size=2, num_workers=workers, progress=False, state=SingleProcess())
        return cache.load()

    got = build(True, 2)
    assert len(pinned) == 2 and all(pinned)
    ref = build(False, 0)
    assert not got.failed and torch.equal(got.index, ref.index)
    torch.testing.assert_close(got.latents, ref.latents, atol=1e-3, rtol=0)
