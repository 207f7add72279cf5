"""Decode, validate and resample audio from every entry point fusemix has.

:func:`load_audio` returns float32 mono in [-1, 1] (soundfile to decode, soxr HQ to resample).
Bad input raises an :class:`AudioError` (a ``ValueError``) with a plain message, before any large
read when possible. Samples outside [-1, 1] are clipped; NaN or infinite samples are refused.
"""

from __future__ import annotations

import io
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64
DEFAULT_MAX_SECONDS = 600.0
DEFAULT_MIN_SECONDS = 0.1
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DECODE_BLOCK_FRAMES = 1 << 16  # frames decoded (then down-mixed) at a time
SILENCE_DB = -60.0

AudioSource = Any  # str | os.PathLike | bytes | BinaryIO | tuple[int, np.ndarray] | dict | np.ndarray


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, too long/short, NaN, ... (message says which)."""


class SilentAudioError(AudioError):
    """The audio decodes but is silent (``reject_silent=True``)."""


class InvalidSamplesError(AudioError):
    """The audio holds NaN or infinite samples."""


class AudioLengthError(AudioError):
    """The audio is longer or shorter than the limits allow (or holds no samples)."""


class UndecodableAudioError(AudioError):
    """The bytes are not audio that the decoder can read."""


@dataclass(frozen=True)
class AudioInfo:
    """What a header (or an in-memory array) says about a clip, without decoding it."""

    sample_rate: int
    channels: int
    frames: int
    format: str  # "WAV", "FLAC", "MP3", ... or "array" for in-memory samples
    subtype: str | None = None

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _describe(source: AudioSource) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"


def _check_rate(sr: Any, what: str) -> int:
    if isinstance(sr, bool) or not isinstance(sr, numbers.Integral):
        if not (isinstance(sr, numbers.Real) and float(sr).is_integer()):
            raise AudioError(f"{what} must be an integer number of Hz, got {sr!r}")
    sr = int(sr)
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioError(f"{what} {sr} Hz is outside the supported range {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    return sr


def _check_limits(min_seconds: float, max_seconds: float, max_bytes: int) -> None:
    if not (math.isfinite(min_seconds) and min_seconds >= 0):
        raise ValueError(f"min_seconds must be a finite number >= 0, got {min_seconds!r}")
    if not (math.isfinite(max_seconds) and max_seconds > min_seconds):
        raise ValueError(f"max_seconds must be finite and greater than min_seconds={min_seconds}, got {max_seconds!r}")
    if not (isinstance(max_bytes, int) and max_bytes > 0):
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")


def _read_bytes(source: AudioSource, max_bytes: int) -> bytes:
    """File path / bytes / file object -> bytes, enforcing emptiness and the size limit first."""
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"audio file not found: {path}")
        if not path.is_file():
            raise AudioError(f"not a regular file: {path}")
        size = path.stat().st_size
        if size == 0:
            raise AudioError(f"audio file is empty (0 bytes): {path}")
        if size > max_bytes:
            raise AudioError(f"audio file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB limit: {path}")
        return path.read_bytes()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise AudioError(f"file object {name} must be opened in binary mode")
        data = bytes(data)
    else:
        raise AudioError(f"unsupported audio source {name}: expected a path, bytes, a binary file object, "
                         "a (sample_rate, array) tuple, a {'array', 'sampling_rate'} dict or a numpy array")
    if not data:
        raise AudioError(f"audio data is empty (0 bytes): {name}")
    if len(data) > max_bytes:
        raise AudioError(f"audio data is over the {max_bytes / 1e6:.1f} MB limit: {name}")
    return data


def _open(data: bytes, name: str) -> sf.SoundFile:
    buf = io.BytesIO(data)
    try:
        return sf.SoundFile(buf)
    except (sf.SoundFileError, RuntimeError) as exc:
        why = str(exc).replace(f"Error opening {buf!r}: ", "").rstrip(".")  # no "<_io.BytesIO at 0x...>"
        raise UndecodableAudioError(f"not a decodable audio file ({name}): {why}. Supported: "
                                    + ", ".join(sorted(sf.available_formats()))) from None


def _array_source(source: AudioSource, source_sr: int | None) -> tuple[np.ndarray, int] | None:
    """Recognise in-memory sources; return (array, sample_rate) or None for encoded data."""
    if isinstance(source, tuple):
        if len(source) != 2:
            raise AudioError(f"an audio tuple must be (sample_rate, array), got {len(source)} items")
        a, b = source
        if isinstance(b, np.ndarray) and not isinstance(a, np.ndarray):
            return b, _check_rate(a, "sample rate")
        raise AudioError("an audio tuple must be (sample_rate, array) as Gradio gives it")
    if isinstance(source, dict):
        if "array" not in source or "sampling_rate" not in source:
            if "path" in source or "bytes" in source:
                return None
            raise AudioError("an audio dict needs 'array' and 'sampling_rate' keys")
        return np.asarray(source["array"]), _check_rate(source["sampling_rate"], "sampling_rate")
    if isinstance(source, np.ndarray) or (hasattr(source, "__array__") and not isinstance(source, (bytes, str))):
        if source_sr is None:
            raise AudioError("a bare (numpy or array-like) audio array needs source_sr= (its sample rate)")
        return np.asarray(source), _check_rate(source_sr, "source_sr")
    return None


def _to_frames_channels(a: np.ndarray) -> np.ndarray:
    """Return a 2-D (frames, channels) view; the channel axis is the short one (<= MAX_CHANNELS)."""
    if a.ndim == 1:
        return a[:, None]
    if a.ndim != 2:
        raise AudioError(f"audio array must be 1-D or 2-D (frames, channels), got shape {a.shape}")
    if a.shape[1] <= MAX_CHANNELS and a.shape[1] <= a.shape[0]:  # frames first
        return a
    if a.shape[0] <= MAX_CHANNELS and a.shape[0] < a.shape[1]:  # channels first
        return a.T
    raise AudioError(f"cannot tell channels from frames in an audio array of shape {a.shape} "
                     f"(at most {MAX_CHANNELS} channels supported)")


def _to_float(a: np.ndarray) -> np.ndarray:
    """Integer PCM -> float32 in [-1, 1) by its full scale; floats pass through as float32."""
    kind = a.dtype.kind
    if kind == "f":
        return a.astype(np.float32, copy=False)
    if kind == "i":
        return (a.astype(np.float64) / float(2 ** (8 * a.dtype.itemsize - 1))).astype(np.float32)
    if kind == "u":
        half = float(2 ** (8 * a.dtype.itemsize - 1))
        return ((a.astype(np.float64) - half) / half).astype(np.float32)
    raise AudioError(f"audio samples must be integer PCM or float, got dtype {a.dtype}")


def _downmix(frames: np.ndarray) -> np.ndarray:
    """(frames, channels) float32 -> (frames,) float32: the channel mean (a copy, never a view)."""
    if frames.shape[1] == 2:  # the common case: much faster than mean(axis=1), and bit-identical
        out = frames[:, 0] + frames[:, 1]
        out /= 2
        return out
    if frames.shape[1] > 1:
        return frames.mean(axis=1, dtype=np.float32)
    return np.array(frames[:, 0], dtype=np.float32)


def probe_audio(source: AudioSource, *, source_sr: int | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> AudioInfo:
    """Sample rate, channels, frames and format of a clip from its header (no decoding)."""
    arr = _array_source(source, source_sr)
    if arr is not None:
        a, sr = arr
        fc = _to_frames_channels(np.asarray(a))
        return AudioInfo(sample_rate=sr, channels=fc.shape[1], frames=fc.shape[0], format="array", subtype=str(a.dtype))
    if isinstance(source, dict):
        source = source.get("bytes") or source.get("path")
    data = _read_bytes(source, max_bytes)
    with _open(data, _describe(source)) as f:
        return AudioInfo(f.samplerate, f.channels, f.frames, f.format, f.subtype)


def is_silent(samples: np.ndarray, threshold_db: float = SILENCE_DB) -> bool:
    """True when the peak level is below ``threshold_db`` dBFS (default -60 dB)."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return peak <= 10 ** (threshold_db / 20)


