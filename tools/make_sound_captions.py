"""Write ``fusemix/data/sound_captions.txt``: the project's own corpus of everyday sound captions.

Why: the captions-only bridge (issue 17) learns from captions alone, and the bundled caption bank
(381 lines) is too small to train on. Every sentence here is composed by this script from
vocabulary written for this project (nothing comes from AudioCaps, Clotho or any dataset):
per category, sound *sources* (subject variants), the *actions* each source can plausibly
make (base-form verb phrases, conjugated here) and the *settings* that fit it, combined through
a dozen sentence shapes (finite or -ing verb, a place before or after, a background sound, two
actions in sequence, "the sound of ..."). Sampling is seeded and quota-driven per category, so the
output is byte-for-byte reproducible; lines are deduplicated.

    python tools/make_sound_captions.py          # rewrite the file
    python tools/make_sound_captions.py --check  # exit 1 if the file is stale
"""
from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone: fusemix beside tools/

SEED = 2026
PER_CATEGORY = 700
MAX_CHARS = 160  # well under caption_bank.MAX_CAPTION_CHARS; real captions are short
OUTPUT = Path(__file__).resolve().parents[1] / "fusemix" / "data" / "sound_captions.txt"

# --------------------------------------------------------------------------- grammar


_IRREGULAR = {"be": ("is", "are", "being"), "have": ("has", "have", "having"), "do": ("does", "do", "doing"),
              "go": ("goes", "go", "going"), "die": ("dies", "die", "dying"), "lie": ("lies", "lie", "lying"),
              "whir": ("whirs", "whir", "whirring"), "rev": ("revs", "rev", "revving"),
              "echo": ("echoes", "echo", "echoing"), "buzz": ("buzzes", "buzz", "buzzing"),
              "whizz": ("whizzes", "whizz", "whizzing"), "squeal": ("squeals", "squeal", "squealing")}
_VOWELS = "aeiou"


def _syllables(word: str) -> int:
    groups, prev = 0, False
    for ch in word:
        v = ch in _VOWELS or (ch == "y" and groups > 0)
        groups += v and not prev
        prev = v
    return max(groups, 1)


def third_person(verb: str) -> str:
    if verb in _IRREGULAR:
        return _IRREGULAR[verb][0]
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")) and not verb.endswith("oo"):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in _VOWELS:
        return verb[:-1] + "ies"
    return verb + "s"


def gerund(verb: str) -> str:
    if verb in _IRREGULAR:
        return _IRREGULAR[verb][2]
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")) and len(verb) > 2:
        return verb[:-1] + "ing"
    if (_syllables(verb) == 1 and len(verb) >= 3 and verb[-1] not in _VOWELS + "wxy"
            and verb[-2] in _VOWELS and verb[-3] not in _VOWELS):
        return verb + verb[-1] + "ing"
    return verb + "ing"


def conjugate(action: str, form: str, plural: bool) -> str:
    """``form``: "fin" (present tense agreeing with the subject) or "ger" (-ing). Actions joined by
    " and " ("sputter and die") are verbs in sequence: each part is conjugated."""
    if " and " in action and "back and forth" not in action:
        return " and ".join(conjugate(part, form, plural) for part in action.split(" and "))
    verb, _, rest = action.partition(" ")
    if form == "ger":
        head = gerund(verb)
    else:
        head = verb if plural else third_person(verb)
        if verb == "be":
            head = "are" if plural else "is"
    return f"{head} {rest}".strip()


@dataclass(frozen=True)
class Source:
    subjects: tuple[str, ...]  # "a dog"; a trailing "+" marks a plural subject ("two dogs+")
    actions: tuple[str, ...]  # base-form verb phrases; {pos} becomes the subject's possessive
    places: tuple[str, ...]  # keys of PLACES
    pos: str = "its"  # possessive of a singular subject; plural subjects get "their"


def S(subjects: str, actions: str, places: str, pos: str = "its") -> Source:
    split = lambda s: tuple(p.strip() for p in s.split("|") if p.strip())  # noqa: E731
    return Source(split(subjects), split(actions), split(places), pos)


