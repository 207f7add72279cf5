"""The hub photo gallery (fusemix.hub_gallery), offline: a tiny local dataset in the hub's parquet format
is stored, embedded in the background with progress, cached, and searched through the tiny app; bad
settings leave the default photos working."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from demo_server import tiny_demo

from fusemix.hub_gallery import DEFAULT_DATASET, BackgroundGallery, HubGalleryError, HubGallerySpec, materialise
from fusemix.hub_gallery import open_hub_gallery

DEFAULT = "Default photos (scikit-image)"
COLOURS = ["red", "green", "blue", "yellow", "cyan", "magenta", "white", "black", "orange", "purple"]


def _write_dataset(folder: Path, n: int, **columns) -> Path:
    """``n`` solid-colour photos in the hub's format: parquet under data/, an Image column and text columns."""
    import datasets
    from PIL import Image

    names = [COLOURS[i % len(COLOURS)] for i in range(n)]
    rows = {"jpg": [Image.new("RGB", (24 + i, 20), c) for i, c in enumerate(names)],
            "licensename": ["Attribution License" if i % 3 else "CC BY 4.0" for i in range(n)],
            "blip2_caption": [f"a plain {c} square number {i}" for i, c in enumerate(names)],
            "unickname": [f"author{i}" for i in range(n)], **columns}
    features = datasets.Features({k: datasets.Image() if k == "jpg" else datasets.Value("string") for k in rows})
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / "data" / "train-00000.parquet"))
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _write_dataset(tmp_path_factory.mktemp("hub-photos"), 20)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEMIX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


class MeanColour:
    """A real embedding of a photo: its mean colour (so the red photo is the nearest to pure red)."""

    fingerprint = "mean-colour-v1"

    def __init__(self, on_call=None):
        self.calls, self.on_call = 0, on_call

    def __call__(self, images):
        self.calls += 1
        if self.on_call:
            self.on_call()
        return torch.tensor(np.stack([np.asarray(im.convert("RGB"), np.float32).mean((0, 1)) + 1 for im in images]))


def test_builds_in_the_background_with_progress_then_reads_its_cache(photos, cache, monkeypatch):
    spec = HubGallerySpec(dataset=str(photos), size=20)
    hub = BackgroundGallery(spec)
    seen = []
    emb = MeanColour(on_call=lambda: seen.append((hub.status(), hub.request(emb), hub.gallery_for(emb, object).note)))
    assert "waiting to start" in hub.status()
    assert hub.request(emb) is None  # queued; the thread starts
    assert hub.wait(60)
    # Gallery.from_folder embeds 16 photos per call: progress is visible between the two calls
    assert [s for s, _, _ in seen] == [f"Photos: {photos.name} is embedding {n}/20 images; searches use the "
                                       "default photos until it is ready." for n in (0, 16)]
    assert all(got is None for _, got, _ in seen)  # not ready while embedding: searches get the stand-in
    assert f"standing in while Photos: {photos.name} is embedding 16/20 images" in seen[1][2]
    gallery = hub.request(emb)
    assert hub.status() == f"Photos: {photos.name}: 20 photos, ready." and len(gallery) == 20
    best = gallery.search(torch.tensor([255.0, 1.0, 1.0]), 1)[0].item
    assert best.meta["caption"].startswith("a plain red square")
    assert best.meta["title"] == "a plain red square number 0 (by author0, CC BY 4.0)"  # attribution with each photo
    assert Path(best.path).is_file()
    assert "| Attribution License | 13 |" in hub.describe() and "| CC BY 4.0 | 7 |" in hub.describe()

    # a second build (a restarted app) reads the stored photos and the cached embeddings: no dataset read
    import datasets

    def no_reading(*a, **k):
        raise AssertionError("the dataset was read again")

    monkeypatch.setattr(datasets, "load_dataset", no_reading)
    again, emb2 = BackgroundGallery(spec), MeanColour()
    again.start(lambda: emb2)
    assert again.wait(60) and again.error is None
    cached = again.request(emb2)
    assert emb2.calls == 0 and cached.report.reused == 20 and cached.report.embedded == 0
    assert cached.keys == gallery.keys
    before = spec.folder()
    (photos / "data" / "extra.txt").write_text("an edited local dataset is stored again")
    try:
        assert spec.folder() != before
    finally:
        (photos / "data" / "extra.txt").unlink()


