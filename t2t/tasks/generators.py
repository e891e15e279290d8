"""Built-in generators for the offline task suite: deterministic rows, no download.

Each generator is ``fn(split, n, seed) -> list[dict]`` and returns exactly ``n`` plain JSON-able rows
(ints, strings, lists). The task files in ``templates/offline/`` name them with ``source: {generator: NAME}``.

Determinism and leakage, the two rules every generator keeps:

- Same ``(split, n, seed)`` gives the same rows in every process: randomness comes from
  ``random.Random`` seeded by a SHA-256 of ``(name, split, seed)``, never from ``hash()``.
- The splits never share a row. Every candidate row has a key (the row itself, or a coarser one such as
  the unordered operand pair of ``a + b``) and the key's hash puts it in exactly one split: 80% of the
  key space is train, 10% validation, 10% test. The assignment depends on the generator name only, not on
  the seed, so train rows drawn with one seed cannot leak into test rows drawn with another.

Rows are distinct within a split too. When a split's key space is smaller than ``n`` the generator raises
:class:`~t2t.errors.T2TError` instead of repeating rows; the task files set ``sizes`` that fit.

Classification generators balance labels exactly (``n // k`` or ``n // k + 1`` per label) and draw the
label first, then a row for it, so no label is easier to draw than another. ``label`` indexes the task
file's ``choices``: 0 is the positive answer in sentiment, the first of the two options in comparison.

Learnability (a few-M-parameter T5 tuned for a few hundred steps on a CPU): inputs stay under ~40 words
from small closed vocabularies, targets are one to four words, and what decides the answer never sits at
a fixed token position unless finding that position is the skill (first/last word).

    >>> rows = GENERATORS["arith_sum"]("train", 2, 0)
    >>> rows == GENERATORS["arith_sum"]("train", 2, 0) and sorted(rows[0]) == ["a", "b", "total"]
    True
"""

from __future__ import annotations

import difflib
import json
import random
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from t2t.errors import T2TError
from t2t.seeds import stable_seed

Row = dict[str, Any]
Generator = Callable[[str, int, int], list[Row]]

SPLITS = ("train", "validation", "test")
# Percent of the key space per split, in order; the hash of a key picks one bucket out of 100.
_SPLIT_SHARE = {"train": 80, "validation": 10, "test": 10}
# Consecutive rejected draws after which a split's space counts as exhausted (rejection sampling only).
_MAX_MISSES = 20_000


# -- seeding and split assignment ------------------------------------------------------------------

def _digest(*parts: object) -> int:
    # Big-endian, unlike the other stable seeds: the generated rows and splits were frozen with it.
    return stable_seed(*parts, byteorder="big")


def _rng(name: str, split: str, seed: int) -> random.Random:
    return random.Random(_digest("t2t.synthetic", name, split, seed))


def split_of(name: str, key: Hashable) -> str:
    """The one split that a row key belongs to for generator ``name``."""
    bucket = _digest("t2t.split", name, json.dumps(key, sort_keys=True)) % 100
    for split, share in _SPLIT_SHARE.items():
        if bucket < share:
            return split
        bucket -= share
    raise AssertionError("split shares must add up to 100")


def _row_key(row: Row) -> str:
    return json.dumps(row, sort_keys=True)


def _check_args(name: str, split: str, n: int) -> None:
    if split not in SPLITS:
        raise T2TError(f"generator '{name}' has splits {', '.join(SPLITS)}, not '{split}'; "
                       f"map other split names with the task file's 'splits' field")
    if n < 0:
        raise T2TError(f"generator '{name}': the size of split '{split}' must be >= 0, got {n}")


def _exhausted(name: str, split: str, n: int, have: int) -> T2TError:
    return T2TError(f"generator '{name}' has only {have} distinct rows for split '{split}' but {n} were "
                    f"asked for; lower source.sizes.{split} in the task file")


def _balanced_labels(n: int, k: int) -> list[int]:
    return [i % k for i in range(n)]


