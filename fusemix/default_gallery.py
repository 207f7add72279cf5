"""The default image gallery: real photographs that ship inside scikit-image, so the demo works offline.

scikit-image's ``skimage/data`` folder holds ~40 sample files.  Only the real photographs are used
here (synthetic test patterns, clip-art, logos, computed images and near-duplicates are left out; see
``EXCLUDED``).  Each photograph carries the licence and source that scikit-image's own documentation
(the docstrings of the ``skimage.data`` loaders, version 0.26) states for it; where that documentation
states none, ``licence`` says so instead of guessing.

Each photograph has two short human-written captions (written for this project by looking at the
images), which make the gallery a tiny labelled set: caption -> image retrieval can be scored on it
(``default_captions()``).  Any user folder can replace this gallery (``Gallery.from_folder``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DefaultImage", "DEFAULT_IMAGES", "EXCLUDED", "default_gallery_dir", "available_images",
           "default_captions", "build_default_gallery", "licence_table"]

NOT_STATED = "not stated in scikit-image's documentation (shipped in the BSD-3-Clause scikit-image package)"


@dataclass(frozen=True)
class DefaultImage:
    file: str  # name inside skimage/data
    title: str
    captions: tuple[str, ...]
    licence: str  # as scikit-image documents it
    source: str  # credit / origin as scikit-image documents it

    def meta(self) -> dict:
        return {"title": self.title, "caption": self.captions[0], "captions": list(self.captions),
                "licence": self.licence, "source": self.source}


DEFAULT_IMAGES: tuple[DefaultImage, ...] = (
    DefaultImage("astronaut.png", "Astronaut Eileen Collins",
                 ("a smiling astronaut in an orange spacesuit holding a helmet",
                  "portrait of a woman astronaut beside an American flag and a space shuttle model"),
                 "public domain (no known copyright restrictions)",
                 "NASA Great Images database, https://flic.kr/p/r9qvLn"),
    DefaultImage("brick.png", "Brick wall",
                 ("a grey brick wall seen at an angle",
                  "rows of rectangular bricks in a black and white texture photo"),
                 "CC0 1.0", "CC0Textures (Bricks25), perspective-corrected and converted to grayscale"),
    DefaultImage("camera.png", "Cameraman",
                 ("a man in a dark coat looking through a camera on a tripod",
                  "black and white photo of a photographer on a lawn with buildings behind"),
                 "CC0 1.0 (no copyright restrictions)", "photograph by Lav Varshney"),
    DefaultImage("chelsea.png", "Chelsea the cat",
                 ("close-up of a tabby cat with green eyes",
                  "the face of a brown striped cat with long whiskers"),
                 "CC0 1.0 (no copyright restrictions)", "photograph by Stefan van der Walt"),
    DefaultImage("clock_motion.png", "Motion-blurred clock",
                 ("a round wall clock blurred by camera motion",
                  "a blurry grey photo of a clock on a plain wall"),
                 "public domain (released by the photographer)", "photograph by Stefan van der Walt"),
    DefaultImage("coffee.png", "Coffee cup",
                 ("a cup of espresso on a red saucer with a spoon",
                  "a small coffee cup on a wooden table seen from above"),
                 "CC0 1.0 (no copyright restrictions)",
                 "photograph by Rachel Michetti, courtesy of Pikolo Espresso Bar"),
    DefaultImage("coins.png", "Greek coins from Pompeii",
                 ("rows of ancient silver coins on a dark background",
                  "a black and white photo of old Greek coins with faces on them"),
                 "no known copyright restrictions",
                 "Brooklyn Museum Collection, https://www.brooklynmuseum.org/opencollection/archives/image/51611"),
    DefaultImage("grass.png", "Grass",
                 ("a close-up of grass blades and small leaves",
                  "a black and white texture of a lawn seen from above"),
                 "CC0 1.0", "DeviantArt (linolafett, Grass 01), cropped and converted to grayscale"),
    DefaultImage("gravel.png", "Gravel",
                 ("a pile of small sharp grey stones",
                  "a black and white texture of crushed gravel"),
                 "CC0 1.0", "CC0Textures (Gravel04), rescaled, cropped and converted to grayscale"),
    DefaultImage("hubble_deep_field.jpg", "Hubble eXtreme Deep Field",
                 ("thousands of colourful galaxies on a black sky",
                  "a deep space photo full of distant stars and spiral galaxies"),
                 "public domain (NASA media guidelines)",
                 "NASA / HubbleSite, http://hubblesite.org/newscenter/archive/releases/2012/37/image/a/"),
    DefaultImage("ihc.png", "Immunohistochemistry",
                 ("a microscope image of tissue stained brown and blue",
                  "colonic glands under a microscope with brown stained cells"),
                 "no known copyright restrictions",
                 "Center for Microscopy And Molecular Imaging (CMMI)"),
    DefaultImage("moon.png", "Surface of the moon",
                 ("the grey surface of the moon with small craters",
                  "a low-contrast black and white photo of lunar terrain"),
                 NOT_STATED, "scikit-image sample data"),
    DefaultImage("motorcycle_left.png", "Motorcycle",
                 ("a red motorcycle parked in a garage",
                  "a red Yamaha motorbike in front of shelves with boxes"),
                 NOT_STATED, "Middlebury 2014 stereo benchmark (Scharstein et al.), left view, downsampled"),
    DefaultImage("page.png", "Scanned page",
                 ("a photo of a printed page about region-based segmentation",
                  "black text on a grey book page with uneven lighting"),
                 NOT_STATED, "scikit-image sample data"),
    DefaultImage("retina.jpg", "Human retina",
                 ("a fundus photograph of a human retina with red blood vessels",
                  "an orange round image of the back of an eye"),
                 "CC0 1.0 (public domain dedication)",
                 "Wikimedia Commons, Fundus_photograph_of_normal_left_eye.jpg (Mikael Häggström)"),
    DefaultImage("rocket.jpg", "Falcon 9 launch",
                 ("a white rocket on a launch pad at dusk between towers",
                  "a SpaceX rocket standing upright with lights glowing at its base"),
                 "public domain (released by SpaceX)",
                 "SpaceX Photos, https://www.flickr.com/photos/spacexphotos/16511594820/"),
    DefaultImage("text.png", "Handwritten equations",
                 ("handwritten maths formulas on lined paper",
                  "a black and white close-up of equations written with a pen"),
                 "public domain (no known copyright restrictions)",
                 "Wikipedia, https://en.wikipedia.org/wiki/File:Corner.png"),
)

# Files of skimage/data that are not in the gallery, and why.
EXCLUDED: dict[str, str] = {
    "cell.png": "quantitative phase image computed from a hologram, not a photograph",
    "chessboard_GRAY.png": "synthetic test pattern",
    "chessboard_RGB.png": "synthetic test pattern",
    "color.png": "synthetic colour wheel",
    "horse.png": "clip-art silhouette",
    "logo.png": "the scikit-image logo",
    "phantom.png": "synthetic Shepp-Logan phantom",
    "microaneurysms.png": "102x102 detail crop of a retina photograph (retina.jpg is in the gallery)",
    "motorcycle_right.png": "near-duplicate: right view of the same stereo pair as motorcycle_left.png",
    "multipage.tif": "synthetic multi-page test file",
    "multipage_rgb.tif": "synthetic multi-page test file",
    "no_time_for_that_tiny.gif": "14x25 pixel animation",
}


def default_gallery_dir() -> Path:
    """The installed ``skimage/data`` folder (scikit-image is a runtime dependency)."""
    import skimage

    return Path(os.path.dirname(skimage.__file__)) / "data"


def available_images(root: str | os.PathLike | None = None) -> list[DefaultImage]:
    """The default photographs that exist in this installation (versions may drop or rename files)."""
    root = Path(root) if root is not None else default_gallery_dir()
    return [img for img in DEFAULT_IMAGES if (root / img.file).is_file()]


def default_captions(root: str | os.PathLike | None = None) -> tuple[list[str], list[str]]:
    """The labelled set: (captions, image file each caption describes), two captions per photograph."""
    captions, files = [], []
    for img in available_images(root):
        for c in img.captions:
            captions.append(c)
            files.append(img.file)
    return captions, files


def build_default_gallery(embed_fn: Callable, fingerprint: str | None = None, *, cache_dir=None, root=None, **kwargs):
    """``Gallery.from_folder`` over the default photographs, with title, captions and licence as meta.

    ``embed_fn``: e.g. ``space.embedder("image")`` (its ``.fingerprint`` is used when none is given).
    """
    from .gallery import Gallery

    root = Path(root) if root is not None else default_gallery_dir()
    images = available_images(root)
    return Gallery.from_folder(root, embed_fn, fingerprint, modality="image", cache_dir=cache_dir,
                               files=[img.file for img in images], meta={img.file: img.meta() for img in images},
                               **kwargs)


def licence_table() -> str:
    """Markdown table of every default photograph with its licence and source (for the demo / README)."""
    rows = ["| file | title | licence | source |", "|---|---|---|---|"]
    rows += [f"| {i.file} | {i.title} | {i.licence} | {i.source} |" for i in DEFAULT_IMAGES]
    return "\n".join(rows)