# Settings: key -> (indoors?, phrases).
PLACES: dict[str, tuple[bool, tuple[str, ...]]] = {k: (io, tuple(p.strip() for p in v.split("|"))) for k, (io, v) in {
    "room": (True, "in a small room|in a quiet room|in a large hall|in a hallway|in an empty classroom|"
                   "in a crowded room|in an office|in a waiting room"),
    "cafe": (True, "in a busy cafe|in a noisy restaurant|at a dinner table|in a pub|in a cafeteria"),
    "transit_in": (True, "on a crowded train|on a bus|in a car|in an airport lounge|on a subway platform"),
    "stage": (True, "on a stage|in a concert hall|in a theatre|in an auditorium|in a lecture hall"),
    "church": (True, "in an empty church|in a cathedral|in a stone chapel"),
    "phone": (True, "over a crackling phone line|on a video call|into a microphone|on an old recording"),
    "street": (False, "on a busy street|on a quiet street|on a city sidewalk|at a street corner|outside a shop"),
    "park": (False, "in a park|in a city park|on a playground|in a public garden"),
    "market": (False, "at an open-air market|at a street market|at a fairground|at a street festival"),
    "farm": (False, "on a farm|in a farmyard|in a muddy field|in a barn|near a stable|in a paddock"),
    "yard": (False, "in a backyard|in a quiet garden|on a porch|behind a wooden fence|in the front yard"),
    "house": (True, "in a living room|in the kitchen|behind a closed door|in the next room|upstairs"),
    "wild": (False, "in the forest|in a dense jungle|on the savanna|at the zoo|in a nature reserve"),
    "wet": (False, "on a pond|by a lake|in a marsh|on a riverbank|in a wetland"),
    "trees": (False, "in the trees|from a rooftop|high above a field|in a tall oak tree|in the hedges"),
    "meadow": (False, "in a meadow|in tall grass|in a summer field|in a country garden|on a hillside"),
    "coast": (False, "at the beach|in a harbour|on a rocky shore|along the coast|on a pier"),
    "road": (False, "on a busy road|on a highway|at an intersection|on a wet street|down a quiet lane|"
                    "on a gravel driveway|on a country road|on a motorway at night"),
    "garage": (True, "in a parking garage|in a tunnel|in an underground car park"),
    "rail": (False, "at a train station|over a metal bridge|through the countryside|at a level crossing|"
                    "along an elevated track"),
    "sky": (False, "overhead|high above the city|over the rooftops|above the clouds|over the fields"),
    "airport": (False, "at an airport|on a runway|at a small airfield"),
    "lake": (False, "on a lake|on choppy water|in a harbour|near the shore|along a canal"),
    "outside": (False, "outside|in the garden|on a camping trip|in the city|in the countryside|on a village street"),
    "roof": (True, "on a tin roof|against a window|on a tent|on a skylight|on a car roof"),
    "hills": (False, "in the mountains|over the hills|across an open plain|over a small town|in a valley"),
    "stream": (False, "in the woods|in a mountain valley|through a quiet forest|under a wooden bridge|"
                      "between mossy rocks"),
    "hall": (True, "in a concert hall|in a small bar|in a music studio|in a jazz club|at a wedding|"
                   "in a living room|in a school hall|in a rehearsal room"),
    "busk": (False, "on a street corner|in a town square|at an outdoor festival|in a park|outside a station"),
    "subway": (True, "in a subway station|in an underground passage|in a shopping centre"),
    "kitchen": (True, "in the kitchen|in a small kitchen|in a restaurant kitchen|in a shared flat"),
    "bath": (True, "in the bathroom|in a hotel bathroom|in a tiled bathroom"),
    "home": (True, "in a quiet house|in a small apartment|in the next room|in a hallway|in a bedroom|"
                   "in a living room"),
    "office": (True, "in an office|in an open-plan office|in a library|in a study|at a front desk"),
    "workshop": (True, "in a workshop|in a garage|in a shed|in a carpentry shop|in a basement"),
    "site": (False, "on a construction site|on a building site next door|on a road repair site|"
                    "at a demolition site"),
    "factory": (True, "in a factory|in a warehouse|in a print shop|in a machine room|in a mill"),
    "lawn": (False, "in the garden|on a front lawn|in a suburban street|in a park|in a neighbour's yard"),
    "square": (False, "in a city square|downtown|in the old town|on a crowded sidewalk|at a busy crossroads"),
    "station": (True, "at a train station|in an underground station|in a busy airport terminal|"
                      "in a shopping mall|in a bus station"),
    "forest": (False, "in a pine forest|in a quiet wood|on a mountain trail|at the edge of a forest|"
                      "in a valley|by a lake"),
    "snow": (False, "on a snowy path|in a frozen forest|on a winter trail|across a frozen lake"),
    "fire": (False, "at a campsite|by a lake at night|in a forest clearing|on a beach at dusk"),
    "hearth": (True, "in a log cabin|in a cosy living room|in a country cottage|in a mountain hut"),
    "studio": (True, "in a radio studio|in a recording booth|in a newsroom|in a quiet studio"),
    "racecourse": (False, "at a racecourse|on a grass track|at the races"),
    "court": (False, "on a tennis court|on an outdoor court|on a clay court"),
    "gym": (True, "in a gym|in a sports hall|in a school gymnasium|in a leisure centre"),
    "stadium": (False, "in a stadium|at a football match|at a baseball game|in an open-air arena"),
    "pool": (True, "at a swimming pool|in an indoor pool|at a leisure centre"),
    "pitch": (False, "on a football pitch|on a running track|on a school field|at a golf course"),
    "rink": (True, "on an ice rink|in an ice arena"),
    "skate": (False, "in a skate park|on a concrete ramp|on an empty parking lot"),
    "alarm_in": (True, "in a hallway|in an apartment building|in an office building|in a school|"
                       "in a hotel corridor|in a kitchen"),
    "alarm_out": (False, "on a city street|down the road|in a parking lot|outside a bank|"
                         "in a residential street|at a level crossing"),
    "far": (False, "in the distance|nearby|far away|close by|somewhere outside"),
}.items()}

TIMES = ("at night", "early in the morning", "in the late afternoon", "on a summer evening",
         "on a winter morning", "at dawn", "at dusk", "at midday", "after midnight")

# Background sounds: (subject, action, indoors?).
BACKGROUNDS = tuple((s, a, io) for io, rows in ((False, (
    ("birds+", "chirp"), ("traffic", "hum"), ("a dog", "bark"), ("the wind", "blow"), ("children+", "play"),
    ("cars+", "pass by"), ("people+", "talk"), ("leaves+", "rustle"), ("insects+", "buzz"),
    ("rain", "fall softly"), ("a plane", "fly over"), ("church bells+", "ring"), ("crickets+", "chirp"),
    ("a car horn", "honk"), ("a siren", "wail"), ("footsteps+", "pass"), ("a train", "pass in the distance"),
)), (True, (
    ("a radio", "play quietly"), ("a television", "murmur"), ("people+", "chat"), ("a fan", "whir"),
    ("a clock", "tick"), ("rain", "patter on the window"), ("music", "play"), ("an air conditioner", "hum"),
    ("dishes+", "clink"), ("a baby", "babble"), ("someone", "type on a keyboard"), ("a kettle", "boil"),
    ("a refrigerator", "hum"), ("footsteps+", "creak on the floor above"), ("a phone", "buzz"),
))) for s, a in rows)

# --------------------------------------------------------------------------- vocabulary

