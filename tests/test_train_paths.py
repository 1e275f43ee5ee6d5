"""A run's spec.yaml names its data files absolutely: resume and eval work from any directory."""

import numpy as np
import yaml

from tfn import specs
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
