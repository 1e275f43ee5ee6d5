"""The four top-level folders install as tfn.* and the wheel carries examples and data."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"cli": "tfn.cli", "layers": "tfn.layers", "specs": "tfn.specs", "runners": "tfn.runners"}


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_listed():
    # a sub-package missing from `packages` is silently left out of the wheel
    # while the editable install still imports it
    declared = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert declared == found


def test_package_dirs_map_the_top_level_folders():
    mapping = _pyproject()["tool"]["setuptools"]["package-dir"]
    assert mapping == {package: folder for folder, package in FOLDERS.items()}


def test_torch_range_admits_2_11_to_2_13_and_pins_nothing():
    (torch,) = [d for d in _pyproject()["project"]["dependencies"] if d.startswith("torch")]
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(torch.removeprefix("torch"))
    assert all(v in spec for v in ("2.11.0", "2.12.1", "2.13.0"))
    assert "==" not in torch


@pytest.mark.slow
def test_wheel_carries_examples_and_data(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("tfn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "tfn/specs/examples/digits_cnn.yaml" in names
    assert "tfn/runners/datasets/README.md" in names  # the data's attribution and licences
    for data in (ROOT / "runners" / "datasets").iterdir():  # every shipped data file: a spec may name it as shipped:NAME
        assert f"tfn/runners/datasets/{data.name}" in names
    assert "tfn/specs/graph.schema.json" in names or not (ROOT / "specs" / "graph.schema.json").exists()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"tfn", next(t for t in tops if t.endswith(".dist-info"))}, tops  # nothing generic such as `cli`
    for example in (ROOT / "specs" / "examples").iterdir():
        assert f"tfn/specs/examples/{example.name}" in names