CATEGORIES: dict[str, tuple[Source, ...]] = {
    "speech and singing": (
        S("a man|an old man|a young man|a man with a deep voice|a middle-aged man",
          "speak calmly|talk on the phone|clear his throat|laugh heartily|cough a few times|shout for help|"
          "whisper|read aloud from a book|give a short speech|call out a name|sneeze loudly|mumble to himself|"
          "hum a tune|whistle a tune|sigh deeply|tell a joke|speak with a strong accent|yawn loudly",
          "room|cafe|transit_in|phone|street|park"),
        S("a woman|an elderly woman|a young woman|a woman with a soft voice|a girl",
          "speak softly|laugh|talk on the phone|clear her throat|sing a lullaby|hum to herself|"
          "call a child's name|read a story aloud|give a presentation|scream in surprise|whisper|"
          "speak quickly|laugh nervously|ask a question|giggle|sneeze twice",
          "room|cafe|transit_in|phone|stage|street|park"),
        S("a child|a little girl|a small boy|a toddler|a young boy",
          "giggle|cry loudly|babble|shout excitedly|sing a nursery rhyme|count out loud|laugh uncontrollably|"
          "scream with delight|whine|ask for a drink|recite the alphabet|cough",
          "room|house|park|yard|transit_in|cafe"),
        S("a baby|a newborn baby|an infant|a baby girl|a baby boy",
          "cry|coo softly|babble happily|whimper|laugh|fuss|wail|hiccup|gurgle",
          "house|home|transit_in|cafe|room"),
        S("a crowd|a large crowd|an audience|a crowd of fans|a small audience",
          "cheer|applaud|murmur|chant a slogan|boo|laugh at a joke|gasp|sing along|clap in rhythm|"
          "roar with excitement|fall silent|whistle and cheer",
          "stage|stadium|street|square|market"),
        S("people+|two men+|two women+|several people+|a group of friends+|children+|teenagers+|coworkers+",
          "chat|talk over each other|laugh together|argue loudly|talk quietly|greet each other|"
          "whisper to each other|shout to each other|tell stories|share a joke|sing happy birthday",
          "room|cafe|transit_in|street|park|market|office"),
        S("a choir|a church choir|a children's choir|a gospel choir|a small choir",
          "sing a hymn|sing in harmony|perform a slow chorus|rehearse a song|sing a carol|hold a long note",
          "church|stage|hall|room"),
        S("a singer|an opera singer|a female vocalist|a male vocalist|a folk singer|a soprano",
          "sing a ballad|hit a high note|sing without accompaniment|warm up with vocal scales|"
          "sing into a microphone|sing a slow song|belt out a chorus|hum a melody|sing a folk song",
          "stage|hall|church|busk|room"),
        S("a radio presenter|a news anchor|an announcer|a narrator",
          "read the news|make an announcement|introduce the next song|tell a story in a calm voice|"
          "read out the weather",
          "phone|studio|room"),
        S("a tour guide|a teacher|a lecturer|a museum guide",
          "explain something slowly|address a group|describe a painting|give instructions|"
          "answer a question|speak over a loudspeaker",
          "room|stage|station|street"),
        S("a sports commentator|an auctioneer|a market trader|a street preacher|a drill sergeant",
          "speak very fast|shout into a microphone|raise {pos} voice|talk without pausing",
          "stadium|market|street|square|phone", "their"),
        S("someone|a person",
          "cough|sneeze|whistle|snore loudly|clap {pos} hands|snap {pos} fingers|breathe heavily|"
          "clear {pos} throat|slurp a drink|chew loudly|blow {pos} nose|gasp for breath|burp",
          "room|house|office|transit_in|cafe", "their"),
    ),
    "animals": (
        S("a dog|a large dog|a small dog|the neighbour's dog|a puppy|two dogs+|a pack of dogs",
          "bark|bark twice|bark at a stranger|growl|whimper|howl|yap excitedly|pant heavily|snarl|"
          "whine at the door|bark and growl|sniff around",
          "yard|house|street|park|far"),
        S("a cat|a kitten|an old cat|two cats+|a stray cat",
          "meow|purr contentedly|hiss|yowl|meow for food|scratch at a door|lap up milk|chirp at a bird",
          "house|yard|home|street"),
        S("a rooster|a cockerel", "crow|crow loudly|crow at dawn|crow twice", "farm|yard|far"),
        S("hens+|a chicken|a flock of chickens", "cluck|cluck and scratch|squawk|peck at grain|cluck quietly",
          "farm|yard"),
        S("a cow|cows+|a herd of cattle|a calf", "moo|low|moo loudly|chew the grass|bellow", "farm|meadow"),
        S("a horse|a pony|horses+|a mare",
          "neigh|whinny|snort|gallop past|trot past|stamp {pos} hooves|clop along",
          "farm|meadow|street"),
        S("a sheep|sheep+|a lamb|a goat|goats+",
          "bleat|bleat loudly|graze quietly|bleat for {pos} mother", "farm|meadow|hills|far"),
        S("a pig|pigs+|a piglet", "grunt|squeal|snort|oink|grunt and squeal", "farm"),
        S("a duck|ducks+|a mallard", "quack|quack loudly|splash in the water|paddle across the water|dabble",
          "wet|park|farm"),
        S("geese+|a goose", "honk|honk overhead|hiss at passers-by|honk in alarm", "wet|park|farm|sky"),
        S("a swan|swans+", "hiss|flap {pos} wings|take off from the water", "wet|park"),
        S("a crow|crows+|a magpie|a raven", "caw|caw from a treetop|squawk|call to each other|chatter",
          "trees|street|park|farm"),
        S("a seagull|seagulls+|gulls+", "cry|screech|squawk|call overhead|fight over scraps", "coast|street"),
        S("an owl|a barn owl|a tawny owl", "hoot|hoot softly|screech|call twice", "trees|forest|farm"),
        S("songbirds+|a blackbird|a robin|a nightingale|a thrush|small birds+|a wren",
          "sing|chirp|tweet|sing a complex song|chirp and trill|sing at dawn|chatter",
          "trees|yard|meadow|forest|park"),
        S("a woodpecker", "drum on a tree trunk|peck at bark|tap rapidly", "forest|trees"),
        S("pigeons+|a pigeon|doves+|a dove", "coo|coo softly|flutter up|flap {pos} wings|coo on a windowsill",
          "trees|square|street|park"),
        S("a parrot|a cockatoo|a budgie", "squawk|whistle|mimic a voice|screech|chatter", "house|wild"),
        S("a bee|bees+|a swarm of bees|a fly|a bumblebee",
          "buzz|hum|drone|buzz around flowers|buzz against a window", "meadow|yard|house"),
        S("a mosquito|mosquitoes+", "whine|buzz|whine near the ear", "house|wet|home"),
        S("crickets+|cicadas+|grasshoppers+", "chirp|drone|chirp steadily|buzz in the heat|chirp in the grass",
          "meadow|yard|forest"),
        S("frogs+|a frog|a bullfrog|toads+", "croak|croak loudly|call in chorus|ribbit", "wet|meadow"),
        S("a lion|a tiger|a bear|a leopard", "roar|growl|snarl|grunt|roar twice", "wild"),
        S("an elephant|elephants+", "trumpet|trumpet loudly|rumble|stamp through the brush", "wild"),
        S("a monkey|monkeys+|a gorilla|chimpanzees+", "screech|chatter|howl|grunt|hoot|scream", "wild"),
        S("wolves+|a wolf|coyotes+", "howl|howl together|yip|howl at the moon", "wild|forest|hills|far"),
        S("a fox", "bark|scream|yelp|bark twice", "forest|yard|far"),
        S("a donkey", "bray|bray loudly|bray twice", "farm|far"),
        S("a turkey|turkeys+", "gobble|gobble loudly", "farm"),
    ),
    "vehicles": (
        S("a car|an old car|a sports car|a small car|a taxi|a police car",
          "start and idle|accelerate|drive past|honk {pos} horn|brake hard|pass by slowly|speed past|"
          "pull away|rev {pos} engine|drive over gravel|splash through a puddle|skid to a stop",
          "road|street|garage|far"),
        S("a car engine|an engine|a diesel engine|a cold engine",
          "start|idle|sputter and die|turn over|rev|rumble|cough and start", "road|garage|street"),
        S("a truck|a lorry|a heavy truck|a dump truck|an articulated lorry",
          "rumble by|hiss {pos} air brakes|reverse slowly|drive past|shift gears|climb a hill|idle loudly",
          "road|street|site"),
        S("a tractor|an old tractor", "chug across a field|rumble along a lane|idle|start up", "farm|road"),
        S("a motorcycle|a motorbike|a scooter|a dirt bike|a moped",
          "rev {pos} engine|speed past|start up|zoom by|idle|pull away|buzz past", "road|street|far"),
        S("a bus|a city bus|a school bus|a coach",
          "pull away from a stop|brake|hiss as {pos} doors open|idle|pull into a stop|rumble past",
          "road|street|station"),
        S("a train|a freight train|a passenger train|a steam train|a high-speed train|a tram",
          "pass by|rattle over the tracks|blow {pos} horn|pull into the station|whistle|screech to a halt|"
          "clatter past|rumble|slow down",
          "rail|station|far"),
        S("a jet|a plane|an airliner|a small propeller plane|a jet plane",
          "fly overhead|take off|land|roar past|drone across the sky|pass low", "sky|airport|far"),
        S("a helicopter|a police helicopter|a drone", "hover|fly overhead|circle above|whir past|take off",
          "sky|far"),
        S("a bicycle|a bike|an old bicycle",
          "pass by|click as it freewheels|rattle over cobbles|squeak as it brakes", "street|park|road"),
        S("a boat|a motorboat|a ferry|a fishing boat|a ship",
          "chug across|sound {pos} horn|speed past|idle by the dock|cut through the waves", "lake|coast"),
        S("traffic|heavy traffic|rush-hour traffic|distant traffic",
          "rumble|hum|roar|crawl along|flow steadily|stop and start", "road|street|square|far"),
        S("tires+|car tires+", "screech|squeal on asphalt|hiss on a wet road|crunch on gravel",
          "road|garage|street"),
    ),
    "weather and water": (
        S("heavy rain|a downpour|torrential rain", "pour down|drum|beat down|hammer down|splash into puddles",
          "roof|outside|street|forest"),
        S("rain|light rain|steady rain|drizzle",
          "fall|patter softly|fall on dry leaves|drip from the gutters|stop and start|fall steadily",
          "roof|outside|street|forest"),
        S("thunder|a thunderstorm|a storm|distant thunder",
          "rumble|roll|crack overhead|boom|roll across the sky|grow closer", "hills|outside|far"),
        S("the wind|a strong wind|a gust of wind|a cold wind|a gale",
          "howl|whistle through a gap|blow|rattle the shutters|gust|moan around the house|shake the windows",
          "outside|hills|forest|coast"),
        S("a breeze|a light breeze|a warm breeze", "rustle the leaves|blow softly|stir the grass|sigh",
          "outside|forest|meadow"),
        S("hail|hailstones+|sleet", "clatter|hammer down|bounce off a car|rattle", "roof|outside|street"),
        S("waves+|the sea|the surf|the tide",
          "crash|break on the shore|wash over pebbles|lap gently|roll in|crash against rocks|pound the cliffs",
          "coast"),
        S("a stream|a brook|a river|a creek", "babble|gurgle over stones|flow|trickle|rush|splash over rocks",
          "stream|forest|hills"),
        S("a waterfall|a small waterfall|rapids+", "roar|rush|crash|thunder|splash", "stream|forest"),
        S("water|a trickle of water|rainwater", "drip|trickle|pour into a bucket|gurgle down a drain|splash",
          "outside|stream|street"),
        S("a fountain|a garden fountain", "splash|bubble|splash in a stone basin|trickle", "square|park|yard"),
        S("a pond|the lake|a canal", "ripple|lap against a jetty|lap at the bank", "wet|park|lake"),
        S("ice|a frozen lake|thin ice", "crack|creak|groan|crack loudly", "snow|outside"),
        S("melting snow|an icicle|snowmelt", "drip|drip steadily|trickle", "snow|outside|roof"),
    ),
    "music and instruments": (
        S("a piano|an upright piano|a grand piano|an old piano|a keyboard",
          "play a slow melody|play a jazz tune|play a classical piece|play a simple tune|play soft chords|"
          "play a waltz|repeat a short phrase",
          "hall|stage|home|church"),
        S("an acoustic guitar|a guitar|an electric guitar|a ukulele|a banjo",
          "play a folk tune|strum chords|play a fast riff|play a gentle melody|play a blues riff|"
          "play a solo|play a bluegrass tune",
          "hall|busk|home|stage"),
        S("a violin|a cello|a string quartet|a fiddle|a viola",
          "play a mournful tune|play a slow piece|play a lively jig|play a sustained note|"
          "play a classical melody|play pizzicato",
          "hall|stage|church|busk"),
        S("drums+|a drum kit|a snare drum|bongos+|a bass drum|a marching drum",
          "pound out a beat|play a fast rhythm|thump steadily|keep a steady beat|play a latin rhythm",
          "hall|stage|busk|street"),
        S("a flute|a clarinet|a saxophone|a trumpet|a trombone|a tuba|a harmonica|a recorder",
          "play a melody|play a jazz solo|play a fanfare|play a slow tune|play a cheerful tune|"
          "play a long note|play a short scale",
          "hall|stage|busk|church|home"),
        S("an organ|a church organ|a pipe organ", "play a hymn|play a deep chord|play a slow piece|"
          "swell to a loud chord", "church|hall"),
        S("bagpipes+|an accordion|a harp|a xylophone",
          "play a tune|play a lively melody|play a gentle tune|play a march", "busk|hall|home|street"),
        S("a music box|a glockenspiel|wind chimes+", "tinkle|play a lullaby|chime softly|play a gentle tune",
          "home|yard"),
        S("a band|a jazz band|a rock band|a brass band|an orchestra|a marching band|a string orchestra",
          "play|play a lively song|play a slow ballad|tune up|play a march|play a loud finale|"
          "play dance music|rehearse",
          "hall|stage|busk|street|park"),
        S("a street musician|a boy|a girl|a musician|a student|someone",
          "practise scales on the piano|strum a guitar|tune a guitar|play the violin|play the drums|"
          "play the accordion|pick out a melody on a guitar|play a flute|play the saxophone|tap a tambourine",
          "hall|busk|home|subway|stage"),
        S("electronic music|dance music|a techno track|classical music|jazz music|a pop song|country music",
          "play|thump|play loudly|play softly|fade in slowly|fade away|blare", "hall|cafe|home|transit_in|street"),
    ),
    "household": (
        S("a kettle|an electric kettle|a stovetop kettle", "boil|whistle|click off|rumble as it heats|"
          "start to whistle", "kitchen|home"),
        S("a microwave|a microwave oven", "hum|beep|whir|ping|click off", "kitchen"),
        S("a dishwasher|a washing machine|a tumble dryer",
          "hum|run|spin|rumble|drain noisily|finish {pos} cycle|thump during the spin cycle", "kitchen|home"),
        S("a refrigerator|a fridge|an old fridge", "hum|click|buzz quietly|hum steadily", "kitchen|home"),
        S("a vacuum cleaner|a blender|a food processor|a coffee grinder",
          "run|whir|roar|start up|switch off|drone|grind", "kitchen|home"),
        S("a hair dryer|an electric toothbrush|an electric razor", "buzz|whir|run|hum|switch off", "bath|home"),
        S("a door|a wooden door|a screen door|a cupboard door|a heavy door|the front door",
          "creak open|slam shut|close softly|squeak on {pos} hinges|bang|click shut|rattle",
          "home|house|office|kitchen"),
        S("a clock|a grandfather clock|a wall clock|a cuckoo clock",
          "tick|tick loudly|chime the hour|strike midnight|tick steadily", "home|house|office"),
        S("a frying pan|bacon|hot oil|onions+", "sizzle|crackle|spit and hiss|sizzle loudly", "kitchen"),
        S("a pot of soup|a saucepan|pasta water", "bubble|simmer|boil over|bubble gently", "kitchen"),
        S("dishes+|plates+|cutlery+|glasses+|pots and pans+",
          "clatter|clink|rattle in the sink|crash to the floor|clink together", "kitchen|cafe"),
        S("a tap|a faucet|a kitchen tap", "run|drip|gush|drip slowly|run and stop", "bath|kitchen"),
        S("a shower", "run|spray|drip|hiss", "bath"),
        S("a toilet", "flush|refill|gurgle", "bath"),
        S("a bath|a bathtub", "fill up|drain|gurgle as it drains", "bath"),
        S("keys+|coins+|a bunch of keys", "jingle|rattle|fall on a table|clink in a pocket|jangle",
          "home|house|street"),
        S("footsteps+|heavy footsteps+|high heels+|slippers+",
          "echo on a wooden floor|climb the stairs|cross the room|shuffle along a hallway|"
          "creak on the floorboards|walk down the stairs",
          "home|house|office"),
        S("someone|a person|a man|a woman",
          "wash the dishes|chop vegetables|stir a pot|pour a glass of water|open a drawer|close a cupboard|"
          "fold laundry|turn the pages of a book|unzip a bag|sweep the floor|rummage in a drawer|"
          "drag a chair across the floor|set the table|fill a glass with ice",
          "kitchen|home|house"),
        S("a cork|a champagne cork", "pop|pop loudly", "kitchen|home|cafe"),
        S("a can of soda|a bottle of fizzy water|a fizzy drink", "fizz|hiss open|fizz in a glass",
          "kitchen|home|cafe"),
        S("a paper bag|a crisp packet|a plastic bag|wrapping paper", "rustle|crinkle|tear", "kitchen|home"),
        S("a fire in the fireplace|burning logs+|a wood stove|a log fire", "crackle|pop|hiss|crackle softly",
          "hearth"),
    ),
    "tools and machines": (
        S("a drill|a power drill|a cordless drill|a hammer drill",
          "whine|drill into a wall|bore through wood|stop and start|drill into concrete|spin up",
          "workshop|site|home"),
        S("a hammer|a mallet|a sledgehammer",
          "pound nails|tap on metal|bang on wood|strike a chisel|knock in a post", "workshop|site"),
        S("a handsaw|a hacksaw", "rasp back and forth|cut through wood|saw through a pipe", "workshop|site"),
        S("a circular saw|a table saw|a jigsaw|a power saw",
          "buzz|whine through a plank|cut through wood|spin down|scream through wood", "workshop|site"),
        S("a chainsaw", "roar|slice through a log|buzz|idle|start up|rev", "forest|lawn|site"),
        S("a lawnmower|a ride-on mower", "drone|start up|cut the grass|sputter and stop|roar", "lawn|yard"),
        S("a leaf blower|a hedge trimmer|a strimmer", "buzz|roar|whine|start up|drone", "lawn|yard|park"),
        S("a jackhammer|a pile driver", "pound the pavement|hammer|rattle|pound steadily", "site|street|far"),
        S("an excavator|a bulldozer|a crane|a digger", "rumble|beep as it reverses|clank|dig|scrape",
          "site|far"),
        S("a cement mixer|a concrete mixer", "churn|rumble|turn slowly", "site"),
        S("a sander|a belt sander", "sand a board|whine|hum", "workshop"),
        S("a grinder|an angle grinder", "screech against metal|whine|throw sparks|cut through steel",
          "workshop|site|factory"),
        S("a welding torch|an arc welder", "hiss|crackle|buzz", "workshop|factory"),
        S("a nail gun|a staple gun", "fire nails|thud|click|snap", "workshop|site"),
        S("an air compressor|a pump|a generator", "chug|hiss|hum|rattle|drone", "workshop|site|factory"),
        S("a printer|a photocopier|a laser printer", "print pages|whir|hum|jam|feed paper", "office"),
        S("a typewriter|an old typewriter", "clatter|click|ding at the end of a line", "office|home"),
        S("a shredder|a paper shredder", "shred paper|whir|grind", "office"),
        S("a sewing machine|an old sewing machine", "whir|rattle|stitch steadily|hum", "home|workshop"),
        S("a fan|a ceiling fan|a desk fan|an air conditioner", "hum|whir|rattle|buzz|drone|hum steadily",
          "home|office"),
        S("machines+|a conveyor belt|a press|a loom|heavy machinery",
          "clank|hum|thump rhythmically|roar|whir|hiss and clatter", "factory"),
        S("a keyboard|a computer keyboard|a mechanical keyboard", "click|clatter|click softly", "office|home"),
        S("a worker|a carpenter|a mechanic|a man|a woman|someone",
          "hammer a nail|saw a plank|sand a table|drill a hole|tighten a bolt|file metal|"
          "drop a wrench|sharpen a knife|chop wood",
          "workshop|site|factory"),
        S("an office worker|a secretary|someone|a clerk",
          "type on a keyboard|staple papers|shuffle papers|click a pen|tear off a strip of tape",
          "office"),
    ),
    "city": (
        S("a busy street|a city street|the city|a crowded market|a busy square",
          "bustle with people|hum with traffic|echo with voices|come alive in the morning|"
          "buzz with activity",
          "square|street|market"),
        S("footsteps+|heels+", "echo in a tunnel|hurry along the pavement|click on the pavement",
          "square|station|street|subway"),
        S("pedestrians+|shoppers+|commuters+",
          "walk past|hurry along the pavement|shuffle through a station|cross the road", "square|station|street"),
        S("a street vendor|a market trader|a newspaper seller",
          "call out prices|shout out offers|sell fresh fruit", "market|square"),
        S("a busker|a street performer", "play for coins|sing for passers-by|play a saxophone", "busk|subway"),
        S("church bells+|a church bell|a clock tower|bells+", "ring|chime|toll|ring out|chime noon",
          "square|street|far"),
        S("a subway train|an underground train|a metro train",
          "arrive|screech into the station|rumble beneath the street|rattle past", "subway|station"),
        S("an escalator|a lift|an elevator", "hum|clank|rumble|ding", "subway|station"),
        S("a garbage truck|a bin lorry", "empty bins|rumble down the street|beep as it reverses|"
          "compact rubbish", "street|square"),
        S("a street sweeper", "brush the gutter|rumble down the street|hum past", "street|square"),
        S("a delivery van|a taxi", "idle at the curb|stop and start|pull away", "street|square"),
        S("a crowd|a crowd of people|tourists+|people+", "chatter|walk and talk|mill about|queue and talk|laugh",
          "square|market|station|street"),
        S("fireworks+|a firework", "bang|explode overhead|crackle|whistle and pop|boom over the city",
          "sky|square|far"),
        S("a shop door|an automatic door|a revolving door|a turnstile", "slide open|chime|swish|click",
          "station|street|subway"),
        S("a loudspeaker|a station announcement|a public address system",
          "crackle|announce a delay|echo|call a flight", "station|subway|square"),
        S("a skateboarder|a roller skater", "roll past|clatter over paving|grind along a rail", "street|square"),
    ),
    "nature": (
        S("leaves+|dry leaves+|the trees|tall grass|reeds+",
          "rustle|rustle in the wind|sway|whisper|shiver in the breeze", "forest|meadow|stream"),
        S("branches+|an old tree|a tree|a dead branch", "creak|snap|crack|groan in the wind|fall",
          "forest|stream"),
        S("a campfire|a bonfire|a fire", "crackle|pop|roar|hiss|crackle and pop", "fire|forest"),
        S("footsteps+|boots+|hikers+|someone",
          "crunch through snow|crunch on gravel|walk through dry leaves|squelch through mud|"
          "walk along a trail|snap twigs underfoot",
          "snow|forest|meadow|hills"),
        S("birdsong|a dawn chorus|birds+", "fill the air|ring out|echo through the trees|rise and fall",
          "forest|meadow|stream"),
        S("insects+|the forest|the jungle|a summer meadow", "buzz|hum|drone|come alive|chirp and buzz",
          "forest|meadow|wild"),
        S("the wind|a light breeze|a mountain wind",
          "blow through the pines|sigh through the grass|whistle over the ridge|rustle the leaves",
          "forest|meadow|hills"),
        S("a stream|water|a spring", "trickle|murmur|babble|bubble up", "forest|stream|meadow"),
        S("rocks+|pebbles+|stones+|gravel", "tumble down a slope|clatter|rattle|crunch underfoot|slide",
          "hills|forest|coast"),
        S("the ocean|the sea|gentle waves+", "whisper|roll|wash over the sand|lap at the shore", "coast"),
        S("an owl|a cuckoo|a distant bird", "call|call in the woods|call twice", "forest|stream"),
        S("a woodpecker", "tap on a trunk|drum in the woods", "forest"),
    ),
    "sports": (
        S("a tennis ball", "bounce|thud|get hit back and forth|skid off the line", "court"),
        S("tennis players+", "hit the ball back and forth|grunt with each shot|call the score|rally", "court"),
        S("a basketball", "bounce|swish through the net|thump|hit the rim", "gym|court"),
        S("basketball players+", "dribble and shout|squeak across the floor|call for the ball", "gym|court"),
        S("sneakers+|trainers+", "squeak on the floor|squeak on a wooden court", "gym"),
        S("a referee|a coach|a lifeguard",
          "blow a whistle|shout instructions|blow the final whistle|call a foul", "gym|stadium|pitch|pool|rink"),
        S("a football crowd|the crowd|fans+|spectators+|supporters+",
          "cheer a goal|roar|chant|groan|applaud|sing a chant", "stadium|pitch"),
        S("a golfer|a batter", "hit the ball|swing and miss|strike the ball cleanly", "pitch|stadium"),
        S("a baseball bat|a golf club|a cricket bat", "crack against a ball|swish through the air|strike the ball",
          "pitch|stadium"),
        S("bowling pins+|a bowling ball", "crash|roll down the lane|scatter|rumble down the lane", "gym"),
        S("a skateboard", "roll over concrete|clatter|roll and clack", "skate|street"),
        S("skateboarders+|a skateboarder", "land a trick|grind a rail|roll past|kick off", "skate|street"),
        S("swimmers+|a swimmer|a diver|children+",
          "splash|dive into the water|swim laps|jump into the pool|splash around", "pool|lake|coast"),
        S("a ping pong ball", "bounce|click back and forth|tap on the table", "gym|home"),
        S("table tennis players+", "rally quickly|hit the ball back and forth", "gym|home"),
        S("a punching bag|a heavy bag", "thud|swing on {pos} chain|shake with each punch", "gym"),
        S("a boxer", "punch a heavy bag|hit the pads|skip rope|throw fast jabs", "gym"),
        S("runners+|a sprinter|joggers+", "pound the track|race past|breathe hard|jog past", "pitch|stadium|park"),
        S("a starting pistol", "fire|crack", "stadium|pitch"),
        S("a racehorse|racehorses+", "thunder down the track|race past|gallop past", "racecourse|far"),
        S("ice skates+|skaters+", "scrape the ice|glide|carve the ice", "rink"),
        S("a hockey puck", "slap against the boards|slide across the ice", "rink"),
        S("a hockey player", "hit the puck|slam into the boards", "rink"),
        S("a volleyball|a football|a soccer ball|a rugby ball",
          "bounce|thump against a wall|hit the crossbar|get kicked hard", "pitch|gym|park"),
    ),
    "alarms": (
        S("a smoke alarm|a smoke detector|a fire alarm|a carbon monoxide alarm",
          "beep|chirp|go off|sound loudly|beep repeatedly|shriek|ring", "alarm_in|home|kitchen"),
        S("an alarm clock|a digital alarm clock|an old alarm clock|a phone alarm",
          "ring|beep|buzz|go off|ring loudly|beep insistently", "home|house"),
        S("a car alarm|a house alarm|a burglar alarm|a security alarm",
          "go off|blare|wail|whoop|sound repeatedly", "alarm_out|street|garage"),
        S("a siren|a police siren|an ambulance siren|a fire engine siren|an air raid siren|a tornado siren",
          "wail|blare|approach and fade|sound|rise and fall", "alarm_out|street|far|square"),
        S("an ambulance|a police car|a fire engine|a fire truck",
          "speed past with {pos} siren wailing|race by with sirens|pass with {pos} siren on|blare {pos} horn",
          "alarm_out|road|street|far"),
        S("a phone|a mobile phone|a telephone|an old telephone|a desk phone",
          "ring|buzz|vibrate on a table|ring and ring|chime", "office|home|cafe"),
        S("a forklift|a reversing lorry|a delivery truck", "beep as it reverses|beep steadily|"
          "beep while backing up", "site|factory|street"),
        S("a school bell|a fire bell", "ring|ring loudly|ring for a long time", "alarm_in"),
        S("a doorbell|a shop bell", "ring|ring twice|chime|buzz", "home|street"),
        S("a bicycle bell", "ring|ring twice|ring impatiently", "street|park"),
        S("a timer|a kitchen timer|an oven timer", "beep|ding|beep three times|go off", "kitchen|home"),
        S("a foghorn|a ship's horn", "sound|blast|moan", "coast|far"),
        S("a train horn", "blast|sound twice|blare", "rail|far"),
        S("a factory siren", "wail|sound the end of a shift", "factory|far"),
        S("a level crossing bell|a crossing alarm", "ding repeatedly|ring", "rail"),
        S("a pedestrian crossing signal", "beep|tick rapidly|beep quickly", "street|square"),
        S("a buzzer|an intercom|a door buzzer", "buzz|sound|buzz twice", "alarm_in|office|home"),
    ),
}