def test_materialise_reports_download_progress_and_skips_unreadable_rows(tmp_path):
    folder = _write_dataset(tmp_path / "ds", 4)
    broken = tmp_path / "broken"
    import datasets

    ds = datasets.load_dataset(str(folder), split="train")
    rows = ds.cast_column("jpg", datasets.Image(decode=False)).to_dict()
    rows["jpg"][1] = {"bytes": b"\xff\xd8\xff not a jpeg", "path": None}
    datasets.Dataset.from_dict(rows, features=ds.features.copy()).save_to_disk(str(broken))  # save_to_disk works too
    steps = []
    stored = materialise(HubGallerySpec(dataset=str(broken), size=10, max_side=25),
                         progress=lambda n, m: steps.append((n, m)))
    assert steps == [(1, 10), (2, 10), (3, 10)] and stored.skipped == 1 and len(stored.meta) == 3
    from PIL import Image

    sizes = [Image.open(stored.root / f).size for f in stored.meta]
    assert sizes[0] == (24, 20) and [w for w, _ in sizes[1:]] == [25, 25]  # rows 2, 3 (26, 27 px) shrunk to 25


def test_a_row_naming_a_file_outside_the_dataset_is_not_read(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(tmp_path / "private.png")
    inside = tmp_path / "ds" / "inside.png"
    inside.parent.mkdir()
    Image.new("RGB", (8, 8), "blue").save(inside)  # a file of the dataset itself is read
    folder = _write_dataset(tmp_path / "ds", 2, jpg=[{"path": str(tmp_path / "private.png"), "bytes": None},
                                                     {"path": str(inside), "bytes": None}])
    stored = materialise(HubGallerySpec(dataset=str(folder)))
    assert stored.skipped == 1 and [m["source"] for m in stored.meta.values()] == [f"{folder} row 1"]


@pytest.mark.parametrize("change, message", [
    ({"image_column": "photo"}, "has no column 'photo' (its columns: jpg, licensename, blip2_caption, unickname"),
    ({"licence_column": "rights"}, "has no column 'rights'"),
    ({"image_column": "blip2_caption"}, "column 'blip2_caption' of"),
    ({"split": "validation"}, "could not be loaded as a dataset (split 'validation')"),
])
def test_bad_columns_are_clear_errors(photos, change, message):
    hub = BackgroundGallery(HubGallerySpec(dataset=str(photos), **change))
    assert hub.request(MeanColour()) is None and hub.wait(60)
    assert message in hub.error and hub.status().endswith("Searches use the default photos.")
    assert hub.request(MeanColour()) is None and "unavailable" in hub.gallery_for(MeanColour(), object).note


def test_not_a_dataset(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no photos here")
    hub = BackgroundGallery(HubGallerySpec(dataset=str(tmp_path / "notes")))
    hub.start()
    assert hub.wait(60) and "declares no columns" in hub.error
    with pytest.raises(HubGalleryError, match="neither a local dataset folder nor a hub dataset id"):
        materialise(HubGallerySpec(dataset=str(tmp_path / "missing folder")))
    with pytest.raises(HubGalleryError, match="not stored here and HF_HUB_OFFLINE is set"):  # conftest: offline
        materialise(HubGallerySpec(dataset="someone/some-photos"))


def test_spec_validation():
    with pytest.raises(HubGalleryError, match="without a licence column"):
        HubGallerySpec(licence_column="none")
    assert HubGallerySpec(licence_column="none", licence="CC0 1.0").licence_column is None
    with pytest.raises(HubGalleryError, match="size must be a whole number"):
        HubGallerySpec(size=0)
    default = HubGallerySpec()
    assert (default.dataset, default.image_column, default.licence_column) == (DEFAULT_DATASET, "jpg", "licensename")


def test_offered_only_where_it_can_load(photos, monkeypatch):
    from demo.models import Settings

    tiny_default = Settings.from_env(env={}, profile="tiny")
    assert open_hub_gallery(tiny_default, network=False) == (None, None)  # the tiny profile: no network, ever
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    hub, _ = open_hub_gallery(tiny_default, network=True)  # the real profile online: offered, nothing fetched yet
    assert hub.spec.dataset == DEFAULT_DATASET and hub.name.startswith("Openly licensed photos")
    assert "CC BY 4.0" in hub.describe() and "common-canvas/commoncatalog-cc-by" in hub.describe()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert open_hub_gallery(tiny_default, network=True) == (None, None)
    env = {"FUSEMIX_HUB_GALLERY": str(photos), "FUSEMIX_HUB_GALLERY_SIZE": "5",
           "FUSEMIX_HUB_GALLERY_CREDIT_COLUMN": "none", "FUSEMIX_HUB_GALLERY_CAPTION_COLUMN": "blip2_caption"}
    local, _ = open_hub_gallery(Settings.from_env(env=env), network=False)  # a local dataset: offered offline
    assert (local.spec.size, local.spec.credit_column, local.spec.caption_column) == (5, None, "blip2_caption")
    with pytest.raises(ValueError, match="FUSEMIX_HUB_GALLERY_SIZE must be a number"):
        Settings.from_env(env={"FUSEMIX_HUB_GALLERY_SIZE": "many"})
    bad = Settings.from_env(env={"FUSEMIX_HUB_GALLERY": str(photos), "FUSEMIX_HUB_GALLERY_SIZE": "0"})
    assert open_hub_gallery(bad)[0] is None and "size must be a whole number" in open_hub_gallery(bad)[1]
    assert open_hub_gallery(Settings.from_env(env={"FUSEMIX_HUB_GALLERY": "none"})) == (None, None)


# --------------------------------------------------------------------------- through the tiny app


def _labels(items):
    return [it["caption"].split(". ", 1)[1].rsplit(" ·", 1)[0] for it in items]


def test_searchable_through_the_tiny_app(photos, tmp_path, monkeypatch):
    from gradio_client import Client

    import fusemix.hub_gallery as hub_gallery
    from demo.app import _about

    gate, store = threading.Event(), hub_gallery.materialise  # the download waits for the gate: a slow network
    monkeypatch.setattr(hub_gallery, "materialise", lambda *a, **k: gate.wait(60) and store(*a, **k))
    with tiny_demo(tmp_path, hub_gallery=str(photos), hub_gallery_size=25, live_bridge=False) as (demo, url, _):
        models = demo.fusemix.models
        name = f"Photos: {photos.name}"
        assert models.gallery_names() == [name, DEFAULT]  # offered first: the dropdown's default
        shown = [c["props"] for c in demo.config["components"] if c["type"] in ("markdown", "dropdown")]
        assert any(f"{name} is waiting to start" in str(p.get("value")) for p in shown)  # the progress line
        assert any(p.get("label") == "Gallery" and p.get("value") == name for p in shown)
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        # the first search starts the build and is answered from the shipped photos, saying so
        items, info = client.predict("a plain red square", name, "fusemix", 3, api_name="/caption_to_images")
        assert f"the default photos, standing in while {name} is downloading 0/25 images" in info
        assert len(items) == 3 and not any("plain" in lab for lab in _labels(items))
        gate.set()
        assert models.hub.wait(120) and models.hub.error is None
        for scorer in ("fusemix", "reference"):  # another embedding model: queued, then embedded the same way
            items, info = client.predict("a plain red square", name, scorer, 4, api_name="/caption_to_images")
            if "standing in" in info:
                assert models.hub.wait(120)
                items, info = client.predict("a plain red square", name, scorer, 4, api_name="/caption_to_images")
            assert f"**Gallery:** {name} (20 images)" in info
            assert len(items) == 4 and all(lab.startswith("a plain ") and "(by author" in lab for lab in _labels(items))
            assert all(Path(it["image"]).is_file() for it in items)
        items, _ = client.predict("a plain red square", DEFAULT, "reference", 2, api_name="/caption_to_images")
        assert len(items) == 2 and not any("plain" in lab for lab in _labels(items))
        about = _about(models)
        assert f"## {name}" in about and "| Attribution License | 13 |" in about


def test_bad_settings_leave_the_default_photos_working(photos, tmp_path):
    from gradio_client import Client

    from demo.app import _about

    with tiny_demo(tmp_path, hub_gallery=str(photos), hub_gallery_image_column="photo", live_bridge=False) as (
            demo, url, _):
        models = demo.fusemix.models
        models.start_hub_gallery()  # as demo/app.py's main does
        assert models.hub.wait(60) and "has no column 'photo'" in models.hub.error
        assert "is unavailable" in models.hub.status()
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        items, info = client.predict("a cat", models.hub.name, "reference", 2, api_name="/caption_to_images")
        assert len(items) == 2 and "standing in" in info and "unavailable" in info
        items, info = client.predict("a cat", DEFAULT, "reference", 2, api_name="/caption_to_images")
        assert len(items) == 2 and f"**Gallery:** {DEFAULT} (" in info
        assert f"## {models.hub.name}" in _about(models)
    with tiny_demo(tmp_path / "b", hub_gallery=str(photos), hub_gallery_size=0, live_bridge=False) as (demo, _, _):
        assert demo.fusemix.models.gallery_names() == [DEFAULT]
        assert "the hub gallery settings are not usable: size must be" in _about(demo.fusemix.models)


def test_start_is_a_single_thread(photos):
    hub = BackgroundGallery(HubGallerySpec(dataset=str(photos), size=3))
    before = threading.active_count()
    for _ in range(5):
        hub.start()
    assert threading.active_count() <= before + 1
    assert hub.wait(60) and hub.error is None and "stored, not yet embedded" in hub.status()
