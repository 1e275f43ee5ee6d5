"""The spec language: names, scopes, references, control edges, sharing, placement, both file formats."""

from __future__ import annotations

import textwrap

import pytest

from tfn.specs import SpecError, load
from tfn.specs.documents import read_document


def model(layers: str, inputs: str = "image: {shape: [1, 8, 8]}", loss: str = "logits") -> str:
    return (
        "version: 1\nname: t\nmodel:\n  inputs:\n"
        + textwrap.indent(textwrap.dedent(inputs).strip(), "    ")
        + "\n  layers:\n"
        + textwrap.indent(textwrap.dedent(layers).strip(), "    ")
        + f"\nloss: {{op: sparse_softmax_cross_entropy_with_logits, logits: {loss}, labels: label}}\ndata: {{source: digits}}\n"
    )


def graph_of(write_spec, layers: str, **kw):
    return load(write_spec(model(layers, **kw))).graph


def errors_of(write_spec, layers: str, **kw) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(write_spec(model(layers, **kw)))
    return [f"{d.line}:{d.col}: {d.path}: {d.message}" for d in info.value.diagnostics]


# --- names -----------------------------------------------------------------------------


def test_unnamed_nodes_get_tf_names_scoped_and_numbered(write_spec):
    graph = graph_of(
        write_spec,
        """
        - {op: conv2d, filters: 2, kernel_size: 3, padding: SAME}
        - {op: conv2d, filters: 2, kernel_size: 3, padding: SAME}
        - {name: conv2d_2, op: relu}      # a user name takes its place; the next unnamed conv skips it
        - {op: conv2d, filters: 2, kernel_size: 3, padding: SAME}
        - scope: block
          layers:
            - {op: conv2d, filters: 2, kernel_size: 3, padding: SAME}
            - {op: relu}
            - scope: inner
              layers:
                - {op: relu}
        - {op: flatten}
        - {name: logits, op: dense, units: 10}
        """,
    )
    names = [n.name for n in graph.nodes if n.op != "sparse_softmax_cross_entropy_with_logits"]
    assert names == ["conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "block/conv2d", "block/relu", "block/inner/relu", "flatten", "logits"]
    assert graph.node("block/inner/relu").scope == "block/inner"
    assert graph.node("conv2d_3").variables == {"kernel": "conv2d_3/kernel", "bias": "conv2d_3/bias"}
    assert graph.node("block/conv2d").variables == {"kernel": "block/conv2d/kernel", "bias": "block/conv2d/bias"}


def test_default_input_is_the_previous_node_across_scopes(write_spec):
    graph = graph_of(
        write_spec,
        """
        - {name: a, op: flatten}
        - scope: s
          layers:
            - {name: b, op: dense, units: 4}
        - {name: logits, op: dense, units: 10}
        """,
    )
    assert graph.node("a").inputs == ("image",)
    assert graph.node("s/b").inputs == ("a",)
    assert graph.node("logits").inputs == ("s/b",)


def test_resolution_innermost_scope_first_then_outward_and_slash_is_top_level(write_spec):
    graph = graph_of(
        write_spec,
        """
        - {name: x, op: flatten}
        - scope: outer
          layers:
            - {name: x, op: dense, units: 4}
            - scope: inner
              layers:
                - {name: own, op: relu, inputs: [x]}        # outer/x: the nearest enclosing scope that has one
                - {name: top, op: relu, inputs: [/x]}       # the top-level x
                - {name: rel, op: relu, inputs: [inner/own]}  # outer/inner/own, found from outer
        - {name: abs, op: relu, inputs: [outer/inner/own]}
        - {name: logits, op: dense, units: 10, inputs: [x]}
        """,
    )
    assert graph.node("outer/inner/own").inputs == ("outer/x",)
    assert graph.node("outer/inner/top").inputs == ("x",)
    assert graph.node("outer/inner/rel").inputs == ("outer/inner/own",)
    assert graph.node("abs").inputs == ("outer/inner/own",)
    assert graph.node("logits").inputs == ("x",)


def test_several_inputs_with_dtypes(write_spec):
    graph = graph_of(
        write_spec,
        """
        - {name: a, op: flatten, inputs: [image]}
        - {name: b, op: flatten, inputs: [extra]}
        - {name: logits, op: dense, units: 10, inputs: [a]}
        """,
        inputs="image: {shape: [1, 8, 8]}\nextra: {shape: [3], dtype: float64}",
    )
    types = {i.name: (i.type.shape, i.type.dtype) for i in graph.inputs}
    assert types == {"image": ((None, 1, 8, 8), "float32"), "extra": ((None, 3), "float64"), "label": ((None,), "int64")}
    assert graph.node("b").outputs[0].dtype == "float64"


def test_with_several_inputs_the_first_node_must_name_its_input(write_spec):
    errors = errors_of(write_spec, "- {op: flatten}\n- {name: logits, op: dense, units: 10}", inputs="a: {shape: [4]}\nb: {shape: [4]}")
    assert errors == ["8:12: model.layers[0].op: the first node has no default input: the model has inputs a, b; name them with `inputs:`"]


def test_second_output_reference(write_spec):
    pytest.importorskip("tfn.layers.pooling")
    graph = graph_of(
        write_spec,
        """
        - {name: pool, op: max_pool_with_argmax, pool_size: 2}
        - {name: where, op: flatten, inputs: ["pool:1"]}
        - {op: flatten, inputs: [pool]}
        - {name: logits, op: dense, units: 10}
        """,
    )
    assert graph.node("where").inputs == ("pool:1",)
    assert graph.node("where").outputs[0].dtype == graph.node("pool").outputs[1].dtype == "int64"
    errors = errors_of(write_spec, '- {name: p, op: max_pool_with_argmax, pool_size: 2}\n- {op: flatten, inputs: ["p:2"]}\n- {name: logits, op: dense, units: 10}')
    assert errors == ["8:30: model.layers[1].inputs[0]: 'p:2': node 'p' has 2 output(s), numbered from 0"]


# --- control edges -------------------------------------------------------------------------


def test_after_is_kept_and_orders_the_graph(write_spec):
    graph = graph_of(
        write_spec,
        """
        - {name: a, op: flatten}
        - {name: b, op: flatten, inputs: [image], after: [c]}    # a control edge to a later node is allowed
        - {name: c, op: flatten, inputs: [image]}
        - {name: logits, op: dense, units: 10, inputs: [a], after: [b]}
        """,
    )
    order = [n.name for n in graph.nodes]
    assert graph.node("b").control_inputs == ("c",)
    assert graph.node("logits").control_inputs == ("b",)
    assert order.index("c") < order.index("b") < order.index("logits")
    assert order == ["a", "c", "b", "logits", "loss"]  # otherwise spec order


# --- sharing ---------------------------------------------------------------------------------


def test_shared_variables_exist_once(write_spec):
    graph = graph_of(
        write_spec,
        """
        - {name: f, op: flatten}
        - {name: one, op: dense, units: 64}
        - {name: two, op: dense, units: 64, share: one}
        - {name: logits, op: dense, units: 10}
        """,
    )
    assert graph.node("two").variables == {"kernel": "one/kernel", "bias": "one/bias"}
    assert [v.name for v in graph.variables] == ["one/kernel", "one/bias", "logits/kernel", "logits/bias"]
    assert graph.parameter_counts() == (64 * 64 + 64 + 64 * 10 + 10, 0)


@pytest.mark.parametrize(
    ("share", "message"),
    [
        ("image", "cannot share variables of 'image': it is a model input"),
        ("two", "'two' is itself; a node can only take inputs from (and share with) nodes above it"),
        ("logits", "'logits' is defined later, at line 10; a node can only take inputs from (and share with) nodes above it"),
    ],
)
def test_bad_share(write_spec, share, message):
    layers = f"""
        - {{name: f, op: flatten}}
        - {{name: one, op: dense, units: 64}}
        - {{name: two, op: dense, units: 64, share: {share}}}
        - {{name: logits, op: dense, units: 10}}
        """
    (error,) = errors_of(write_spec, layers)
    assert error.endswith(f"model.layers[2].share: {message}")
    assert error.startswith("9:")


def test_share_needs_an_op_with_variables(write_spec):
    (error,) = errors_of(write_spec, "- {name: f, op: flatten}\n- {op: relu, share: f}\n- {name: logits, op: dense, units: 10}")
    assert error == "8:25: model.layers[1].share: cannot share variables of 'f': it is a flatten, this node is a relu"


# --- placement ---------------------------------------------------------------------------------


def test_device_per_node_and_per_scope_with_the_node_winning(write_spec):
    graph = graph_of(
        write_spec,
        """
        - {name: f, op: flatten, device: cpu}
        - scope: s
          device: cuda:1
          layers:
            - {name: a, op: dense, units: 4}
            - {name: b, op: relu, device: cpu}
        - {name: logits, op: dense, units: 10}
        """,
    )
    assert [(n.name, n.device) for n in graph.nodes] == [("f", "cpu"), ("s/a", "cuda:1"), ("s/b", "cpu"), ("logits", None), ("loss", None)]


def test_checking_does_not_need_the_device(write_spec):
    # placement on a device this machine lacks is rejected when the model runs, not when it is checked
    graph = graph_of(write_spec, "- {op: flatten, device: cuda:7}\n- {name: logits, op: dense, units: 10}")
    assert graph.node("flatten").device == "cuda:7"


# --- formats -------------------------------------------------------------------------------------


def test_yaml_is_read_as_yaml_1_2(write_spec):
    doc = read_document(write_spec("a: 1e-3\nb: yes\nc: 012\nd: true\ne: 0x1F\nf: .inf\ng: ~\n"))
    assert doc.data == {"a": 0.001, "b": "yes", "c": 12, "d": True, "e": 31, "f": float("inf"), "g": None}


def test_toml_positions_for_tables_arrays_of_tables_and_inline_tables(write_spec):
    text = textwrap.dedent(
        """\
        version = 1
        name = "t"

        [model.inputs]
        image = { shape = [1, 8, 8], dtype = "float32" }

        [[model.layers]]
        op = "flatten"

        [[model.layers]]
          name = "logits"   # indented keys
          op = "dense"
          units = 10

        [loss]
        op = "sparse_softmax_cross_entropy_with_logits"
        logits = "logits"
        labels = "label"

        [data]
        layers = [
          { op = "x", units = 3 },
          { op = "y" },
        ]
        """
    )
    doc = read_document(write_spec(text, "spec.toml"))
    assert doc.where(("model", "layers", 0)) == (7, 3)
    assert doc.where(("model", "layers", 0, "op")) == (8, 1)
    assert doc.where(("model", "layers", 1, "units")) == (13, 3)
    assert doc.where(("model", "inputs", "image", "dtype")) == (5, 30)
    assert doc.where(("loss", "logits")) == (17, 1)
    assert doc.where(("data", "layers", 1, "op")) == (23, 5)
    assert doc.where(("data", "layers", 0, "units")) == (22, 15)


def test_toml_and_yaml_give_the_same_graph(write_spec):
    yaml_graph = load(write_spec(model("- {op: flatten}\n- {name: logits, op: dense, units: 10}"))).graph
    toml_text = textwrap.dedent(
        """\
        version = 1
        name = "t"
        [model.inputs.image]
        shape = [1, 8, 8]
        [[model.layers]]
        op = "flatten"
        [[model.layers]]
        name = "logits"
        op = "dense"
        units = 10
        [loss]
        op = "sparse_softmax_cross_entropy_with_logits"
        logits = "logits"
        labels = "label"
        [data]
        source = "digits"
        """
    )
    assert load(write_spec(toml_text, "spec.toml")).graph.to_json() == yaml_graph.to_json()


def test_toml_errors_point_at_the_key(write_spec):
    text = 'version = 1\nname = "t"\n[model.inputs.image]\nshape = [1, 8, 8]\n[[model.layers]]\nop = "flatten"\n[[model.layers]]\nname = "logits"\nop = "dense"\nunit = 10\n'
    text += '[loss]\nop = "sparse_softmax_cross_entropy_with_logits"\nlogits = "logitz"\nlabels = "label"\n[data]\nsource = "digits"\n'
    with pytest.raises(SpecError) as info:
        load(write_spec(text, "spec.toml"))
    assert [str(d) for d in info.value.diagnostics] == [
        f"{info.value.diagnostics[0].file}:10:1: error: model.layers[1].unit: unknown attribute 'unit' (did you mean 'units'?)",
        f"{info.value.diagnostics[0].file}:13:1: error: loss.logits: unknown node 'logitz' (did you mean 'logits'?)",
    ]


def test_overrides_change_any_field_before_validation(write_spec, tfn_cli):
    path = write_spec(model("- {op: flatten}\n- {name: hidden, op: dense, units: 10}\n- {name: logits, op: dense, units: 10}"))
    from tfn.specs import load as load_spec

    graph = load_spec(path, ["model.layers.1.units=32", "name=renamed"]).graph
    assert graph.name == "renamed"
    assert graph.node("hidden").outputs[0].shape == (None, 32)
    code, _, err = tfn_cli("check", str(path), "--set", "model.layers.1.units=zero")
    assert code == 2 and err == "--set model.layers.1.units=zero: error: model.layers[1].units: input should be a valid integer, got 'zero'\n"
    code, _, err = tfn_cli("check", str(path), "--set", "model.layers.1.units=")
    assert code == 2 and err.startswith("--set model.layers.1.units=: error: model.layers[1].units: input should be a valid integer")


TOML_NESTED = '''\
version = 1
name = "nested"   # a comment with = and [brackets]
description = """a multi-line
string with [[brackets]] = and "quotes" """

[model.inputs]
"image" = { shape = [1, 8, 8], dtype = "float32" }

[[model.layers]]
op = "flatten"

[[model.layers]]
scope = "block"
device = "cpu"

  [[model.layers.layers]]
  name = "hidden"
  op = "dense"
  units = 16

  [[model.layers.layers]]
  op = "relu"
  after = ["hidden",
           "/flatten"]

[[model.layers]]
name = "logits"
op.sub = 1.5e-3
inputs = [{ a = 1 }, { b = [2, 3] }, 4]
'''


def test_toml_scanner_positions_every_key_of_nested_arrays_of_tables(write_spec):
    doc = read_document(write_spec(TOML_NESTED, "spec.toml"))
    lines = TOML_NESTED.splitlines()

    def key_at(path):
        line, col = doc.values[path]  # an exact entry, not an ancestor's
        return lines[line - 1][col - 1 :]

    assert key_at(("model", "layers", 1, "layers", 0)).startswith("model.layers.layers")
    assert key_at(("model", "layers", 1, "layers", 0, "units")).startswith("units = 16")
    assert key_at(("model", "layers", 1, "layers", 1, "op")).startswith('op = "relu"')
    assert key_at(("model", "layers", 1, "layers", 1, "after", 1)).startswith('"/flatten"')
    assert key_at(("model", "layers", 2, "name")).startswith('name = "logits"')
    assert key_at(("model", "layers", 2, "op", "sub")).startswith("op.sub")
    assert key_at(("model", "layers", 2, "inputs", 1, "b", 1)).startswith("3]")
    assert key_at(("model", "layers", 2, "inputs", 2)).startswith("4]")
    assert key_at(("model", "inputs", "image")).startswith('"image"')
    assert key_at(("version",)).startswith("version")
    assert doc.values[("model", "layers", 1, "device")][0] == 14

    def leaves(value, path=()):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from leaves(v, path + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from leaves(v, path + (i,))
        else:
            yield path

    assert all(path in doc.values for path in leaves(doc.data))  # every value has its own position


def test_an_override_that_adds_an_unknown_key_points_at_the_override(write_spec, tfn_cli):
    path = write_spec(model("- {op: flatten}\n- {name: logits, op: dense, units: 10}"))
    code, _, err = tfn_cli("check", str(path), "--set", "data.samples.train=3")
    # the path is the document's (data.samples), not pydantic's (data.digits.samples)
    assert code == 2 and err.startswith("--set data.samples.train=3: error: data.samples: unknown attribute 'samples'")
