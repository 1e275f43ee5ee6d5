"""A run's spec.yaml names its data files absolutely: resume and eval work from any directory."""

from pathlib import Path

import numpy as np
import yaml

from tfn import specs
from tfn.runners.data_files import DATASETS
from tfn.runners.data_sources import load_source
from tfn.runners.train import resume, train
from tfn.specs.schema import NpyData, with_absolute_paths

SPEC = """
version: 1
name: paths
model:
  inputs: {x: {shape: [4]}}
  layers:
    - {name: logits, op: dense, units: 3}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data:
  source: csv
  path: data/points.csv
  fields: {x: [a, b, c, d], label: y}
  batch_size: 16
train: {steps: 4, summaries: {histogram_every: 0, images: 0}}
"""


def test_relative_data_paths_are_absolute_in_the_run_and_resume_elsewhere(tmp_path, monkeypatch):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "data").mkdir(parents=True)
    elsewhere.mkdir()
    rng = np.random.default_rng(0)
    rows = ["a,b,c,d,y"] + [",".join(f"{v:.3f}" for v in rng.normal(size=4)) + f",{i % 3}" for i in range(90)]
    (project / "data" / "points.csv").write_text("\n".join(rows) + "\n")
    (project / "spec.yaml").write_text(SPEC)

    monkeypatch.chdir(project)
    first = train(specs.load("spec.yaml"), out=tmp_path / "run", quiet=True)
    resolved = yaml.safe_load((first.run_dir / "spec.yaml").read_text())
    assert resolved["data"]["path"] == str(project / "data" / "points.csv")

    monkeypatch.chdir(elsewhere)  # the relative path no longer resolves here
    second = resume(tmp_path / "run", steps=8, quiet=True)
    assert second.steps == 8


def test_dict_of_paths_and_absolute_paths():
    data = NpyData(source="npy", fields={"x": "x.npy", "label": "/abs/y.npy"})
    resolved = with_absolute_paths(data, __import__("pathlib").Path("/base"))
    assert resolved.fields == {"x": "/base/x.npy", "label": "/abs/y.npy"}
    assert data.fields["x"] == "x.npy"  # a copy: the spec itself is unchanged


def test_a_shipped_path_stays_as_it_is_in_the_run():
    data = NpyData(source="npy", fields={"x": "shipped:x.npy", "label": "y.npy"})
    assert with_absolute_paths(data, Path("/base")).fields == {"x": "shipped:x.npy", "label": "/base/y.npy"}


SHIPPED_SPEC = """\
version: 1
name: shipped
model:
  inputs: {x: {shape: [2]}}
  layers:
    - {name: prediction, op: dense, units: 1}
loss: {op: mean_squared_error, predictions: prediction, labels: y}
data: {source: csv, path: PATH, fields: {x: [age, bmi], y: [progression]}}
"""


def test_a_shipped_csv_is_read_from_the_package_whatever_the_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = specs.load(yaml.safe_load(SHIPPED_SPEC.replace("PATH", "shipped:diabetes.csv"))).spec
    splits = load_source(spec.data).splits
    table = np.loadtxt(DATASETS / "diabetes.csv", delimiter=",", skiprows=1)
    assert sum(len(s["x"]) for s in splits.values()) == len(table) == 442
    header = (DATASETS / "diabetes.csv").read_text().splitlines()[0].split(",")
    columns = [header.index(c) for c in ("age", "bmi", "progression")]
    got = np.concatenate([np.concatenate([s["x"], s["y"]], axis=1) for s in splits.values()])
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(table[:, columns], axis=0).astype(np.float32))


def test_a_misspelt_shipped_file_is_an_error_at_its_line(tmp_path, tfn_cli):
    (tmp_path / "spec.yaml").write_text(SHIPPED_SPEC.replace("PATH", "shipped:diabetis.csv"))
    code, out, err = tfn_cli("check", str(tmp_path / "spec.yaml"))
    assert code == 2
    assert "tfn ships no data file 'diabetis.csv' (did you mean 'shipped:diabetes.csv'?)" in err
    assert "spec.yaml:8:" in err
    (tmp_path / "spec.yaml").write_text(SHIPPED_SPEC.replace("PATH", "shipped:nothing_like_it.csv"))
    code, out, err = tfn_cli("check", str(tmp_path / "spec.yaml"))
    assert code == 2 and "it ships shipped:diabetes.csv, shipped:digits.npz" in err
