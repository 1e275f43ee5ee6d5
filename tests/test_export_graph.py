"""`tfn export-graph`: json, dot/svg/png and tensorboard (ONNX: test_export_onnx.py)."""

from __future__ import annotations

import re
import shutil

import pytest

SCOPED_SPEC = """
version: 1
name: scoped
model:
  inputs:
    image: {shape: [1, 4, 4]}
  layers:
    - scope: block1
      layers:
        - {name: conv, op: conv2d, filters: 2, kernel_size: 3, padding: SAME}
        - {name: act, op: relu}
        - scope: inner
          layers:
            - {name: conv, op: conv2d, filters: 2, kernel_size: 1}
    - {name: side, op: relu, inputs: [block1/act]}
    - {name: flat, op: flatten, inputs: [block1/inner/conv], after: [side]}
    - {name: logits, op: dense, units: 3}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits, batch_size: 4}
train: {epochs: 1}
"""
NODES = ("block1/conv", "block1/act", "block1/inner/conv", "side", "flat", "logits", "loss")
needs_graphviz = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


@pytest.fixture
def scoped(write_spec):
    return write_spec(SCOPED_SPEC)


def test_json_is_the_default_and_round_trips(scoped, tfn_cli, tmp_path):
    from tfn.specs import load_graph
    from tfn.specs.graph import Graph

    code, out, _ = tfn_cli("export-graph", str(scoped))
    assert code == 0
    assert Graph.from_json(out) == load_graph(scoped)
    code, _, _ = tfn_cli("export-graph", str(scoped), "-o", str(tmp_path / "g.json"))
    assert (tmp_path / "g.json").read_text() == out
    # graph.json is itself a target: exporting it again gives the same bytes
    code, again, _ = tfn_cli("export-graph", str(tmp_path / "g.json"))
    assert again == out


def test_dot_names_every_node_marks_control_edges_and_clusters_scopes(scoped, tfn_cli):
    code, dot, _ = tfn_cli("export-graph", str(scoped), "--format", "dot")
    assert code == 0
    for name in NODES + ("image", "label"):
        assert re.search(rf'^\s*"{re.escape(name)}" \[', dot, re.M), name
    edges = dict(re.findall(r'^\s*("[^"]+" -> "[^"]+") \[(.*)\];$', dot, re.M))
    assert "style=dashed" in edges['"side" -> "flat"']  # the control edge (after: [side])
    assert edges['"block1/inner/conv" -> "flat"'] == 'label="[?, 2, 4, 4]"'  # a data edge: solid, with its shape
    assert sum("style=dashed" in attrs for attrs in edges.values()) == 1
    assert edges['"label" -> "loss"'] == 'label="[?] int64"'
    outer = dot.index('subgraph "cluster_block1" {')
    inner = dot.index('subgraph "cluster_block1/inner" {')
    assert outer < dot.index('"block1/act" [') < inner < dot.index('"block1/inner/conv" [')
    assert dot.index('"side" [') < outer  # a top-level node sits outside every cluster


@needs_graphviz
def test_svg_and_png_through_graphviz(scoped, tfn_cli, tmp_path):
    code, _, err = tfn_cli("export-graph", str(scoped), "-o", str(tmp_path / "g.svg"))
    assert code == 0, err
    svg = (tmp_path / "g.svg").read_text()
    titles = set(re.findall(r"<title>(.*?)</title>", svg))
    assert set(NODES) <= titles
    control = re.search(r'<title>side&#45;&gt;flat</title>\s*<path [^>]*stroke-dasharray', svg)
    assert control, "the control edge is drawn dashed"
    code, _, _ = tfn_cli("export-graph", str(scoped), "--format", "png", "-o", str(tmp_path / "g.png"))
    assert code == 0
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_graphviz_the_error_says_how_to_install_it(scoped, tfn_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = tfn_cli("export-graph", str(scoped), "-o", str(tmp_path / "g.svg"))
    assert code == 2
    assert "install Graphviz (apt-get install graphviz, brew install graphviz, conda install graphviz)" in err
    assert not (tmp_path / "g.svg").exists()


def test_tensorboard_graph_reads_back_with_tensorboards_reader(scoped, tfn_cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, _, err = tfn_cli("export-graph", str(scoped), "--format", "tensorboard", "-o", str(tmp_path / "logs"))
    assert code == 0, err
    assert "tensorboard --logdir" in err
    accumulator = EventAccumulator(str(tmp_path / "logs"))
    accumulator.Reload()
    nodes = {n.name: n for n in accumulator.Graph().node}
    assert set(NODES) | {"image", "label", "block1/conv/kernel", "logits/bias"} <= set(nodes)
    assert "^side" in nodes["flat"].input and "block1/inner/conv" in nodes["flat"].input
    assert nodes["image"].op == "Placeholder" and nodes["block1/conv/kernel"].op == "VariableV2"
    # TensorFlow's op names, as a TF 1.x graph shows them, with tfn's op as an attribute
    ops = {name: (nodes[name].op, nodes[name].attr["tfn_op"].s.decode()) for name in NODES}
    assert ops == {
        "block1/conv": ("Conv2D", "conv2d"),
        "block1/act": ("Relu", "relu"),
        "block1/inner/conv": ("Conv2D", "conv2d"),
        "side": ("Relu", "relu"),
        "flat": ("Reshape", "flatten"),
        "logits": ("MatMul", "dense"),
        "loss": ("SparseSoftmaxCrossEntropyWithLogits", "sparse_softmax_cross_entropy_with_logits"),
    }


def test_format_and_option_mistakes_exit_2(scoped, tfn_cli, tmp_path):
    code, _, err = tfn_cli("export-graph", str(scoped), "--format", "onnx")
    assert code == 2 and "give -o/--output: a .onnx file" in err
    code, _, err = tfn_cli("export-graph", str(scoped), "--checkpoint", "x.safetensors")
    assert code == 2 and "only --format onnx holds weights" in err
    code, _, err = tfn_cli("export-graph", "digits_cnm")
    assert code == 2 and "did you mean 'digits_cnn'" in err


def test_json_dot_and_tensorboard_exports_do_not_import_torch(scoped, tmp_path):
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        import sys
        from tfn.cli.main import main
        for args in (["--format", "json"], ["--format", "dot"], ["--format", "tensorboard", "-o", {str(tmp_path / "tb")!r}]):
            main(["export-graph", {str(scoped)!r}, *args])
        print("torch" in sys.modules, file=sys.stderr)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.strip().endswith("False")
