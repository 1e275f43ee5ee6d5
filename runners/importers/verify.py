"""`tfn import --verify`: run the original (TensorFlow, Keras or onnxruntime) and the import on the same random inputs.

Neither TensorFlow nor onnxruntime is a dependency of tfn: without the one a
format needs, the error says which to install.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfn.runners.importers.directory import Imported
from tfn.specs.errors import UserError


class VerifyUnavailable(UserError):
    """The original cannot be run here: the framework it needs is not installed."""


@dataclass(frozen=True)
class Difference:
    output: str  # the source's name of the output
    node: str  # the tfn node
    max_abs: float
    max_rel: float


def random_inputs(imported: Imported, samples: int, seed: int) -> dict[str, np.ndarray]:
    """Inputs of the declared shapes (tfn layout): standard normal floats, integers in [0, 2)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, t in imported.builder.inputs.items():
        shape = (samples, *t.sample_shape)
        feeds[name] = rng.integers(0, 2, shape).astype(t.dtype) if t.dtype.startswith("int") else rng.standard_normal(shape).astype(t.dtype)
    return feeds


def _source_layout(array: np.ndarray, channels_last: bool) -> np.ndarray:
    return np.moveaxis(array, 1, -1) if channels_last and array.ndim >= 3 else array


def run_original(imported: Imported, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The original model's outputs (in the source's layout) on `feeds` (given in tfn's layout)."""
    channels_last = imported.builder.channels_last and not imported.builder.keep_input_layout  # nhwc inputs are the source's already
    source = {name: _source_layout(v, channels_last) for name, v in feeds.items()}
    fmt = imported.format
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise VerifyUnavailable("--verify: error: running the original ONNX model needs onnxruntime: pip install onnxruntime") from None
        session = onnxruntime.InferenceSession(str(imported.source), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        by_tfn = imported.builder.source_inputs
        return session.run(imported.output_names, {by_tfn[k]: v for k, v in source.items() if by_tfn[k] in names})
    try:
        import tensorflow as tf
    except ImportError:
        what = {"keras3": "Keras 3 with TensorFlow", "tf_keras_h5": "TensorFlow (with tf-keras for a tf.keras .h5)"}.get(fmt, "TensorFlow")
        raise VerifyUnavailable(f"--verify: error: running the original {imported.source.name} needs {what}: pip install tensorflow") from None
    ordered = [source[name] for name in imported.builder.inputs]
    if fmt in ("keras3", "tf_keras_h5"):
        model = _load_keras(imported.source, fmt)
        result = model(ordered if len(ordered) > 1 else ordered[0], training=False)
        return [np.asarray(r) for r in (result if isinstance(result, (list, tuple)) else [result])]
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        if fmt == "tf_graphdef":
            graph_def = v1.GraphDef()
            graph_def.ParseFromString(imported.source.read_bytes())
            tf.import_graph_def(graph_def, name="")
        else:
            prefix = str(imported.source)[: -len(".index")]
            v1.train.import_meta_graph(prefix + ".meta").restore(session, prefix)
        inputs = {f"{imported.builder.source_inputs[name]}:0": source[name] for name in imported.builder.inputs}
        return session.run([f"{o}:0" if ":" not in o else o for o in imported.output_names], inputs)


def _load_keras(path: Path, fmt: str):
    if fmt == "tf_keras_h5":
        try:
            import tf_keras

            return tf_keras.models.load_model(path, compile=False)
        except ImportError:
            pass
    try:
        import keras
    except ImportError:
        raise VerifyUnavailable("--verify: error: running the original needs Keras: pip install tensorflow") from None
    return keras.models.load_model(path, compile=False)


def verify(imported: Imported, model_dir: Path, *, samples: int = 2, seed: int = 0) -> list[Difference]:
    """The largest absolute and relative difference of each output between the original and the import."""
    from tfn.runners.preprocessing import for_model
    from tfn.runners.session import load_model, run

    feeds = random_inputs(imported, samples, seed)
    expected = run_original(imported, feeds)
    model = load_model(model_dir)
    record = for_model(Path(model_dir))  # the original's own preprocessing layers became these steps
    got = run(model, {name: record.feed_of_decoded(name, value) for name, value in feeds.items()}, imported.outputs).values
    out = []
    for name, node, want in zip(imported.output_names, imported.outputs, expected):
        mine = _source_layout(got[node], imported.builder.channels_last)
        want = np.asarray(want, dtype=np.float64).reshape(mine.shape)
        diff = np.abs(mine.astype(np.float64) - want)
        out.append(Difference(name, node, float(diff.max()), float((diff / np.maximum(np.abs(want), 1e-6)).max())))
    return out
