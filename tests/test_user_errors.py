"""Every exception raised under layers/ and runners/ is of a known kind.

A mistake in what the user supplied (a spec, a file, an option, a fed value)
is a UserError: exit status 2 and its message, never "internal error". A run
that fails (diverged, a data loader died) exits 1. Anything else raised there
is a bug in tfn or Python's own protocol, and is listed below with the reason
it can never be the user's doing. A new `raise` of an unlisted kind fails the
walk until it is classified.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import typing
from pathlib import Path

import numpy as np
import pytest

from tfn.cli.main import report
from tfn.layers.base import UserError

ROOT = Path(__file__).parent.parent
PACKAGES = {"layers": "tfn.layers", "runners": "tfn.runners"}

RUN_FAILED = {"TrainingFailed", "DataLoaderFailed", "SweepFailed"}
# raised by runners/distributed.py's launcher and handled by `tfn train --nproc` (the failed rank's own status)
HANDLED_BY_COMMAND = {"LaunchFailed"}
# (file, class) -> why the user cannot cause it
INTERNAL = {
    ("layers/base.py", "NotImplementedError"): "an op class missing a rule: a bug in that op",
    ("layers/losses.py", "NotImplementedError"): "class weights asked of a loss whose Params take none: a bug in that loss",
    ("layers/base.py", "RuntimeError"): "an op registered twice at import: a bug",
    ("layers/resizing.py", "ValueError"): "a resize method outside the Literal the op's schema already checked",
    ("layers/initializers.py", "KeyError"): "initializer names are validated by the spec schema first",
    ("runners/__init__.py", "AttributeError"): "Python's module __getattr__ protocol",
    ("runners/data.py", "ValueError"): "a split or start step the callers have already checked",
    ("runners/data.py", "RuntimeError"): "RandomShuffleQueue used after close(): a bug",
    ("runners/data.py", "WouldBlock"): "RandomShuffleQueue control flow, caught by its driver",
    ("runners/data.py", "OutOfRange"): "RandomShuffleQueue control flow, caught by its driver",
    ("runners/data_sources.py", "TypeError"): "a spec data class without a loader: a bug",
    ("runners/optimizers.py", "TypeError"): "a spec optimizer class without an implementation: a bug",
    ("runners/schedules.py", "TypeError"): "a spec schedule class without an implementation: a bug",
    ("runners/export.py", "ValueError"): "a picture format the CLI has already restricted",
    ("runners/preprocessing.py", "RuntimeError"): "a preprocessing kind registered twice at import: a bug",
    ("runners/preprocessing.py", "TypeError"): "a spec data class without a preprocessing rule: a bug",
    ("runners/session.py", "ValueError"): "a prediction kind no reader implements: caught by test_predict's contract test",
    ("layers/imports.py", "ValueError"): "an import rule written for a framework tfn has no reader for: a bug in that op's imports",
    ("layers/imports.py", "RuntimeError"): "two ops claiming one foreign kind: a bug, raised by test_import_rules",
    ("runners/importers/bundle.py", "ValueError"): "a protobuf wire type TF never writes: caught by read_index, which names the corrupt index file",
    ("runners/sweep.py", "_TrialFailed"): "a sweep trial's failure, caught by Optuna's optimize loop and recorded on the trial",
    ("runners/sweep.py", "_TrialStopped"): "a sweep trial stopped by a signal or skipped, caught by Optuna's optimize loop",
    ("runners/sweep.py", "TrialPruned"): "Optuna's own signal for a pruned trial, caught by its optimize loop",
}


def _module_name(path: Path) -> str:
    """layers/core.py -> tfn.layers.core; runners/importers/keras.py -> tfn.runners.importers.keras."""
    folder, *inner = path.relative_to(ROOT).with_suffix("").parts
    parts = [PACKAGES[folder], *inner]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module, expr: ast.expr, local_imports: dict[str, str]):
    """The exception class a `raise` expression produces, or None for a re-raise of a caught exception."""
    call = isinstance(expr, ast.Call)
    target = expr.func if call else expr
    if isinstance(target, ast.Name):
        if not call and target.id[:1].islower():
            return None  # `raise exc`: re-raising what an except clause caught
        found = getattr(module, target.id, None) or getattr(builtins, target.id, None)
        if found is None and target.id in local_imports:  # imported inside a function
            found = getattr(importlib.import_module(local_imports[target.id]), target.id)
    elif isinstance(target, ast.Attribute):
        # self.WouldBlock, where.error(...): the attribute of some class in the module
        holders = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
        found = next((getattr(c, target.attr) for c in holders if hasattr(c, target.attr)), None)
    else:
        found = None
    if inspect.isfunction(found):  # a factory: its return annotation says what it makes
        found = typing.get_type_hints(found, vars(module)).get("return")
    assert inspect.isclass(found) and issubclass(found, BaseException), f"{module.__name__}: cannot resolve `raise {ast.unparse(expr)[:60]}`"
    return found


def _validators(tree: ast.Module) -> set[str]:
    """Functions pydantic calls while validating a spec: decorated with *_validator or wrapped in a *Validator(...)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                func = d.func if isinstance(d, ast.Call) else d
                if isinstance(func, ast.Name) and func.id.endswith("_validator"):
                    names.add(node.name)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.endswith("Validator"):
            names |= {a.id for a in node.args if isinstance(a, ast.Name)}
    return names


