"""`tfn import`: models from Keras, TensorFlow and ONNX files as tfn model directories.

    imported = read("model.keras")              # any supported file: a reader by its format
    write(imported, "imported/")                # spec.yaml, graph.json, checkpoints/, import.json

Readers: keras.py (.keras, .h5), tensorflow.py (frozen GraphDef .pb, TF 1.x
checkpoint + .meta; bundle.py reads the checkpoint's tensor bundle),
onnx.py (.onnx). Each turns its file into foreign layers that build.py maps
through the ops' own import rules (layers/imports.py).
"""

from __future__ import annotations

from pathlib import Path

from tfn.runners.importers.build import ImportFailed
from tfn.runners.importers.directory import Imported, write

FORMATS = ("keras", "h5", "pb", "checkpoint", "onnx")


def detect(path: Path) -> str:
    """The reader for a file, by its suffix and first bytes."""
    suffix = path.suffix.lower()
    if suffix in (".keras", ".h5", ".hdf5"):
        return "keras"
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".pb", ".pbtxt"):
        return "pb"
    if suffix == ".meta" or path.with_name(path.name + ".index").exists() or suffix == ".index":
        return "checkpoint"
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PK") or head.startswith(b"\x89HDF"):
        return "keras"
    raise ImportFailed(
        f"{path}: error: cannot tell the format: tfn imports .keras, .h5, .pb (a frozen GraphDef), "
        "a TF 1.x checkpoint prefix (with its .index, .data-* and .meta files) and .onnx"
    )


def checkpoint_prefix(path: Path) -> Path:
    """A TF 1.x checkpoint named by its prefix, its .index or its .meta file -> the prefix."""
    for suffix in (".index", ".meta"):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def read(path: str | Path, *, outputs: list[str] | None = None, spec: str | Path | None = None, input_layout: str = "nchw") -> Imported:
    """Read a model file (any supported format) into an Imported, or ImportFailed listing what cannot be mapped.

    `input_layout` nhwc keeps a features-last source's input layout (a transpose node after each input).
    """
    if input_layout not in ("nchw", "nhwc"):
        raise ImportFailed(f"--input-layout: error: {input_layout!r} is not nchw or nhwc")
    path = Path(path)
    kind = detect(path) if path.exists() or not checkpoint_prefix(path).with_name(checkpoint_prefix(path).name + ".index").exists() else "checkpoint"
    if kind != "checkpoint" and not path.is_file():
        raise ImportFailed(f"{path}: error: no such file")
    if spec is not None:
        raise ImportFailed(f"--spec: error: a spec takes the weights of a TF 1.x checkpoint; {path} is a {kind} file" if kind != "checkpoint" else "--spec: use into_spec()")
    if kind == "keras":
        from tfn.runners.importers import keras

        if outputs:
            raise ImportFailed("--outputs: error: a Keras model names its own outputs")
        return keras.read(path, input_layout)
    if kind == "onnx":
        from tfn.runners.importers import onnx

        if input_layout == "nhwc":
            raise ImportFailed("--input-layout nhwc: error: an ONNX model's inputs are channels-first already")
        return onnx.read(path, outputs)
    from tfn.runners.importers import tensorflow

    if kind == "pb":
        return tensorflow.read_graphdef(path, outputs, input_layout)
    return tensorflow.read_checkpoint(checkpoint_prefix(path), outputs, input_layout)


def into_spec(path: str | Path, spec: str | Path, out: str | Path):
    """A TF 1.x checkpoint's weights into a spec's graph by variable name: (import.json's record, the --init-from report)."""
    from tfn.runners.importers.tensorflow import write_into_spec

    path = Path(path)
    prefix = checkpoint_prefix(path)
    if not Path(f"{prefix}.index").is_file():
        raise ImportFailed(f"{path}: error: --spec takes a TF 1.x checkpoint (PREFIX.index and .data-*); no {prefix}.index")
    return write_into_spec(prefix, spec, out)


__all__ = ["FORMATS", "ImportFailed", "Imported", "detect", "into_spec", "read", "write"]
