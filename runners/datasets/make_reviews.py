"""Generate reviews.csv, the text data set shipped with tfn (`path: shipped:reviews.csv` of the `text` source).

    python runners/datasets/make_reviews.py        # rewrites runners/datasets/reviews.csv

Each review joins two clauses, "the SUBJECT was [not] [very] ADJECTIVE", with
a connective; its label (positive or negative) is the sentiment of the main
clause, the adjective's polarity flipped by a `not` before it:

- "C1 but C2" and "although C1 C2": the second clause's sentiment;
- "C1 even though C2": the first clause's.

Which clause a `not` and each adjective belong to is a matter of word order,
so a bag of words cannot tell the label: the same words with the `not` moved
to the other clause can flip it. A model that sees only which words occur (a
bag of embeddings) gets about 5/8 right at best; one that reads the order can
get every review right.

Deterministic: only random.Random.random() draws (its output for a seed is
stable across Python versions, unlike choice() and shuffle()). Written by the
tfn authors; licensed as tfn (Apache-2.0).
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

SEED = 20261203
REVIEWS = 3000
SUBJECTS = [
    "food", "service", "movie", "plot", "acting", "music", "staff", "room",
    "view", "price", "ending", "book", "hotel", "coffee", "game", "show",
]  # fmt: skip
POSITIVE = ["good", "great", "excellent", "lovely", "fun", "pleasant", "superb", "charming", "tasty", "clever"]
NEGATIVE = ["bad", "awful", "boring", "dull", "poor", "terrible", "bland", "rude", "slow", "weak"]
VERBS = ["was", "is", "seemed", "felt"]
INTENSIFIERS = ["", "", "very", "really", "quite"]  # none half as often again as each word


def _pick(rng: random.Random, options: list[str]) -> str:
    return options[int(rng.random() * len(options))]


def _clause(rng: random.Random) -> tuple[str, bool]:
    """A clause and whether its sentiment is positive."""
    positive = rng.random() < 0.5
    negated = rng.random() < 0.5
    words = ["the", _pick(rng, SUBJECTS), _pick(rng, VERBS)] + ["not"] * negated
    intensifier = _pick(rng, INTENSIFIERS)
    words += [intensifier] * bool(intensifier) + [_pick(rng, POSITIVE if positive else NEGATIVE)]
    return " ".join(words), positive != negated


def review(rng: random.Random) -> tuple[str, str]:
    """One review and its label."""
    (first, first_positive), (second, second_positive) = _clause(rng), _clause(rng)
    form = rng.random()
    if form < 0.4:
        text, positive = f"{first}, but {second}.", second_positive
    elif form < 0.7:
        text, positive = f"Although {first}, {second}.", second_positive
    else:
        text, positive = f"{first.capitalize()} even though {second}.", first_positive
    return text[0].upper() + text[1:], "positive" if positive else "negative"


def generate(count: int = REVIEWS, seed: int = SEED) -> str:
    """The CSV text: a header `text,label`, then `count` reviews."""
    rng = random.Random(seed)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["text", "label"])
    for _ in range(count):
        writer.writerow(review(rng))
    return buffer.getvalue()


if __name__ == "__main__":
    path = Path(__file__).with_name("reviews.csv")
    path.write_text(generate(), encoding="utf-8")
    print(f"wrote {path}")