def resample(mono: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """float32 mono at ``sr`` -> float32 at ``target_sr`` (soxr, high quality), clipped to [-1, 1]."""
    if sr != target_sr:
        mono = soxr.resample(mono, sr, target_sr, quality="HQ").astype(np.float32, copy=False)
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)  # new array: never mutate input


def load_audio(source: AudioSource, target_sr: int = 48_000, *, source_sr: int | None = None,
               max_seconds: float = DEFAULT_MAX_SECONDS, min_seconds: float = DEFAULT_MIN_SECONDS,
               max_bytes: int = DEFAULT_MAX_BYTES, reject_silent: bool = False) -> np.ndarray:
    """Decode ``source`` to float32 mono samples in [-1, 1] at ``target_sr``.

    ``source``: a path, bytes, a binary file object, ``(sample_rate, array)`` (Gradio), a dict with
    ``array``/``sampling_rate`` or ``path``/``bytes`` (datasets), or an array with ``source_sr``:
    (frames,), (frames, channels) or (channels, frames), integer PCM scaled by its full scale.
    ``max_bytes`` is checked before reading, ``max_seconds`` from the header before decoding.
    """
    target_sr = _check_rate(target_sr, "target_sr")
    mono, sr = decode_audio(source, source_sr=source_sr, max_seconds=max_seconds,
                            min_seconds=min_seconds, max_bytes=max_bytes)
    mono = resample(mono, sr, target_sr)
    if reject_silent and is_silent(mono):
        shown = source.get("bytes") or source.get("path") if isinstance(source, dict) and "array" not in source else source
        raise SilentAudioError(f"audio is silent (peak below {SILENCE_DB:g} dBFS) ({_describe(shown)})")
    return mono


