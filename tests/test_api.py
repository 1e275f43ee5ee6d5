"""The Python API (tfn.runners): the README's example, and a model rebuilt from a run's files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture
def trained_run(minimal_spec, tmp_path):
    """A real `tfn train` run directory (one epoch of the conftest's minimal spec)."""
    from tfn.runners.train import train
    from tfn.specs import load

    return train(load(minimal_spec), out=tmp_path / "run", quiet=True).run_dir


def _test_split(run_dir):
    from tfn.runners.data_sources import load_source
    from tfn.specs import load

    return load_source(load(run_dir / "spec.yaml").spec.data).splits["test"]


@pytest.mark.slow
def test_model_rebuilt_from_graph_json_and_checkpoint_reproduces_the_run(trained_run, tmp_path):
    """graph.json + the checkpoint are the whole model: the rebuilt one scores the test split exactly as the run did."""
    import torch

    import tfn.runners as tfn

    model = tfn.load_model(trained_run)  # a run directory: graph.json and its latest checkpoint
    assert isinstance(model, torch.nn.Module) and not model.training
    stored = tfn.read_checkpoint(trained_run)
    assert set(stored) == set(model.variables())
    for name, value in model.variables().items():
        np.testing.assert_array_equal(value.detach().numpy(), stored[name])

    test = _test_split(trained_run)
    out = tfn.run(model, {"image": test["image"], "label": test["label"]}, ["logits", "loss"]).values
    accuracy = float((out["logits"].argmax(1) == test["label"]).mean())
    recorded = json.loads((trained_run / "run.json").read_text())["metrics"]["test"]
    assert accuracy == recorded["accuracy"]  # a count of right answers: exactly the run's
    assert float(out["loss"].astype(np.float64).mean()) == pytest.approx(recorded["loss"], rel=1e-6)

    # the same model from graph.json alone plus an explicit checkpoint file: bitwise the same outputs
    checkpoint = sorted((trained_run / "checkpoints").glob("ckpt-*[0-9].safetensors"))[-1]
    again = tfn.load_model(trained_run / "graph.json", checkpoint)
    np.testing.assert_array_equal(tfn.run(again, {"image": test["image"]}).values["logits"], out["logits"])

    # the rest of the API on the same run
    prediction = tfn.predict(model, test["image"][:4], top_k=2, class_names=[str(d) for d in range(10)])
    probabilities = prediction.probabilities
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-12)
    logits = tfn.run(model, {"image": test["image"][:4]}).values["logits"].astype(np.float64)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-9)
    assert [top[0][0] for top in prediction.top] == logits.argmax(axis=1).tolist()
    assert prediction.top[0][0][1] == str(prediction.top[0][0][0])

    listing = tfn.list_variables(trained_run)
    assert {v.name for v in listing.variables} == set(model.variables())
    fit = tfn.check_checkpoint(trained_run, tfn.load_graph(trained_run))
    assert fit.fits and fit.same_graph
    assert tfn.diff_checkpoints(trained_run, trained_run).identical
    path = tfn.export_onnx(model, tmp_path / "tiny.onnx")
    import onnx

    onnx.checker.check_model(str(path))
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["logits"]


def test_readme_example(minimal_spec):
    """The README's API example, as written there (a spec instead of a run, so no training)."""
    spec = minimal_spec
    images = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)

    import tfn.runners as tfn

    model = tfn.load_model(spec)  # or a run directory: graph.json + latest checkpoint
    result = tfn.run(model, {"image": images}, ["conv", "logits"])
    print(result.values["conv"].shape, result.computed)
    print(tfn.predict(model, images, top_k=3).top[0])

    assert result.values["conv"].shape == (5, 4, 8, 8)
    assert result.computed == ("conv", "relu", "flatten", "logits")  # the loss is not needed
    assert len(tfn.predict(model, images, top_k=3).top[0]) == 3


def test_importing_the_api_package_does_not_import_torch_until_used():
    code = (
        "import sys, tfn.runners, tfn.runners.inspect, tfn.runners.checkpoint\n"
        "print('torch' in sys.modules)\n"
        "tfn.runners.load_model\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_every_api_name_resolves_and_a_typo_does_not():
    import tfn.runners as tfn

    from tfn.runners import api

    for name in api.__all__:
        assert getattr(tfn, name) is getattr(api, name)

    with pytest.raises(AttributeError, match="no attribute 'load_modle'"):
        tfn.load_modle  # noqa: B018