def _sample(name: str, split: str, n: int, seed: int, make: Callable[..., Row], *,
            labels: int = 0, key: Callable[[Row], Hashable] = _row_key) -> list[Row]:
    """Rejection-sample ``n`` distinct rows of ``split`` from ``make(rng)`` or ``make(rng, label)``."""
    _check_args(name, split, n)
    rng = _rng(name, split, seed)
    rows: list[Row] = []
    seen: set[Hashable] = set()
    for label in _balanced_labels(n, labels) if labels else [None] * n:
        for _ in range(_MAX_MISSES):
            row = make(rng) if label is None else make(rng, label)
            k = key(row)
            if k not in seen and split_of(name, k) == split:
                break
        else:
            raise _exhausted(name, split, n, len(rows))
        seen.add(k)
        rows.append(row)
    rng.shuffle(rows)
    return rows


def _enumerate(name: str, split: str, n: int, seed: int, space: Sequence[Row],
               key: Callable[[Row], Hashable]) -> list[Row]:
    """Draw ``n`` distinct rows of ``split`` from a small space listed in full."""
    _check_args(name, split, n)
    pool = [row for row in space if split_of(name, key(row)) == split]
    if n > len(pool):
        raise _exhausted(name, split, n, len(pool))
    return _rng(name, split, seed).sample(pool, n)


def _w(text: str) -> list[str]:
    """A lexicon written as one string: ``|`` separates entries when any entry has a space."""
    return text.split("|") if "|" in text else text.split()


# -- lexicons -------------------------------------------------------------------------------------

NAMES = _w("Ann Ben Cara Dan Eva Finn Gina Hugo Ida Jack Kim Leo Mia Nora Omar Pia Raj Sara Tom Uma "
           "Vic Wen Yusuf Zoe")
CITIES = _w("Lisbon Cairo Oslo Lima Tokyo Paris Rome Dublin Nairobi Seoul Quito Madrid Vienna Delhi "
            "Boston Sydney")
JOBS = _w("baker nurse pilot teacher farmer doctor painter driver chef lawyer singer tailor")
PETS = _w("cat dog parrot rabbit hamster goldfish turtle horse")
OBJECTS = _w("cup box hat ball lamp chair book bag kite car shoe vase pen door bike coat")
COLORS = _w("red blue green yellow black white pink brown orange purple gray")
EVENTS = _w("concert fair party wedding meeting picnic parade match exam festival dinner race")
MONTHS = _w("January February March April May June July August September October November December")
SHOP_ITEMS = _w("lamp chair kettle backpack umbrella blender mirror clock rug toaster scarf jacket "
                "teapot pillow")
COUNT_ITEMS = _w("apples pencils stickers marbles cookies stamps shells books cards coins")
GAINS = _w("buys|finds|is given|picks up|wins")
ANIMALS = _w("cat dog fox owl bee cow pig hen duck frog bear wolf lion goat seal crab deer mouse snake "
             "horse")
GROCERIES = _w("apples bread milk eggs rice butter cheese plums pears beans flour sugar salt tea coffee "
               "honey jam pasta onions carrots")
THINGS = _w("sun moon tree river stone cloud door window book chair lamp road hill ship bell coin ring "
            "cake star leaf")

_POS_CORE = _w("great wonderful excellent superb brilliant lovely delightful fantastic amazing enjoyable "
               "pleasant perfect")
_NEG_CORE = _w("terrible awful boring dull poor bad horrible disappointing weak annoying lousy mediocre")


class _Domain:
    """What a review in one domain is made of; the polarity lexicons overlap across domains on purpose."""

    def __init__(self, aspects: str, pos: str, neg: str, pos_phrases: str, neg_phrases: str,
                 fillers: str, verb: str) -> None:
        self.aspects = _w(aspects)
        self.adjectives = (_POS_CORE + _w(pos), _NEG_CORE + _w(neg))  # indexed by label: 0 pos, 1 neg
        self.phrases = (_w(pos_phrases), _w(neg_phrases))
        self.fillers = _w(fillers)
        self.verb = verb


