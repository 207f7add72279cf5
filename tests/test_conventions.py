"""The shared conventions: cache root, persistent storage, encoder specs, file types."""
import pytest

from fusemix.conventions import (SpecError, cache_root, kind_of, model_id_of, modality_of_path, parse_spec,
                                 use_persistent_storage)


def test_cache_root_honours_fusemix_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "fm"))
    assert cache_root("latents") == tmp_path / "fm" / "latents"
    monkeypatch.delenv("FUSEMIX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root("galleries") == tmp_path / "xdg" / "fusemix" / "galleries"


def test_persistent_storage_routes_both_caches_when_the_volume_exists(tmp_path):
    data = tmp_path / "data"
    env = {}
    assert not use_persistent_storage(str(data), env) and env == {}  # no volume: nothing changes
    data.mkdir()
    assert use_persistent_storage(str(data), env)
    assert env == {"HF_HOME": str(data / "huggingface"), "FUSEMIX_CACHE": str(data / "fusemix")}
    chosen = {"HF_HOME": "/mine", "FUSEMIX_CACHE": "/also-mine"}
    use_persistent_storage(str(data), chosen)
    assert chosen == {"HF_HOME": "/mine", "FUSEMIX_CACHE": "/also-mine"}  # the user's choice wins


def test_the_demo_puts_its_caches_on_persistent_storage_before_any_hub_import(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "FUSEMIX_CACHE")}
    env["FUSEMIX_PERSISTENT_STORAGE"] = str(tmp_path)
    code = ("import demo.app, huggingface_hub.constants as c; from fusemix.conventions import cache_root; "
            "print(c.HF_HOME); print(cache_root())")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(tmp_path / "huggingface"), str(tmp_path / "fusemix")]


def test_specs_and_file_types():
    assert parse_spec("clap-audio:laion/clap-htsat-unfused") == ("clap-audio", "laion/clap-htsat-unfused")
    assert parse_spec("BAAI/bge-small-en-v1.5", "text") == ("sentence", "BAAI/bge-small-en-v1.5")
    assert parse_spec("C:/models/x", "image") == ("image", "C:/models/x")  # a drive letter is no kind
    with pytest.raises(SpecError, match="KIND:MODEL_ID"):
        parse_spec("laion/clap")
    with pytest.raises(SpecError, match="names no model"):
        parse_spec("sd-text:")
    assert kind_of("sd-text:x") == "sd-text" and kind_of("x") is None and model_id_of("clap-text:m") == "m"
    assert modality_of_path("a/B.FLAC") == "audio" and modality_of_path("x.webp") == "image"
    assert modality_of_path("notes.txt") is None