# --------------------------------------------------------------------------- sentences


def _subject(raw: str) -> tuple[str, bool]:
    return (raw[:-1], True) if raw.endswith("+") else (raw, False)


def _vp(src: Source, action: str, form: str, plural: bool) -> str:
    return conjugate(action, form, plural).replace("{pos}", "their" if plural else src.pos)


def _background(rng: random.Random, indoors: bool, avoid: str) -> tuple[str, str, bool]:
    """(finite clause, -ing phrase, placed?) of a background sound fitting the place; ``placed``
    says the clause already says where ("patter on the window"), so no "nearby" is added."""
    while True:
        s, a, io = rng.choice(BACKGROUNDS)
        subj, plural = _subject(s)
        if io == indoors and subj.split()[-1] not in avoid:
            placed = len(a.split()) > 2 or " in " in f" {a} " or " on " in f" {a} "
            return f"{subj} {conjugate(a, 'fin', plural)}", f"{subj} {conjugate(a, 'ger', plural)}", placed


def _overlaps(a: str, b: str) -> bool:
    """True when two phrases share a content word ("on the court" twice, "overhead" twice)."""
    words = lambda t: {w for w in t.replace(",", "").split() if len(w) > 3}  # noqa: E731
    return bool(words(a) & words(b))


def compose(rng: random.Random, src: Source) -> str:
    """One caption from one source, in one of several sentence shapes."""
    subj, plural = _subject(rng.choice(src.subjects))
    action = rng.choice(src.actions)
    indoors, places = PLACES[rng.choice(src.places)]
    others = [a for a in src.actions if a.split()[0] != action.split()[0] and not _overlaps(a, action)]
    action2 = rng.choice(others) if others else action
    fitting = [p for p in places if not _overlaps(p, f"{subj} {action} {action2}")] or ["nearby"]
    place = rng.choice(fitting)
    fin, ger = _vp(src, action, "fin", plural), _vp(src, action, "ger", plural)
    fin2, ger2 = _vp(src, action2, "fin", plural), _vp(src, action2, "ger", plural)
    bg_fin, bg_ger, bg_placed = _background(rng, indoors, subj)
    bg_where = "" if bg_placed else " in the background"
    bg_near = "" if bg_placed else " nearby"
    shape = rng.randrange(17)
    if action2 == action and shape in (8, 9, 16):  # no second action fits: one action, said once
        shape = 3
    if shape == 0:
        return f"{subj} {fin}"
    if shape == 1:
        return f"{subj} {ger}"
    if shape in (2, 3):
        return f"{subj} {fin} {place}"
    if shape in (4, 5):
        return f"{subj} {ger} {place}"
    if shape == 6:
        return f"{subj} {fin} {place} while {bg_fin}"
    if shape == 7:
        return f"{subj} {ger} {place} while {bg_fin}{bg_where}"
    if shape == 8:
        return f"{subj} {fin}, then {fin2}"
    if shape == 9:
        return f"{subj} {fin} and then {fin2} {place}"
    if shape == 10:  # a place reads well first only as "in/at/on a ..." ("into a microphone, ..." does not)
        if place.startswith(("in ", "at ", "on a ", "outside", "downtown")):
            return f"{place}, {subj} {fin}"
        return f"{subj} {fin} {place}"
    if shape == 11:
        return f"the sound of {subj} {ger} {place}"
    if shape == 12:
        return f"{subj} {ger} with {bg_ger}{bg_where}"
    if shape == 13:
        return f"{subj} {fin} as {bg_fin}{bg_near}"
    if shape == 14:
        when = rng.choice(TIMES) if not indoors else rng.choice(("late at night", "in the early morning",
                                                                  "on a rainy afternoon", "in the evening"))
        return f"{subj} {ger} {place} {when}"
    if shape == 15:
        return f"a recording of {subj} {ger} {place}"
    return f"{subj} {ger} and {ger2} {place}"


