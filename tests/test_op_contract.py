"""The contract battery: every registered op, with no list of names here.

Each op is driven by its docstring example (the parameters) and its
`example_inputs` (the input shapes). A new op is picked up automatically.
"""

from __future__ import annotations

import functools
import json
import re
import os
from importlib import resources
from pathlib import Path

import pytest
import torch

from tfn import layers
from tfn.layers import TensorType
from tfn.layers.initializers import initialize
from tfn.specs.documents import parse_yaml
from tfn.specs.schema import LOSS_MODELS, NODE_MODELS

OPS = layers.all_ops()
GOLDEN = Path(__file__).parent / "golden" / "op_names.txt"
NODE_FIELDS = {"op", "name", "inputs", "after", "share", "device", "logits", "predictions", "labels", "sample_weight", "weight"}


def example_params(op):
    data = parse_yaml(op.example(), f"{op.name} docstring").data
    return op.Params.model_validate({k: v for k, v in data.items() if k not in NODE_FIELDS})


def example_types(op, p):
    shapes = op.example_inputs
    dtypes = op.example_dtypes or ("float32",) * len(shapes)
    types = [TensorType((None, *s[1:]), dtype) for s, dtype in zip(shapes, dtypes)]
    if op.is_loss:
        types = [types[0], op.label_type(p, types[0])]
    return types


def integer_input(op, p, types, index, shape, gen):
    """Valid integers for input `index` of the op: within the range the op indexes with
    (integer_input_range), a loss's classes for its labels, else small values of both signs."""
    known = op.integer_input_range(p, types, index)
    if known is not None:
        low, high = known
    elif op.is_loss:
        low, high = 0, types[0].shape[1]
    else:
        low, high = -3, 4
    return torch.randint(low, high, shape, generator=gen, dtype=getattr(torch, types[index].dtype))


def bounded_floats(op, p, types, index, shape, gen, dtype):
    """Floats inside the interval the op accepts for input `index` (float_input_range: log_loss's probabilities)."""
    low, high = op.float_input_range(p, types, index)
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=dtype)


def example_tensors(op, p, dtype=torch.float64, seed=0):
    """Inputs and variables for the op's example: random normal floats, valid labels, initialised variables."""
    return tensors_for(op, p, example_types(op, p), op.example_inputs[0][0], dtype, seed)


def tensors_for(op, p, types, batch, dtype=torch.float64, seed=0):
    """Inputs of these types (`batch` samples) and the op's variables for them."""
    gen = torch.Generator().manual_seed(seed)
    xs = []
    for i, t in enumerate(types):
        shape = (batch, *t.shape[1:])
        if t.dtype.startswith("int"):
            xs.append(integer_input(op, p, types, i, shape, gen))
        elif op.float_input_range(p, types, i) is not None:
            xs.append(bounded_floats(op, p, types, i, shape, gen, dtype))
        elif op.is_loss and i == 1:  # soft labels: a distribution over the class axis
            xs.append(torch.randn(shape, generator=gen, dtype=dtype).softmax(1))
        else:
            xs.append(torch.randn(shape, generator=gen, dtype=dtype))
    variables = {}
    for d in op.variables(p, types):
        value = torch.empty(d.shape, dtype=dtype)
        initialize(value, d.initializer, d.fans, gen)
        if d.trainable and d.initializer in ("zeros", "ones"):
            value += 0.1 * torch.randn(d.shape, generator=gen, dtype=dtype)  # no symmetric starting points
        variables[d.role] = value.requires_grad_(d.trainable)
    return types, xs, variables


def run(op, p, types, xs, variables, training):
    out = op.build(p, types)(xs, variables, training)
    return out if isinstance(out, tuple) else (out,)


def differentiable_inputs(op, xs):
    """The inputs a gradient flows to: floats, but never the labels of a loss (TF stops their gradient)."""
    return [i for i, x in enumerate(xs) if x.is_floating_point() and not (op.is_loss and i == 1)]


names = pytest.mark.parametrize("name", list(OPS))


