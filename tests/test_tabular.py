"""Tabular data: normalisation statistics and categorical vocabularies learnt from the training split only,
recorded in the run's preprocessing.json and applied by eval, `tfn run`, `tfn predict ROWS.csv` and the API.

The statistics are checked against float64 NumPy on the training rows (and
against Keras's Normalization layer after `adapt`, by a committed fixture);
validation and test rows hold values far outside the training range, so any
leak into the statistics would show.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from tfn.runners.data_files import DataError
from tfn.runners.data_sources import load_source
from tfn.runners.preprocessing import FILE, CsvColumns, MinMax, Preprocessing, Standardize, fit_normalization
from tfn.specs.schema import CsvData, NpzData

COLORS = ("red", "green", "blue")

SPEC = """
version: 1
name: tabular
model:
  inputs: {{x: {{shape: [5]}}}}
  layers:
    - {{op: dense, units: 8}}
    - {{op: relu}}
    - {{name: logits, op: dense, units: 2}}
loss: {{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}}
optimizer: {{type: adam, learning_rate: 0.05}}
data:
  source: csv
  path: {root}/train.csv
  validation_path: {root}/validation.csv
  test_path: {root}/test.csv
  fields: {{x: [age, income, color], label: label}}
  categorical: {{color: one_hot}}
  normalize: {{x: standard}}
  batch_size: 8
