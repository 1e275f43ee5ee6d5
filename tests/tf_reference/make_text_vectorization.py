"""Keras's TextVectorization after `adapt`: what the `text` data source claims parity with.

Run with the TensorFlow reference environment (not a dependency of tfn):
    python tests/tf_reference/make_text_vectorization.py
writes tests/tf_reference/text_vectorization.json: for each case, the layer's
settings, the texts it adapted to, its vocabulary (index 0 the padding '',
index 1 the OOV '[UNK]') and the ids it gives the query texts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

TRAIN = [
    "The cat, the DOG... and the bird!",
    "b a a b c c d",
    "it's not GOOD\u2014really?",
    "  spaces\tand\nnewlines  ",
    "caf\u00e9 \u00dcber na\u00efve",
    "e d c b a",
    "non\u00a0breaking space, x-ray (yes) [no] {maybe} 'quoted' \"double\" a/b a\\b 50% #1 @me ~ok~ a_b",
]
QUERIES = [
    "the cat is not good",
    "a b c d e f g",
    "THE Cat",
    "",
    "!!! ...",
    "\u00dcber caf\u00e9 x-ray",
    "non\u00a0breaking",
]
# name -> TextVectorization arguments
CASES = {
    "default": {"max_tokens": 12, "output_sequence_length": 5},
    "unlimited": {"output_sequence_length": 8},
    "lower": {"standardize": "lower", "output_sequence_length": 6},
    "strip_punctuation": {"standardize": "strip_punctuation", "output_sequence_length": 6},
    "none": {"standardize": None, "max_tokens": 20, "output_sequence_length": 4},
    "character": {"split": "character", "output_sequence_length": 10},
    "character_limited": {"split": "character", "max_tokens": 8, "output_sequence_length": 6},
}


def main() -> None:
    out = {"tensorflow": tf.__version__, "keras": keras.__version__, "train": TRAIN, "queries": QUERIES, "cases": {}}
    for name, arguments in CASES.items():
        layer = keras.layers.TextVectorization(**arguments)
        layer.adapt(TRAIN)
        out["cases"][name] = {
            "arguments": arguments,
            "vocabulary": [str(token) for token in layer.get_vocabulary()],
            "ids": np.asarray(layer(QUERIES)).astype(int).tolist(),
        }
    path = Path(__file__).with_name("text_vectorization.json")
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