@names
def test_docstring_example_is_a_valid_node(name):
    op = OPS[name]
    data = parse_yaml(op.example(), "example").data
    assert data.get("op") == name, f"{name}: the docstring needs `Example:` followed by a flow mapping with op: {name}"
    model = LOSS_MODELS[name] if op.is_loss else NODE_MODELS[name]
    model.model_validate(data)
    assert op.summary() and op.shape_rule(), f"{name}: the docstring needs a summary line and an `Input ...` shape paragraph"


@names
def test_params_round_trip_through_graph_json(name):
    op = OPS[name]
    p = example_params(op)
    again = op.Params.model_validate(json.loads(json.dumps(p.model_dump(mode="json"))))
    assert again == p


@names
@pytest.mark.parametrize("training", [True, False])
def test_inferred_types_match_a_run(name, training):
    op = OPS[name]
    p = example_params(op)
    for dtype in (torch.float32, torch.float64):
        types, xs, variables = example_tensors(op, p, dtype)
        variables = {k: v.to(dtype).detach() for k, v in variables.items()}
        inferred = op.infer(p, types)
        torch.manual_seed(0)
        outputs = run(op, p, types, xs, variables, training)
        assert len(outputs) == len(inferred)
        for got, want in zip(outputs, inferred):
            batched = want.shape[0] is None  # an output without a batch axis (a pooling sequence) has a fixed shape
            assert tuple(got.shape) == ((xs[0].shape[0], *want.shape[1:]) if batched else want.shape)
            assert got.device == xs[0].device
            if want.dtype.startswith("float") and any(t.is_floating_point() for t in [*xs, *variables.values()]):
                assert got.dtype == dtype, "floating outputs keep the dtype of the input (or, from integer inputs, of the variables)"
            else:
                assert str(got.dtype) == f"torch.{want.dtype}"


@names
def test_flops_rule(name):
    op = OPS[name]
    p = example_params(op)
    types = example_types(op, p)
    flops = op.flops(p, types, op.infer(p, types))
    if op.pure_data_movement:
        assert flops == 0
    else:
        assert flops > 0, f"{name}: give a FLOPs rule, or set pure_data_movement = True for an op that only moves data"


@names
def test_inputs_are_not_modified_in_place(name):
    op = OPS[name]
    p = example_params(op)
    types, xs, variables = example_tensors(op, p)
    before = [x.clone() for x in xs]
    for training in (True, False):
        run(op, p, types, xs, variables, training)
    for x, b in zip(xs, before):
        assert torch.equal(x, b)


def _exports_as_an_onnx_node(name: str) -> bool:
    op = OPS[name]
    p = example_params(op)
    return op.build_onnx(p, example_types(op, p)) is not None


@pytest.mark.parametrize("name", [n for n in OPS if _exports_as_an_onnx_node(n)])
def test_the_export_kernel_computes_what_the_kernel_computes(name):
    """Op.build_onnx is a promise: ONNX export traces its kernel (one ONNX node) in place of build's."""
    op = OPS[name]
    p = example_params(op)
    types, xs, variables = example_tensors(op, p)
    export = op.build_onnx(p, types)(xs, variables, False)
    expected = run(op, p, types, xs, variables, training=False)
    torch.testing.assert_close(list(export) if isinstance(export, tuple) else [export], list(expected), rtol=1e-12, atol=1e-12)


@names
def test_evaluation_batch_equals_single_examples(name):
    op = OPS[name]
    p = example_params(op)
    types, xs, variables = example_tensors(op, p)
    with torch.no_grad():
        whole = run(op, p, types, xs, variables, training=False)
        singles = [run(op, p, types, [x[i : i + 1] for x in xs], variables, training=False) for i in range(xs[0].shape[0])]
    for k, out in enumerate(whole):
        if not out.is_floating_point():
            continue  # indices that count the batch (include_batch_in_index) differ by design
        torch.testing.assert_close(out, torch.cat([s[k] for s in singles]), rtol=1e-10, atol=1e-12)