MOVIE = _Domain(
    "plot acting script ending soundtrack cast pacing dialogue story villain",
    "gripping moving clever", "tedious predictable clumsy",
    "i would watch it again|a must see|i laughed the whole time|worth every minute",
    "i almost walked out|a waste of two hours|i fell asleep halfway|i want my money back",
    "we saw it on a friday|my sister came along|it runs about two hours|i watched it at home"
    "|it came out last year|the director is french",
    "was",
)
PRODUCT = _Domain(
    "battery screen design case charger strap speaker button cable lid handle",
    "sturdy reliable sleek", "flimsy fragile faulty",
    "i would buy it again|my kids love it|five stars from me|worth the money",
    "i sent it back|it broke after a week|one star from me|do not waste your money",
    "i ordered it in march|it came in a blue box|i use it every day|i got it as a gift"
    "|it fits in my bag|delivery took three days",
    "is",
)
RESTAURANT = _Domain(
    "food service pasta soup waiter dessert coffee pizza staff curry bread",
    "tasty fresh friendly", "bland stale rude",
    "will be back soon|best meal this month|thank you chef|totally worth the wait",
    "never going back|worst meal this month|what a letdown|not worth the wait",
    "table for two tonight|came here after work|booked on tuesday|sat by the window|lunch with my mom",
    "was",
)
_HANDLES = _w("@luigis @greenfork @caferosa @noodlebar @bluedoor @tacotown")
_HASHTAGS = _w("#dinner #foodie #lunch #weekend #datenight")

TOPIC_NOUNS = (  # label order: sports, food, weather, music
    _w("team coach match goal referee stadium league striker final tournament goalkeeper season"),
    _w("recipe soup oven bread chef spices salad dough garlic noodles kitchen dessert"),
    _w("rain storm wind sunshine clouds snow forecast fog thunder frost heatwave showers"),
    _w("band guitar song album drummer choir piano melody singer lyrics orchestra playlist"),
)
# Frames shared by every topic: the topic word is the only cue and its position moves with the frame.
_TOPIC_SENTENCES = _w("{who} talked about the {n} {when}|{who} could not stop thinking about the {n}"
                      "|{when} {who} read a long story about the {n}|the {n} was all {who} wanted {when}"
                      "|{who} said the {n} and the {m} were the best part {when}")
_TOPIC_HEADLINES = _w("{city} {n} makes headlines|new {n} surprises {city}|what the {n} means for {city}"
                      "|{n} and {m} draw crowds in {city}|{city} wakes up to {n} news|the {n} nobody in "
                      "{city} expected")
_TOPIC_QUESTIONS = _w("where can i learn more about the {n}?|is the {n} worth it {when}?|why is everyone "
                      "talking about the {n}?|what do you think of the {n} and the {m}?|how do i explain the "
                      "{n} to {who}?|should {who} care about the {n} {when}?")
_WHO = _w("my uncle|the whole town|our neighbor|a student|everyone at work|two old friends|the kids"
          "|my sister|a tourist|the mayor")
_WHEN = _w("on sunday|last night|this morning|all week|after lunch|before dinner|yesterday"
           "|on the weekend")


# -- sentiment --------------------------------------------------------------------------------------

def _review(rng: random.Random, domain: _Domain, label: int) -> str:
    aspects = rng.sample(domain.aspects, 3)
    clause = _w("the {a} {v} {j}|{j} {a}|the {a} {v} really {j}|the {a} felt {j}|i thought the {a} {v} {j}")
    parts = [rng.choice(clause).format(a=aspects[i], v=domain.verb, j=rng.choice(domain.adjectives[label]))
             for i in range(rng.choice((1, 2)))]
    if rng.random() < 0.5:
        parts.append(rng.choice(domain.phrases[label]))
    # A minority opinion keeps "any negative word => negative" from being the whole rule:
    # the row's own polarity still has the majority of the cues.
    if len(parts) >= 2 and rng.random() < 0.3:
        parts.append(f"the {aspects[2]} {domain.verb} {rng.choice(domain.adjectives[1 - label])}")
    elif rng.random() < 0.5:  # a neutral aside, not on top of a minority opinion: inputs stay short
        parts.append(rng.choice(domain.fillers))
    rng.shuffle(parts)
    return ". ".join(parts)


