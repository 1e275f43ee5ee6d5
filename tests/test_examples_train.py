"""The shipped examples of the op vocabulary, trained on their own schedules, reach the quality their specs state.

Each baseline is computed here from the data, never written down: the mean
image for the autoencoder, the best guess that ignores the query for the
key-value task, a least-squares linear fit for the tabular regression.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfn.runners.data_files import DATASETS
from tfn.runners.data_sources import load_source
from tfn.runners.session import load_model, run
from tfn.runners.train import train
from tfn.specs import load, resolve_spec_path

pytestmark = pytest.mark.slow


def test_alexnet_small_reaches_95_percent_on_the_digits(tmp_path):
    result = train(load("alexnet_small"), out=tmp_path / "run", quiet=True)
    assert result.metrics["test"]["accuracy"] >= 0.95
    # the model takes the digits as they are (8x8) and resizes them itself
    test = load_source(load("alexnet_small").spec.data).splits["test"]
    logits = run(load_model(result.run_dir), {"image": test["image"]}, ["logits"]).values["logits"]
    assert (logits.argmax(1) == test["label"]).mean() == pytest.approx(result.metrics["test"]["accuracy"])


def test_conv_autoencoder_halves_the_error_of_the_mean_image(tmp_path, tfn_cli):
    loaded = load("conv_autoencoder")
    result = train(loaded, out=tmp_path / "run", quiet=True)
    splits = load_source(loaded.spec.data).splits
    images = splits["test"]["image"].astype(np.float64)
    mean_image = splits["train"]["image"].astype(np.float64).mean(axis=0)
    baseline = np.mean((images - mean_image) ** 2)

    model = load_model(result.run_dir)
    fetched = run(model, {"image": splits["test"]["image"]}, ["reconstruction", "loss"]).values  # the labels come from the fed input
    reconstruction = fetched["reconstruction"].astype(np.float64)
    mse = np.mean((reconstruction - images) ** 2)
    assert mse <= 0.5 * baseline
    np.testing.assert_allclose(fetched["loss"], (reconstruction - images) ** 2, rtol=1e-5, atol=1e-7)
    # the trainer's loss and metrics read the same field as labels and as input
    test = result.metrics["test"]
    assert test["loss"] == pytest.approx(mse, rel=1e-5)
    assert test["mean_absolute_error"] == pytest.approx(np.mean(np.abs(reconstruction - images)), rel=1e-5)
    code, out, err = tfn_cli("eval", str(result.run_dir), "--split", "test")
    assert code == 0, err
    printed = dict(line.split() for line in out.splitlines()[1:])
    assert float(printed["loss"]) == pytest.approx(mse, rel=1e-4)
    # predict feeds the image alone (the labels are the same field) and gives the reconstruction as values
    np.save(tmp_path / "three.npy", splits["test"]["image"][:3])
    code, out, err = tfn_cli("predict", str(result.run_dir), str(tmp_path / "three.npy"), "--json")
    assert code == 0, err
    predicted = json.loads(out)
    assert [p["prediction"] for p in predicted] == ["values"] * 3
    np.testing.assert_allclose(np.array([p["values"] for p in predicted]), reconstruction[:3], rtol=1e-5, atol=1e-6)


def test_attention_toy_retrieves_the_value_of_the_queried_key(tmp_path):
    loaded = load("attention_toy")
    result = train(loaded, out=tmp_path / "run", quiet=True)
    assert result.metrics["test"]["accuracy"] >= 0.9

    test = load_source(loaded.spec.data).splits["test"]
    keys, values, query = test["keys"].argmax(1), test["values"].argmax(1), test["query"][:, :, 0].argmax(1)
    pairs, classes = values.shape[1], test["values"].shape[1]
    # without the query the best guess is a sample's commonest value, right as often as it occurs
    counts = np.stack([(values == c).sum(1) for c in range(classes)], axis=1)
    assert np.mean(counts.max(1) / pairs) < 0.4

    # the model answers by attending to the position whose key is the query
    fetched = run(load_model(result.run_dir), {n: test[n] for n in ("keys", "values", "query")}, ["weights", "logits"]).values
    position = np.argmax(keys == query[:, None], axis=1)
    assert np.mean(fetched["weights"][:, 0].argmax(1) == position) >= 0.9
    assert np.mean(fetched["logits"].argmax(1) == test["label"]) == pytest.approx(result.metrics["test"]["accuracy"])


def test_tabular_regression_is_as_good_as_a_least_squares_fit(tmp_path, tfn_cli):
    loaded = load("tabular_regression")
    result = train(loaded, out=tmp_path / "run", quiet=True)

    # the shipped table as it is, in float64, split as the data section documents it: a permutation
    # drawn from split.seed, its first 20% the validation rows, the next 20% the test rows
    lines = (DATASETS / "diabetes.csv").read_text().splitlines()
    table = np.loadtxt(lines[1:], delimiter=",", dtype=np.float64)
    features, target = table[:, :10], table[:, 10]
    assert lines[0].split(",")[:10] == loaded.spec.data.fields["x"] and loaded.spec.data.split.seed == 0
    order = np.random.default_rng(0).permutation(len(table))
    test_rows = np.sort(order[88:176])
    train_rows = np.sort(order[176:])
    splits = load_source(loaded.spec.data).splits
    np.testing.assert_array_equal(splits["test"]["y"][:, 0], target[test_rows])  # the target is not normalised
    np.testing.assert_array_equal(splits["train"]["y"][:, 0], target[train_rows])

    # the baseline: least squares with an intercept on the raw training features (an affine
    # normalisation of the features would give the same fit)
    design = np.column_stack([features, np.ones(len(table))])
    weights = np.linalg.lstsq(design[train_rows], target[train_rows], rcond=None)[0]
    least_squares = np.mean((design[test_rows] @ weights - target[test_rows]) ** 2)

    predictions = run(load_model(result.run_dir), {"x": splits["test"]["x"]}, ["prediction"]).values["prediction"][:, 0].astype(np.float64)
    mse = np.mean((predictions - target[test_rows]) ** 2)
    assert mse <= 1.05 * least_squares
    assert result.metrics["test"]["mean_squared_error"] == pytest.approx(mse, rel=1e-5)

    # predict reads raw CSV rows (here without the target column) through the run's preprocessing.json
    rows = test_rows[:4]
    columns = ",".join(lines[0].split(",")[:10])
    (tmp_path / "rows.csv").write_text("\n".join([columns] + [lines[1 + r].rsplit(",", 1)[0] for r in rows]) + "\n")
    code, out, err = tfn_cli("predict", str(result.run_dir), str(tmp_path / "rows.csv"), "--json")
    assert code == 0, err
    predicted = json.loads(out)
    assert [p["prediction"] for p in predicted] == ["values"] * 4
    np.testing.assert_allclose([p["values"][0] for p in predicted], predictions[:4], rtol=1e-5)


def test_text_lstm_beats_a_bag_of_embeddings_by_5_points(tmp_path):
    """The same embedding, data, optimizer and schedule, the LSTM replaced by the mean over the positions: the
    bag sees which words a review holds but not their order, which decides the label."""
    import re

    lstm = train(load("text_lstm"), out=tmp_path / "lstm", quiet=True).metrics["test"]["accuracy"]
    text = resolve_spec_path("text_lstm").read_text()
    bag_text = re.sub(r"    length: .*\n", "", text)
    bag_text = re.sub(r"    - \{name: lstm, .*\n", "    - {name: bag, op: reduce_mean, axis: 2}\n", bag_text)
    assert bag_text.count("\n") == text.count("\n") - 1 and "op: lstm" not in bag_text
    (tmp_path / "bag.yaml").write_text(bag_text)
    bag = train(load(tmp_path / "bag.yaml"), out=tmp_path / "bag", quiet=True).metrics["test"]["accuracy"]
    assert lstm >= bag + 0.05, (lstm, bag)
    assert lstm >= 0.9