def decode_audio(source: AudioSource, *, source_sr: int | None = None, max_seconds: float = DEFAULT_MAX_SECONDS,
                 min_seconds: float = DEFAULT_MIN_SECONDS, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[np.ndarray, int]:
    """:func:`load_audio` before resampling: ``(float32 mono samples, their rate)``; the same checks,
    not clipped yet, and possibly sharing memory with an array source (copy before writing)."""
    _check_limits(min_seconds, max_seconds, max_bytes)
    name = _describe(source)
    arr = _array_source(source, source_sr)
    if arr is not None:
        raw, sr = arr
        if raw.size == 0:
            raise AudioLengthError(f"audio array is empty ({name})")
        frames = _to_frames_channels(raw)
        if frames.shape[0] / sr > max_seconds:
            raise AudioLengthError(f"audio is {frames.shape[0] / sr:.1f} s long, over the {max_seconds:g} s limit "
                                   f"({name})")
        samples = _to_float(frames)
        if not np.isfinite(samples).all():
            raise InvalidSamplesError(f"audio contains NaN or infinite samples ({name})")
        mono = _downmix(samples)
    else:
        if isinstance(source, dict):
            source = source.get("bytes") or source.get("path")
            name = _describe(source)
        data = _read_bytes(source, max_bytes)
        with _open(data, name) as f:
            sr = _check_rate(f.samplerate, f"sample rate of {name}")
            if f.channels > MAX_CHANNELS:
                raise AudioError(f"{name} has {f.channels} channels, at most {MAX_CHANNELS} supported")
            max_frames = int(math.ceil(max_seconds * sr))
            if f.frames > max_frames:
                raise AudioLengthError(f"audio is {f.frames / sr:.1f} s long, over the {max_seconds:g} s limit "
                                       f"({name})")
            # Read one frame past the limit: headers of some formats only estimate the length.
            # 3+ channels are decoded in blocks and down-mixed as they come (peak memory: the mono
            # signal); mono and stereo in one go (block reads change libsndfile's MP3 output).
            step = DECODE_BLOCK_FRAMES if f.channels > 2 else max_frames + 1
            # 16-bit PCM read as int16 and scaled here: libsndfile's samples exactly, and cheaper.
            pcm16 = f.subtype == "PCM_16"
            parts, n = [], 0
            try:
                while n <= max_frames:
                    block = f.read(frames=min(step, max_frames + 1 - n), dtype="int16" if pcm16 else "float32",
                                   always_2d=True)
                    if block.shape[0] == 0:
                        break
                    if pcm16:  # libsndfile's own scaling, x * 1/32768 (exact)
                        block = block.astype(np.float32) * np.float32(1 / 32768)
                    elif not np.isfinite(block).all():
                        raise InvalidSamplesError(f"audio contains NaN or infinite samples ({name})")
                    parts.append(_downmix(block))
                    n += block.shape[0]
            except (sf.SoundFileError, RuntimeError) as exc:
                raise UndecodableAudioError(f"could not decode {name}: {exc}") from None
        if n > max_frames:
            raise AudioLengthError(f"audio is over the {max_seconds:g} s limit ({name})")
        mono = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if mono.shape[0] == 0:
        raise AudioLengthError(f"audio contains no samples ({name})")
    duration = mono.shape[0] / sr
    if duration < min_seconds:
        raise AudioLengthError(f"audio is {duration:.3f} s long, shorter than the {min_seconds:g} s minimum ({name})")
    return np.ascontiguousarray(mono, dtype=np.float32), sr