def _sentiment(domain: _Domain, name: str, tweet: bool = False) -> Generator:
    def make(rng: random.Random, label: int) -> Row:
        text = _review(rng, domain, label)
        if tweet:
            tag = f" {rng.choice(_HASHTAGS)}" if rng.random() < 0.5 else ""
            text = f"{rng.choice(_HANDLES)} {text}{tag}"
        return {"text": text, "label": label}

    def generate(split: str, n: int, seed: int) -> list[Row]:
        return _sample(name, split, n, seed, make, labels=2)

    return generate


# -- comparison --------------------------------------------------------------------------------------

def _unordered_pair(row: Row) -> tuple[int, int]:
    return min(row["a"], row["b"]), max(row["a"], row["b"])


def _two_distinct(rng: random.Random, lo: int, hi: int) -> tuple[int, int]:
    x, y = rng.sample(range(lo, hi + 1), 2)
    return x, y


def _compare_numbers(split: str, n: int, seed: int) -> list[Row]:
    def make(rng: random.Random, label: int) -> Row:
        x, y = _two_distinct(rng, 1, 99)
        ask = rng.choice(("larger", "smaller"))
        win, lose = (max(x, y), min(x, y)) if ask == "larger" else (min(x, y), max(x, y))
        a, b = (win, lose) if label == 0 else (lose, win)
        return {"a": a, "b": b, "ask": ask, "label": label}

    # Both orders and both questions about one pair land in the same split.
    return _sample("compare_numbers", split, n, seed, make, labels=2, key=_unordered_pair)


def _compare_entities(name: str, entities: list[str], lo: int, hi: int, asks: tuple[str, str],
                      fields: tuple[str, str]) -> Generator:
    """Two entities with a number each; ``asks[0]`` asks for the larger number, ``asks[1]`` the smaller."""
    ent, num = fields

    def make(rng: random.Random, label: int) -> Row:
        e1, e2 = rng.sample(entities, 2)
        x, y = _two_distinct(rng, lo, hi)
        ask = rng.choice(asks)
        win, lose = (max(x, y), min(x, y)) if ask == asks[0] else (min(x, y), max(x, y))
        (ea, va), (eb, vb) = ((e1, win), (e2, lose)) if label == 0 else ((e1, lose), (e2, win))
        return {f"{ent}_a": ea, f"{num}_a": va, f"{ent}_b": eb, f"{num}_b": vb, "ask": ask, "label": label}

    def generate(split: str, n: int, seed: int) -> list[Row]:
        return _sample(name, split, n, seed, make, labels=2)

    return generate


# -- arithmetic --------------------------------------------------------------------------------------

def _sum_pairs(name: str, a_range: range, b_range: range) -> Generator:
    space = [{"a": a, "b": b, "total": a + b} for a in a_range for b in b_range]

    def generate(split: str, n: int, seed: int) -> list[Row]:
        # "3 + 9" and "9 + 3" share a split: commutativity must not leak test sums into train.
        return _enumerate(name, split, n, seed, space, key=_unordered_pair)

    return generate


def _arith_word(split: str, n: int, seed: int) -> list[Row]:
    def make(rng: random.Random) -> Row:
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        return {"name": rng.choice(NAMES), "item": rng.choice(COUNT_ITEMS), "verb": rng.choice(GAINS),
                "a": a, "b": b, "total": a + b}

    return _sample("arith_word", split, n, seed, make)


# -- extraction --------------------------------------------------------------------------------------

def _extract_person(split: str, n: int, seed: int) -> list[Row]:
    def make(rng: random.Random) -> Row:
        fields = [["city", rng.choice(CITIES)], ["job", rng.choice(JOBS)], ["pet", rng.choice(PETS)],
                  ["age", str(rng.randint(20, 70))]]
        rng.shuffle(fields)
        ask, value = rng.choice(fields)
        return {"name": rng.choice(NAMES), "fields": fields, "ask": ask, "value": value}

    return _sample("extract_person", split, n, seed, make)