def generate(seed: int = SEED, per_category: int = PER_CATEGORY) -> dict[str, list[str]]:
    """Category -> distinct captions, in the order they were drawn (deterministic for a seed)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[str]] = {}
    for name, sources in CATEGORIES.items():
        lines: list[str] = []
        tries = 0
        while len(lines) < per_category:
            tries += 1
            if tries > per_category * 200:
                raise RuntimeError(f"category {name!r}: only {len(lines)} distinct captions could be composed")
            text = " ".join(compose(rng, rng.choice(sources)).split())
            if len(text) <= MAX_CHARS and text not in seen:
                seen.add(text)
                lines.append(text)
        out[name] = lines
    return out


def render(seed: int = SEED, per_category: int = PER_CATEGORY) -> str:
    """The corpus file's full text: a header, then one '# category' block per category."""
    parts = [
        "# fusemix sound captions: everyday sound descriptions, one per line, composed for this project",
        "# by tools/make_sound_captions.py (seeded; do not edit by hand, rerun the script).",
        "# Lines starting with '#' and blank lines are ignored (fusemix.caption_bank.load_captions reads it).",
    ]
    for name, lines in generate(seed, per_category).items():
        parts.append(f"# {name}")
        parts.extend(lines)
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(OUTPUT), help="where to write the corpus")
    p.add_argument("--check", action="store_true", help="only compare with the existing file; exit 1 if it differs")
    args = p.parse_args(argv)
    text = render()
    out = Path(args.out)
    if args.check:
        same = out.is_file() and out.read_text(encoding="utf-8") == text
        print(f"{out}: {'up to date' if same else 'STALE: rerun python tools/make_sound_captions.py'}")
        return 0 if same else 1
    from fusemix.io import atomic_write_text

    atomic_write_text(out, text)
    print(f"wrote {sum(1 for ln in text.splitlines() if ln and not ln.startswith('#'))} captions to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
