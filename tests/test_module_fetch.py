"""GraphModule: fetch any node, run only what the fetches need, honour control edges, execute placement."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from tfn.runners.module import FetchError, GraphModule, PlacementError
from tfn.specs import load

SPEC = """
version: 1
name: branches
model:
  inputs:
    image: {shape: [1, 4, 4]}
  layers:
    - {name: a, op: flatten}
    - {name: b, op: dense, units: 3}
    - {name: c, op: relu, inputs: [image]}
    - {name: d, op: flatten, after: [b]}          # needs b to have run, without its value
    - {name: pool, op: max_pool_with_argmax, pool_size: 2, inputs: [image]}
    - {name: e, op: flatten, inputs: ["pool:1"]}
    - {name: logits, op: dense, units: 10, inputs: [d]}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits}
"""


@pytest.fixture
def module(write_spec):
    graph = load(write_spec(textwrap.dedent(SPEC))).graph
    return Recorder(GraphModule(graph, torch.Generator().manual_seed(0)))


class Recorder:
    """Wraps every kernel of a module to record which nodes run, in order."""

    def __init__(self, module: GraphModule):
        self.module, self.ran = module, []
        for step in module._steps.values():
            step.kernel = self._recording(step.name, step.kernel)

    def _recording(self, name, kernel):
        def run(xs, v, training):
            self.ran.append(name)
            return kernel(xs, v, training)

        return run

    def __call__(self, feeds, fetches):
        self.ran.clear()
        return self.module(feeds, fetches)


def image(n=2):
    return torch.arange(n * 16, dtype=torch.float32).reshape(n, 1, 4, 4) - 10


def test_a_fetch_runs_only_what_it_needs(module):
    module({"image": image()}, ["b"])
    assert module.ran == ["a", "b"]
    module({"image": image()}, ["c"])
    assert module.ran == ["c"]


def test_control_inputs_run_first_even_when_their_value_is_unused(module):
    out = module({"image": image()}, ["d"])
    assert module.ran == ["a", "b", "c", "d"]
    # d's value is c's flattened: the control edge adds order, not data
    np.testing.assert_array_equal(out["d"].numpy(), np.maximum(image().numpy(), 0).reshape(2, 16))


def test_feeding_an_intermediate_node_stops_the_computation_above_it(module):
    fed = torch.ones(2, 16)
    out = module({"a": fed}, ["b"])
    assert module.ran == ["b"]  # neither a nor anything upstream; image need not be fed
    kernel, bias = module.module.variables()["b/kernel"], module.module.variables()["b/bias"]
    np.testing.assert_allclose(out["b"].detach().numpy(), (fed @ kernel.T + bias).detach().numpy(), rtol=1e-6)


def test_second_outputs_can_be_fetched_and_fed(module):
    x = image(1)
    out = module({"image": x}, ["pool:1", "e"])
    # TF's argmax index: flattened (y * W + x) * C + c within the sample; the maximum of each 2x2 window is its bottom-right cell
    assert out["pool:1"].flatten().tolist() == [5, 7, 13, 15]
    assert torch.equal(out["e"], out["pool:1"].reshape(1, 4))
    fed = torch.tensor([[[[0, 1], [2, 3]]]])
    out = module({"image": x, "pool:1": fed}, ["e"])
    assert module.ran == ["e"] and out["e"].tolist() == [[0, 1, 2, 3]]


def test_several_fetches_run_shared_nodes_once(module):
    module({"image": image()}, ["b", "d", "b"])
    assert sorted(module.ran) == ["a", "b", "c", "d"]


def test_fetch_errors_are_user_errors(module):
    m = module.module
    with pytest.raises(FetchError, match=r"unknown node 'bb' in fetches \(did you mean 'b'\?\)"):
        m.check_fetches(["bb"], {"image": image()})
    with pytest.raises(FetchError, match="'b:1': node 'b' has 1 output"):
        m.check_fetches(["b:1"], {"image": image()})
    with pytest.raises(FetchError, match="input 'image' must be fed to compute 'a'"):
        m.check_fetches(["b"], {})
    m.check_fetches(["b"], {"a": None})  # feeding a is enough


def test_forward_and_backward_through_everything(module):
    out = module({"image": image(), "label": torch.tensor([1, 2])}, ["loss"])
    out["loss"].sum().backward()
    grads = {name: p.grad for name, p in module.module.trainable_variables().items()}
    assert grads["logits/kernel"] is not None
    assert grads["b/kernel"] is None  # b ran only for its control edge: no gradient flows through it


# --- placement -------------------------------------------------------------------------------


PLACED = """
version: 1
name: placed
model:
  inputs:
    image: {shape: [1, 4, 4]}
  layers:
    - {name: a, op: flatten, device: cpu}
    - scope: s
      device: DEVICE
      layers:
        - {name: b, op: dense, units: 3}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
data: {source: digits}
"""


def placed_graph(write_spec, device: str):
    text = textwrap.dedent(PLACED).replace("DEVICE", device)
    return load(write_spec(text)).graph


def test_cpu_placement_runs(write_spec):
    m = GraphModule(placed_graph(write_spec, "cpu")).place("cpu")
    out = m({"image": image()}, ["logits"])
    assert out["logits"].shape == (2, 10) and out["logits"].device.type == "cpu"


def test_a_missing_cuda_device_is_rejected_at_run_time_naming_the_node(write_spec, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    graph = placed_graph(write_spec, "cuda")  # checking and compiling need no device
    m = GraphModule(graph)
    with pytest.raises(PlacementError, match=r"node 's/b' is placed on cuda, but this machine has no CUDA device"):
        m.place("cpu")
    with pytest.raises(PlacementError, match=r"node 's/b' is placed on cuda, but this machine has no CUDA device"):
        m({"image": image()}, ["logits"])  # also without place()
    m({"image": image()}, ["a"])  # nodes on available devices still run
    from tfn.specs.errors import UserError

    assert issubclass(PlacementError, UserError)  # the CLI prints it and exits 2


def test_a_cuda_index_beyond_the_machine_is_rejected(write_spec, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    m = GraphModule(placed_graph(write_spec, "cuda:2"))
    with pytest.raises(PlacementError, match=r"node 's/b' is placed on cuda:2, but this machine has 2 CUDA device\(s\): cuda:0 to cuda:1"):
        m.place("cpu")


@pytest.mark.gpu
def test_mixed_placement_moves_tensors_and_variables(write_spec):
    graph = placed_graph(write_spec, "cuda")
    m = GraphModule(graph).place("cpu")
    variables = m.variables()
    assert variables["s/b/kernel"].device.type == "cuda"
    assert variables["logits/kernel"].device.type == "cpu"
    out = m({"image": image(), "label": torch.tensor([0, 1])}, ["s/b", "logits", "loss"])
    assert out["s/b"].device.type == "cuda" and out["logits"].device.type == "cpu"
    out["loss"].sum().backward()
    assert variables["s/b/kernel"].grad.device.type == "cuda"
    reference = GraphModule(graph)
    reference.load_state_dict({k: v.detach().cpu() for k, v in m.state_dict().items()})
    reference._steps["s/b"].device = torch.device("cpu")
    expected = reference({"image": image()}, ["logits"])["logits"]
    torch.testing.assert_close(out["logits"], expected, rtol=1e-5, atol=1e-5)