def _extract_object(split: str, n: int, seed: int) -> list[Row]:
    def make(rng: random.Random) -> Row:
        k = rng.randint(2, 4)
        pairs = [list(p) for p in zip(rng.sample(OBJECTS, k), rng.sample(COLORS, k), strict=True)]
        obj, color = rng.choice(pairs)
        return {"pairs": pairs, "object": obj, "color": color}

    return _sample("extract_object", split, n, seed, make)


def _extract_event(split: str, n: int, seed: int) -> list[Row]:
    def make(rng: random.Random) -> Row:
        k = rng.randint(2, 3)
        dates: list[str] = []
        while len(dates) < k:
            date = f"{rng.choice(MONTHS)} {rng.randint(1, 28)}"
            if date not in dates:
                dates.append(date)
        events = [list(p) for p in zip(rng.sample(EVENTS, k), dates, strict=True)]
        event, date = rng.choice(events)
        return {"events": events, "event": event, "date": date}

    return _sample("extract_event", split, n, seed, make)


# -- word transforms ----------------------------------------------------------------------------------

def _word_list(name: str, lexicon: list[str], lo: int, hi: int, result: str,
               transform: Callable[[list[str]], Any]) -> Generator:
    def make(rng: random.Random) -> Row:
        words = rng.sample(lexicon, rng.randint(lo, hi))
        return {"words": words, result: transform(words)}

    def generate(split: str, n: int, seed: int) -> list[Row]:
        return _sample(name, split, n, seed, make)

    return generate


# -- topic ----------------------------------------------------------------------------------------------

def _topic(name: str, frames: list[str]) -> Generator:
    def make(rng: random.Random, label: int) -> Row:
        n, m = rng.sample(TOPIC_NOUNS[label], 2)
        text = rng.choice(frames).format(n=n, m=m, who=rng.choice(_WHO), when=rng.choice(_WHEN),
                                         city=rng.choice(CITIES).lower())
        return {"text": text, "label": label}

    def generate(split: str, n: int, seed: int) -> list[Row]:
        return _sample(name, split, n, seed, make, labels=4)

    return generate


# -- the table ------------------------------------------------------------------------------------------

GENERATORS: dict[str, Generator] = {
    "sentiment_movie": _sentiment(MOVIE, "sentiment_movie"),
    "sentiment_product": _sentiment(PRODUCT, "sentiment_product"),
    "sentiment_restaurant": _sentiment(RESTAURANT, "sentiment_restaurant", tweet=True),
    "compare_numbers": _compare_numbers,
    "compare_ages": _compare_entities("compare_ages", NAMES, 5, 90, ("older", "younger"), ("name", "age")),
    "compare_prices": _compare_entities("compare_prices", SHOP_ITEMS, 2, 99, ("more expensive", "cheaper"),
                                        ("item", "price")),
    "arith_sum": _sum_pairs("arith_sum", range(0, 31), range(0, 31)),
    "arith_word": _arith_word,
    "arith_more": _sum_pairs("arith_more", range(0, 41), range(1, 21)),
    "extract_person": _extract_person,
    "extract_object": _extract_object,
    "extract_event": _extract_event,
    "word_first": _word_list("word_first", GROCERIES, 3, 5, "first", lambda w: w[0]),
    "word_last": _word_list("word_last", ANIMALS, 3, 5, "last", lambda w: w[-1]),
    "word_reverse": _word_list("word_reverse", THINGS, 3, 4, "reversed", lambda w: w[::-1]),
    "topic_sentence": _topic("topic_sentence", _TOPIC_SENTENCES),
    "topic_headline": _topic("topic_headline", _TOPIC_HEADLINES),
    "topic_question": _topic("topic_question", _TOPIC_QUESTIONS),
}


def generator_names() -> list[str]:
    """Names of the built-in generators, sorted."""
    return sorted(GENERATORS)


def get_generator(name: str) -> Generator:
    """The generator called ``name``; an unknown name is a :class:`T2TError` naming the nearest ones."""
    try:
        return GENERATORS[name]
    except KeyError:
        near = difflib.get_close_matches(name, GENERATORS, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(near)}?" if near else f"known: {', '.join(generator_names())}"
        raise T2TError(f"unknown generator '{name}' in source.generator; {hint}") from None
