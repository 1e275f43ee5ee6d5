"""Every kind of spec error: its message (golden files) and its position (asserted here by hand).

Golden files live in tests/golden/errors/<case>.txt and hold exactly what
`tfn check` prints on stderr. After an intended change of wording, rewrite
them with

    TFN_REGEN_GOLDEN=1 python -m pytest tests/test_spec_errors.py

and review the diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden" / "errors"
REGENERATE = os.environ.get("TFN_REGEN_GOLDEN") == "1"

HEAD = """\
version: 1
name: t
model:
  inputs:
    image: {shape: [1, 8, 8]}
  layers:
"""
TAIL = """\
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits}
"""


def spec(layers: str) -> str:
    """A complete spec around the given layers (line 7 is the first layer)."""
    return HEAD + textwrap.indent(textwrap.dedent(layers).strip("\n"), "    ") + "\n" + TAIL


TOML_HEAD = """\
version = 1
name = "t"

[model.inputs.image]
shape = [1, 8, 8]

[[model.layers]]
op = "flatten"
"""
TOML_TAIL = """
[loss]
op = "sparse_softmax_cross_entropy_with_logits"
logits = "logits"
labels = "label"

[data]
source = "digits"
"""

VALID = spec("- {op: flatten}\n- {name: logits, op: dense, units: 10}")  # line 11 is free
TOML_VALID = TOML_HEAD + '\n[[model.layers]]\nname = "logits"\nop = "dense"\nunits = 10\n' + TOML_TAIL  # 22 lines

# case -> (file name, text, [(line, col), ...] of every error, in order)
CASES: dict[str, tuple[str, str, list[tuple[int, int]]]] = {
    "yaml_syntax": ("spec.yaml", spec("- {name: logits, op: dense, units: 10\n- {op: relu}"), [(8, 7)]),
    "toml_syntax": ("spec.toml", TOML_HEAD + 'units = \n' + TOML_TAIL, [(9, 9)]),
    "yaml_duplicate_key": ("spec.yaml", spec("- {op: flatten}\n- name: logits\n  op: dense\n  units: 10\n  units: 12"), [(11, 7)]),
    "toml_duplicate_key": ("spec.toml", TOML_HEAD + '\n[[model.layers]]\nname = "logits"\nop = "dense"\nunits = 10\nunits = 12\n' + TOML_TAIL, [(14, 1)]),
    "unknown_op": ("spec.yaml", spec("- {op: flaten}\n- {name: logits, op: dense, units: 10}"), [(7, 12)]),
    "unknown_attribute": ("spec.yaml", spec("- {op: flatten}\n- {name: logits, op: dense, unit: 10}"), [(8, 33)]),
    "wrong_type": ("spec.yaml", spec("- {op: flatten}\n- {name: logits, op: dense, units: ten}"), [(8, 40)]),
    "out_of_range": ("spec.yaml", spec("- {op: dropout, rate: 1.5}\n- {op: flatten}\n- {name: logits, op: dense, units: 10}"), [(7, 27)]),
    "missing_attribute": ("spec.yaml", spec("- {op: conv2d, filters: 4}\n- {op: flatten}\n- {name: logits, op: dense, units: 10}"), [(7, 7)]),
    "duplicate_node_name": ("spec.yaml", spec("- {name: a, op: flatten}\n- {name: a, op: relu}\n- {name: logits, op: dense, units: 10}"), [(8, 14)]),
    "unknown_node": ("spec.yaml", spec("- {name: flat, op: flatten}\n- {name: logits, op: dense, units: 10, inputs: [flatt]}"), [(8, 53)]),
    "later_node": ("spec.yaml", spec("- {name: logits, op: dense, units: 10, inputs: [flat]}\n- {name: flat, op: flatten, inputs: [image]}"), [(7, 53)]),
    "after_cycle": (
        "spec.yaml",
        spec("- {name: a, op: flatten, after: [c]}\n- {name: b, op: relu}\n- {name: c, op: relu}\n- {name: logits, op: dense, units: 10}"),
        [(7, 38)],
    ),
    "add_shape_mismatch": (
        "spec.yaml",
        spec("- {name: wide, op: conv2d, filters: 8, kernel_size: 3, padding: SAME, inputs: [image]}\n"
             "- {name: narrow, op: conv2d, filters: 4, kernel_size: 3, padding: SAME, inputs: [image]}\n"
             "- {name: sum, op: add, inputs: [wide, narrow]}\n- {op: flatten}\n- {name: logits, op: dense, units: 10}"),
        [(9, 36)],
    ),
    "concat_shape_mismatch": (
        "spec.yaml",
        spec("- {name: same, op: conv2d, filters: 4, kernel_size: 3, padding: SAME}\n"
             "- {name: valid, op: conv2d, filters: 4, kernel_size: 3, inputs: [image]}\n"
             "- {name: both, op: concat, inputs: [same, valid]}\n- {op: flatten}\n- {name: logits, op: dense, units: 10}"),
        [(9, 40)],
    ),
    "kernel_larger_than_input": ("spec.yaml", spec("- {op: conv2d, filters: 4, kernel_size: 9}\n- {op: flatten}\n- {name: logits, op: dense, units: 10}"), [(7, 45)]),
    "output_size_below_1": (
        "spec.yaml",
        spec("- {op: max_pool, pool_size: 2}   # 8 -> 4\n- {op: max_pool, pool_size: 2}   # 4 -> 2\n"
             "- {op: max_pool, pool_size: 2}   # 2 -> 1\n- {op: max_pool, pool_size: 2}   # 1 -> 0\n"
             "- {op: flatten}\n- {name: logits, op: dense, units: 10}"),
        [(10, 33)],
    ),
    "unknown_scope": (
        "spec.yaml",
        spec("- scope: block\n  layers:\n    - {name: conv, op: conv2d, filters: 4, kernel_size: 3}\n"
             "- {op: flatten, inputs: [blok/conv]}\n- {name: logits, op: dense, units: 10}"),
        [(10, 30)],
    ),
    "share_other_op": (
        "spec.yaml",
        spec("- {name: flat, op: flatten}\n- {name: hidden, op: dense, units: 64}\n- {name: logits, op: dense, units: 10, share: flat}"),
        [(9, 51)],
    ),
    "share_other_shape": (
        "spec.yaml",
        spec("- {name: flat, op: flatten}\n- {name: hidden, op: dense, units: 64}\n- {name: logits, op: dense, units: 10, share: hidden}"),
        [(9, 51)],
    ),
    "bad_device": ("spec.yaml", spec("- {op: flatten, device: /gpu:0}\n- {name: logits, op: dense, units: 10}"), [(7, 29)]),
    "empty_model": ("spec.yaml", spec("[]").replace("  layers:\n    []", "  layers: []"), [(6, 11)]),
    "no_inputs": ("spec.yaml", spec("- {op: flatten}\n- {name: logits, op: dense, units: 10}").replace("    image: {shape: [1, 8, 8]}\n", "").replace("  inputs:\n", "  inputs: {}\n"), [(4, 11)]),
    "not_yaml_or_toml": ("spec.json", '{"version": 1}\n', []),
    "empty_file": ("spec.yaml", "# nothing yet\n", [(1, 1)]),
    "unknown_section": ("spec.yaml", spec("- {op: flatten}\n- {name: logits, op: dense, units: 10}") + "trian: {epochs: 1}\n", [(11, 1)]),
    "unsupported_version": ("spec.yaml", spec("- {op: flatten}\n- {name: logits, op: dense, units: 10}").replace("version: 1", "version: 2"), [(1, 10)]),
    # every section speaks its own vocabulary, with its own choices
    "optimizer_unknown_type": ("spec.yaml", VALID + "optimizer: {type: adamm, learning_rate: 0.1}\n", [(11, 19)]),
    "optimizer_alias": ("spec.yaml", VALID + "optimizer: {type: sgd}\n", [(11, 19)]),
    "optimizer_without_type": ("spec.yaml", VALID + "optimizer: {name: adam}\n", [(11, 12)]),
    "optimizer_unknown_attribute": ("spec.yaml", VALID + "optimizer: {type: adam, beta_1: 0.8}\n", [(11, 25)]),
    "schedule_unknown_type": ("spec.yaml", VALID + "optimizer: {type: adam, schedule: {type: cosine, decay_steps: 10}}\n", [(11, 42)]),
    "schedule_without_type": ("spec.yaml", VALID + "optimizer: {type: adam, schedule: {decay_steps: 10}}\n", [(11, 35)]),
    "data_unknown_source": ("spec.yaml", VALID.replace("source: digits", "source: digitz"), [(10, 16)]),
    "data_without_source": ("spec.yaml", VALID.replace("source: digits", "path: d.npz"), [(10, 7)]),
    "batch_size_zero": ("spec.yaml", VALID.replace("source: digits", "source: digits, batch_size: 0"), [(10, 36)]),
    "batch_size_misspelt_full": ("spec.yaml", VALID.replace("source: digits", "source: digits, batch_size: ful"), [(10, 36)]),
    "batch_size_list": ("spec.yaml", VALID.replace("source: digits", "source: digits, batch_size: [32]"), [(10, 36)]),
    "loss_without_op": ("spec.yaml", VALID.replace("op: sparse_softmax_cross_entropy_with_logits, ", ""), [(9, 7)]),
    "loss_not_a_mapping": ("spec.yaml", VALID.replace("{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}", "5"), [(9, 7)]),
    "loss_unknown_op": ("spec.yaml", VALID.replace("op: sparse_softmax_cross_entropy_with_logits", "op: softmax_cross_entropy"), [(9, 12)]),
    "loss_layer_op": ("spec.yaml", VALID.replace("op: sparse_softmax_cross_entropy_with_logits", "op: dense"), [(9, 12)]),
    "train_unknown_setting": ("spec.yaml", VALID + "train: {epoch: 3}\n", [(11, 9)]),
    "train_wrong_choice": ("spec.yaml", VALID + "train: {precision: fp64, memory_format: nhwc}\n", [(11, 20), (11, 41)]),
    "train_seed_too_large": ("spec.yaml", VALID + "train: {seed: 99999999999999999999}\n", [(11, 15)]),
    # nodes, scopes and variables share one namespace
    "node_named_like_a_variable": (
        "spec.yaml",
        spec("- {op: flatten}\n- {name: d, op: dense, units: 4}\n- {scope: d, layers: [{name: kernel, op: relu}]}\n- {name: logits, op: dense, units: 10}"),
        [(9, 34)],
    ),
    "variable_named_like_a_node": (
        "spec.yaml",
        spec("- {op: flatten}\n- {scope: d, layers: [{name: bias, op: relu}]}\n- {name: d, op: dense, units: 10}\n- {name: logits, op: dense, units: 10}"),
        [(9, 14)],
    ),
    # bounded numbers and nesting
    "size_beyond_int32": ("spec.yaml", spec("- {op: flatten}\n- {name: logits, op: dense, units: 9223372036854775808}"), [(8, 40)]),
    "beyond_float32": ("spec.yaml", VALID + "optimizer: {type: adam, learning_rate: 1e308}\n", [(11, 40)]),
    # rate 2**31 - 1 passed check, then killed `tfn time` with SIGFPE inside the convolution
    "dilated_window_beyond_int32": (
        "spec.yaml",
        spec("- {op: atrous_conv2d, filters: 4, kernel_size: 3, rate: 2147483647, padding: SAME}\n- {op: flatten}\n- {name: logits, op: dense, units: 10}"),
        [(7, 52)],
    ),
    "pool_padding_beyond_a_tensor": (
        "spec.yaml",
        spec("- {op: max_pool, pool_size: 2000000, strides: 1, padding: SAME}\n- {op: flatten}\n- {name: logits, op: dense, units: 10}"),
        [(7, 33)],
    ),
    # a name holding a line break made a report line without a position (found by the fuzzer)
    "scope_name_with_a_line_break": (
        "spec.yaml",
        spec('- scope: "a\\nb"\n  layers: [{op: flatten}]\n- {name: logits, op: dense, units: 10, inputs: [c/flatten]}'),
        [(7, 14), (9, 53)],
    ),
    "infinite_rate": ("spec.yaml", spec("- {op: dropout, rate: .inf}\n- {op: flatten}\n- {name: logits, op: dense, units: 10}"), [(7, 27)]),
    "yaml_nesting_too_deep": ("spec.yaml", VALID + "train: " + "[" * 120 + "]" * 120 + "\n", [(11, 107)]),
    "toml_nesting_too_deep": ("spec.toml", TOML_VALID + "\n[train]\nepochs = " + "[" * 120 + "]" * 120 + "\n", [(24, 110)]),
    # every broken file has a position
    "yaml_unclosed_quote": ("spec.yaml", VALID.replace("name: t", 'name: "t'), [(2, 7)]),
    "yaml_control_character": ("spec.yaml", VALID.replace("name: t", "name: t\x07"), [(2, 8)]),
    "toml_missing_section": ("spec.toml", TOML_VALID.replace('\n[data]\nsource = "digits"\n', ""), [(1, 1)]),
    "toml_unclosed_string_at_end": ("spec.toml", TOML_VALID + '\n[train]\ndevice = """cpu\n', [(24, 10)]),
    "toml_unclosed_array_at_end": ("spec.toml", TOML_VALID + "\n[train]\nmetrics = [\"accuracy\",\n", [(24, 23)]),
    "yaml_invalid_utf8": ("spec.yaml", VALID.encode().replace(b"name: t", b"name: t\xff"), [(2, 8)]),
    "toml_invalid_utf8": ("spec.toml", TOML_VALID.encode().replace(b'name = "t"', b'name = "t\xc3("'), [(2, 10)]),
    # top_k_accuracy with k >= the classes would be 1.0 whatever the model does
    "top_k_default_not_below_classes": (
        "spec.yaml",
        spec("- {op: flatten}\n- {name: logits, op: dense, units: 4}") + "train: {metrics: [accuracy, top_k_accuracy]}\n",
        [(11, 29)],
    ),
    "top_k_not_below_classes": (
        "spec.yaml",
        spec("- {op: flatten}\n- {name: logits, op: dense, units: 4}") + "train: {metrics: [top_k_accuracy], top_k: 4}\n",
        [(11, 43)],
    ),
    "every_problem_at_once": (
        "spec.yaml",
        spec("- {op: conv2, filters: 4}\n- {name: hidden, op: dense, units: -3}\n- {op: relu, inputs: [hiden]}\n- {name: logits, op: dense, units: 10, share: nothing}"),
        [(7, 12), (8, 40), (9, 27), (10, 51)],
    ),
}




