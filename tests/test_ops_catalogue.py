"""`tfn layers`: the catalogue generated from the registry, without torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tfn import layers
from tfn.layers.catalogue import describe, families, type_text


def test_listing_shows_every_op_under_its_family(tfn_cli):
    code, out, err = tfn_cli("layers")
    assert code == 0, err
    lines = out.splitlines()
    for name, op in layers.all_ops().items():
        row = next(i for i, line in enumerate(lines) if line.split()[:1] == [name])
        family_line = max(i for i, line in enumerate(lines[:row]) if not line.startswith(" "))
        assert lines[family_line] == f"{op.family}:"
        assert op.summary()[:40] in lines[row]


def test_json_listing(tfn_cli):
    code, out, _ = tfn_cli("layers", "--json")
    data = json.loads(out)
    assert sorted(n["name"] for ops in data.values() for n in ops) == sorted(layers.all_ops())


def test_one_op_shows_attributes_defaults_shapes_and_notes(tfn_cli):
    code, out, err = tfn_cli("layers", "conv2d")
    assert code == 0, err
    assert out.startswith("conv2d  (convolution; inputs: 1)")
    assert "Example:\n    {op: conv2d" in out
    assert "Input [N, C, H, W]; output [N, filters, H', W']." in out
    rows = {line.split()[0]: line for line in out.split("Attributes:\n")[1].splitlines() if line.startswith("  ")}
    assert set(rows) == set(layers.get("conv2d").Params.model_fields)
    assert "(required)" in rows["filters"] and "int > 0" in rows["filters"]
    assert '= "VALID"' in rows["padding"] and "SAME|VALID" in rows["padding"]
    assert "= [1, 1]" in rows["strides"] and "int >= 1 | [int >= 1] x2" in rows["strides"]
    assert "{constant: float}" in rows["kernel_initializer"]
    assert "TensorFlow: tf.layers.conv2d" in out


def test_unknown_op_is_a_user_error_with_a_suggestion(tfn_cli):
    code, out, err = tfn_cli("layers", "separable_conv")
    assert code == 2
    assert "unknown op 'separable_conv' (did you mean 'separable_conv2d'?)" in err


@pytest.mark.parametrize("args", [["layers"], ["layers", "conv2d"]])
def test_layers_does_not_import_torch(args):
    code = f"import sys; from tfn.cli.main import main\ntry:\n main({args!r})\nexcept SystemExit: pass\nprint('torch' in sys.modules, file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Attributes" in result.stdout or "activation:" in result.stdout
    assert result.stderr.strip().endswith("False")


def test_every_op_describes_itself():
    for name in layers.all_ops():
        info = describe(name)
        assert info["summary"] and info["shape_rule"] and info["example"], name
        for attribute in info["attributes"]:
            assert "any" not in attribute["type"].split(), f"{name}.{attribute['name']}: {attribute['type']}"


def test_type_text():
    assert type_text({"type": "integer", "exclusiveMinimum": 0}) == "int > 0"
    assert type_text({"type": "number", "minimum": 0.0, "exclusiveMaximum": 1.0}) == "float in [0.0, 1.0)"
    assert type_text({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}) == "[int] x2"
    assert type_text({"anyOf": [{"enum": ["A", "B"]}, {"type": "null"}]}) == "A|B | null"


def test_the_docs_op_table_and_family_list_match_the_registry():
    """docs/ops.md's table names every registered op under its family, and no other; its `tfn layers` line lists the families."""
    text = (Path(__file__).parents[1] / "docs" / "ops.md").read_text(encoding="utf-8")
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 2 and cells[0] != "family":
            # notes in backticks and parentheses are not op names; "a / b" lists two ops
            names = re.sub(r"\([^()]*\)", "", re.sub(r"`[^`]*`", "", cells[1]))
            table[cells[0]] = {name.strip() for name in re.split(r"[,/]", names) if name.strip()}
    assert table == {family: {name for name, _ in ops} for family, ops in families().items()}
    listed = re.search(r"^tfn layers +# (.*)$", text, re.MULTILINE).group(1)
    assert listed.split(", ") == list(families())