@names
def test_training_runs_repeat_under_torch_seed_and_random_ops_vary(name):
    op = OPS[name]
    p = example_params(op)
    types, xs, variables = example_tensors(op, p)

    def draw(seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return [o.clone() for o in run(op, p, types, xs, variables, training=True)]

    first, again = draw(0), draw(0)
    assert all(torch.equal(a, b) for a, b in zip(first, again)), "training output must be a function of torch's seed"
    others = [draw(seed) for seed in range(1, 6)]
    varies = any(not torch.equal(a, b) for other in others for a, b in zip(first, other))
    assert varies == op.is_random, "set is_random exactly when training draws random numbers"


@names
def test_float64_gradcheck(name):
    op = OPS[name]
    p = example_params(op)
    types, xs, variables = example_tensors(op, p)
    grad_inputs = differentiable_inputs(op, xs)
    trainable = [role for role, v in variables.items() if v.requires_grad]
    if not grad_inputs and not trainable:
        pytest.skip("nothing differentiable")

    def f(*tensors):
        ins = list(xs)
        for i, t in zip(grad_inputs, tensors):
            ins[i] = t
        vs = dict(variables) | dict(zip(trainable, tensors[len(grad_inputs) :]))
        torch.manual_seed(0)  # random ops draw the same mask on every call
        return tuple(o for o in run(op, p, types, ins, vs, training=True) if o.is_floating_point())

    args = [xs[i].detach().requires_grad_() for i in grad_inputs] + [variables[r].detach().requires_grad_() for r in trainable]
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5, fast_mode=True)


@names
def test_every_trainable_variable_receives_a_gradient(name):
    op = OPS[name]
    p = example_params(op)
    types, xs, variables = example_tensors(op, p)
    if not any(v.requires_grad for v in variables.values()):
        return
    outputs = [o for o in run(op, p, types, xs, variables, training=True) if o.is_floating_point()]
    weights = torch.Generator().manual_seed(1)
    sum(  # random weights: a plain sum has zero gradient through normalisations
        (o * torch.randn(o.shape, generator=weights, dtype=o.dtype)).sum() for o in outputs
    ).backward()
    for role, v in variables.items():
        if v.requires_grad:
            assert v.grad is not None and v.grad.abs().sum() > 0, f"{name}/{role} received no gradient"


@pytest.mark.gpu
@names
def test_runs_on_cuda_and_keeps_the_device(name):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    op = OPS[name]
    p = example_params(op)
    types, xs, variables = example_tensors(op, p, torch.float32)
    xs = [x.cuda() for x in xs]
    variables = {k: v.detach().cuda() for k, v in variables.items()}
    for out in run(op, p, types, xs, variables, training=True):
        assert out.device.type == "cuda"


