"""Demo limits: atomic Gradio cache writes, the Gradio version guard, image refusals from the header
(through the served app and the handler's own check), the queue default."""
import threading
from pathlib import Path

import pytest


def test_install_atomic_gradio_cache_writes_whole_files_and_is_idempotent(tmp_path, monkeypatch):
    import os

    from gradio import processing_utils as pu
    from PIL import Image

    from demo import gradio_patches

    original = pu.save_pil_to_cache
    while getattr(original, "_fusemix_atomic", False):  # an earlier build_demo() installed it already
        original = original.__wrapped__
    monkeypatch.setattr(pu, "save_pil_to_cache", original)  # Gradio's own; undone after the test
    img = Image.new("RGB", (64, 48), (10, 200, 30))
    want_path = original(img, str(tmp_path / "orig"))
    assert gradio_patches.install_atomic_gradio_cache() is True
    assert gradio_patches.install_atomic_gradio_cache() is False  # already installed
    assert pu.save_pil_to_cache is not original
    got = pu.save_pil_to_cache(img, str(tmp_path / "new"))
    assert Path(got).relative_to(tmp_path / "new") == Path(want_path).relative_to(tmp_path / "orig")
    assert Path(got).read_bytes() == Path(want_path).read_bytes()
    # image_utils / gallery call it through the module: they get the atomic version
    from gradio import image_utils
    p = image_utils.save_image(img, str(tmp_path / "new"), format="webp")
    assert p == got

    # never an in-place rewrite: a reader holding the file keeps whole content; writes go through os.replace
    replaced, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(b), real_replace(a, b))[1])
    img2 = Image.new("RGB", (64, 48), (1, 2, 3))
    errors, paths = [], []

    def worker():
        try:
            paths.append(pu.save_pil_to_cache(img2, str(tmp_path / "race")))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=worker) for _ in range(16)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors and len(set(paths)) == 1
    assert 1 <= len(replaced) <= 16
    assert Path(paths[0]).read_bytes() == pu.encode_pil_to_bytes(img2, "webp")
    assert [q.name for q in Path(paths[0]).parent.iterdir()] == [Path(paths[0]).name]  # no temporaries left
    n = len(replaced)
    pu.save_pil_to_cache(img2, str(tmp_path / "race"))
    assert len(replaced) == n  # an existing (complete) file is not rewritten


def test_gradio_patches_are_skipped_on_other_gradio_versions(monkeypatch, caplog):
    import gradio as gr
    from gradio import processing_utils as pu

    from demo import gradio_patches

    original = pu.save_pil_to_cache
    while getattr(original, "_fusemix_atomic", False):
        original = original.__wrapped__
    monkeypatch.setattr(pu, "save_pil_to_cache", original)
    monkeypatch.setattr(gr, "__version__", "99.0.0")
    with caplog.at_level("WARNING", logger="fusemix.demo"):
        assert gradio_patches.install_atomic_gradio_cache() is False
        comp = gr.Image(type="filepath")
        before = comp.preprocess
        assert gradio_patches.read_uploads_with(comp, lambda p: pytest.fail("patched"), str) is comp
    assert pu.save_pil_to_cache is original and comp.preprocess == before
    assert caplog.text.count("is not applied") == 2 and "99.0.0" in caplog.text


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from demo_server import tiny_demo
    from gradio_client import Client

    with tiny_demo(tmp_path_factory.getbasetemp()) as (_, url, _):
        yield Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.mark.parametrize("size, msg", [((1, 2000), "(?i)aspect"), ((10_000, 10_000), "(?i)pixels")])
def test_image_uploads_are_refused_from_the_header(client, tmp_path, size, msg):
    from corpus.make_corpus import png_claiming
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from demo.app import check_image_upload
    from demo.models import DemoInputError, Limits

    path = tmp_path / "x.png"
    path.write_bytes(png_claiming(*size))
    with pytest.raises(AppError, match=msg + ".*Resize or crop"):  # the served app, before Gradio decodes it
        client.predict(handle_file(str(path)), "reference", 3, api_name="/image_to_captions")
    with pytest.raises(DemoInputError, match=msg):  # the handler's own check, for callers that bypass Gradio
        check_image_upload(str(path), Limits())


def test_image_uploads_over_the_size_limit_or_empty_are_refused(tmp_path):
    from demo.app import check_image_upload
    from demo.models import DemoInputError, Limits

    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DemoInputError, match="empty"):
        check_image_upload(str(tmp_path / "empty.png"), Limits())
    with open(tmp_path / "big.png", "wb") as f:  # sparse: 2 MB on paper
        f.truncate(2 * 1024 * 1024)
    with pytest.raises(DemoInputError, match="2.0 MB; the limit is 1 MB"):
        check_image_upload({"path": str(tmp_path / "big.png")}, Limits(max_upload_mb=1))
    with pytest.raises(DemoInputError, match="Upload an image first"):
        check_image_upload(None, Limits())


def test_queue_default_and_env():
    from demo.models import Limits, Settings

    assert Limits().queue_size == 256
    assert Settings.from_env({"FUSEMIX_QUEUE_SIZE": "40"}, profile="tiny").limits.queue_size == 40
