"""Demo limits: atomic Gradio cache writes, image header refusals, the queue default."""
import threading
from pathlib import Path

import pytest


def test_install_atomic_gradio_cache_writes_whole_files_and_is_idempotent(tmp_path, monkeypatch):
    import os

    from gradio import processing_utils as pu
    from PIL import Image

    import demo.app as app

    original = pu.save_pil_to_cache
    while getattr(original, "_fusemix_atomic", False):  # an earlier build_demo() installed it already
        original = original.__wrapped__
    monkeypatch.setattr(pu, "save_pil_to_cache", original)  # Gradio's own; undone after the test
    img = Image.new("RGB", (64, 48), (10, 200, 30))
    want_path = original(img, str(tmp_path / "orig"))
    assert app.install_atomic_gradio_cache() is True
    assert app.install_atomic_gradio_cache() is False  # already installed
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


@pytest.mark.parametrize("size, msg", [((1, 2000), "(?i)aspect|shape"), ((10_000, 10_000), "(?i)pixels")])
def test_image_input_refuses_from_the_header(tmp_path, size, msg):
    import gradio as gr
    from gradio.data_classes import FileData
    from corpus.make_corpus import png_claiming

    import demo.app as app

    path = tmp_path / "x.png"
    path.write_bytes(png_claiming(*size))
    with pytest.raises(gr.Error, match=msg):
        app.ImageInput(type="filepath").preprocess(FileData(path=str(path)))
    from demo.models import DemoInputError, Limits
    with pytest.raises(DemoInputError, match=msg):
        app.check_image_upload(str(path), Limits())


def test_image_input_still_serves_normal_and_refuses_junk(tmp_path):
    import gradio as gr
    from gradio.data_classes import FileData
    from PIL import Image

    import demo.app as app

    ok = tmp_path / "ok.png"
    Image.new("RGB", (300, 200)).save(ok)
    comp = app.ImageInput(type="filepath")
    out = comp.preprocess(FileData(path=str(ok)))
    assert Path(out).is_file()
    assert comp.preprocess(None) is None
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(gr.Error, match="not an image"):
        comp.preprocess(FileData(path=str(junk)))


def test_queue_default_and_env():
    from demo.models import Limits, Settings

    assert Limits().queue_size == 256
    assert Settings.from_env({"FUSEMIX_QUEUE_SIZE": "40"}, profile="tiny").limits.queue_size == 40
