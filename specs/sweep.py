"""A sweep file: one spec and a search over some of its fields (`tfn sweep`).

    version: 1
    sweep: my.yaml                   # the spec: a path relative to this file, or a shipped example
    monitor: accuracy                # the validation metric to optimise
    mode: max
    trials: 40                       # completed + pruned trials; failed ones do not count
    sampler: tpe                     # tpe | random | grid
    pruner: median                   # median | hyperband | none
    params:                          # dotted paths, as for --set
      optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0e-1]}
      model.layers.0.filters: {choice: [16, 32, 64]}
      data.batch_size: {int: [16, 128], step: 16}

The file is validated like a spec (every problem at once, FILE:LINE:COL, a
did-you-mean where one fits). Then every `params` path is checked against the
spec's own schema with the values it may take (each choice, both ends of a
range): a typo in a path or a bound out of the field's range is an error
before the first trial. Combinations the schema cannot see (a kernel larger
than its input) fail their trial, with the reason, and the sweep goes on.
"""

from __future__ import annotations

import builtins
import copy
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from tfn.layers import suggest
from tfn.specs import EXAMPLES, LoadedSpec, load, resolve_spec_path
from tfn.specs.documents import Document, read_document
from tfn.specs.errors import Diagnostic, SpecError, UserError, format_path
from tfn.specs.overrides import assign, parse_value, split_path
from tfn.specs.schema import Name, Strict, Vocabulary
from tfn.specs.validate import check_schema

KINDS = ("log_uniform", "uniform", "int", "choice")
Scalar = Union[bool, builtins.int, float, str]
Bounds = Annotated[list[float], Field(min_length=2, max_length=2)]


