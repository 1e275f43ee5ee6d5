"""train.compile runs the training step's forward through torch.compile."""

import math

import pytest

from tfn import specs
from tfn.runners.train import train


@pytest.mark.slow
# dynamo probes tensors' .grad while tracing and torch warns about it; the warning is torch's own
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf Tensor is being accessed")
def test_compiled_training_learns_like_eager(minimal_spec, tmp_path):
    results = {}
    for compiled in (False, True):
        loaded = specs.load(minimal_spec, [f"train.compile={str(compiled).lower()}", "train.steps=30", "data.batch_size=32"])
        results[compiled] = train(loaded, out=tmp_path / str(compiled), quiet=True).metrics
    eager, compiled = results[False]["test"], results[True]["test"]
    assert math.isfinite(compiled["loss"])
    # same seed, same data order: the compiled forward computes the same function up to float reassociation
    assert compiled["loss"] == pytest.approx(eager["loss"], rel=1e-3)


# dynamo probes tensors' .grad while tracing and torch warns about it; the warning is torch's own
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf Tensor is being accessed")
def test_the_compiled_forward_is_one_graph(minimal_spec):
    """A data-dependent branch (the loss's label check) split it at every node: compiled, it ran at 0.6x eager."""
    import torch
    import torch._dynamo

    from tfn.runners.module import GraphModule
    from tfn.runners.train import Loss

    loaded = specs.load(minimal_spec)
    model = GraphModule(loaded.graph, torch.Generator().manual_seed(0)).train()
    feeds = {"image": torch.randn(4, 1, 8, 8), "label": torch.tensor([0, 1, 2, 3])}
    explained = torch._dynamo.explain(model)(feeds, Loss(model).fetches)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), [r.reason for r in explained.break_reasons]
