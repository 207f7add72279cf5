"""Generate fusemix's corpus of bad and odd inputs into a directory, at test time.

Nothing large is committed: every file is written here from a few lines of numpy / soundfile /
PIL / safetensors, the largest a few hundred kB (an hour-long clip is a 11 kB FLAC of silence at
1 kHz; a "decompression bomb" PNG is a header claiming 10^10 pixels over a few bytes of data).

Each :class:`Case` names one *kind* of input, the entry point family it goes to (``target``), and
what fusemix promises for it:

- ``expect="error"``: a clear ``ValueError`` subclass (``AudioError``, ``EncoderInputError``,
  ``LatentFileError``, ``CheckpointError``) whose message matches ``match``;
- ``expect="ok"``: a documented treatment (``note`` says which), e.g. silence is returned as is,
  clipped samples are clipped, 6 channels are averaged, over-long captions are truncated.

Run as a script to write the corpus and print its kinds::

    python tests/corpus/make_corpus.py /tmp/corpus
"""
from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = ("audio", "image", "caption", "latents", "checkpoint")


@dataclass
class Case:
    kind: str  # unique name of the kind of input
    target: str  # one of TARGETS: which entry points it is run through
    value: Any  # a path for files; the Python object itself for captions
    expect: str  # "error" or "ok"
    match: str = ""  # regex the error message must match (the helpful part)
    note: str = ""  # the documented treatment, for "ok" cases
    extra: dict = field(default_factory=dict)  # e.g. {"expect_modalities": ...} for checkpoints

    def describe(self) -> dict:
        if isinstance(self.value, Path):
            v = str(self.value)
        else:
            r = repr(self.value)
            v = r if len(r) <= 60 else f"{r[:40]}... <{type(self.value).__name__} of length {_len(self.value)}>"
        return {"kind": self.kind, "target": self.target, "expect": self.expect, "match": self.match,
                "note": self.note, "value": v}


def _len(v: Any) -> Any:
    try:
        return len(v)
    except TypeError:
        return None


SR = 48_000


def tone(sr: int = SR, seconds: float = 1.0, freq: float = 440.0, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)


