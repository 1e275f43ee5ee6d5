"""The sweep file and --param: validated like a spec (FILE:LINE:COL, did-you-mean, every problem at
once, exit 2), and every param path checked against the spec's own schema before any trial."""

from __future__ import annotations

import textwrap

import pytest

SPEC = """\
version: 1
name: tiny
model:
  inputs: {image: {shape: [1, 8, 8]}}
  layers:
    - {name: conv, op: conv2d, filters: 4, kernel_size: 3}
    - {op: relu}
    - {op: flatten}
    - {name: drop, op: dropout, rate: 0.1}
    - {name: logits, op: dense, units: 10}
loss: {op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}
optimizer: {type: adam, learning_rate: 0.001, beta1: 0.9}
data: {source: digits, batch_size: 64}
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(SPEC)
    monkeypatch.chdir(tmp_path)

    def write(name: str, text: str) -> str:
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip())
        return name

    return write


def errors(tfn_cli, *args) -> list[str]:
    code, out, err = tfn_cli("sweep", *args)
    assert code == 2 and out == "" and "Traceback" not in err, (code, out, err)
    return err.splitlines()


def test_schema_problems_all_at_once_with_positions(folder, tfn_cli):
    name = folder(
        "bad.sweep.yaml",
        """
        version: 1
        sweep: tiny.yaml
        monitr: accuracy
        trials: 0
        sampler: tpee
        pruner: {type: median, n_startup: 2}
        params:
          optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0e-1], uniform: [0.1, 0.2]}
          data.batch_size: {int: [128, 16]}
          train.epochs: {choice: [1, 1]}
          model.layers.0.filters: {choice: [4, 8], step: 2}
        """,
    )
    assert errors(tfn_cli, name) == [
        "bad.sweep.yaml:3:1: error: monitr: unknown section 'monitr' (did you mean 'monitor'?)",
        "bad.sweep.yaml:4:9: error: trials: input should be greater than 0, got 0",
        "bad.sweep.yaml:5:10: error: sampler.type: unknown sampler 'tpee' (did you mean 'tpe'?); choices: tpe, random, grid",
        "bad.sweep.yaml:6:24: error: pruner.n_startup: unknown attribute 'n_startup' (did you mean 'n_startup_trials'?)",
        "bad.sweep.yaml:8:28: error: params.optimizer.learning_rate: give exactly one of log_uniform, uniform, int, choice; got log_uniform and uniform",
        "bad.sweep.yaml:9:20: error: params.data.batch_size: low must be below high, got [128, 16]",
        "bad.sweep.yaml:10:17: error: params.train.epochs: the choices repeat a value: [1, 1]",
        "bad.sweep.yaml:11:27: error: params.model.layers.0.filters: step goes with uniform or int, not with choice",
    ]


def test_param_paths_and_values_are_checked_against_the_spec_schema(folder, tfn_cli):
    name = folder(
        "paths.sweep.yaml",
        """
        version: 1
        sweep: tiny.yaml
        params:
          optimizer.learning_rat: {log_uniform: [1.0e-4, 1.0e-1]}
          optimzer.type: {choice: [adam]}
          model.layers.0.filters: {choice: [4, -8]}
          model.layers.9.units: {choice: [16]}
          model.layers.3.rate: {uniform: [0.0, 1.0]}
          model.layers.0.kernel_size: {uniform: [2, 5]}
          optimizer.type: {choice: [adam, momentum]}
        """,
    )
    assert errors(tfn_cli, name) == [
        "paths.sweep.yaml:4:3: error: params.optimizer.learning_rat: unknown attribute 'learning_rat' (did you mean 'learning_rate'?)",
        "paths.sweep.yaml:5:3: error: params.optimzer.type: unknown section 'optimzer' (did you mean 'optimizer'?)",
        "paths.sweep.yaml:6:40: error: params.model.layers.0.filters.choice[1]: input should be greater than 0, got -8",
        "paths.sweep.yaml:7:3: error: params.model.layers.9.units: not a field of the spec: index 9 is out of range: model.layers has 5 items",
        "paths.sweep.yaml:8:40: error: params.model.layers.3.rate.uniform[1]: input should be less than 1, got 1.0",
        # a float range for an integer field: the op's schema says so at each bound
        "paths.sweep.yaml:9:42: error: params.model.layers.0.kernel_size.uniform[0]: expected an int or a list of 2 ints, got 2.0",
        "paths.sweep.yaml:9:45: error: params.model.layers.0.kernel_size.uniform[1]: expected an int or a list of 2 ints, got 5.0",
        # the spec sets adam's beta1, which momentum does not have
        "paths.sweep.yaml:10:35: error: params.optimizer.type.choice[1]: with optimizer.type='momentum': optimizer.beta1: unknown attribute 'beta1'; "
        "known: learning_rate, schedule, clip_global_norm, clip_value, learning_rate_multipliers, type, momentum, use_nesterov",
    ]


def test_grid_enqueue_monitor_and_spec_path(folder, tfn_cli):
    grid = folder(
        "grid.sweep.yaml",
        """
        version: 1
        sweep: tiny.yaml
        sampler: grid
        params:
          optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0e-1]}
          data.batch_size: {int: [16, 64], step: 16}
        enqueue:
          - {optimizer.learning_rate: 0.5, data.batch_sise: 32}
          - {data.batch_size: 20}
        """,
    )
    assert errors(tfn_cli, grid) == [
        "grid.sweep.yaml:5:28: error: params.optimizer.learning_rate: the grid sampler takes choice lists and integer ranges; this is log_uniform [0.0001, 0.1]",
        "grid.sweep.yaml:8:31: error: enqueue[0].optimizer.learning_rate: 0.5 is not among the values of optimizer.learning_rate (log_uniform [0.0001, 0.1])",
        "grid.sweep.yaml:8:36: error: enqueue[0].data.batch_sise: 'data.batch_sise' is not one of the params (did you mean 'data.batch_size'?)",
        "grid.sweep.yaml:9:23: error: enqueue[1].data.batch_size: 20 is not among the values of data.batch_size (int [16, 64], step 16)",
    ]
    monitor = folder("monitor.sweep.yaml", "version: 1\nsweep: tiny.yaml\nmonitor: acuracy\nparams: {train.epochs: {choice: [1, 2]}}\n")
    assert errors(tfn_cli, monitor) == [
        "monitor.sweep.yaml:3:10: error: monitor: 'acuracy' is not a validation metric of this spec's runs; they have loss, accuracy (did you mean 'accuracy'?)"
    ]
    missing = folder("missing.sweep.yaml", "version: 1\nsweep: tiny.yml\nparams: {train.epochs: {choice: [1, 2]}}\n")
    [line] = errors(tfn_cli, missing)
    assert line.startswith("missing.sweep.yaml:2:8: error: sweep: no spec file") and "relative to the sweep file" in line


def test_spec_problems_point_into_the_spec(folder, tfn_cli):
    folder("broken.yaml", SPEC.replace("units: 10", "units: ten"))
    name = folder("s.sweep.yaml", "version: 1\nsweep: broken.yaml\nparams: {train.epochs: {choice: [1, 2]}}\n")
    assert errors(tfn_cli, name) == ["broken.yaml:10:40: error: model.layers[4].units: input should be a valid integer, got 'ten'"]


def test_toml_sweep_with_dotted_keys(folder):
    from tfn.specs.sweep import load_sweep

    name = folder(
        "s.sweep.toml",
        """
        version = 1
        sweep = "tiny.yaml"
        trials = 3

        [params]
        optimizer.learning_rate = {log_uniform = [1e-4, 1e-1]}
        "model.layers.0.filters" = {choice = [4, 8]}

        [[enqueue]]
        optimizer.learning_rate = 0.01
        """,
    )
    loaded = load_sweep(name)
    assert list(loaded.sweep.params) == ["optimizer.learning_rate", "model.layers.0.filters"]
    assert loaded.sweep.enqueue == [{"optimizer.learning_rate": 0.01}]
    bad = folder("b.sweep.toml", '\nversion = 1\nsweep = "tiny.yaml"\n\n[params]\noptimizer.learning_rate = {log_uniform = [1e-4, 1e-1]}\noptimizer.momentm = {uniform = [0.5, 0.9]}\n')
    with pytest.raises(Exception) as info:
        load_sweep(bad)
    assert str(info.value) == "b.sweep.toml:6:1: error: params.optimizer.momentm: unknown attribute 'momentm'; known: learning_rate, schedule, " \
        "clip_global_norm, clip_value, learning_rate_multipliers, type, beta1, beta2, epsilon"


def test_quick_form_param_options(folder, tfn_cli):
    from tfn.specs.sweep import load_sweep

    loaded = load_sweep(
        "tiny.yaml",
        params=("optimizer.learning_rate=log_uniform:1e-4,1e-1", "data.batch_size=int:16,128,step=16", "optimizer.type=choice:adam,adamw"),
        trials=7,
    )
    params = loaded.sweep.params
    assert params["optimizer.learning_rate"].log_uniform == [1e-4, 1e-1]
    assert params["data.batch_size"].int == [16, 128] and params["data.batch_size"].step == 16
    assert params["data.batch_size"].bounds() == (16, 128) and params["data.batch_size"].grid() == [16, 32, 48, 64, 80, 96, 112, 128]
    assert params["optimizer.type"].choice == ["adam", "adamw"]
    assert loaded.sweep.trials == 7 and loaded.name == "tiny"

    assert errors(tfn_cli, "tiny.yaml", "--param", "optimizer.learning_rate=log_unifrom:1e-4,1e-1") == [
        "--param optimizer.learning_rate=log_unifrom:1e-4,1e-1: error: params.optimizer.learning_rate.log_unifrom: "
        "unknown attribute 'log_unifrom' (did you mean 'log_uniform'?)"
    ]
    assert errors(tfn_cli, "tiny.yaml", "--param", "model.layers.0.filters=choice:4,-8") == [
        "--param model.layers.0.filters=choice:4,-8: error: params.model.layers.0.filters.choice[1]: input should be greater than 0, got -8"
    ]
    [line] = errors(tfn_cli, "tiny.yaml", "--param", "optimizer.learning_rate")
    assert line.startswith("--param optimizer.learning_rate: error: expected PATH=KIND:ARGS")
    [line] = errors(tfn_cli, "tiny.yaml")
    assert line.startswith("tiny.yaml: error: a spec, not a sweep file: give the search with --param")


def test_param_ranges():
    from tfn.specs.sweep import Param

    uniform = Param(uniform=[0.1, 0.55], step=0.1)
    assert uniform.bounds() == (0.1, pytest.approx(0.5)) and uniform.grid() is None
    assert uniform.contains(0.3) and not uniform.contains(0.35) and not uniform.contains(True)
    ints = Param(int=[1, 64], log=True)
    assert ints.contains(7) and not ints.contains(7.0) and ints.grid() is None and ints.describe() == "int [1, 64], log"
    choice = Param(choice=[1, "1", True])
    assert choice.contains("1") and choice.contains(True) and not choice.contains(1.0)
    with pytest.raises(ValueError, match="a log scale starts at 1"):
        Param(int=[0, 8], log=True)
