"""The shipped sound-caption corpus: large, varied, clean, and exactly what its generator writes."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from fusemix.caption_bank import MAX_CAPTION_CHARS, load_captions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import make_sound_captions as gen  # noqa: E402  (tools/ is no package: a script that writes shipped data)

# Words that mark each category the corpus must cover (issue 17: what people upload).
CATEGORY_WORDS = {
    "speech and singing": r"speaks?|speaking|sings?|singing|choir|whispers?|laugh\w*|talk\w*",
    "animals": r"dogs?|cats?|birds?|cows?|horses?|frogs?|owls?|bees?|sheep|crickets",
    "vehicles": r"cars?|trucks?|trains?|motorcycles?|bus|jet|plane|helicopter|boat|ferry|traffic",
    "weather and water": r"rain|thunder|wind|hail|waves|stream|river|waterfall|storm",
    "music and instruments": r"piano|guitar|violin|drums?|flute|trumpet|saxophone|band|orchestra|organ",
    "household": r"kettle|microwave|dishwasher|vacuum|fridge|tap|toilet|dishes|cutlery|door",
    "tools and machines": r"drill|hammer|saw|chainsaw|lawnmower|jackhammer|printer|grinder|sewing machine",
    "city": r"city|square|subway|station|pedestrians|street vendor|market|escalator|fireworks",
    "nature": r"leaves|branches|campfire|forest|birdsong|meadow|pebbles|trail",
    "sports": r"tennis|basketball|referee|skateboard\w*|swimmers?|boxer|hockey|golf\w*|bowling|runners",
    "alarms": r"alarm|siren|smoke detector|doorbell|beeps?|beeping|foghorn|buzzer",
}


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_corpus_is_large_distinct_and_within_the_bank_limit():
    caps = load_captions(gen.OUTPUT)
    raw = _lines(gen.OUTPUT.read_text(encoding="utf-8"))
    assert len(caps) >= 6000
    assert len(raw) == len(set(raw)) == len(caps)  # nothing the loader had to drop or normalise
    assert all(ln == " ".join(ln.split()) for ln in raw)
    assert max(map(len, raw)) <= MAX_CAPTION_CHARS
    lengths = sorted(len(c.split()) for c in caps)
    assert lengths[0] <= 3 and lengths[-1] >= 15  # short and long captions, not one template


def test_every_category_is_covered():
    caps = load_captions(gen.OUTPUT)
    for name, words in CATEGORY_WORDS.items():
        pattern = re.compile(rf"\b(?:{words})\b")
        hits = sum(1 for c in caps if pattern.search(c))
        assert hits >= 200, f"{name}: only {hits} captions mention {words}"


def test_generator_reproduces_the_file_exactly(tmp_path):
    assert gen.render() == gen.OUTPUT.read_text(encoding="utf-8")
    out = tmp_path / "c.txt"
    assert gen.main(["--out", str(out)]) == 0 and out.read_text(encoding="utf-8") == gen.render()
    assert gen.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text(encoding="utf-8") + "a stray line\n", encoding="utf-8")
    assert gen.main(["--check", "--out", str(out)]) == 1


def test_verbs_agree_with_their_subjects():
    assert [gen.third_person(v) for v in ("boo", "buzz", "cry", "hiss", "bark", "echo", "play")] == \
        ["boos", "buzzes", "cries", "hisses", "barks", "echoes", "plays"]
    assert [gen.gerund(v) for v in ("drip", "whine", "flutter", "gallop", "hum", "die", "chirp", "see")] == \
        ["dripping", "whining", "fluttering", "galloping", "humming", "dying", "chirping", "seeing"]
    assert gen.conjugate("sputter and die", "fin", False) == "sputters and dies"
    assert gen.conjugate("hit the ball back and forth", "ger", True) == "hitting the ball back and forth"
    caps = load_captions(gen.OUTPUT)
    assert not [c for c in caps if re.search(r"\b(?:booes|dys|a \w+ are|two \w+s is)\b", c)]


def test_no_caption_says_the_same_action_twice():
    """"crows twice, then crows twice" is what a generator writes, not a person ("rings and rings" is idiom)."""
    again = re.compile(r"(\b\w+(?: \w+)+)(?:,? then|,? and then| and) (?:\w+ )?\1\b|\b(\w{4,}) (?:and then|then|and) \2\b")
    caps = load_captions(gen.OUTPUT)
    repeats = [c for c in caps if again.search(c) and not re.search(r"\brings and rings|ringing and ringing", c)]
    assert not repeats, repeats[:5]