def encode_audio(x: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_header(sr: int, channels: int, bits: int, data_bytes: int, fmt_tag: int = 1) -> bytes:
    """A canonical 44-byte RIFF/WAVE header; ``data_bytes`` may lie about what follows."""
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", (36 + data_bytes) & 0xFFFFFFFF) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, fmt_tag, channels, sr, sr * block, block, bits)
            + b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF))


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, rows_of_data: int = 1) -> bytes:
    """A 1-bit grayscale PNG whose header says ``width`` x ``height`` but carries a few rows."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    idat = zlib.compress(row * rows_of_data, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def big_png(width: int, height: int) -> bytes:
    """A *complete*, valid 1-bit PNG of ``width`` x ``height`` (all black): tiny file, huge image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row * min(1024, height - i)) for i in range(0, height, 1024)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _pil_bytes(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _mutate(data: bytes, seed: int, start_frac: float = 1 / 3, stop_frac: float = 2 / 3) -> bytes:
    rng = np.random.default_rng(seed)
    a, b = int(len(data) * start_frac), int(len(data) * stop_frac)
    return data[:a] + rng.integers(0, 256, b - a, dtype=np.uint8).tobytes() + data[b:]


# --------------------------------------------------------------------------------------- audio
def audio_cases(d: Path) -> list[Case]:
    import soundfile as sf

    d.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def put(name: str, data: bytes) -> Path:
        p = d / name
        p.write_bytes(data)
        return p

    def err(kind, path, match):
        cases.append(Case(kind, "audio", path, "error", match))

    def ok(kind, path, note, **extra):
        cases.append(Case(kind, "audio", path, "ok", note=note, extra=extra))

    x = tone()
    lossless = {"wav": encode_audio(x, SR, "WAV", "PCM_16"), "flac": encode_audio(x, SR, "FLAC", "PCM_16")}
    lossy = {"mp3": encode_audio(x, SR, "MP3", "MPEG_LAYER_III"), "ogg": encode_audio(x, SR, "OGG", "VORBIS"),
             "opus.ogg": encode_audio(x, SR, "OGG", "OPUS")}
    for ext in ("wav", "flac", "mp3", "ogg"):
        err(f"{ext}_zero_byte", put(f"zero.{ext}", b""), r"empty \(0 bytes\)")
    for ext, data in {**lossless, **lossy}.items():
        err(f"{ext}_truncated_header", put(f"trunc_header.{ext}", data[:20]), "not a decodable audio file")
    # Truncated in the middle of the data: what libsndfile treats as the end of the stream.
    ok("wav_truncated_data", put("trunc_data.wav", lossless["wav"][: len(lossless["wav"]) * 6 // 10]),
       "decoded up to where the data stops (the header's length is not trusted)", seconds=0.6)
    err("flac_truncated_data", put("trunc_data.flac", lossless["flac"][: len(lossless["flac"]) * 6 // 10]),
        "could not decode")
    ok("mp3_truncated_data", put("trunc_data.mp3", lossy["mp3"][: len(lossy["mp3"]) * 6 // 10]),
       "decoded up to where the frames stop")
    err("ogg_vorbis_truncated_data", put("trunc_data.ogg", lossy["ogg"][: len(lossy["ogg"]) * 6 // 10]),
        "not a decodable audio file|no samples|could not decode")
    # Random bytes over the middle third of the file.
    ok("wav_corrupt_samples", put("corrupt.wav", _mutate(lossless["wav"], 1)),
       "PCM data has no structure to break: corrupt samples decode as noise")
    err("flac_corrupt_frames", put("corrupt.flac", _mutate(lossless["flac"], 2)), "could not decode")
    ok("mp3_corrupt_frames", put("corrupt.mp3", _mutate(lossy["mp3"], 3)),
       "mpg123 resynchronises past corrupt frames and decodes the rest (a stream it cannot resync is an error)")
    err("ogg_corrupt_pages", put("corrupt.ogg", _mutate(lossy["ogg"], 4)), "not a decodable|could not decode")
    err("wav_corrupt_header", put("corrupt_header.wav", _mutate(lossless["wav"], 5, 0, 0.0005)),
        "not a decodable audio file")
    # Not audio at all, with an audio extension.
    from PIL import Image

    err("text_as_wav", put("readme.wav", b"This is not audio.\n" * 20), "not a decodable audio file")
    err("png_as_mp3", put("picture.mp3", _pil_bytes(Image.new("RGB", (8, 8)), "PNG")), "not a decodable audio file")
    err("html_as_flac", put("page.flac", b"<!doctype html><html><body>404</body></html>"), "not a decodable audio file")
    err("random_bytes_ogg", put("noise.ogg", np.random.default_rng(6).integers(0, 256, 4096, np.uint8).tobytes()),
        "not a decodable audio file")
    # Odd but valid content.
    p = d / "silence.wav"
    sf.write(p, np.zeros(SR, np.int16), SR)
    ok("silence", p, "returned as is (all zeros); reject_silent=True or is_silent() to refuse it", silent=True)
    p = d / "clipping.wav"
    sf.write(p, tone(amp=4.0), SR, subtype="FLOAT")  # float WAV can hold values far outside [-1, 1]
    ok("clipping_float", p, "samples outside [-1, 1] are clipped", clipped=True)
    p = d / "clipping_pcm.wav"
    sf.write(p, np.clip(tone(amp=3.0), -1, 1), SR, subtype="PCM_16")
    ok("clipping_pcm_full_scale", p, "full-scale square-ish wave decodes to +-1")
    for kind, bad in (("nan_samples", np.nan), ("inf_samples", np.inf)):
        y = tone()
        y[1000:1010] = bad
        p = d / f"{kind}.wav"
        sf.write(p, y, SR, subtype="FLOAT")
        err(kind, p, "NaN or infinite")
    for sr in (8000, 192000):
        p = d / f"rate_{sr}.flac"
        sf.write(p, tone(sr, 0.5, freq=1000.0), sr)
        ok(f"rate_{sr // 1000}khz", p, "resampled to the target rate with soxr", seconds=0.5)
    p = d / "six_channels.wav"
    sf.write(p, tone(16000, 0.5, channels=6), 16000)
    ok("six_channels", p, "channels are averaged to mono", seconds=0.5)
    p = d / "hundred_channels.wav"
    sf.write(p, np.zeros((800, 100), np.int16), 8000)
    err("hundred_channels", p, "channels, at most 64")
    p = d / "rate_500hz.wav"
    sf.write(p, np.zeros(1000, np.int16), 500)
    err("rate_500hz", p, "outside the supported range")
    p = d / "short_50ms.wav"
    sf.write(p, tone(SR, 0.05), SR)
    err("clip_50ms", p, r"shorter than the 0\.1 s minimum")
    p = d / "empty_frames.aiff"
    sf.write(p, np.zeros((0, 1), np.int16), SR, format="AIFF")
    err("zero_frames", p, "no samples|not a decodable")
    # An hour of audio: a real FLAC of silence at 1 kHz (11 kB) and a WAV header claiming an hour.
    p = d / "hour_long.flac"
    with sf.SoundFile(p, "w", 1000, 1, "PCM_16", format="FLAC") as f:
        block = np.zeros(100_000, np.int16)
        for _ in range(36):
            f.write(block)
    err("hour_long_flac", p, r"3600\.0 s long, over the 600 s limit")
    p = put("hour_header.wav", wav_header(SR, 1, 16, 3600 * SR * 2) + np.zeros(SR // 10, np.int16).tobytes())
    ok("wav_header_claims_an_hour", p, "the header's length is not trusted: the 0.1 s that is there is decoded",
       seconds=0.1)
    p = d / "a_directory.wav"
    p.mkdir(exist_ok=True)
    err("directory_named_wav", p, "not a regular file")
    err("missing_file", d / "does_not_exist.wav", "not found")
    return cases


# --------------------------------------------------------------------------------------- images
def image_cases(d: Path) -> list[Case]:
    from PIL import Image

    d.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def put(name: str, data: bytes) -> Path:
        p = d / name
        p.write_bytes(data)
        return p

    rng = np.random.default_rng(7)
    photo = Image.fromarray(rng.integers(0, 256, (48, 64, 3), np.uint8))
    jpeg = _pil_bytes(photo, "JPEG", quality=90)
    cases += [
        Case("image_zero_byte", "image", put("zero.png", b""), "error", "not a readable image"),
        Case("jpeg_truncated", "image", put("truncated.jpg", jpeg[: len(jpeg) // 2]), "error",
             "not a readable image.*truncated"),
        Case("jpeg_header_only", "image", put("header_only.jpg", jpeg[:40]), "error", "not a readable image"),
        Case("png_corrupt_idat", "image", put("corrupt.png", _mutate(_pil_bytes(photo, "PNG"), 8, 0.3, 0.6)),
             "error", "not a readable image"),
        Case("text_as_png", "image", put("notes.png", b"hello, I am text\n" * 10), "error",
             "not a readable image.*cannot identify"),
        Case("wav_as_jpg", "image", put("sound.jpg", encode_audio(tone(8000, 0.1), 8000, "WAV")), "error",
             "not a readable image"),
        Case("decompression_bomb_png", "image", put("bomb.png", png_claiming(100_000, 100_000)), "error",
             "not a readable image.*(decompression bomb|exceeds limit)"),
        Case("image_1x1", "image", put("one_pixel.png", _pil_bytes(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG")),
             "ok", note="upscaled by the image processor like any small image"),
        Case("cmyk_jpeg", "image", put("cmyk.jpg", _pil_bytes(Image.new("CMYK", (40, 30), (0, 128, 255, 0)), "JPEG")),
             "ok", note="converted to RGB"),
        Case("rgba_png", "image", put("alpha.png", _pil_bytes(Image.new("RGBA", (40, 30), (10, 20, 30, 0)), "PNG")),
             "ok", note="alpha dropped (converted to RGB)"),
        Case("png_16bit_gray", "image", put("gray16.png", _pil_bytes(
            Image.fromarray((np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50)), "PNG")),
             "ok", note="16-bit gray converted to 8-bit RGB"),
        Case("palette_png_transparency", "image", put("palette.png", _pil_bytes(
            Image.new("P", (40, 30), 3), "PNG", transparency=3)), "ok", note="palette expanded to RGB"),
        Case("animated_gif", "image", put("anim.gif", _pil_bytes(
            Image.new("P", (20, 20), 1), "GIF", save_all=True,
            append_images=[Image.new("P", (20, 20), 2)], duration=50)), "ok", note="first frame"),
        Case("image_missing_file", "image", d / "nope.png", "error", "not found"),
    ]
    return cases


# --------------------------------------------------------------------------------------- captions
def caption_cases() -> list[Case]:
    return [
        Case("caption_empty", "caption", "", "error", "empty or whitespace only"),
        Case("caption_whitespace_only", "caption", " \t\n\r\u00a0\u3000 ", "error", "empty or whitespace only"),
        Case("caption_100k_chars", "caption", ("a dog barks at the mailman " * 3800)[:100_000], "ok",
             note="truncated at the tokenizer limit and counted (encoder.n_truncated)", extra={"truncated": True}),
        Case("caption_control_chars", "caption", "a\x00b\x07c\x1b[31m red\x08\x7f \u202eevil\u202c", "ok",
             note="passed to the tokenizer as is (it drops or maps control characters)"),
        Case("caption_only_nul", "caption", "\x00\x00", "ok", note="NUL is not whitespace: tokenised like any text"),
        Case("caption_100k_combining_marks", "caption", "e" + "\u0301" * 100_000, "ok",
             note="normalised by the tokenizer (accent stripping) and/or truncated at its limit"),
        Case("caption_none", "caption", None, "error", "caption must be a string"),
        Case("caption_bytes", "caption", b"a dog", "error", "caption must be a string"),
        Case("caption_lone_surrogate", "caption", "a dog \ud800 barks", "error",
             "(not valid|invalid|surrogate|unicode|UTF)"),
    ]


# --------------------------------------------------------------------------------------- latents
def latent_cases(d: Path) -> list[Case]:
    import torch
    from safetensors.torch import save_file

    d.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 8, generator=g), torch.randn(16, 6, generator=g)
    cases: list[Case] = []

    def put(kind: str, tensors: dict, match: str, meta: dict | None = None) -> None:
        p = d / f"{kind}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(p), metadata=meta)
        cases.append(Case(kind, "latents", p, "error", match))

    nan_x = x.clone()
    nan_x[3, 2] = float("nan")
    inf_y = y.clone()
    inf_y[5, 0] = float("inf")
    put("latents_x_rank3", {"x": x[:, :, None].expand(16, 8, 2), "y": y}, "x must have rank 2")
    put("latents_x_rank1", {"x": x[:, 0], "y": y}, "x must have rank 2")
    put("latents_y_rank4", {"x": x, "y": y[:, None, None, :]}, "y must have rank 2 or 3")
    put("latents_int_dtype", {"x": (x * 100).to(torch.int32), "y": y}, "floating-point")
    put("latents_bool_dtype", {"x": x > 0, "y": y}, "floating-point")
    put("latents_nan", {"x": nan_x, "y": y}, r"NaN or inf.*first rows: \[3\]")
    put("latents_inf", {"x": x, "y": inf_y}, "NaN or inf")
    put("latents_row_mismatch", {"x": x, "y": y[:10]}, "row-aligned")
    put("latents_zero_rows", {"x": x[:0], "y": y[:0]}, "empty")
    put("latents_zero_width", {"x": x[:, :0], "y": y}, "empty")
    put("latents_y_item_out_of_range", {"x": x, "y": y, "y_item": torch.arange(16) + 5}, r"y_item values must lie in")
    put("latents_y_item_float", {"x": x, "y": y, "y_item": torch.arange(16).float()}, "y_item must be an integer")
    put("latents_y_item_wrong_length", {"x": x, "y": y, "y_item": torch.arange(10)}, "y_item must be an integer tensor of shape")
    put("latents_missing_y", {"x": x}, r"lacks tensor\(s\) \['y'\]")
    good = d / "good.safetensors"
    save_file({"x": x, "y": y}, str(good))
    raw = good.read_bytes()
    for kind, data, match in (
        ("latents_truncated", raw[: len(raw) // 2], "not a readable safetensors file"),
        ("latents_zero_byte", b"", "not a readable safetensors file"),
        ("latents_header_claims_2^60_bytes", struct.pack("<Q", 1 << 60) + b"{}", "not a readable safetensors file"),
        ("latents_header_not_json", struct.pack("<Q", 8) + b"notjson!" + b"\x00" * 8, "not a readable safetensors file"),
        ("latents_offsets_out_of_bounds", _bad_offsets(), "not a readable safetensors file"),
        ("latents_pickle_named_safetensors", _pickle_bytes(), "not a readable safetensors file"),
    ):
        p = d / f"{kind}.safetensors"
        p.write_bytes(data)
        cases.append(Case(kind, "latents", p, "error", match))
    p = d / "a_directory.safetensors"
    p.mkdir(exist_ok=True)
    cases.append(Case("latents_directory", "latents", p, "error", "does not exist|not a file"))
    p = d / "half_precision.safetensors"
    save_file({"x": x.half(), "y": y.bfloat16()}, str(p))
    cases.append(Case("latents_fp16_bf16", "latents", p, "ok", note="float16/bfloat16 accepted (cast to float32 for training)"))
    return cases


def _bad_offsets() -> bytes:
    header = json.dumps({"x": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]},
                         "y": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x00" * 64


_PWNED = "fusemix-corpus-pickle-executed"


def _pickle_bytes() -> bytes:
    """A pickle that would *run code* (print a marker) if anything unpickled it."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, (_PWNED,))

    return pickle.dumps({"x": Evil()})


# --------------------------------------------------------------------------------------- checkpoints
def checkpoint_cases(d: Path) -> list[Case]:
    import torch

    from fusemix.model import FusionConfig, FusionModel, ModalitySpec

    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    specs = {"image": ModalitySpec("img-enc", 12), "text": ModalitySpec("txt-enc", 10)}
    model = FusionModel(FusionConfig(specs, proj_dim=6, depth=2, expansion=2, dropout=0.0))
    cases: list[Case] = []

    def saved(kind: str) -> Path:
        p = d / kind
        model.save_pretrained(p)
        return p

    def edit_config(p: Path, fn) -> None:
        cfg = p / "config.json"
        cfg.write_text(fn(json.loads(cfg.read_text())))

    def case(kind, p, match, expect="error", **extra):
        cases.append(Case(kind, "checkpoint", p, expect, match, extra=extra))

    p = saved("ckpt_config_dim_disagrees")
    edit_config(p, lambda c: json.dumps({**c, "modalities": {**c["modalities"], "image": {**c["modalities"]["image"], "dim": 14}}}))
    case("ckpt_config_dim_disagrees", p, "config and the weights disagree")
    p = saved("ckpt_config_proj_disagrees")
    edit_config(p, lambda c: json.dumps({**c, "proj_dim": 8}))
    case("ckpt_config_proj_disagrees", p, "config and the weights disagree")
    p = saved("ckpt_config_depth_disagrees")
    edit_config(p, lambda c: json.dumps({**c, "depth": 3}))
    case("ckpt_config_depth_disagrees", p, "missing")
    case("ckpt_other_encoder", saved("ckpt_other_encoder"), "trained on latents of img-enc, not other/encoder",
         expect_modalities={"image": ("other/encoder", 12)})
    case("ckpt_other_encoder_dim", saved("ckpt_other_encoder_dim"), "768-d",
         expect_modalities={"image": ("dinov2", 768)})
    case("ckpt_missing_modality", saved("ckpt_missing_modality"), "no 'audio' adapter",
         expect_modalities={"audio": ("clap", 512)})
    for kind, mutate in (
        ("ckpt_weights_truncated", lambda b: b[: len(b) // 2]),
        ("ckpt_weights_zero_byte", lambda b: b""),
        ("ckpt_weights_pickle", lambda b: _pickle_bytes()),
    ):
        p = saved(kind)
        w = p / "model.safetensors"
        w.write_bytes(mutate(w.read_bytes()))
        case(kind, p, "not a readable safetensors file")
    p = saved("ckpt_weights_missing")
    (p / "model.safetensors").unlink()
    case("ckpt_weights_missing", p, "does not exist")
    p = saved("ckpt_weights_nan")
    from safetensors.torch import load_file, save_file

    sd = load_file(str(p / "model.safetensors"))
    k = next(k for k in sd if k.endswith("weight") and sd[k].ndim == 2)
    sd[k][0, 0] = float("nan")
    save_file(sd, str(p / "model.safetensors"))
    case("ckpt_weights_nan", p, "NaN or inf")
    p = saved("ckpt_weights_of_another_model")
    save_file({"encoder.layer.0.weight": torch.zeros(4, 4)}, str(p / "model.safetensors"))
    case("ckpt_weights_of_another_model", p, "does not match the model")
    p = saved("ckpt_config_not_json")
    (p / "config.json").write_text('{"model_type": "fusemix.FusionModel", "modalities": {')
    case("ckpt_config_not_json", p, "not valid JSON")
    p = saved("ckpt_config_missing")
    (p / "config.json").unlink()
    case("ckpt_config_missing", p, "holds no config.json")
    p = saved("ckpt_config_other_model_type")
    edit_config(p, lambda c: json.dumps({**c, "model_type": "clip"}))
    case("ckpt_config_other_model_type", p, "not a fusemix.FusionModel")
    p = saved("ckpt_config_is_a_list")
    (p / "config.json").write_text("[1, 2, 3]")
    case("ckpt_config_is_a_list", p, "config|FusionModel")
    p = saved("ckpt_config_unknown_field")
    edit_config(p, lambda c: json.dumps({**c, "hidden_act": "relu"}))
    case("ckpt_config_unknown_field", p, "hidden_act")
    p = saved("ckpt_config_no_modalities")
    edit_config(p, lambda c: json.dumps({k: v for k, v in c.items() if k != "modalities"}))
    case("ckpt_config_no_modalities", p, "modalities")
    p = saved("ckpt_config_dim_is_a_string")
    edit_config(p, lambda c: json.dumps({**c, "modalities": {**c["modalities"], "image": {**c["modalities"]["image"], "dim": "12"}}}))
    case("ckpt_config_dim_is_a_string", p, "dim")
    p = saved("ckpt_config_negative_dim")
    edit_config(p, lambda c: json.dumps({**c, "modalities": {**c["modalities"], "image": {**c["modalities"]["image"], "dim": -3}}}))
    case("ckpt_config_negative_dim", p, "dim")
    return cases


def make_corpus(root: str | Path) -> list[Case]:
    """Write every file of the corpus under ``root`` and return all cases (files and captions)."""
    root = Path(root)
    cases = (audio_cases(root / "audio") + image_cases(root / "image") + caption_cases()
             + latent_cases(root / "latents") + checkpoint_cases(root / "checkpoints"))
    kinds = [c.kind for c in cases]
    dupes = {k for k in kinds if kinds.count(k) > 1}
    if dupes:
        raise AssertionError(f"corpus kinds must be unique: {sorted(dupes)}")
    (root / "corpus.json").write_text(json.dumps([c.describe() for c in cases], indent=1, ensure_ascii=True))
    return cases


PICKLE_MARKER = _PWNED

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for fusemix
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    made = make_corpus(out)
    for c in made:
        print(f"{c.target:10s} {c.kind:36s} {c.expect}")
    print(f"{len(made)} kinds written to {out}")
