"""runners/memory.py: freed host memory stays with the process, so a training step does not page-fault afresh."""

import subprocess
import sys

import pytest

# Ten 4 MB buffers live at once, then all freed, like a step's activations: glibc's
# default trim returns them to the OS and the next round faults every page in again.
ROUNDS = """
import resource, sys, torch
{setup}
def step():
    kept = [torch.ones(1_000_000) for _ in range(10)]
    return sum(t.sum() for t in kept)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10)
"""
MODULE = "from tfn import specs\nfrom tfn.runners.module import GraphModule\nGraphModule(specs.load('digits_mlp').graph)"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")


def faults_per_round(setup: str, env: dict | None = None) -> int:
    done = subprocess.run([sys.executable, "-c", ROUNDS.format(setup=setup)], capture_output=True, text=True, check=True, env=env)
    return int(done.stdout.split()[-1])


def test_a_graph_module_keeps_freed_memory_for_the_next_step():
    assert faults_per_round(MODULE) < 100
    # the control: the same rounds without tfn fault in about 10,000 pages each (40 MB)
    assert faults_per_round("") > 5_000


def test_malloc_settings_of_the_user_are_kept():
    import os

    code = "from tfn.runners.memory import keep_freed_memory; print(int(keep_freed_memory()))"
    for extra in ({"MALLOC_TRIM_THRESHOLD_": "1000000"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"}):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, **extra})
        assert done.stdout.strip() == "0", extra
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"
