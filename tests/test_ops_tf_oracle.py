"""The new ops against TensorFlow's own numbers: outputs and gradients.

tests/tf_reference/make_ops_core.py computed every case with TensorFlow
(tf.nn, tf.raw_ops.Resize*, tf.keras 2 layers; float32, as TF computes) and
stored it in tfn's layout in ops_core.npz; this test runs each case's node
through tfn's kernel in float32 and compares the outputs and the gradients of
sum(g_k * y_k) with respect to every float input and every variable. The
case names say which trap each covers (LRN's alpha, resize's corner rules,
reduce_max's ties, split's uneven sizes, ...). TensorFlow is not needed here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tfn import layers
from tfn.layers import TensorType

FIXTURE = Path(__file__).parent / "tf_reference" / "ops_core.npz"


def load_cases() -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    with np.load(FIXTURE, allow_pickle=False) as archive:
        raw = {key: archive[key] for key in archive.files}
    versions = json.loads(str(raw.pop("versions")))
    cases: dict[str, dict[str, np.ndarray]] = {}
    for key, value in raw.items():
        name, _, field = key.partition("/")
        cases.setdefault(name, {})[field] = value
    return versions, cases


VERSIONS, CASES = load_cases()


def test_the_fixture_records_the_tensorflow_it_came_from():
    assert VERSIONS["tensorflow"].startswith("2.") and VERSIONS["tf_keras"] and VERSIONS["keras"].startswith("3.")
    assert len(CASES) > 100


def test_every_op_of_the_fixture_is_registered_and_the_traps_are_there():
    ops = {json.loads(str(c["node"]))["op"] for c in CASES.values()}
    assert ops <= set(layers.all_ops())
    names = set(CASES)
    for trap in (
        "lrn_alpha_not_divided_by_window",
        "selu_gradient_at_0",
        "leaky_relu_alpha_above_1",
        "gelu_exact",
        "gelu_approximate",
        "layer_normalization_feature_axis_epsilon_1e-3",
        "reduce_max_one_axis",
        "reduce_sum_empty_axis_list",
        "split_uneven_sizes",
        "gather_axis_2_repeated_indices",
        "cast_float_to_int_truncates",
    ):
        assert trap in names
    for method in ("nearest", "bilinear", "bicubic", "area"):
        for corner in ("default", "align_corners", "half_pixel_centers"):
            if (method, corner) != ("area", "half_pixel_centers"):
                assert {f"resize_{method}_{corner}_{size}" for size in ("up", "down", "mixed", "to_one")} <= names


def run_case(case: dict[str, np.ndarray]):
    """tfn's outputs for the case, and the gradients of sum(g_k * y_k) by float input index and variable role."""
    node = json.loads(str(case["node"]))
    op = layers.get(node.pop("op"))
    p = op.Params.model_validate(node)
    xs = [torch.from_numpy(case[f"x{i}"]) for i in range(len([k for k in case if k[0] == "x" and k[1:].isdigit()]))]
    types = [TensorType((None, *x.shape[1:]), str(x.dtype).removeprefix("torch.")) for x in xs]
    op.infer(p, types)  # the shape rule accepts what TF accepted
    xs = [x.clone().requires_grad_(x.is_floating_point()) for x in xs]
    variables = {key[4:]: torch.from_numpy(v).clone().requires_grad_() for key, v in case.items() if key.startswith("var/")}
    out = op.build(p, types)(xs, variables, False)
    outs = out if isinstance(out, tuple) else (out,)
    weighted = [(o * torch.from_numpy(case[f"g{k}"]).to(o.dtype)).sum() for k, o in enumerate(outs) if f"g{k}" in case]
    if weighted:
        sum(weighted).backward()
    return outs, {i: x.grad for i, x in enumerate(xs) if x.grad is not None}, {r: v.grad for r, v in variables.items()}


def close(actual: torch.Tensor, expected: np.ndarray, what: str):
    actual = actual.detach().double().numpy()
    # float32 on both sides, summed in other orders: relative to the size of the values
    scale = max(1.0, float(np.abs(expected).max()) if expected.size else 1.0)
    np.testing.assert_allclose(actual, expected.astype(np.float64), rtol=2e-5, atol=2e-5 * scale, err_msg=what)


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_tensorflow(name):
    case = CASES[name]
    outs, input_grads, variable_grads = run_case(case)
    assert len(outs) == len([k for k in case if k[0] == "y"])
    for k, out in enumerate(outs):
        expected = case[f"y{k}"]
        assert tuple(out.shape) == expected.shape, f"output {k}"
        if not expected.dtype.kind == "f":
            np.testing.assert_array_equal(out.numpy(), expected, err_msg=f"output {k}")
        else:
            close(out, expected, f"output {k}")
    expected_input_grads = {int(k[2:]): v for k, v in case.items() if k.startswith("dx")}
    assert set(input_grads) == set(expected_input_grads), "gradients flow to the inputs TF differentiates"
    for i, expected in expected_input_grads.items():
        close(input_grads[i], expected, f"gradient of input {i}")
    for role, expected in ((k[5:], v) for k, v in case.items() if k.startswith("dvar/")):
        close(variable_grads[role], expected, f"gradient of variable {role}")