def test_golden_op_names():
    """The op vocabulary is public API: changes must show in review.

    Regenerate after adding or renaming an op on purpose:
        TFN_REGENERATE_GOLDEN=1 python -m pytest tests/test_op_contract.py -k golden
    """
    current = "".join(f"{name}\n" for name in OPS)
    if os.environ.get("TFN_REGENERATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(current)
    expected = GOLDEN.read_text() if GOLDEN.exists() else ""
    assert current == expected, (
        "the registered op names differ from tests/golden/op_names.txt; if the change is on purpose, run "
        "TFN_REGENERATE_GOLDEN=1 python -m pytest tests/test_op_contract.py -k golden and commit the file"
    )


def test_every_op_has_a_family_and_its_example_shapes():
    for name, op in OPS.items():
        assert op.family, name
        assert getattr(op, "example_inputs", None), f"{name}: set example_inputs (input shapes, batch first) for the battery"


def test_the_graphs_tab_shows_tensorflows_op_names():
    """What TensorBoard's Graphs tab shows for a node: TF's CamelCase op (`tf_op`, or the first TF op
    the op is imported from), or tfn's name where TF builds it from several ops."""
    shown = {name: op.tf_op_name(example_params(op)) for name, op in OPS.items()}
    assert all(tf_op == name or re.fullmatch(r"[A-Z][A-Za-z0-9]*", tf_op) for name, tf_op in shown.items()), shown
    assert {k: shown[k] for k in ("conv2d", "dense", "batch_normalization", "max_pool", "depthwise_conv2d", "crelu", "gather", "identity")} == {
        "conv2d": "Conv2D",
        "dense": "MatMul",
        "batch_normalization": "FusedBatchNorm",
        "max_pool": "MaxPool",
        "depthwise_conv2d": "DepthwiseConv2dNative",
        "crelu": "crelu",  # tf.nn.crelu is several ops: no single name
        "gather": "GatherV2",
        "identity": "Identity",  # no TF import rule (the importers pass Identity through): its own tf_op
    }
    pad, resize, upsampling, split = OPS["pad"], OPS["resize"], OPS["upsampling2d"], OPS["split"]
    modes = [pad.Params(paddings=[[0, 0], [1, 1]], mode=mode, constant_values=value) for mode, value in (("CONSTANT", 0.0), ("CONSTANT", 1.0), ("REFLECT", 0.0))]
    assert [pad.tf_op_name(p) for p in modes] == ["Pad", "PadV2", "MirrorPad"]
    methods = [resize.tf_op_name(resize.Params(size=[2, 2], method=m)) for m in ("nearest", "bilinear", "bicubic", "area")]
    assert methods == ["ResizeNearestNeighbor", "ResizeBilinear", "ResizeBicubic", "ResizeArea"]
    assert [upsampling.tf_op_name(upsampling.Params(interpolation=m)) for m in ("nearest", "bilinear")] == ["ResizeNearestNeighbor", "ResizeBilinear"]
    assert [split.tf_op_name(split.Params(num_or_size_splits=n)) for n in (2, [1, -1])] == ["Split", "SplitV"]


@functools.cache
def graph_json_validator():
    import jsonschema

    schema = json.loads(resources.files("tfn.specs").joinpath("graph.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


@names
def test_example_compiles_runs_and_round_trips_through_graph_json(name, write_spec):
    """The docstring example as a node of a real spec: compiler, graph.json and GraphModule agree."""
    from tfn.runners.module import DTYPES, GraphModule
    from tfn.specs import load
    from tfn.specs.graph import Graph

    op = OPS[name]
    node = {k: v for k, v in parse_yaml(op.example(), "example").data.items() if k not in NODE_FIELDS}
    types = example_types(op, op.Params.model_validate(node))
    shapes = op.example_inputs[:1] if op.is_loss else op.example_inputs
    inputs = {f"x{i}": {"shape": list(s[1:]), "dtype": t.dtype} for i, (s, t) in enumerate(zip(shapes, types))}
    if op.is_loss:
        layer = {"name": "node", "op": "identity", "inputs": ["x0"]}
        loss = {"op": name, **node, "logits": "node", "labels": "target"}
    else:
        layer = {"name": "node", "op": name, **node, "inputs": list(inputs)}
        loss = {"op": "mean_squared_error", "logits": "node", "labels": "target"}
    spec = {"version": 1, "name": "example", "model": {"inputs": inputs, "layers": [layer]}, "loss": loss, "data": {"source": "digits"}}
    graph = load(write_spec(json.dumps(spec))).graph  # JSON is YAML

    graph_json_validator().validate(json.loads(graph.to_json()))
    again = Graph.from_json(graph.to_json())
    assert again.to_json() == graph.to_json() and again.hash == graph.hash
    assert again.node("node").params == graph.node("node").params

    module = GraphModule(graph, torch.Generator().manual_seed(0)).eval()
    gen = torch.Generator().manual_seed(0)
    batch = op.example_inputs[0][0]
    node_types = [graph.type_of(r) for r in graph.node("loss" if op.is_loss else "node").inputs]
    feeds = {}
    for index, i in enumerate(graph.inputs):
        shape = (batch, *i.type.shape[1:])
        if i.type.dtype.startswith("int"):
            # the model inputs feed the node's inputs in order (a loss's labels come last)
            feeds[i.name] = integer_input(op, graph.node("loss" if op.is_loss else "node").params, node_types, index, shape, gen)
        else:
            feeds[i.name] = torch.randn(shape, generator=gen, dtype=DTYPES[i.type.dtype])
    target = graph.node("loss") if op.is_loss else graph.node("node")
    fetches = [target.name] + [f"{target.name}:{k}" for k in range(1, len(target.outputs))]
    with torch.no_grad():
        out = module(feeds, fetches)
    for fetch, want in zip(fetches, target.outputs):
        expected = (batch, *want.shape[1:]) if want.shape[0] is None else want.shape
        assert tuple(out[fetch].shape) == expected, fetch


# --- integer inputs -------------------------------------------------------------------

INTEGER_DTYPES = ("int64", "int32", "int16", "int8", "uint8")


def _has_integer_input(name: str) -> bool:
    op = OPS[name]
    return any(t.is_integer for t in example_types(op, example_params(op)))


@pytest.mark.parametrize("name", [n for n in OPS if _has_integer_input(n)])
@pytest.mark.parametrize("training", [True, False])
def test_integer_inputs_take_every_integer_dtype_the_op_accepts(name, training):
    """An integer input (labels, indices) of any integer dtype the shape rule accepts gives what int64 gives.

    TF ops take int32 as well as int64 where PyTorch kernels want int64: a
    dtype the shape rule lets through must not die in the kernel.
    """
    op = OPS[name]
    p = example_params(op)
    types, xs, variables = example_tensors(op, p)
    torch.manual_seed(0)
    with torch.no_grad():
        reference = run(op, p, types, xs, variables, training)
    accepted = []
    for dtype in INTEGER_DTYPES:
        retyped = [TensorType(t.shape, dtype) if t.is_integer else t for t in types]
        try:
            op.infer(p, retyped)
        except layers.OpError:
            continue
        cast = [x if x.is_floating_point() else x.to(getattr(torch, dtype)) for x in xs]
        if not all(torch.equal(c.long(), x.long()) for c, x in zip(cast, xs)):
            continue  # the example's values do not fit this dtype
        torch.manual_seed(0)
        with torch.no_grad():
            outputs = run(op, p, retyped, cast, variables, training)
        for got, want in zip(outputs, reference):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        accepted.append(dtype)
    assert "int64" in accepted and "int32" in accepted, f"{name}: integer inputs take at least TF's int32 and int64, accepted {accepted}"


# --- odd batches: one sample, none, a spatial size of one ------------------------------


def _check_run(op, p, types, batch, training):
    """Run the op on `batch` samples of `types`: the inferred shapes, finite values, finite moving statistics."""
    _, xs, variables = tensors_for(op, p, types, batch)
    variables = {k: v.detach() for k, v in variables.items()}
    torch.manual_seed(0)
    with torch.no_grad():
        outputs = run(op, p, types, xs, variables, training)
    for got, want in zip(outputs, op.infer(p, types)):
        assert tuple(got.shape) == ((batch, *want.shape[1:]) if want.shape[0] is None else want.shape)
        if got.is_floating_point() and not op.is_random:
            assert torch.isfinite(got).all(), "a batch of this size gives non-finite values"
    for role, value in variables.items():
        assert torch.isfinite(value).all(), f"{role} is no longer finite after a batch of {batch}"


@names
@pytest.mark.parametrize("training", [True, False])
def test_a_batch_of_one_and_an_empty_batch_run(name, training):
    """A last batch of one sample (33 rows at batch 32), or none at all (`tfn run` with an empty feed)."""
    op = OPS[name]
    p = example_params(op)
    for batch in (1, 0):
        _check_run(op, p, example_types(op, p), batch, training)


def _spatial_one(op, p):
    """The example's input types with every spatial axis (after the channel axis) of size one."""
    types = [TensorType((None, s[1], *[1] * (len(s) - 2))) if len(s) > 2 else TensorType((None, *s[1:])) for s in op.example_inputs]
    return [types[0], op.label_type(p, types[0])] if op.is_loss else types


@pytest.mark.parametrize("name", [n for n in OPS if any(len(s) > 2 for s in OPS[n].example_inputs)])
@pytest.mark.parametrize("training", [True, False])
def test_a_spatial_size_of_one_is_refused_at_check_time_or_runs(name, training):
    """An image pooled to 1x1, a sequence of one step: the shape rule refuses it (a positioned spec error) or the kernel runs,
    with one sample too (one value per channel: batch normalization's edge)."""
    op = OPS[name]
    p = example_params(op)
    types = _spatial_one(op, p)
    try:
        op.infer(p, types)
    except layers.OpError as exc:
        assert str(exc), "the refusal says why"
        return
    for batch in (2, 1):
        _check_run(op, p, types, batch, training)
