"""Shared test helpers: write specs to temporary files and run the CLI."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner


@pytest.fixture
def write_spec(tmp_path: Path):
    """write_spec(text, name="spec.yaml") -> path of a dedented spec file."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture
def tfn_cli():
    """tfn_cli(*args) -> (exit code, stdout, stderr) through tfn.cli.main.main, in-process."""
    from tfn.cli.main import main

    def run(*args: str):
        runner = CliRunner()
        result = runner.invoke(_entry, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    import click

    @click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
    @click.pass_context
    def _entry(ctx):
        main(list(ctx.args))

    return run


MINIMAL_SPEC = """
version: 1
name: tiny
model:
  inputs:
    image: {shape: [1, 8, 8]}
  layers:
    - {name: conv, op: conv2d, filters: 4, kernel_size: 3, padding: SAME}
    - {op: relu}
    - {op: flatten}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits, batch_size: 64}
train: {epochs: 1}
"""


@pytest.fixture
def minimal_spec(write_spec) -> Path:
    return write_spec(MINIMAL_SPEC)


@pytest.fixture
def session_hparams():
    """session_hparams(run_dir) -> {name: value} of the run's TensorBoard HParams session, read with TensorBoard's reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    def read(run_dir: Path) -> dict:
        events = EventAccumulator(str(run_dir))  # the session lives in the run directory's own event file
        events.Reload()
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        return {name: getattr(value, value.WhichOneof("kind")) for name, value in values.items()}

    return read


TINY_CONV_SPEC = """
version: 1
name: tiny
model:
  inputs: {image: {shape: [1, 8, 8]}}
  layers:
    - {name: conv, op: conv2d, filters: 4, kernel_size: 3}
    - {op: relu}
    - {op: flatten}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
optimizer: {type: gradient_descent, learning_rate: 0.1}
data: {source: digits, batch_size: 64}
train: {epochs: 2, summaries: {histogram_every: 0, images: 0}}
"""


@pytest.fixture
def tiny_conv_spec(tmp_path) -> Path:
    """tmp_path/tiny.yaml: a small conv net on the shipped digits, 2 epochs of 19 steps, no histograms or images (fast sweep trials)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONV_SPEC.lstrip())
    return path


@pytest.fixture(scope="session")
def tf_reference():
    """tf_reference(name) -> the arrays of tests/tf_reference/NAME.npz.

    The values were computed with TensorFlow by tests/tf_reference/make_NAME.py
    (TensorFlow is not needed to run the tests); each file records the
    TensorFlow version that made it.
    """
    import re

    import numpy as np

    def load(name: str) -> dict:
        path = Path(__file__).parent / "tf_reference" / f"{name}.npz"
        assert (path.parent / f"make_{name}.py").is_file(), f"{path.name} needs the script that made it"
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        assert re.fullmatch(r"2\.\d+\.\d+", str(arrays.get("tf_version", ""))), f"{path.name} must record the TensorFlow version"
        return arrays

    return load
