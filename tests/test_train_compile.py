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