def _raises(tree: ast.Module):
    """(raise node, the name of the innermost function around it)."""
    stack = [(tree, None)]
    while stack:
        node, function = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Raise) and node.exc is not None:
            yield node, function
        stack.extend((child, function) for child in ast.iter_child_nodes(node))


@functools.cache
def raised() -> list[tuple[str, int, type]]:
    """(file, line, class) of every `raise` under layers/ and runners/, except ValueErrors of spec validators,
    which pydantic reports as positioned spec errors."""
    found = []
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            module = importlib.import_module(_module_name(path))
            tree = ast.parse(path.read_text(encoding="utf-8"))
            local_imports = {a.asname or a.name: n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module for a in n.names}
            validators = _validators(tree)
            for node, function in _raises(tree):
                cls = _resolve(module, node.exc, local_imports)
                if cls is None or (cls is ValueError and function in validators):
                    continue
                found.append((path.relative_to(ROOT).as_posix(), node.lineno, cls))
    return sorted(found, key=lambda f: (f[0], f[1]))


def test_every_raised_exception_is_classified():
    unclassified = []
    for where, line, cls in raised():
        if issubclass(cls, UserError) or cls.__name__ in RUN_FAILED | HANDLED_BY_COMMAND or (where, cls.__name__) in INTERNAL:
            continue
        unclassified.append(f"{where}:{line}: {cls.__name__}")
    assert not unclassified, "make these UserError subclasses, or list them in INTERNAL with the reason:\n" + "\n".join(unclassified)


def test_the_internal_list_has_no_stale_entries():
    seen = {(where, cls.__name__) for where, _, cls in raised()}
    assert set(INTERNAL) <= seen, f"no longer raised: {sorted(set(INTERNAL) - seen)}"


def test_each_kind_gets_its_exit_status():
    for _, _, cls in raised():
        exc = cls.__new__(cls)
        Exception.__init__(exc, "x: error: message")
        status, message = report(exc)
        if issubclass(cls, UserError):
            assert (status, message) == (2, "x: error: message"), cls
        elif cls.__name__ in RUN_FAILED:
            assert (status, message) == (1, "error: x: error: message"), cls
        elif cls.__name__ not in HANDLED_BY_COMMAND:
            assert status == 1 and message.startswith("internal error:"), cls


def test_an_out_of_range_label_fed_to_tfn_run_is_a_user_error(minimal_spec, tfn_cli, tmp_path):
    """It was `internal error: LabelError`, exit 1; training reported the same label with exit 2."""
    np.save(tmp_path / "image.npy", np.zeros((2, 1, 8, 8), np.float32))
    code, _, err = tfn_cli("run", str(minimal_spec), "--feed", f"image={tmp_path / 'image.npy'}", "--feed", "label=[3, 12]", "--fetch", "loss")
    assert code == 2, err
    assert "internal error" not in err
    assert "feed 'label': error:" in err and "12" in err and "[0, 10)" in err


@pytest.mark.parametrize("dtype", ["int32", "int16", "int8", "uint8"])
def test_integer_labels_of_any_integer_dtype_run_and_train(minimal_spec, tfn_cli, tmp_path, dtype):
    """A labels input declared int32 passed `tfn check` and died in `tfn run` and `tfn train` (exit 1)."""
    text = minimal_spec.read_text().replace("  inputs:\n", f"  inputs:\n    label: {{shape: [], dtype: {dtype}}}\n")
    text = text.replace("op: conv2d,", "op: conv2d, inputs: [image],")
    spec = tmp_path / "int_labels.yaml"
    spec.write_text(text)
    np.save(tmp_path / "image.npy", np.zeros((2, 1, 8, 8), np.float32))
    code, out, err = tfn_cli("run", str(spec), "--feed", f"image={tmp_path / 'image.npy'}", "--feed", "label=[3, 7]", "--fetch", "loss")
    assert code == 0, err
    # zero images: the initial logits are the dense bias (zeros), so each loss is log(10)
    assert f"[{np.log(10):.6f} {np.log(10):.6f}]" in out
    code, _, err = tfn_cli("train", str(spec), "--steps", "2", "--out", str(tmp_path / "run"), "--quiet", "--set", "data.batch_size=16")
    assert code == 0, err


def test_integer_data_outside_a_narrow_input_dtype_is_refused(write_spec, tfn_cli, tmp_path):
    """Labels 0..299 fed to a uint8 label input would wrap around (300 -> 44) in the cast to the input's dtype."""
    np.savez(tmp_path / "d.npz", x=np.zeros((6, 2), np.float32), y=np.array([0, 1, 2, 300, 4, 5]))
    spec = write_spec(
        f"""
        version: 1
        name: narrow
        model:
          inputs: {{x: {{shape: [2]}}, label: {{shape: [], dtype: uint8}}}}
          layers: [{{name: logits, op: dense, units: 400, inputs: [x]}}]
        loss: {{op: sparse_softmax_cross_entropy_with_logits, logits: logits, labels: label}}
        data: {{source: npz, path: {tmp_path / "d.npz"}, fields: {{x: x, label: y}}, split: {{validation: 0, test: 0}}}}
        """
    )
    code, _, err = tfn_cli("train", str(spec), "--out", str(tmp_path / "run"), "--quiet")
    assert code == 2, err
    assert "spec.yaml:4:55: error: model.inputs.label.dtype: field 'label' holds 300 (sample 3 of the train split), outside the range of the input's uint8 (0 to 255)" in err