train: {{steps: 6, seed: 0}}
"""


def write_rows(path: Path, n: int, seed: int, scale: float = 1.0, columns=("age", "income", "color", "label")) -> list[dict]:
    """n rows of a two-class problem: the label depends on age and colour. Returns the rows as written (strings)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        color = COLORS[rng.integers(0, 3)]
        age = rng.normal(40, 12) * scale
        income = rng.normal(52000, 9000) * scale
        label = "yes" if (age > 40 * scale) != (color == "red") else "no"
        rows.append({"age": f"{age:.4f}", "income": f"{income:.2f}", "color": color, "label": label})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return rows


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory):
    """A run trained for a few steps on train.csv; validation and test rows are a thousand times larger."""
    from tfn.runners.train import train
    from tfn.specs import load

    root = tmp_path_factory.mktemp("tabular")
    rows = write_rows(root / "train.csv", 48, seed=1)
    write_rows(root / "validation.csv", 8, seed=2, scale=1000.0)
    test = write_rows(root / "test.csv", 6, seed=3, scale=1000.0)
    (root / "spec.yaml").write_text(SPEC.format(root=root))
    run = train(load(root / "spec.yaml"), out=root / "run", quiet=True).run_dir
    return root, run, rows, test


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_the_statistics_and_vocabulary_are_the_training_file_s(tabular_run):
    root, run, rows, _ = tabular_run
    record = json.loads((run / FILE).read_text())
    decode, standard = record["fields"]["x"]
    assert decode == {
        "kind": "csv",
        "columns": [{"column": "age"}, {"column": "income"}, {"column": "color", "encoding": "one_hot", "vocabulary": ["blue", "green", "red"]}],
        "single": False,
        "delimiter": ",",
    }
    values = np.array([[float(r["age"]), float(r["income"])] for r in rows], dtype=np.float64)
    assert standard["kind"] == "standard" and standard["samples"] == 48
    # the one-hot block passes unchanged: mean 0, std 1
    np.testing.assert_allclose(standard["mean"], [*values.mean(axis=0), 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(standard["std"], [*values.std(axis=0), 1, 1, 1], rtol=1e-6)  # population std, as Keras
    assert record["fields"]["label"] == [{"kind": "csv", "columns": [{"column": "label", "encoding": "class", "vocabulary": ["no", "yes"]}], "single": True, "delimiter": ","}]


def _pipeline_logits(run: Path, split: str) -> np.ndarray:
    """The logits of a split through the evaluation pipeline, as `tfn eval` builds it from the run's record."""
    import torch

    from tfn.runners.data import DataPipeline
    from tfn.runners.preprocessing import for_model
    from tfn.runners.session import load_model
    from tfn.specs import load

    loaded = load(run / "spec.yaml")
    data = DataPipeline(loaded.spec.data, loaded.graph, preprocessing=for_model(run))
    with torch.no_grad():
        return np.concatenate([load_model(run)(batch, ["logits"])["logits"].numpy() for batch in data.eval_batches(split)])


def test_predict_from_csv_gives_the_evaluation_pipeline_s_logits(tabular_run, tfn_cli, tmp_path):
    import tfn.runners as tfn

    root, run, _, test = tabular_run
    expected = _pipeline_logits(run, "test")
    assert np.abs(expected).max() > 0.1
    # the rows without the label, columns in another order, one extra column
    rows_csv = tmp_path / "rows.csv"
    write_rows(rows_csv, 6, seed=3, scale=1000.0, columns=("color", "id", "income", "age"))
    probabilities = _softmax(expected.astype(np.float64))

    code, out, err = tfn_cli("predict", str(run), str(rows_csv))
    assert code == 0, err
    table = list(csv.DictReader(io.StringIO(out)))
    assert [(r["input"], r["row"], r["line"]) for r in table] == [(str(rows_csv), str(i + 1), str(i + 2)) for i in range(6)]
    np.testing.assert_allclose([[float(r["probability_no"]), float(r["probability_yes"])] for r in table], probabilities, rtol=1e-5)
    assert [r["prediction"] for r in table] == [("no", "yes")[k] for k in probabilities.argmax(axis=1)]

    code, _, err = tfn_cli("predict", str(run), str(rows_csv), "--json", "-o", str(tmp_path / "out.json"))
    assert code == 0, err
    rows = json.loads((tmp_path / "out.json").read_text())
    assert [(r["row"], r["line"]) for r in rows] == [(i + 1, i + 2) for i in range(6)]
    np.testing.assert_allclose([r["top"][0]["probability"] for r in rows], probabilities.max(axis=1), rtol=1e-5)

    code, _, err = tfn_cli("run", str(run), "--feed", f"x={rows_csv}", "--fetch", "logits", "--out", str(tmp_path / "out.npz"))
    assert code == 0, err
    assert "# x <- " in err and "one-hot over blue, green, red" in err and "statistics of 48 training samples" in err
    with np.load(tmp_path / "out.npz") as values:
        np.testing.assert_allclose(values["logits"], expected, rtol=1e-5, atol=1e-6)

    model = tfn.load_model(run)
    prediction = tfn.predict(model, rows_csv)
    np.testing.assert_allclose(prediction.probabilities, probabilities, rtol=1e-5)
    assert prediction.names == ["no", "yes"] and prediction.rows == [(i + 1, i + 2) for i in range(6)]
    assert prediction.to_csv() == out
    np.testing.assert_allclose(tfn.run(model, {"x": rows_csv}, ["logits"]).values["logits"], expected, rtol=1e-5, atol=1e-6)


def test_a_bad_row_or_a_missing_column_names_where(tabular_run, tfn_cli, tmp_path):
    _, run, _, _ = tabular_run
    (tmp_path / "bad.csv").write_text("age,income,color\n31,50000,red\n40,lots,blue\n")
    code, _, err = tfn_cli("predict", str(run), str(tmp_path / "bad.csv"))
    assert code == 2 and f"{tmp_path / 'bad.csv'}:3: error: column 'income': 'lots' is not a number" in err
    (tmp_path / "unseen.csv").write_text("age,income,color\n31,50000,red\n40,1,purple\n")
    code, _, err = tfn_cli("predict", str(run), str(tmp_path / "unseen.csv"))
    assert code == 2 and "unseen.csv:3: error: column 'color': 'purple' is not in the vocabulary of the training split (blue, green, red)" in err
    (tmp_path / "short.csv").write_text("age,income,colour\n31,50000,red\n")
    code, _, err = tfn_cli("predict", str(run), str(tmp_path / "short.csv"))
    assert code == 2 and "short.csv:1: error: field 'x': no column 'color' (did you mean 'colour'?)" in err


def test_eval_applies_the_run_s_record(tabular_run, tmp_path):
    """The record in the model directory rules: a changed statistic changes what the evaluation pipeline feeds."""
    import shutil

    from tfn.runners.data import DataPipeline
    from tfn.runners.preprocessing import for_model
    from tfn.specs import load

    root, run, _, test = tabular_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    record = json.loads((copy / FILE).read_text())
    record["fields"]["x"][1]["mean"][0] += 1000.0
    (copy / FILE).write_text(json.dumps(record))
    loaded = load(copy / "spec.yaml")
    batch = next(DataPipeline(loaded.spec.data, loaded.graph, preprocessing=for_model(copy)).eval_batches("test"))["x"].numpy()
    standard = record["fields"]["x"][1]
    ages = np.array([float(r["age"]) for r in test])
    np.testing.assert_allclose(batch[:, 0], (ages - standard["mean"][0]) / standard["std"][0], rtol=1e-5)
    colors = np.array([[r["color"] == c for c in ("blue", "green", "red")] for r in test], dtype=np.float32)
    assert np.array_equal(batch[:, 2:], colors)


def test_a_resumed_run_keeps_its_record(tabular_run, tmp_path):
    """Resuming reads the run's record rather than fitting a new one: a vocabulary without `red` refuses red rows."""
    import shutil

    from tfn.runners.train import resume

    _, run, _, _ = tabular_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    record = json.loads((copy / FILE).read_text())
    record["fields"]["x"][0]["columns"][2]["vocabulary"] = ["blue", "green"]
    (copy / FILE).write_text(json.dumps(record))
    with pytest.raises(DataError, match=r"train.csv:\d+: error: column 'color': 'red' is not in the vocabulary"):
        resume(copy, steps=8, quiet=True)


# --- the training split alone ----------------------------------------------------------


def test_carved_splits_never_reach_the_statistics_or_the_vocabulary(tmp_path):
    rows = write_rows(tmp_path / "all.csv", 40, seed=4)
    rows[5]["color"] = rows[17]["color"] = "violet"  # a colour of two rows only
    with open(tmp_path / "all.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["age", "income", "color", "label"])
        writer.writeheader()
        writer.writerows(rows)
    spec = CsvData(
        source="csv",
        path=str(tmp_path / "all.csv"),
        fields={"x": ["age", "income", "color"], "label": "label"},
        categorical={"color": "one_hot"},
        unseen="oov",
        normalize={"x": "minmax"},
        split={"validation": 0.3, "test": 0.2, "seed": 5},
    )
    source = load_source(spec)
    lines = {split: source.rows[split].lines for split in ("train", "validation", "test")}
    train_rows = [rows[line - 2] for line in lines["train"]]
    assert len(train_rows) == 20 and not set(lines["train"]) & (set(lines["validation"]) | set(lines["test"]))
    decode, minmax = source.preprocessing.fields["x"]
    assert isinstance(minmax, MinMax) and minmax.samples == 20
    vocabulary = sorted({r["color"] for r in train_rows})
    assert decode.columns[2].vocabulary == vocabulary and decode.columns[2].oov
    values = np.array([[float(r["age"]), float(r["income"])] for r in train_rows])
    width = len(vocabulary) + 1
    np.testing.assert_allclose(minmax.minimum, [*values.min(axis=0), *[0] * width], rtol=1e-6)
    np.testing.assert_allclose(minmax.maximum, [*values.max(axis=0), *[1] * width], rtol=1e-6)
    everything = np.array([[float(r["age"]), float(r["income"])] for r in rows])
    assert not np.allclose(values.min(axis=0), everything.min(axis=0)) or not np.allclose(values.max(axis=0), everything.max(axis=0))
    train = source.splits["train"]["x"]
    assert train[:, :2].min() == 0 and train[:, :2].max() == 1  # the training split spans [0, 1] exactly
    # a held-out row of a colour training never saw: the out-of-vocabulary slot, first
    for split in ("validation", "test"):
        for i, line in enumerate(lines[split]):
            hot = source.splits[split]["x"][i, 2:]
            color = rows[line - 2]["color"]
            assert hot.tolist() == [float(color not in vocabulary)] + [float(color == v) for v in vocabulary]


def test_npz_fields_are_normalised_per_feature_from_the_training_split(tmp_path):
    rng = np.random.default_rng(7)
    x = (rng.normal(0, 1, (30, 3)) * [1, 50, 0.01] + [5, -200, 3]).astype(np.float32)
    z = (rng.normal(0, 1, (30, 2, 4)) * [[3.0], [0.5]] + [[10.0], [-1.0]]).astype(np.float32)
    x[:, 2] = 7.0  # a constant feature: shifted, never divided by zero
    np.savez(tmp_path / "d.npz", x=x, z=z, y=rng.integers(0, 2, 30))
    spec = NpzData(source="npz", path=str(tmp_path / "d.npz"), fields={"x": "x", "z": "z", "label": "y"}, normalize={"x": "minmax", "z": "standard"},
                   split={"validation": 0.2, "test": 0.1})
    source = load_source(spec)
    index = source.rows["train"].index
    (minmax,), (standard,) = source.preprocessing.fields["x"], source.preprocessing.fields["z"]
    train_x, train_z = x[index].astype(np.float64), z[index].astype(np.float64)
    np.testing.assert_allclose(minmax.minimum, train_x.min(axis=0)) and np.testing.assert_allclose(minmax.maximum, train_x.max(axis=0))
    np.testing.assert_allclose(standard.mean, train_z.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(standard.std, train_z.std(axis=(0, 2)), rtol=1e-12)
    assert standard.samples == minmax.samples == len(index) == 21
    # the record applies to every split, as training feeds it
    for split in ("train", "validation"):
        rows = source.rows[split].index
        span = np.where(train_x.max(0) > train_x.min(0), train_x.max(0) - train_x.min(0), 1)
        np.testing.assert_allclose(minmax.apply(x[rows]), (x[rows] - train_x.min(0)) / span, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(standard.apply(z[rows]), (z[rows] - train_z.mean((0, 2))[:, None]) / train_z.std((0, 2))[:, None], rtol=1e-5, atol=1e-5)
    assert np.all(minmax.apply(x[index])[:, 2] == 0)


def test_standard_statistics_match_keras_normalization_adapt():
    reference = json.loads((Path(__file__).parent / "tf_reference" / "normalization_adapt.json").read_text())
    assert reference["tensorflow"] and reference["keras"]
    for name, case in reference["cases"].items():
        data = np.asarray(case["data"], dtype=np.float32)
        step = fit_normalization("standard", data)
        np.testing.assert_allclose(step.mean, case["mean"], rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(np.square(step.std), case["variance"], rtol=1e-4, err_msg=name)
        np.testing.assert_allclose(step.apply(data), case["output"], rtol=1e-4, atol=1e-4, err_msg=name)


def test_a_nan_in_the_training_split_names_its_row(tmp_path):
    (tmp_path / "n.csv").write_text("a,b,y\n1,2,0\n3,nan,1\n5,6,0\n")
    spec = CsvData(source="csv", path=str(tmp_path / "n.csv"), fields={"x": ["a", "b"], "label": "y"}, normalize={"x": "standard"}, split={"validation": 0, "test": 0})
    with pytest.raises(DataError, match=r"n.csv:3: error: field 'x' holds nan \(sample 1 of the training split\); normalize needs finite values"):
        load_source(spec)


# --- categorical columns ----------------------------------------------------------------


CITIES = "age,color,city,size,label\n30,red,paris,s,0\n41,blue,oslo,m,1\n52,red,rome,l,0\n23,green,oslo,m,1\n"


@pytest.mark.parametrize("unseen", ["error", "oov"])
def test_index_columns_make_category_ids_and_unseen_values_follow_the_choice(tmp_path, unseen):
    (tmp_path / "train.csv").write_text(CITIES)
    (tmp_path / "valid.csv").write_text("age,color,city,size,label\n33,blue,rome,xl,0\n35,pink,oslo,s,1\n")
    spec = CsvData(
        source="csv",
        path=str(tmp_path / "train.csv"),
        validation_path=str(tmp_path / "valid.csv"),
        fields={"ids": ["color", "city"], "color": "color", "size": "size", "label": "label"},
        categorical={"color": "index", "city": "index", "size": "one_hot"},
        unseen=unseen,
        split={"test": 0},
    )
    if unseen == "error":
        with pytest.raises(DataError, match=r"valid.csv:2: error: column 'size': 'xl' is not in the vocabulary of the training split \(l, m, s\); set `unseen: oov`"):
            load_source(spec)
        return
    source = load_source(spec)
    train, valid = source.splits["train"], source.splits["validation"]
    # vocabularies from the 4 training rows, sorted, counted from 1; unseen values are 0
    assert train["ids"].dtype == np.int64 and train["ids"].tolist() == [[3, 2], [1, 1], [3, 3], [2, 1]]
    assert valid["ids"].tolist() == [[1, 3], [0, 1]] and valid["color"].tolist() == [1, 0]
    # one_hot with oov: the unseen slot first, then l, m, s
    assert train["size"].dtype == np.float32 and train["size"].tolist() == [[0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
    assert valid["size"].tolist() == [[1, 0, 0, 0], [0, 0, 0, 1]]
    assert source.field_types()["color"].shape == () and source.field_types()["size"].shape == (4,)


def test_an_unused_encoding_and_a_mixed_field_are_refused_by_the_record():
    from pydantic import ValidationError

    from tfn.runners.preprocessing import CsvColumn

    with pytest.raises(ValidationError, match="a field holds one or the other"):
        CsvColumns(columns=[CsvColumn(column="a"), CsvColumn(column="b", encoding="index", vocabulary=["x"])])
    with pytest.raises(ValidationError, match="needs its vocabulary"):
        CsvColumn(column="b", encoding="one_hot")


# --- the spec: positioned errors, and `tfn check` reads no data -------------------------


BAD_SPEC = """
version: 1
name: bad
model:
  inputs: {x: {shape: [4]}, n: {shape: [1], dtype: int64}}
  layers: [{name: logits, op: dense, units: 2, inputs: [x]}]
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data:
  source: csv
  path: nowhere.csv
  fields: {x: [age, color, city], n: [rank], label: label}
  categorical: {colr: one_hot, city: index}
  normalize: {xx: standard, label: minmax, n: standard}
"""


def test_spec_mistakes_are_positioned_and_check_reads_no_rows(write_spec, tfn_cli, tmp_path):
    code, _, err = tfn_cli("check", str(write_spec(BAD_SPEC)))
    assert code == 2
    lines = [line.split("/spec.yaml:", 1)[1] for line in err.strip().splitlines()]
    assert lines == [
        "11:17: error: data.categorical.colr: column 'colr' is in no field (did you mean 'color'?); the fields' columns are age, color, city, rank, label",
        "11:38: error: data.categorical.city: an index column gives integer ids, and field 'x' also holds float columns; a field holds one or the "
        "other: give 'city' a field of its own (e.g. city_id: [city]), or make it one_hot",
        "12:15: error: data.normalize.xx: no field 'xx' to normalize (did you mean 'x'?); the fields are x, n, label",
        "12:36: error: data.normalize.label: normalize applies to float fields; field 'label' holds integers: "
        "one column makes class indices (a list of columns, [label], makes a float field)",
        "12:47: error: data.normalize.n: normalize applies to float fields; field 'n' holds integers: it feeds the model input 'n' of dtype int64",
    ]
    # check reads the header line, never the rows: a bad value, the vocabulary and the statistics wait for training
    rows = tmp_path / "rows.csv"
    rows.write_text("age,color,city,rank,label\nold,red,oslo,one,1\n")
    fixed = BAD_SPEC.replace("colr: one_hot, city: index", "color: one_hot, city: one_hot").replace("{xx: standard, label: minmax, n: standard}", "{x: standard}")
    spec = write_spec(fixed.replace("nowhere.csv", str(rows)).replace("dtype: int64", "dtype: float32"))
    code, out, err = tfn_cli("check", str(spec))
    assert code == 0, err
    assert "data: source csv gives x [?] float32, n [1] float32, label [] int64: they fit the graph's inputs" in out
    assert "not checked without reading the data: the width of field 'x': the one-hot blocks of color, city are as wide as their vocabularies" in out


def test_a_column_the_csv_lacks_points_at_the_spec(tabular_run, write_spec, tfn_cli):
    root, *_ = tabular_run
    spec = write_spec(SPEC.format(root=root).replace("[age, income, color]", "[age, incme, color]"))
    code, _, err = tfn_cli("check", str(spec))
    assert code == 2
    assert f"spec.yaml:16:21: error: data.fields.x[1]: {root / 'train.csv'}:1: field 'x': no column 'incme' (did you mean 'income'?)" in err
    code, _, err = tfn_cli("train", str(spec), "--out", str(spec.parent / "never"))
    assert code == 2 and f"{root / 'train.csv'}:1: error: field 'x': no column 'incme' (did you mean 'income'?)" in err


def test_check_refuses_normalize_of_an_integer_array(write_spec, tfn_cli, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3), np.int64), y=np.zeros(4, np.int64))
    spec = write_spec(f"""
        version: 1
        name: ints
        model:
          inputs: {{x: {{shape: [3], dtype: float32}}}}
          layers: [{{name: logits, op: dense, units: 2}}]
        loss: {{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}}
        data: {{source: npz, path: {tmp_path / "d.npz"}, fields: {{x: x, label: y}}, normalize: {{x: minmax}}}}
        """)
    code, _, err = tfn_cli("check", str(spec))
    assert code == 2 and "data.normalize.x: normalize applies to float fields; field 'x' holds int64" in err
    code, _, err = tfn_cli("train", str(spec), "--out", str(tmp_path / "never"))
    assert code == 2 and "data.normalize.x: error: field 'x' holds int64; normalize applies to float fields" in err


def test_a_width_mismatch_says_what_the_columns_make(tabular_run, write_spec, tfn_cli):
    root, *_ = tabular_run
    spec = write_spec(SPEC.format(root=root).replace("shape: [5]", "shape: [3]"))
    code, _, err = tfn_cli("train", str(spec), "--out", str(spec.parent / "never"))
    assert code == 2
    assert (
        "model.inputs.x.shape: field 'x' of source 'csv' has samples of shape [5] (CSV columns age, income, color (one-hot over blue, green, red)); "
        "the model input 'x' expects [3]"
    ) in err


def test_every_source_loader_takes_a_model_directory_s_record():
    """DataPipeline hands every loader the record of the model directory it evaluates (eval, resume)."""
    import inspect
    import typing

    from tfn.specs import schema

    sources = typing.get_args(typing.get_args(schema.Data)[0])
    assert len(sources) >= 10
    for cls in sources:
        loader = load_source.dispatch(cls)
        assert loader is not load_source.dispatch(object), cls.__name__
        assert "preprocessing" in inspect.signature(loader).parameters, f"{loader.__name__} ({cls.__name__}) takes no `preprocessing`"


# --- the record's new kinds -------------------------------------------------------------


def test_the_new_kinds_round_trip_through_a_record(tmp_path):
    from tfn.runners.preprocessing import CsvColumn

    decode = CsvColumns(columns=[CsvColumn(column="a"), CsvColumn(column="c", encoding="one_hot", vocabulary=["u", "v"], oov=True)])
    record = Preprocessing(
        {"x": (decode, Standardize(mean=[1, 0, 0, 0], std=[2, 1, 1, 1], samples=3)), "z": (MinMax(minimum=[0.0], maximum=[4.0], samples=2),)}
    )
    record.write(tmp_path)
    again = Preprocessing.read(tmp_path / FILE)
    assert again.fields == record.fields
    (tmp_path / "rows.csv").write_text("c,a\nv,5\nw,1\n")
    batch, table = again.read_csv("x", tmp_path / "rows.csv")
    assert table.lines == [2, 3]
    np.testing.assert_allclose(batch, [[2, 0, 0, 1], [0, 1, 0, 0]])
    np.testing.assert_allclose(again.apply("z", np.array([1.0, 3.0])), [0.25, 0.75])  # one number per sample
    (tmp_path / FILE).write_text(json.dumps({"format": "tfn.preprocessing", "version": 1, "fields": {"z": [{"kind": "minmax", "minimum": [2], "maximum": [1], "samples": 1}]}}))
    with pytest.raises(DataError, match=r"fields.z\[0\] \(minmax\): every maximum must be at least its minimum"):
        Preprocessing.read(tmp_path / FILE)


@pytest.mark.parametrize(
    "kind, logits, expected",
    [
        ("values", [[1.5], [-2.0]], "input,row,line,value\nr.csv,1,2,1.5\nr.csv,2,3,-2\n"),
        ("sigmoid", [[0.0], [2.0]], "input,row,line,prediction,probability\nr.csv,1,2,1,0.5\nr.csv,2,3,1,0.880797078\n"),
        ("sigmoid", [[0.0, -9.0]], "input,row,line,predicted,probability_0,probability_1\nr.csv,1,2,0,0.5,0.000123394576\n"),
    ],
)
def test_csv_output_of_each_prediction_kind(kind, logits, expected):
    from dataclasses import replace

    from tfn.runners.session import READERS

    result = READERS[kind](np.array(logits), ["r.csv"] * len(logits), top_k=1, threshold=None, class_names=None)
    assert replace(result, rows=[(i + 1, i + 2) for i in range(len(logits))]).to_csv() == expected


def test_check_refuses_normalize_of_a_field_the_loss_reads(write_spec, tfn_cli, tmp_path):
    # nothing would turn the model's predictions back into the target's units
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3), np.float32), y=np.zeros((4, 1), np.float32))
    spec = write_spec(f"""
        version: 1
        name: target
        model:
          inputs: {{x: {{shape: [3]}}}}
          layers: [{{name: out, op: dense, units: 1}}]
        loss: {{op: huber_loss, predictions: out, labels: y}}
        data: {{source: npz, path: {tmp_path / "d.npz"}, fields: {{x: x, y: y}}, normalize: {{x: standard, y: standard}}}}
        """)
    code, _, err = tfn_cli("check", str(spec))
    assert code == 2
    assert "spec.yaml:7:147: error: data.normalize.y: field 'y' is read by the loss: normalize applies to the model's inputs" in err
    assert "data.normalize.x" not in err
