"""`tfn check` (table and --json) and `tfn schema` (the JSON Schema editors use)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import jsonschema
import pytest

from tfn.specs import EXAMPLES, example_names, read_document

SPEC = """
version: 1
name: marked
model:
  inputs:
    image: {shape: [1, 8, 8]}
  layers:
    - {name: f, op: flatten, device: cpu}
    - {name: one, op: dense, units: 16}
    - {name: two, op: dense, units: 16, share: one, inputs: [f], after: [one]}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits}
"""


def test_table_marks_placement_control_edges_and_sharing(write_spec, tfn_cli):
    code, out, err = tfn_cli("check", str(write_spec(textwrap.dedent(SPEC))))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["node", "op", "inputs", "output", "params", "FLOPs/sample"]
    row = {line.split()[0]: line for line in lines[2:] if line and not line.startswith(("marked", "parameters", "forward"))}
    assert "@cpu" in row["f"]
    assert row["two"].split()[1:4] == ["dense", "f", "^one"] and "[?, 16]" in row["two"]
    assert row["two"].split()[-2] == "=one"  # reuses one's variables: counted there
    assert row["one"].split()[-2] == f"{64 * 16 + 16:,}"
    # totals: one's and logits' variables once; FLOPs per sample = 2 * in * out + out per dense, plus the loss
    assert f"parameters: {64 * 16 + 16 + 16 * 10 + 10:,} ({64 * 16 + 16 + 16 * 10 + 10:,} trainable, 0 non-trainable)" in out


def test_json_output_for_scripts(write_spec, tfn_cli):
    code, out, _ = tfn_cli("check", str(write_spec(textwrap.dedent(SPEC))), "--json")
    assert code == 0
    summary = json.loads(out)
    nodes = {n["name"]: n for n in summary["nodes"]}
    assert nodes["two"]["shares"] == "one" and nodes["two"]["parameters"] == 0
    assert nodes["two"]["after"] == ["one"] and nodes["f"]["device"] == "cpu"
    assert nodes["one"]["output_shapes"] == [[None, 16]]
    assert summary["trainable_parameters"] == 64 * 16 + 16 + 16 * 10 + 10
    assert summary["flops_per_sample"] == sum(n["flops"] for n in summary["nodes"])
    assert len(summary["graph_hash"]) == 64


def test_check_reports_errors_with_exit_2_and_nothing_on_stdout(write_spec, tfn_cli):
    code, out, err = tfn_cli("check", str(write_spec(textwrap.dedent(SPEC).replace("share: one", "share: on"))))
    assert code == 2 and out == ""
    assert err.strip().endswith("model.layers[2].share: unknown node 'on' (did you mean 'one'?)")


def test_an_unknown_example_name_suggests_the_nearest(tfn_cli):
    code, _, err = tfn_cli("check", "lenet")
    assert code == 2 and "did you mean 'lenet5'?" in err


def test_check_of_a_spec_does_not_import_torch():
    code = "import sys; from tfn.cli.main import main\ntry:\n main(['check', 'resnet_small', '--json'])\nexcept SystemExit: pass\nprint('torch' in sys.modules, file=sys.stderr)"
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert err.strip().endswith("False")


@pytest.fixture(scope="module")
def spec_schema() -> dict:
    from tfn.specs import json_schema

    return json_schema()


def test_schema_command_prints_the_json_schema(tfn_cli, spec_schema):
    code, out, _ = tfn_cli("schema")
    assert code == 0
    assert json.loads(out) == spec_schema
    jsonschema.Draft202012Validator.check_schema(spec_schema)


@pytest.mark.parametrize("example", example_names())
def test_every_example_validates_against_the_published_schema(example, spec_schema):
    data = read_document(next(EXAMPLES.glob(f"{example}.*"))).data
    jsonschema.Draft202012Validator(spec_schema).validate(data)


def test_the_published_schema_rejects_what_check_rejects(spec_schema):
    data = read_document(EXAMPLES / "lenet5.yaml").data
    validator = jsonschema.Draft202012Validator(spec_schema)
    data["model"]["layers"][0]["kernal_size"] = data["model"]["layers"][0].pop("kernel_size")
    assert not validator.is_valid(data)


@pytest.mark.parametrize("padding, valid", [("same", True), ("Valid", True), ("SAME", True), ("sam", False), ("SAMEX", False)])
def test_the_published_schema_accepts_padding_in_any_case_as_check_does(spec_schema, padding, valid):
    data = read_document(EXAMPLES / "digits_cnn.yaml").data
    data["model"]["layers"][0]["padding"] = padding
    assert jsonschema.Draft202012Validator(spec_schema).is_valid(data) is valid
