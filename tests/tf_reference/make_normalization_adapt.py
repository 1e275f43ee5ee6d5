"""Keras's Normalization layer after `adapt`: the statistics `normalize: {FIELD: standard}` must match.

Run with the TensorFlow reference environment (not a dependency of tfn):
    python tests/tf_reference/make_normalization_adapt.py
writes tests/tf_reference/normalization_adapt.json. Keras normalises the last
axis (its feature axis, channels-last); the JSON stores the data and the
layer's output in tfn's channels-first layout, where the feature axis is 1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# name -> (Keras's shape, channels-last; the transpose to tfn's channels-first layout)
CASES = {
    "table": ((12, 3), (0, 1)),
    "images": ((5, 2, 3, 4), (0, 3, 1, 2)),
}


def main() -> None:
    rng = np.random.default_rng(14)
    out = {"tensorflow": tf.__version__, "keras": keras.__version__, "cases": {}}
    for name, (shape, to_tfn) in CASES.items():
        scales = rng.uniform(0.1, 100.0, shape[-1])
        data = (rng.normal(0.0, 1.0, shape) * scales + rng.uniform(-50, 50, shape[-1])).astype(np.float32)
        layer = keras.layers.Normalization(axis=-1)
        layer.adapt(data)
        result = np.asarray(layer(data))
        out["cases"][name] = {
            "data": np.transpose(data, to_tfn).tolist(),
            "mean": np.asarray(layer.mean).reshape(-1).astype(float).tolist(),
            "variance": np.asarray(layer.variance).reshape(-1).astype(float).tolist(),
            "output": np.transpose(result, to_tfn).tolist(),
        }
    path = Path(__file__).with_name("normalization_adapt.json")
    path.write_text(json.dumps(out) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
