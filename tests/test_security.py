"""Security: no pickle on any load path, galleries never leave their root, uploads are limited
before decoding, and the demo serves only the files it created or ships.

- A static check (AST, not a regex) over ``fusemix/``, ``train.py`` and ``demo/`` fails on
  ``torch.load`` without ``weights_only=True``, any ``pickle``/``dill``/``joblib``/``cloudpickle``
  load, ``np.load(..., allow_pickle=True)``, ``pandas.read_pickle``, ``yaml.load`` without a safe
  loader, ``torch.jit.load``, ``trust_remote_code=True``, ``eval``/``exec``. It is tested on code that
  has each pattern, so it cannot pass by finding nothing.
- A dynamic check: every artefact loader runs with ``pickle.load(s)`` and ``torch.load`` made to fail.
- Gallery scanning with symlinks to files and folders outside the root, a chain that leaves the root,
  and a file swapped for an outside symlink between scan and read.
- Limits: an hour-long file is refused from its header with ``soundfile`` decoding made to fail; an
  oversized file (sparse, 300 MB) is refused without being read.
"""
from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [ROOT / "fusemix", ROOT / "train.py", ROOT / "demo"]
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}


# --------------------------------------------------------------------------------------- static check
def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(source: str, filename: str = "<src>") -> list[str]:
    """Every unsafe deserialisation (or code execution) call in ``source``, as 'file:line: what'."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}  # local name -> dotted origin, e.g. {"np": "numpy", "pl": "pickle.load"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "trust_remote_code" and not (
                isinstance(node.value, ast.Constant) and node.value.value is False):
            found.append(f"{filename}:{node.value.lineno}: trust_remote_code= runs code from the hub")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        full = aliases.get(head, head) + (f".{rest}" if rest else "")
        mod, _, fn = full.rpartition(".")
        where = f"{filename}:{node.lineno}"
        if mod.split(".")[0] in PICKLE_MODULES and fn in ("load", "loads", "Unpickler", "open"):
            found.append(f"{where}: {full}() unpickles")
        elif full == "torch.load" and not _is_true(_kw(node, "weights_only")):
            found.append(f"{where}: torch.load() without weights_only=True")
        elif full == "torch.jit.load":
            found.append(f"{where}: torch.jit.load() loads a pickled TorchScript archive")
        elif full in ("numpy.load", "np.load") and _is_true(_kw(node, "allow_pickle")):
            found.append(f"{where}: numpy.load(allow_pickle=True)")
        elif full in ("pandas.read_pickle", "pd.read_pickle"):
            found.append(f"{where}: pandas.read_pickle()")
        elif full in ("yaml.unsafe_load", "yaml.full_load"):
            found.append(f"{where}: {full}()")
        elif full == "yaml.load":
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _dotted(loader).split(".")[-1] not in SAFE_YAML_LOADERS:
                found.append(f"{where}: yaml.load() without a safe Loader")
        elif isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec") and node.func.id not in aliases:
            found.append(f"{where}: {node.func.id}()")
    return found


BAD_SNIPPETS = {
    "import pickle\npickle.load(open('f', 'rb'))": "unpickles",
    "import pickle as p\nx = p.loads(b'')": "unpickles",
    "from pickle import loads\nloads(b'')": "unpickles",
    "import torch\ntorch.load('m.pt')": "weights_only",
    "import torch\ntorch.load('m.pt', weights_only=False)": "weights_only",
    "import numpy as np\nnp.load('a.npy', allow_pickle=True)": "allow_pickle",
    "import joblib\njoblib.load('m.joblib')": "unpickles",
    "import pandas as pd\npd.read_pickle('f')": "read_pickle",
    "import yaml\nyaml.load(open('c'))": "safe Loader",
    "from transformers import AutoModel\nAutoModel.from_pretrained('x', trust_remote_code=True)": "trust_remote_code",
    "import torch\ntorch.jit.load('m.pt')": "TorchScript",
    "eval('1+1')": "eval",
}
SAFE_SNIPPETS = [
    "import torch\ntorch.load('m.pt', weights_only=True)",
    "import numpy as np\nnp.load('a.npy')\nnp.load('a.npy', allow_pickle=False)",
    "import yaml\nyaml.load(open('c'), Loader=yaml.SafeLoader)\nyaml.safe_load('a: 1')",
    "from safetensors.torch import load_file\nload_file('m.safetensors')",
    "import json\njson.loads('{}')",
    "model.eval()",
    "AutoModel.from_pretrained('x', trust_remote_code=False)",
]


@pytest.mark.parametrize("src,what", BAD_SNIPPETS.items())
def test_the_checker_finds_each_unsafe_pattern(src, what):
    found = unsafe_calls(src)
    assert len(found) == 1 and what in found[0], found


@pytest.mark.parametrize("src", SAFE_SNIPPETS)
def test_the_checker_passes_safe_code(src):
    assert unsafe_calls(src) == []


def test_no_unsafe_deserialisation_in_the_package_train_py_or_the_demo():
    files = sorted(p for root in SCANNED for p in ([root] if root.is_file() else root.rglob("*.py")))
    assert len(files) >= 20 and ROOT / "train.py" in files
    found = [f for p in files for f in unsafe_calls(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert not found, "\n".join(found)


# --------------------------------------------------------------------------------------- dynamic check
@pytest.fixture
def no_pickle(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a load path unpickled something")

    for mod, names in ((pickle, ("load", "loads")), (torch, ("load",))):
        for n in names:
            monkeypatch.setattr(mod, n, refuse)
    import _pickle

    monkeypatch.setattr(_pickle, "loads", refuse)
    monkeypatch.setattr(_pickle, "load", refuse)


def test_every_artefact_loads_with_unpickling_disabled(tmp_path, no_pickle):
    import train
    from fusemix.cache import LatentCache, SingleProcess, Units
    from fusemix.gallery import Gallery
    from fusemix.latents import load_latent_pairs, save_latent_pairs
    from fusemix.model import FusionModel
    from fusemix.train_state import latest_checkpoint, load_trainer_state
    from synthetic import make_pairs

    lat = save_latent_pairs(tmp_path / "p.safetensors", make_pairs(120, seed=1))
    assert load_latent_pairs(lat).x.shape == (120, 32)
    out = tmp_path / "run"
    args = ["--latents", str(lat), "--out", str(out), "--epochs", "2", "--batch_size", "40", "--heldout_fraction", "0",
            "--proj_dim", "16", "--depth", "1", "--expansion", "2", "--no-progress"]
    train.main(args + ["--max_steps", "3"])
    train.main(args + ["--resume"])  # resume: model, optimiser and trainer state without pickle
    ckpt = latest_checkpoint(out)
    model = FusionModel.from_pretrained(ckpt)
    from fusemix.optim import param_groups

    opt = torch.optim.AdamW(param_groups(model.train(), 0.1))
    assert load_trainer_state(ckpt, opt)["step"] == 6

    class Load:
        def __call__(self, i):
            return f"text {i}"

    class Enc:
        modality, pooling, model_id = "text", "toy", "toy"

        def describe(self):
            return {"kind": "toy", "model_id": "toy", "dim": 4}

        def encode(self, items):
            return torch.ones(len(items), 4)

    cache = LatentCache(tmp_path / "cache", Units(["a", "b", "c"], "fp", Load(), "captions"), Enc(), shard_size=2)

    cache.build(progress=False, state=SingleProcess())
    assert cache.load().latents.shape == (3, 4)
    g = Gallery.from_items(["x", "y"], lambda items: torch.eye(2)[: len(items)], "fp", modality="text",
                           cache_dir=tmp_path / "g")
    g2 = Gallery.from_items(["x", "y"], lambda items: pytest.fail("should come from the cache"), "fp",
                            modality="text", cache_dir=tmp_path / "g")
    assert torch.equal(g.embeddings, g2.embeddings)


# --------------------------------------------------------------------------------------- gallery symlinks
def _img(path: Path, colour) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


SECRET = (255, 0, 255)  # outside the gallery root: must never be read or embedded


def _gallery_tree(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    secret_file = _img(outside / "secret.png", SECRET)
    _img(outside / "dir" / "also_secret.png", SECRET)
    root = tmp_path / "gallery"
    _img(root / "a.png", (10, 20, 30))
    _img(root / "sub" / "b.png", (40, 50, 60))
    (root / "link_out.png").symlink_to(secret_file)  # file link leaving the root
    (root / "dir_out").symlink_to(outside / "dir", target_is_directory=True)  # folder link leaving it
    (root / "sub" / "hop.png").symlink_to(Path("..") / "link_out.png")  # inside -> inside -> outside
    (root / "link_in.png").symlink_to(root / "sub" / "b.png")  # stays inside: allowed
    (root / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (root / "abs_up.png").symlink_to(Path("/") / "etc" / "passwd")
    return root


def _recording_embed(seen: list):
    def embed(images):
        for im in images:
            seen.append(tuple(np.asarray(im).reshape(-1, 3)[0].tolist()))
        return torch.tensor([[float(c) + 1 for c in np.asarray(im).reshape(-1, 3)[0]] for im in images])

    return embed


def test_gallery_never_follows_symlinks_out_of_its_root(tmp_path):
    from fusemix.gallery import Gallery

    root = _gallery_tree(tmp_path)
    seen: list = []
    g = Gallery.from_folder(root, _recording_embed(seen), "colour-v1", cache_dir=False, progress=False)
    assert SECRET not in seen
    assert sorted(g.keys) == ["a.png", "link_in.png"]  # an inside link is fine; sub/b.png is then a duplicate
    skipped = g.report.skipped
    outside = set(skipped.get("symlink_outside_root", []))
    assert {"link_out.png", "dir_out/", "sub/hop.png", "dangling.png", "abs_up.png"} <= outside, skipped
    assert any(s.startswith("sub/b.png") for s in skipped.get("duplicate", [])), skipped
    assert all(Path(it.path).resolve().is_relative_to(root.resolve()) for it in g.items)


def test_gallery_does_not_follow_a_symlink_swapped_in_after_the_scan(tmp_path, monkeypatch):
    import fusemix.gallery as gallery_mod

    root = tmp_path / "gallery"
    _img(root / "a.png", (1, 2, 3))
    victim = _img(root / "b.png", (4, 5, 6))
    secret = _img(tmp_path / "outside" / "secret.png", SECRET)
    real_scan = gallery_mod._scan

    def scan_then_swap(*a, **k):
        found = real_scan(*a, **k)
        victim.unlink()
        victim.symlink_to(secret)  # an attacker with write access to the folder races the build
        return found

    monkeypatch.setattr(gallery_mod, "_scan", scan_then_swap)
    seen: list = []
    g = gallery_mod.Gallery.from_folder(root, _recording_embed(seen), "colour-v1", cache_dir=False, progress=False)
    assert SECRET not in seen and g.keys == ["a.png"]
    assert any(s.startswith("b.png") for s in g.report.skipped.get("unreadable", [])), g.report.skipped


# --------------------------------------------------------------------------------------- upload limits
@pytest.fixture
def hour_long(tmp_path) -> Path:
    p = tmp_path / "hour.flac"
    with sf.SoundFile(p, "w", 1000, 1, "PCM_16", format="FLAC") as f:
        for _ in range(36):
            f.write(np.zeros(100_000, np.int16))
    return p


@pytest.fixture
def no_decoding(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("decoded audio whose header already says it is too long")

    monkeypatch.setattr(sf.SoundFile, "read", refuse)
    monkeypatch.setattr(sf.SoundFile, "buffer_read", refuse)
    monkeypatch.setattr(sf, "read", refuse)
    import soxr

    monkeypatch.setattr(soxr, "resample", refuse)


def test_an_hour_long_file_is_refused_from_its_header_without_decoding(hour_long, no_decoding):
    from fusemix.audio import AudioError, load_audio, probe_audio

    assert hour_long.stat().st_size < 50_000  # 11 kB that claim an hour
    assert probe_audio(hour_long).duration == pytest.approx(3600.0)
    for src in (hour_long, hour_long.read_bytes(), {"path": str(hour_long)}, open(hour_long, "rb")):
        with pytest.raises(AudioError, match=r"3600\.0 s long, over the 600 s limit"):
            load_audio(src)
    with pytest.raises(AudioError, match="over the 30 s limit"):
        load_audio(hour_long, max_seconds=30)


def test_the_demo_and_the_gallery_refuse_it_too(hour_long, no_decoding, tmp_path):
    from fusemix.gallery import Gallery, GalleryError

    demo_app = pytest.importorskip("demo.app")
    from demo.models import DemoInputError, Limits

    with pytest.raises(DemoInputError, match="3,600.0 s long; the limit is 30 s"):
        demo_app.check_audio_upload(str(hour_long), Limits())
    root = tmp_path / "sounds"
    root.mkdir()
    (root / "hour.flac").write_bytes(hour_long.read_bytes())
    with pytest.raises(GalleryError, match="1 unreadable"):
        Gallery.from_folder(root, lambda x: torch.ones(len(x), 2), "fp", modality="audio", cache_dir=False,
                            progress=False)


def test_oversized_files_are_refused_without_being_read(tmp_path, monkeypatch):
    from fusemix.audio import AudioError, load_audio, probe_audio
    from fusemix.encoders import EncoderInputError
    from fusemix.encoders.image import open_image

    big_wav, big_png = tmp_path / "big.wav", tmp_path / "big.png"
    for p in (big_wav, big_png):
        with open(p, "wb") as f:  # sparse: 300 MB on paper, nothing on disk
            f.truncate(300 * 1024 * 1024)
    real_open = open

    def guarded_open(file, *a, **k):
        if str(file) in (str(big_wav), str(big_png)):
            raise AssertionError(f"opened {file}, which is over the size limit")
        return real_open(file, *a, **k)

    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"read {self}"))
    monkeypatch.setattr("builtins.open", guarded_open)
    import PIL.Image

    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: pytest.fail("PIL opened an oversized file"))
    with pytest.raises(AudioError, match="over the 268.4 MB limit"):
        load_audio(big_wav)
    with pytest.raises(AudioError, match="limit"):
        probe_audio(big_wav)
    with pytest.raises(EncoderInputError, match="over 64 MB"):
        open_image(big_png)


# --------------------------------------------------------------------------------------- the demo's files
@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    pytest.importorskip("demo.app")
    from demo_server import tiny_demo

    with tiny_demo(tmp_path_factory.getbasetemp()) as (demo, url, settings):  # loads no model: enough for the file route
        yield demo, url.rstrip("/"), settings


def test_demo_serves_only_what_it_ships_or_created(demo_server, tmp_path):
    import httpx

    demo, url, settings = demo_server
    kw = __import__("demo.app", fromlist=["launch_kwargs"]).launch_kwargs(settings)
    from fusemix.default_gallery import default_gallery_dir

    allowed = {Path(p).resolve() for p in kw["allowed_paths"]}
    assert allowed <= {(ROOT / "demo" / "examples").resolve(), default_gallery_dir().resolve()}, allowed
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    example = sorted((ROOT / "demo" / "examples").glob("*.wav"))[0]
    refused = [secret, Path("/etc/passwd"), ROOT / "fusemix" / "io.py", ROOT / "train.py",
               Path(str(ROOT / "demo" / "examples") + "/../app.py"), ROOT / "demo" / "models.py"]
    with httpx.Client(timeout=30) as c:
        for target in refused:
            for form in (f"/gradio_api/file={target}", f"/gradio_api/file={target.as_posix().lstrip('/')}"):
                r = c.get(url + form)
                assert r.status_code in (403, 404), (form, r.status_code, r.text[:200])
                assert "private" not in r.text and "root:" not in r.text
        r = c.get(f"{url}/gradio_api/file={example}")
        assert r.status_code == 200 and r.content == example.read_bytes()


def test_many_channels_are_decoded_in_blocks_not_frames_times_channels(monkeypatch):
    """A 92 kB FLAC of 60 s of 8 silent channels at 192 kHz decoded whole cost +440 MB peak RSS
    (measured); block-wise down-mixing bounds each read to DECODE_BLOCK_FRAMES x channels, and the
    result is the same channel mean, bit for bit."""
    import io

    from fusemix import audio

    rng = np.random.default_rng(0)
    x = (0.2 * rng.standard_normal((200_000, 6))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 48000, format="FLAC", subtype="PCM_24")
    want = sf.read(io.BytesIO(buf.getvalue()), dtype="float32")[0].mean(axis=1, dtype=np.float32)
    reads = []
    real = sf.SoundFile.read

    def spy(self, frames=-1, *a, **k):
        reads.append(frames)
        return real(self, frames, *a, **k)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    got = audio.load_audio(buf.getvalue(), 48000)
    assert np.array_equal(got, np.clip(want, -1, 1))
    assert len(reads) > 1 and max(reads) <= audio.DECODE_BLOCK_FRAMES, reads


def test_demo_refuses_a_huge_image_upload_before_decoding_it(demo_server, tmp_path, monkeypatch):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from PIL import ImageFile

    from corpus.make_corpus import png_claiming

    path = tmp_path / "huge.png"
    path.write_bytes(png_claiming(10_000, 10_000))  # header says 100 Mpx; the bytes hold one row
    orig = ImageFile.ImageFile.load

    def no_decode(self, *a, **k):  # the server runs in this process: any decode of it fails the request
        if self.size[0] * self.size[1] > 50_000_000:
            raise AssertionError(f"decoded a {self.size} upload whose header already says it is huge")
        return orig(self, *a, **k)

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    client = Client(demo_server[1], verbose=False, download_files=str(tmp_path / "downloads"))
    with pytest.raises(AppError, match="(?i)pixels|too large|limit"):
        client.predict(handle_file(str(path)), "reference", 3, api_name="/image_to_captions")


# --------------------------------------------------------------------------------------- pretrained weights
# transformers and diffusers unpickle pytorch_model.bin when a checkpoint has no safetensors file
# (laion/clap-htsat-unfused's main branch has only that). Every pretrained load in fusemix goes
# through checkpoint.from_pretrained_safetensors: safetensors only, or a clear error.
WEIGHT_LOADER_SUFFIXES = ("Tokenizer", "TokenizerFast", "Processor", "ProcessorPil", "FeatureExtractor",
                          "Scheduler", "Config")


def pretrained_loads_bypassing_safetensors(source: str, filename: str = "<src>") -> list[str]:
    """``X.from_pretrained(...)`` calls on a transformers/diffusers model or pipeline class."""
    tree = ast.parse(source, filename)
    hf_names = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").split(".")[0] in ("transformers", "diffusers") for a in node.names}
    return [f"{filename}:{node.lineno}: {node.func.value.id}.from_pretrained" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "from_pretrained" and isinstance(node.func.value, ast.Name)
            and node.func.value.id in hf_names and not node.func.value.id.endswith(WEIGHT_LOADER_SUFFIXES)]


def test_the_pretrained_checker_tells_weights_from_tokenizers():
    src = ("from transformers import AutoModel, AutoTokenizer\nfrom diffusers import StableDiffusionPipeline\n"
           "from fusemix.model import FusionModel\n"
           "AutoTokenizer.from_pretrained('x')\nFusionModel.from_pretrained('d')\n"
           "AutoModel.from_pretrained('x')\nStableDiffusionPipeline.from_pretrained('y')\n")
    found = pretrained_loads_bypassing_safetensors(src)
    assert [f.split(": ")[1] for f in found] == ["AutoModel.from_pretrained", "StableDiffusionPipeline.from_pretrained"]


def test_every_pretrained_model_load_goes_through_the_safetensors_loader():
    files = sorted(p for root in SCANNED for p in ([root] if root.is_file() else root.rglob("*.py")))
    found = [f for p in files for f in pretrained_loads_bypassing_safetensors(
        p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert not found, "\n".join(found)
    uses = sum(p.read_text(encoding="utf-8").count("from_pretrained_safetensors(") for p in files)
    assert uses >= 8  # CLAP, image, sentence, SD text, reference CLIP, SD pipeline (library, demo), TAESD


def _pickle_only(src: Path, dst: Path) -> Path:
    """A copy of a tiny checkpoint with every safetensors weight file rewritten as a pickled .bin."""
    import shutil

    from safetensors.torch import load_file

    shutil.copytree(src, dst)
    for f in list(dst.rglob("*.safetensors")):
        torch.save(load_file(str(f)), f.with_name(f.name.replace("model.safetensors", "pytorch_model.bin")
                                                  .replace(".safetensors", ".bin")))
        f.unlink()
    assert not list(dst.rglob("*.safetensors")) and list(dst.rglob("*.bin"))
    return dst


@pytest.fixture(scope="module")
def pickle_only_models(tmp_path_factory):
    from fusemix import tiny

    root = tmp_path_factory.mktemp("pickle-only")
    builders = {"clap": tiny.save_tiny_clap, "image": tiny.save_tiny_image_encoder,
                "sentence": tiny.save_tiny_sentence_encoder, "sd": tiny.save_tiny_sd_pipeline,
                "clip": tiny.save_tiny_clip}
    return {k: _pickle_only(b(root / f"{k}-safe"), root / k) for k, b in builders.items()}


def test_default_from_pretrained_would_unpickle_these(pickle_only_models):
    """The danger is real: transformers' default loads the pickled weights without complaint."""
    from transformers import ClapModel

    assert ClapModel.from_pretrained(pickle_only_models["clap"]) is not None