def test_every_case_is_distinct():
    assert len({text for _, text, _ in CASES.values()}) == len(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_text_and_position(case, tmp_path, monkeypatch, tfn_cli):
    name, text, positions = CASES[case]
    (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    monkeypatch.chdir(tmp_path)
    code, out, err = tfn_cli("check", name)
    assert code == 2, out + err
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == max(1, len(positions)), err
    for line, (row, col) in zip(lines, positions):
        assert line.startswith(f"{name}:{row}:{col}: error: "), line
    if not positions:
        assert lines[0].startswith(f"{name}: error: ")
    golden = GOLDEN / f"{case}.txt"
    if REGENERATE:
        golden.write_text(err)
    assert err == golden.read_text(), f"{case}: stderr differs from {golden} (TFN_REGEN_GOLDEN=1 rewrites it)"


def test_a_real_process_exits_2_without_traceback_and_debug_shows_one(tmp_path):
    (tmp_path / "spec.yaml").write_text(CASES["every_problem_at_once"][1])
    result = subprocess.run([sys.executable, "-m", "tfn.cli.main", "check", "spec.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == (GOLDEN / "every_problem_at_once.txt").read_text()


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "spec.yaml").write_text(CASES["unknown_op"][1])
    result = subprocess.run([sys.executable, "-m", "tfn.cli.main", "--debug", "check", "spec.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "SpecError" in result.stderr


def test_a_section_value_from_set_is_reported_at_the_option(tmp_path, monkeypatch, tfn_cli):
    (tmp_path / "spec.yaml").write_text(VALID + "optimizer: {type: adam}\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = tfn_cli("check", "spec.yaml", "--set", "optimizer.type=adamm", "--set", "data.source=digitz")
    assert code == 2
    assert err.splitlines() == [
        "--set optimizer.type=adamm: error: optimizer.type: unknown optimizer 'adamm' (did you mean 'adam'?); "
        "choices: gradient_descent, momentum, nesterov, adagrad, adadelta, rmsprop, adam, adamw",
        "--set data.source=digitz: error: data.source: unknown data source 'digitz' (did you mean 'digits'?); "
        "choices: digits, synthetic, key_value, mnist, fashion_mnist, idx, npz, npy, csv, text, image_folder",
    ]
