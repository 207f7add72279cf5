"""A paraphrase corpus written by this project: scenes, each described twice in two independent styles.

A scene is a combination of slots (subject, a trait of it, what it does, where, when). Style A is a
plain caption ("A black dog running on a beach at dawn."); style B is a narrative sentence with
its own vocabulary (synonyms chosen per scene), its own word order and its own templates ("As the
sun comes up, on the sandy shore, a dark-furred hound is sprinting."). The two sides therefore
share meaning, not wording. Everything is a pure function of the seed: the same call gives the same
sentences on every machine, and ``corpus_hash`` names the exact text for cache keys.

The last ``TEST_ITEMS`` scenes of the corpus form the fixed test set; nothing else may choose on them.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass

TEST_ITEMS = 1000
DEFAULT_ITEMS = 6000

# Each slot value: (style-A wording, [style-B wordings]). Subjects carry their kind (which actions fit).
SUBJECTS = [
    # animals
    ("dog", ["hound", "pup", "canine"], "animal"), ("cat", ["kitten", "feline", "house cat"], "animal"),
    ("horse", ["mare", "stallion", "pony"], "animal"), ("fox", ["vixen", "young fox"], "animal"),
    ("rabbit", ["bunny", "hare"], "animal"), ("goat", ["billy goat", "young goat"], "animal"),
    ("deer", ["fawn", "stag", "doe"], "animal"), ("bear", ["grizzly", "bear cub"], "animal"),
    ("duck", ["mallard", "duckling"], "animal"), ("cow", ["heifer", "calf"], "animal"),
    ("wolf", ["lone wolf", "grey wolf"], "animal"), ("sheep", ["lamb", "ewe"], "animal"),
    ("pig", ["piglet", "hog"], "animal"), ("squirrel", ["chipmunk", "tree squirrel"], "animal"),
    ("elephant", ["young elephant", "tusker"], "animal"), ("monkey", ["chimp", "macaque"], "animal"),
    # people
    ("man", ["gentleman", "guy", "fellow"], "person"), ("woman", ["lady", "young woman"], "person"),
    ("boy", ["young lad", "little boy", "kid"], "person"), ("girl", ["young girl", "little girl", "lass"], "person"),
    ("old man", ["elderly gentleman", "grandfather", "aged man"], "person"),
    ("old woman", ["elderly lady", "grandmother", "aged woman"], "person"),
    ("soldier", ["trooper", "man in uniform"], "person"), ("chef", ["cook", "kitchen worker"], "person"),
    ("fisherman", ["angler", "man who fishes"], "person"), ("teenager", ["adolescent", "youngster"], "person"),
    ("nurse", ["hospital worker", "carer"], "person"), ("farmer", ["rancher", "grower"], "person"),
    ("police officer", ["cop", "policeman"], "person"), ("dancer", ["ballerina", "performer"], "person"),
    # vehicles
    ("car", ["automobile", "sedan"], "vehicle"), ("truck", ["lorry", "pickup"], "vehicle"),
    ("bus", ["coach", "city bus"], "vehicle"), ("bicycle", ["bike", "cycle"], "vehicle"),
    ("motorcycle", ["motorbike", "scooter"], "vehicle"), ("train", ["locomotive", "railway engine"], "vehicle"),
    ("boat", ["small vessel", "rowing boat"], "vehicle"), ("tractor", ["farm vehicle", "plough tractor"], "vehicle"),
]

TRAITS = {
    "animal": [("black", ["dark-furred", "jet black"]), ("white", ["snowy white", "pale"]),
               ("brown", ["chocolate-coloured", "tan"]), ("small", ["tiny", "little"]),
               ("large", ["huge", "enormous", "big"]), ("spotted", ["dappled", "speckled"]),
               ("young", ["baby", "juvenile"]), ("old", ["aged", "elderly"]), ("wet", ["soaked", "dripping"]),
               ("muddy", ["mud-covered", "dirty"]), ("fluffy", ["furry", "shaggy"]), ("thin", ["skinny", "lean"])],
    "person": [("tall", ["lanky", "very tall"]), ("short", ["small", "petite"]),
               ("smiling", ["grinning", "cheerful"]), ("tired", ["exhausted", "weary"]),
               ("bearded", ["whiskered", "with a beard"]), ("barefoot", ["shoeless", "with bare feet"]),
               ("red-haired", ["ginger", "auburn-haired"]), ("blonde", ["fair-haired", "golden-haired"]),
               ("angry", ["furious", "cross-looking"]), ("young", ["youthful", "juvenile"]),
               ("masked", ["wearing a mask", "face-covered"]), ("soaked", ["drenched", "rain-soaked"])],
    "vehicle": [("red", ["crimson", "scarlet"]), ("blue", ["navy", "azure"]), ("old", ["vintage", "rusty"]),
                ("new", ["brand-new", "shiny"]), ("yellow", ["golden", "mustard-coloured"]),
                ("green", ["emerald", "olive"]), ("white", ["pale", "snow-white"]), ("black", ["dark", "jet black"]),
                ("broken", ["damaged", "wrecked"]), ("small", ["compact", "tiny"]), ("large", ["huge", "big"]),
                ("dusty", ["dirt-covered", "grimy"])],
}

ACTIONS = {
    "animal": [("running", ["sprinting", "dashing"]), ("sleeping", ["dozing", "napping"]),
               ("eating", ["feeding", "munching"]), ("drinking water", ["lapping water", "taking a drink"]),
               ("jumping", ["leaping", "hopping"]), ("lying down", ["resting on the ground", "stretched out"]),
               ("swimming", ["paddling", "wading through water"]), ("playing", ["frolicking", "romping"]),
               ("walking", ["strolling", "wandering"]), ("standing still", ["standing motionless", "frozen in place"]),
               ("hiding", ["concealing itself", "tucked out of sight"]), ("fighting", ["brawling", "scuffling"])],
    "person": [("running", ["jogging", "sprinting"]), ("reading a book", ["looking through a novel", "studying a paperback"]),
               ("riding a bicycle", ["cycling", "pedalling a bike"]), ("taking a photo", ["snapping a picture", "photographing"]),
               ("eating lunch", ["having a midday meal", "munching a sandwich"]),
               ("talking on a phone", ["chatting on a mobile", "making a call"]),
               ("playing guitar", ["strumming a guitar", "picking at guitar strings"]),
               ("sleeping", ["napping", "dozing off"]), ("dancing", ["twirling", "moving to music"]),
               ("painting", ["working on a canvas", "brushing paint"]), ("crying", ["weeping", "in tears"]),
               ("carrying a box", ["hauling a carton", "holding a crate"])],
    "vehicle": [("parked", ["standing idle", "stopped and empty"]), ("driving fast", ["speeding", "racing along"]),
                ("turning left", ["making a left turn", "swinging to the left"]),
                ("stuck", ["unable to move", "bogged down"]), ("being washed", ["getting cleaned", "being scrubbed"]),
                ("broken down", ["out of order", "with engine trouble"]), ("waiting", ["idling", "standing by"]),
                ("crossing a bridge", ["going over a bridge", "passing over a viaduct"]),
                ("loaded with crates", ["carrying boxes", "piled with cargo"]),
                ("covered in snow", ["buried under snow", "snow-covered"]),
                ("moving slowly", ["crawling along", "creeping forward"]), ("reversing", ["backing up", "going backwards"])],
}

PLACES = [
    ("on a beach", ["on the sandy shore", "by the sea"]), ("in a forest", ["among the trees", "in the woods"]),
    ("in a city street", ["on an urban road", "downtown"]), ("in a kitchen", ["beside the stove", "in the cookhouse"]),
    ("on a mountain", ["high on a peak", "on a rocky summit"]), ("in a field", ["in a meadow", "on open grassland"]),
    ("near a river", ["by the riverbank", "beside a stream"]), ("in a desert", ["among the sand dunes", "in the arid wasteland"]),
    ("in a garden", ["among flower beds", "in the backyard"]), ("in a parking lot", ["in a car park", "on a parking area"]),
    ("at a train station", ["on a railway platform", "at the depot"]), ("in a snowy village", ["in a hamlet under snow", "in a wintry town"]),
    ("on a farm", ["at the ranch", "in a farmyard"]), ("in a park", ["on the park lawn", "in a public garden"]),
    ("in a market", ["at the bazaar", "among market stalls"]), ("on a bridge", ["on an overpass", "across a viaduct"]),
    ("in a tunnel", ["inside an underpass", "in a dark passage"]), ("near a lake", ["by the lakeside", "at the edge of a pond"]),
    ("in a swamp", ["in the marshland", "in a bog"]), ("on a rooftop", ["on top of a building", "up on the roof"]),
    ("in a stadium", ["in an arena", "on a sports ground"]), ("in a school yard", ["in a playground", "outside a schoolhouse"]),
    ("in a cave", ["inside a cavern", "in a grotto"]), ("on an island", ["on an isle", "on a small atoll"]),
]

TIMES = [
    ("at dawn", ["as the sun comes up", "at sunrise", "at first light"]),
    ("at night", ["after dark", "in the middle of the night", "under the stars"]),
    ("at noon", ["at midday", "in the middle of the day"]),
    ("at sunset", ["as the sun goes down", "at dusk", "in the evening glow"]),
    ("in the rain", ["during a downpour", "while it is raining", "under heavy showers"]),
    ("in the fog", ["in thick mist", "through a haze", "on a misty day"]),
    ("in winter", ["during the cold season", "in wintertime"]),
    ("in summer", ["during the hot season", "in summertime", "on a warm summer day"]),
    ("during a storm", ["in a thunderstorm", "as lightning flashes", "in stormy weather"]),
    ("on a windy day", ["in strong wind", "in a gale", "as the wind blows hard"]),
]

B_TEMPLATES = [  # word order differs from style A in every template
    "{time_c}, {place}, {art} {trait} {subject} is {action}.",
    "{place_c}, {time}, you can see {art} {trait} {subject} {action}.",
    "{art_c} {subject}, {trait}, is {action} {place}, {time}.",
    "{time_c}: {action} {place}, {art} {trait} {subject}.",
    "There is {art} {trait} {subject} {place}; it is {action}, {time}.",
]


@dataclass(frozen=True)
class Scene:
    subject: int
    trait: int
    action: int
    place: int
    time: int


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def style_a(s: Scene) -> str:
    subj, _, kind = SUBJECTS[s.subject]
    trait = TRAITS[kind][s.trait][0]
    action = ACTIONS[kind][s.action][0]
    return f"{_cap(_article(trait))} {trait} {subj} {action} {PLACES[s.place][0]} {TIMES[s.time][0]}."


def style_b(s: Scene, rng: random.Random) -> str:
    _, subj_syn, kind = SUBJECTS[s.subject]
    trait = rng.choice(TRAITS[kind][s.trait][1])
    subject = rng.choice(subj_syn)
    action = rng.choice(ACTIONS[kind][s.action][1])
    place, time = rng.choice(PLACES[s.place][1]), rng.choice(TIMES[s.time][1])
    template = rng.choice(B_TEMPLATES)
    return template.format(time=time, time_c=_cap(time), place=place, place_c=_cap(place), art=_article(trait),
                           art_c=_cap(_article(subject)), trait=trait, subject=subject, action=action,
                           action_c=_cap(action))


def scenes(n: int = DEFAULT_ITEMS, seed: int = 0) -> list[Scene]:
    """``n`` distinct scenes in a fixed pseudo-random order (a pure function of n and seed)."""
    if n < 2:
        raise ValueError(f"a corpus needs at least 2 scenes, got {n}")
    rng = random.Random(f"scene-corpus-{seed}")
    seen, out = set(), []
    while len(out) < n:
        subject = rng.randrange(len(SUBJECTS))
        kind = SUBJECTS[subject][2]
        s = Scene(subject, rng.randrange(len(TRAITS[kind])), rng.randrange(len(ACTIONS[kind])),
                  rng.randrange(len(PLACES)), rng.randrange(len(TIMES)))
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def corpus(n: int = DEFAULT_ITEMS, seed: int = 0) -> tuple[list[str], list[str]]:
    """(style A sentences, style B sentences), row i of each describing scene i."""
    items = scenes(n, seed)
    rng = random.Random(f"scene-corpus-style-b-{seed}")
    return [style_a(s) for s in items], [style_b(s, rng) for s in items]


def corpus_hash(a: list[str], b: list[str]) -> str:
    """A short digest of the exact text, for cache keys."""
    return hashlib.sha256(json.dumps([a, b]).encode()).hexdigest()[:16]


def test_indices(n: int = DEFAULT_ITEMS) -> range:
    """The fixed held-out scenes: the last TEST_ITEMS of the corpus."""
    if n < TEST_ITEMS + 25:
        raise ValueError(f"a benchmark corpus needs at least {TEST_ITEMS + 25} scenes (test set + 25 pairs), got {n}")
    return range(n - TEST_ITEMS, n)


if __name__ == "__main__":
    a, b = corpus()
    for i in range(8):
        print(f"A: {a[i]}\nB: {b[i]}\n")
    print(f"{len(a)} scenes, hash {corpus_hash(a, b)}, distinct A {len(set(a))}, distinct B {len(set(b))}")