@pytest.mark.parametrize("what", ["clap-audio", "clap-text", "image", "sentence", "sd-text", "reference", "retrieval",
                                  "pipeline"])
def test_pickle_only_checkpoints_are_refused_without_unpickling(pickle_only_models, no_pickle, what):
    from fusemix.checkpoint import PickleOnlyCheckpointError
    from fusemix.encoders import load_encoder
    from fusemix.encoders.clap import clear_clap_cache

    clear_clap_cache()
    m = pickle_only_models
    loaders = {
        "clap-audio": lambda: load_encoder("clap-audio", m["clap"]),
        "clap-text": lambda: load_encoder("clap-text", m["clap"]),
        "image": lambda: load_encoder("image", m["image"]),
        "sentence": lambda: load_encoder("sentence", m["sentence"]),
        "sd-text": lambda: load_encoder("sd-text", m["sd"]),
        "reference": lambda: __import__("fusemix.reference", fromlist=["x"]).ReferenceScorer.from_pretrained(m["clip"]),
        "retrieval": lambda: __import__("fusemix.reference", fromlist=["x"]).clip_space(m["clip"]),
        "pipeline": lambda: __import__("fusemix.generation", fromlist=["x"]).AudioToImage.from_pretrained(
            sd_model=m["sd"], clap_model=m["clap"], caption_bank=False),
    }
    with pytest.raises(PickleOnlyCheckpointError, match="safetensors only") as e:
        loaders[what]()
    assert ".bin" in str(e.value) and "save_pretrained" in str(e.value)


def test_a_missing_model_is_not_called_pickle_only(tmp_path):
    from fusemix.checkpoint import PickleOnlyCheckpointError
    from fusemix.encoders import load_encoder

    with pytest.raises(OSError) as e:
        load_encoder("image", tmp_path / "nothing-here")
    assert not isinstance(e.value, PickleOnlyCheckpointError)
