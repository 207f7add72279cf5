"""A compositional paraphrase corpus written by this project: scenes of who does what to whom, each
described twice in two independent styles, in families of near-duplicates.

A scene is two groups of entities and a relation: (count, trait, noun) of the agent, the relation,
(count, trait, noun) of the patient, and a place. Style A is a plain active caption ("Two muddy dogs
chasing a small cat in a park."); style B has its own vocabulary (synonyms drawn per scene), its own
templates and, half of the time, the passive voice ("In a public garden, a tiny kitten is being
pursued by a pair of mud-covered hounds."), so the two sides share meaning, not wording or order.

Retrieval is hard the way real retrieval is: scenes come in families of ``FAMILY`` that share most of
their content and differ in one thing (agent and patient swapped, traits swapped between them, one
trait, one count, the relation, a noun or the place), so telling them apart needs who-does-what-to-
whom, not a bag of words. Families are contiguous, so the fixed test set (the last ``TEST_ITEMS``
scenes) holds whole families and no training scene is a near-duplicate of a test scene.
Everything is a pure function of (n, seed); ``corpus_hash`` names the exact text for cache keys.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, replace

TEST_ITEMS = 1000
DEFAULT_ITEMS = 6000
FAMILY = 5  # a base scene and four one-change variants; divides TEST_ITEMS so families never straddle it

# (style-A noun, [style-B nouns]); plurals by _plural.
NOUNS = [("dog", ["hound", "puppy"]), ("cat", ["kitten", "feline"]), ("horse", ["pony", "mare"]),
         ("fox", ["vixen", "young fox"]), ("goat", ["billy goat", "kid goat"]), ("bear", ["grizzly", "bear cub"]),
         ("duck", ["mallard", "duckling"]), ("monkey", ["chimp", "macaque"]), ("pig", ["piglet", "hog"]),
         ("man", ["gentleman", "guy"]), ("woman", ["lady", "young woman"]), ("boy", ["lad", "little boy"]),
         ("girl", ["lass", "little girl"]), ("chef", ["cook", "kitchen worker"]), ("nurse", ["carer", "medic"]),
         ("farmer", ["rancher", "grower"]), ("police officer", ["cop", "patrol officer"]), ("clown", ["jester", "joker"])]
TRAITS = [("small", ["tiny", "little"]), ("big", ["huge", "large"]), ("young", ["youthful", "juvenile"]),
          ("old", ["aged", "elderly"]), ("wet", ["soaked", "dripping"]), ("muddy", ["mud-covered", "dirty"]),
          ("sleepy", ["drowsy", "half-asleep"]), ("angry", ["furious", "cross"]), ("noisy", ["loud", "rowdy"]),
          ("injured", ["wounded", "hurt"]), ("happy", ["cheerful", "joyful"]), ("hungry", ["starving", "famished"])]
# (style A active, [style B active], [style B passive, "... by"])
RELATIONS = [("chasing", ["running after", "pursuing"], ["being chased by", "pursued by"]),
             ("pushing", ["shoving", "pressing against"], ["being pushed by", "shoved by"]),
             ("following", ["trailing", "walking behind"], ["being followed by", "trailed by"]),
             ("watching", ["staring at", "observing"], ["being watched by", "observed by"]),
             ("carrying", ["holding up", "hauling"], ["being carried by", "held up by"]),
             ("pulling", ["dragging", "tugging at"], ["being pulled by", "dragged by"]),
             ("kicking", ["booting", "striking with a foot"], ["being kicked by", "struck with a foot by"]),
             ("feeding", ["giving food to", "offering a meal to"], ["being fed by", "given food by"]),
             ("licking", ["slobbering on", "lapping at"], ["being licked by", "slobbered on by"]),
             ("photographing", ["taking a picture of", "snapping a photo of"], ["being photographed by", "snapped by"]),
             ("scaring", ["frightening", "startling"], ["being scared by", "frightened by"]),
             ("ignoring", ["paying no attention to", "turning away from"], ["being ignored by", "snubbed by"])]
PLACES = [("in a park", ["in a public garden", "on the park lawn"]), ("on a beach", ["on the sandy shore", "by the sea"]),
          ("in a kitchen", ["beside the stove", "in the cookhouse"]), ("in a forest", ["among the trees", "in the woods"]),
          ("on a street", ["on an urban road", "downtown"]), ("on a farm", ["in a farmyard", "at the ranch"]),
          ("in the snow", ["in a snowfield", "on snowy ground"]), ("near a river", ["by the riverbank", "beside a stream"]),
          ("in a garage", ["inside a car shed", "in a workshop"]), ("on a bridge", ["on an overpass", "across a viaduct"])]
COUNTS = [("a", ["a", "one"]), ("two", ["two", "a pair of"]), ("three", ["three", "a trio of"])]
IRREGULAR = {"man": "men", "woman": "women", "young woman": "young women", "police officer": "police officers",
             "patrol officer": "patrol officers", "gentleman": "gentlemen", "fox": "foxes", "young fox": "young foxes",
             "kid goat": "kid goats", "bear cub": "bear cubs", "kitchen worker": "kitchen workers"}


@dataclass(frozen=True)
class Group:
    count: int
    trait: int
    noun: int


@dataclass(frozen=True)
class Scene:
    agent: Group
    relation: int
    patient: Group
    place: int


def _plural(noun: str) -> str:
    if noun in IRREGULAR:
        return IRREGULAR[noun]
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _phrase(count: str, trait: str, noun: str, plural: bool) -> str:
    if count == "a":
        count = _article(trait)
    return f"{count} {trait} {_plural(noun) if plural else noun}"


def style_a(s: Scene) -> str:
    g = [_phrase(COUNTS[p.count][0], TRAITS[p.trait][0], NOUNS[p.noun][0], p.count > 0) for p in (s.agent, s.patient)]
    return f"{_cap(g[0])} {RELATIONS[s.relation][0]} {g[1]} {PLACES[s.place][0]}."


def style_b(s: Scene, rng: random.Random) -> str:
    def phrase(p: Group) -> str:
        return _phrase(rng.choice(COUNTS[p.count][1]), rng.choice(TRAITS[p.trait][1]), rng.choice(NOUNS[p.noun][1]),
                       p.count > 0)

    agent, patient, place = phrase(s.agent), phrase(s.patient), rng.choice(PLACES[s.place][1])
    passive = rng.random() < 0.5
    subject, other = (patient, agent) if passive else (agent, patient)
    verb = rng.choice(RELATIONS[s.relation][2 if passive else 1])
    be = "are" if (s.patient if passive else s.agent).count > 0 else "is"
    template = rng.randrange(3)
    if template == 0:
        return f"{_cap(place)}, {subject} {be} {verb} {other}."
    if template == 1:
        return f"{_cap(subject)} {be} {verb} {other} {place}."
    return f"There {be} {subject} {place}, {verb} {other}."


def _variant(s: Scene, kind: str, rng: random.Random) -> Scene:
    """``s`` with one thing changed (``kind``); the change is always to a different value."""
    def other(n: int, current: int) -> int:
        return rng.choice([i for i in range(n) if i != current])

    a, p = s.agent, s.patient
    if kind == "swap_roles":
        return replace(s, agent=p, patient=a)
    if kind == "swap_traits":
        return replace(s, agent=replace(a, trait=p.trait), patient=replace(p, trait=a.trait))
    if kind == "agent_trait":
        return replace(s, agent=replace(a, trait=other(len(TRAITS), a.trait)))
    if kind == "patient_trait":
        return replace(s, patient=replace(p, trait=other(len(TRAITS), p.trait)))
    if kind == "agent_count":
        return replace(s, agent=replace(a, count=other(len(COUNTS), a.count)))
    if kind == "patient_count":
        return replace(s, patient=replace(p, count=other(len(COUNTS), p.count)))
    if kind == "relation":
        return replace(s, relation=other(len(RELATIONS), s.relation))
    if kind == "agent_noun":
        return replace(s, agent=replace(a, noun=other(len(NOUNS), a.noun)))
    return replace(s, place=other(len(PLACES), s.place))


VARIANTS = ("swap_roles", "swap_traits", "agent_trait", "patient_trait", "agent_count", "patient_count",
            "relation", "agent_noun", "place")


def scenes(n: int = DEFAULT_ITEMS, seed: int = 0) -> list[Scene]:
    """``n`` distinct scenes in families of FAMILY (a base and one-change variants of it), a pure
    function of n and seed. The last family is cut short when FAMILY does not divide n."""
    if n < 2:
        raise ValueError(f"a corpus needs at least 2 scenes, got {n}")
    rng = random.Random(f"scene-corpus-{seed}")
    seen, out = set(), []

    def group() -> Group:
        return Group(rng.randrange(len(COUNTS)), rng.randrange(len(TRAITS)), rng.randrange(len(NOUNS)))

    while len(out) < n:
        base = Scene(group(), rng.randrange(len(RELATIONS)), group(), rng.randrange(len(PLACES)))
        if base.agent.trait == base.patient.trait or base.agent.noun == base.patient.noun:
            continue  # swaps must change the scene
        family = [base] + [_variant(base, k, rng) for k in rng.sample(VARIANTS, FAMILY - 1)]
        if len(set(family)) < FAMILY or seen & set(family):
            continue
        seen.update(family)
        out.extend(family)
    return out[:n]


def is_swap(a: Scene, b: Scene) -> bool:
    """Whether ``b`` is ``a`` with agent and patient swapped, or with their traits swapped: the two changes
    that keep every word of a style-A caption, so no bag of words can tell the scenes apart."""
    roles = replace(a, agent=a.patient, patient=a.agent)
    traits = replace(a, agent=replace(a.agent, trait=a.patient.trait), patient=replace(a.patient, trait=a.agent.trait))
    return b != a and b in (roles, traits)


def corpus(n: int = DEFAULT_ITEMS, seed: int = 0) -> tuple[list[str], list[str]]:
    """(style A sentences, style B sentences), row i of each describing scene i."""
    items = scenes(n, seed)
    rng = random.Random(f"scene-corpus-style-b-{seed}")
    return [style_a(s) for s in items], [style_b(s, rng) for s in items]


def corpus_hash(a: list[str], b: list[str]) -> str:
    """A short digest of the exact text, for cache keys."""
    return hashlib.sha256(json.dumps([a, b]).encode()).hexdigest()[:16]


def test_indices(n: int = DEFAULT_ITEMS) -> range:
    """The fixed held-out scenes: the last TEST_ITEMS of the corpus (whole families when FAMILY divides n)."""
    if n < TEST_ITEMS + 25:
        raise ValueError(f"a benchmark corpus needs at least {TEST_ITEMS + 25} scenes (test set + 25 pairs), got {n}")
    return range(n - TEST_ITEMS, n)


if __name__ == "__main__":
    a, b = corpus()
    for i in range(10):
        print(f"A: {a[i]}\nB: {b[i]}\n")
    print(f"{len(a)} scenes, hash {corpus_hash(a, b)}, distinct A {len(set(a))}, distinct B {len(set(b))}")