class Param(Strict):
    """The values one field takes: exactly one of `log_uniform`, `uniform`, `int` or `choice`."""

    log_uniform: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)] | None = Field(
        None, description="[low, high]: a float drawn on a log scale"
    )
    uniform: Bounds | None = Field(None, description="[low, high]: a float drawn uniformly (on a grid of `step` from low when given)")
    int: Annotated[list[builtins.int], Field(min_length=2, max_length=2)] | None = Field(
        None, description="[low, high]: an integer, both ends included (a grid of `step` from low; a log scale with `log`)"
    )
    choice: Annotated[list[Scalar], Field(min_length=1)] | None = Field(None, description="the values to choose from: numbers, strings or booleans")
    step: PositiveFloat | None = Field(None, description="with uniform or int: the spacing of the values, from low")
    log: bool = Field(False, description="with int: draw on a log scale")

    @model_validator(mode="after")
    def _one_kind(self):
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(KINDS)}" + (f"; got {' and '.join(given)}" if given else ""))
        kind = given[0]
        if self.step is not None and kind not in ("uniform", "int"):
            raise ValueError(f"step goes with uniform or int, not with {kind}")
        if self.log and kind != "int":
            raise ValueError("log goes with int; for floats use log_uniform")
        if kind == "int" and self.step is not None and (self.step != builtins.int(self.step) or (self.log and self.step != 1)):
            raise ValueError(f"the step of an int range is a whole number (and 1 on a log scale), got {self.step}")
        if kind == "choice":
            keys = [(type(v), v) for v in self.choice]
            if len(set(keys)) != len(keys):
                raise ValueError(f"the choices repeat a value: {self.choice}")
            return self
        low, high = getattr(self, kind)
        if not low < high:
            raise ValueError(f"low must be below high, got [{low}, {high}]")
        if kind == "int" and self.log and low < 1:
            raise ValueError(f"a log scale starts at 1 or above, got {low}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    def describe(self) -> str:
        extra = (f", step {self.step:g}" if self.step is not None else "") + (", log" if self.log else "")
        return f"{self.kind} {getattr(self, self.kind)}{extra}"

    def bounds(self) -> tuple:
        """A range's low and high, high brought down to the last value on the grid of `step`."""
        low, high = getattr(self, self.kind)
        cast = builtins.int if self.kind == "int" else float
        if self.step is not None:
            high = low + self.step * math.floor((high - low) / self.step + 1e-9)
        return cast(low), cast(high)

    def probes(self) -> list[tuple[tuple, object]]:
        """Values the field must accept, each with its place under the param: every choice, both ends of a range."""
        if self.kind == "choice":
            return [(("choice", i), v) for i, v in enumerate(self.choice)]
        low, high = self.bounds()
        return [((self.kind, 0), low), ((self.kind, 1), high)]

    def grid(self) -> list | None:
        """Every value, for a grid search: the choices, or an integer range; None for a float range."""
        if self.kind == "choice":
            return list(self.choice)
        if self.kind == "int" and not self.log:
            low, high = self.int
            return list(range(low, high + 1, builtins.int(self.step or 1)))
        return None

    def contains(self, value) -> bool:
        kind = self.kind
        if kind == "choice":
            return any(type(value) is type(c) and value == c for c in self.choice)
        if isinstance(value, bool) or not isinstance(value, (builtins.int, float)) or (kind == "int" and not isinstance(value, builtins.int)):
            return False
        low, high = getattr(self, kind)
        on_grid = self.step is None or abs((value - low) / self.step - round((value - low) / self.step)) < 1e-9
        return low <= value <= high and on_grid


def _types(members) -> tuple[str, ...]:
    return tuple(typing.get_args(m.model_fields["type"].annotation)[0] for m in members)


def _named(value):
    """`sampler: tpe` is short for `sampler: {type: tpe}`."""
    return {"type": value} if isinstance(value, str) else value


class TpeSampler(Strict):
    """Optuna's TPESampler: after `n_startup_trials` random trials, a model of the good and the bad ones proposes the next."""

    type: Literal["tpe"]
    seed: builtins.int | None = Field(None, description="the same seed gives the same proposals (with one worker)")
    n_startup_trials: NonNegativeInt = 10
    multivariate: bool = Field(False, description="model the parameters jointly instead of one by one")


class RandomSampler(Strict):
    """Optuna's RandomSampler: every trial's values drawn independently."""

    type: Literal["random"]
    seed: builtins.int | None = None


class GridSampler(Strict):
    """Optuna's GridSampler: every combination of the `choice` lists and integer ranges once, in a seeded random order."""

    type: Literal["grid"]
    seed: builtins.int | None = None


_SAMPLERS = (TpeSampler, RandomSampler, GridSampler)
Sampler = Annotated[
    Union[_SAMPLERS], Field(discriminator="type"), BeforeValidator(_named), Vocabulary("type", "sampler", "a sampler needs a `type:`", _types(_SAMPLERS))
]


class MedianPruner(Strict):
    """Optuna's MedianPruner: stop a trial whose value is worse than the median of the earlier trials' at the same epoch."""

    type: Literal["median"]
    n_startup_trials: NonNegativeInt = Field(5, description="trials that finish before any is pruned")
    n_warmup_steps: NonNegativeInt = Field(0, description="validations (epochs) of each trial before it may be pruned")


class HyperbandPruner(Strict):
    """Optuna's HyperbandPruner: successive halving over several brackets of epochs."""

    type: Literal["hyperband"]
    min_resource: PositiveInt = Field(1, description="epochs every trial gets")
    reduction_factor: Annotated[builtins.int, Field(ge=2)] = Field(3, description="one trial in this many goes on at each rung")


class NoPruner(Strict):
    """Every trial runs to its end."""

    type: Literal["none"]


_PRUNERS = (MedianPruner, HyperbandPruner, NoPruner)
Pruner = Annotated[
    Union[_PRUNERS], Field(discriminator="type"), BeforeValidator(_named), Vocabulary("type", "pruner", "a pruner needs a `type:`", _types(_PRUNERS))
]


class Sweep(Strict):
    """A search over some fields of one spec; every trial is a run of the spec with the trial's values."""

    version: Literal[1]
    sweep: str = Field(description="the spec: a path relative to this file, or a shipped example's name")
    name: Name | None = Field(None, description="sweeps go to sweeps/<name>/<N>; default: the spec's name")
    monitor: str = Field("loss", description="the validation metric to optimise, as train.early_stopping names it (loss, accuracy, ...)")
    mode: Literal["auto", "min", "max"] = Field("auto", description="auto: min for loss and errors, max otherwise")
    trials: PositiveInt = Field(20, description="completed and pruned trials to run; failed trials do not count")
    max_failures: NonNegativeInt = Field(10, description="the sweep stops when more trials than this have failed")
    sampler: Sampler = TpeSampler(type="tpe")
    pruner: Pruner = MedianPruner(type="median")
    heartbeat: PositiveInt = Field(60, description="seconds between a running trial's heartbeats; a trial silent for twice as long is failed")
    params: dict[str, Param] = Field(min_length=1, description="dotted spec paths, as for --set, and the values each takes")
    enqueue: list[dict[str, Scalar]] = Field([], description="trials to run first with these values (any param left out is drawn)")


@dataclass(frozen=True)
class LoadedSweep:
    #: the sweep file; for a search given with --param on a spec, the spec
    path: Path
    doc: Document
    sweep: Sweep
    #: the spec with the --set options applied, before any trial's values
    spec: LoadedSpec
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.sweep.name or self.spec.spec.name


def load_sweep(target: str | Path, *, params: tuple[str, ...] = (), overrides: tuple[str, ...] = (), trials: builtins.int | None = None) -> LoadedSweep:
    """Read and check a sweep file, or a spec plus `--param` options (the quick form).

    Raises SpecError with every problem, positioned in the sweep file, the
    spec or at the option that caused it.
    """
    path = resolve_spec_path(target)
    display = str(target) if path.parent == EXAMPLES else str(path)
    doc = read_document(path, display=display)
    is_spec = "model" in doc.data and "sweep" not in doc.data
    if is_spec:
        if not params:
            raise UserError(
                f"{display}: error: a spec, not a sweep file: give the search with --param PATH=KIND:ARGS "
                "(e.g. --param optimizer.learning_rate=log_uniform:1e-4,1e-1) or write a sweep file"
            )
        doc = Document(display, {"version": 1, "sweep": str(target), "params": {}})
    for text in params:
        _add_param(doc, text)
    if trials is not None:
        doc.data["trials"] = trials
        doc.overrides[("trials",)] = f"--trials {trials}"
    for section, leaf in (("params", _is_param), ("enqueue", lambda value: not isinstance(value, dict))):
        _flatten(doc, section, leaf)
    sweep, problems = check_schema(doc, Sweep, "sweep")
    if problems:
        raise SpecError(problems)
    spec = load(target if is_spec else _spec_target(doc, sweep, path), list(overrides))
    problems = [*_check_params(doc, sweep, spec), *_check_sampler(doc, sweep), *_check_enqueue(doc, sweep)]
    if problems:
        raise SpecError(problems)
    return LoadedSweep(path, doc, sweep, spec, tuple(overrides))


def _add_param(doc: Document, text: str) -> None:
    """`--param PATH=KIND:A,B[,step=S][,log=true]` -> params[PATH] = {KIND: [A, B], step: S, log: true}."""
    origin = f"--param {text}"
    name, sep, form = text.partition("=")
    kind, colon, args = form.partition(":")
    if not (sep and name and colon and args):
        raise UserError(
            f"{origin}: error: expected PATH=KIND:ARGS, e.g. optimizer.learning_rate=log_uniform:1e-4,1e-1, "
            f"data.batch_size=int:16,128,step=16 or optimizer.type=choice:adam,momentum (kinds: {', '.join(KINDS)})"
        )
    values, options = [], {}
    for item in args.split(","):
        key, eq, raw = item.partition("=")
        if eq and key.strip() in ("step", "log"):
            options[key.strip()] = parse_value(raw)
        else:
            values.append(parse_value(item))
    if isinstance(doc.data.get("params", {}), dict):  # otherwise the file's own `params` is reported
        doc.data.setdefault("params", {})[name] = {kind: values, **options}
        doc.overrides[("params", name)] = origin


def _is_param(value) -> bool:
    """A param's mapping, as opposed to a level of nesting (TOML writes `a.b = ...` as nested tables)."""
    return not isinstance(value, dict) or not value or bool(set(value) & set(KINDS)) or not all(isinstance(v, dict) for v in value.values())


def _flatten(doc: Document, section: str, is_leaf) -> None:
    """Nested mappings of a section -> dotted keys, with their positions."""

    def flat(mapping: dict, prefix: tuple, origin: tuple) -> dict:
        out = {}
        for key, value in mapping.items():
            if is_leaf(value):
                name = ".".join(map(str, prefix + (key,)))
                out[name] = value
                _move_positions(doc, origin + prefix + (key,), origin + (name,))
            else:
                out.update(flat(value, prefix + (key,), origin))
        return out

    value = doc.data.get(section)
    if section == "params" and isinstance(value, dict):
        doc.data[section] = flat(value, (), (section,))
    elif section == "enqueue" and isinstance(value, list):
        doc.data[section] = [flat(item, (), (section, i)) if isinstance(item, dict) else item for i, item in enumerate(value)]


def _move_positions(doc: Document, old: tuple, new: tuple) -> None:
    if old == new:
        return
    for table in (doc.values, doc.keys):
        for path in [p for p in table if p[: len(old)] == old]:
            table[new + path[len(old) :]] = table.pop(path)


def _spec_target(doc: Document, sweep: Sweep, sweep_path: Path) -> str:
    """`sweep:` names a file relative to the sweep file, or a shipped example."""
    candidate = sweep_path.parent / sweep.sweep
    if candidate.is_file():
        return str(candidate)
    if not candidate.exists() and "/" not in sweep.sweep and Path(sweep.sweep).suffix == "":
        try:
            return str(resolve_spec_path(sweep.sweep))
        except UserError:
            pass
    from tfn.specs import example_names

    hint = suggest(sweep.sweep, example_names())
    message = f"no spec file {str(candidate)!r} (paths are relative to the sweep file) and no shipped example {sweep.sweep!r}"
    raise SpecError([doc.error(("sweep",), message + (f" (did you mean {hint!r}?)" if hint else ""))])


def _check_params(doc: Document, sweep: Sweep, spec: LoadedSpec) -> list[Diagnostic]:
    """Each param path set to each of its probe values must pass the spec's schema."""
    problems = []
    base = spec.doc
    for name, param in sweep.params.items():
        parts = split_path(name)
        where = ("params", name)
        for place, value in param.probes():
            trial = Document(base.path, copy.deepcopy(base.data), base.values, base.keys, dict(base.overrides))
            try:
                assign(trial, parts, value, f"params {name}")
            except ValueError as exc:
                problems.append(doc.error(where, f"not a field of the spec: {exc}", key=True))
                break
            _, found = check_schema(trial)
            if any(_names_no_field(d, parts) for d in found):
                problems += [doc.error(where, d.message, key=True) for d in found if _names_no_field(d, parts)]
                break
            for d in found:
                detail = d.message if d.path == format_path(parts) else f"with {name}={value!r}: {d.path}: {d.message}"
                problems.append(doc.error(where + place, detail))
    return problems


def _names_no_field(diagnostic: Diagnostic, parts: tuple) -> bool:
    """The problem is the path itself: an unknown section or attribute on the way to the param's field."""
    own = format_path(parts)
    return diagnostic.message.startswith(("unknown attribute", "unknown section")) and (own == diagnostic.path or own.startswith(diagnostic.path + ".") or own.startswith(diagnostic.path + "["))


def _check_sampler(doc: Document, sweep: Sweep) -> list[Diagnostic]:
    if sweep.sampler.type != "grid":
        return []
    return [
        doc.error(("params", name), f"the grid sampler takes choice lists and integer ranges; this is {param.describe()}")
        for name, param in sweep.params.items()
        if param.grid() is None
    ]


def _check_enqueue(doc: Document, sweep: Sweep) -> list[Diagnostic]:
    problems = []
    for i, entry in enumerate(sweep.enqueue):
        for name, value in entry.items():
            param = sweep.params.get(name)
            if param is None:
                hint = suggest(name, sweep.params)
                message = f"{name!r} is not one of the params" + (f" (did you mean {hint!r}?)" if hint else f"; they are {', '.join(sweep.params)}")
                problems.append(doc.error(("enqueue", i, name), message, key=True))
            elif not param.contains(value):
                problems.append(doc.error(("enqueue", i, name), f"{value!r} is not among the values of {name} ({param.describe()})"))
    return problems
