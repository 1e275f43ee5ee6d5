"""Property tests: random mutations of the shipped examples.

Every invalidating mutation from the catalogue gives a SpecError whose every
diagnostic has a line (and says what the mutation broke), never another
exception; every valid mutation checks cleanly.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import random
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfn.specs import EXAMPLES, SpecError, check_schema, compile_spec, example_names, read_document

SOURCES = {name: read_document(next(EXAMPLES.glob(f"{name}.*"))).data for name in example_names()}


def leaves(layers: list, scope: str = ""):
    """(list, index, node, scope) for every node of a layers list, scopes entered."""
    for i, node in enumerate(layers):
        if "scope" in node:
            yield from leaves(node["layers"], f"{scope}{node['scope']}/")
        else:
            yield layers, i, node, scope


def check(data: dict):
    text = yaml.safe_dump(data, sort_keys=False)
    doc = read_document(Path("mutated.yaml"), text=text)
    _, problems = check_schema(doc)
    return compile_spec(doc, problems)


# --- invalidating mutations: each changes the data and returns a phrase the error must contain ---------


def drop_required(data, draw):
    nodes = [n for _, _, n, _ in leaves(data["model"]["layers"]) if any(k in n for k in ("units", "filters", "kernel_size"))]
    section = draw(st.sampled_from(["node", "version", "name", "model", "loss", "data", "op"]))
    if section == "node":
        node = draw(st.sampled_from(nodes))
        del node[draw(st.sampled_from([k for k in ("units", "filters", "kernel_size") if k in node]))]
        return "missing required attribute"
    if section == "op":
        del draw(st.sampled_from(nodes))["op"]
        return "needs an `op:`"
    del data[section]
    return f"missing required section '{section}'"


def misspell_op(data, draw):
    _, _, node, _ = draw(st.sampled_from(list(leaves(data["model"]["layers"]))))
    node["op"] = draw(st.sampled_from([node["op"] + "s", node["op"][:-1], node["op"].upper(), "conv"]))
    return "unknown op"


def misspell_attribute(data, draw):
    _, _, node, _ = draw(st.sampled_from([leaf for leaf in leaves(data["model"]["layers"]) if len(leaf[2]) > 1]))
    key = draw(st.sampled_from([k for k in node if k != "op"]))
    node[draw(st.sampled_from([key + "s", "x" + key, key.upper(), "colour"]))] = node.pop(key)
    return "unknown attribute"


def output_key(data) -> str:
    """The loss's key naming the model's output: `logits`, or `predictions` for a regression loss."""
    return "logits" if "logits" in data["loss"] else "predictions"


def break_reference(data, draw):
    where = draw(st.sampled_from(["inputs", "after", "output"]))
    missing = draw(st.sampled_from(["nowhere", "nosuchscope/conv", "/nowhere"]))
    if where == "output":
        data["loss"][output_key(data)] = missing
    else:
        _, _, node, _ = draw(st.sampled_from(list(leaves(data["model"]["layers"]))))
        node[where] = [missing]
    return "unknown scope" if missing.startswith("nosuchscope") else "unknown node"


def wrong_type(data, draw):
    nodes = [n for _, _, n, _ in leaves(data["model"]["layers"]) if "units" in n or "filters" in n]
    node = draw(st.sampled_from(nodes))
    key = "units" if "units" in node else "filters"
    node[key] = draw(st.sampled_from(["ten", 2.5, [3], {"a": 1}, True]))
    return "valid integer"


def out_of_range(data, draw):
    nodes = [n for _, _, n, _ in leaves(data["model"]["layers"]) if "units" in n or "filters" in n]
    node = draw(st.sampled_from(nodes))
    node["units" if "units" in node else "filters"] = draw(st.integers(-5, 0))
    return "greater than 0"


def duplicate_name(data, draw):
    candidates = []
    for layers, i, node, _ in leaves(data["model"]["layers"]):
        named = [n["name"] for n in layers if "name" in n and "scope" not in n and n is not node]
        if named:
            candidates.append((node, named))
    node, named = draw(st.sampled_from(candidates))
    node["name"] = draw(st.sampled_from(named))
    return "duplicate node name"


def later_reference(data, draw):
    flat = list(leaves(data["model"]["layers"]))
    i = draw(st.integers(0, len(flat) - 2))
    later = flat[draw(st.integers(i + 1, len(flat) - 1))]
    later[2]["name"] = later[2].get("name", "target_node")
    flat[i][2]["inputs"] = ["/" + later[3] + later[2]["name"]]
    return "is defined later"


def control_cycle(data, draw):
    # node i runs after node i+1, which takes node i as its (default) input: a cycle
    pairs = [(layers[i], layers[i + 1]) for layers, i, _, _ in leaves(data["model"]["layers"])
             if i + 1 < len(layers) and "scope" not in layers[i + 1] and "inputs" not in layers[i + 1]]
    first, second = draw(st.sampled_from(pairs))
    second["name"] = second.get("name", "cycle_partner")
    first["after"] = [second["name"]]
    return "make a cycle"


def bad_device(data, draw):
    _, _, node, _ = draw(st.sampled_from(list(leaves(data["model"]["layers"]))))
    node["device"] = draw(st.sampled_from(["gpu", "/gpu:0", "cuda:x", "tpu", ""]))
    return "bad device"


def unknown_section(data, draw):
    data[draw(st.sampled_from(["trian", "modle", "optimiser", "extra"]))] = {}
    return "unknown section"


def bad_version(data, draw):
    data["version"] = draw(st.sampled_from([0, 2, "1", 1.5]))
    return "version"


def empty_or_no_inputs(data, draw):
    key = draw(st.sampled_from(["layers", "inputs"]))
    data["model"][key] = [] if key == "layers" else {}
    return f"no {key}"


INVALIDATING = [drop_required, misspell_op, misspell_attribute, break_reference, wrong_type, out_of_range,
                duplicate_name, later_reference, control_cycle, bad_device, unknown_section, bad_version, empty_or_no_inputs]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=st.sampled_from(sorted(SOURCES)), mutation=st.sampled_from(INVALIDATING), data=st.data())
def test_an_invalidating_mutation_gives_a_positioned_error(example, mutation, data):
    spec = copy.deepcopy(SOURCES[example])
    phrase = mutation(spec, data.draw)
    try:
        check(spec)
    except SpecError as error:
        assert error.diagnostics
        assert all(d.line is not None and d.col is not None for d in error.diagnostics), str(error)
        assert any(phrase in d.message for d in error.diagnostics), f"{mutation.__name__}: {phrase!r} not in\n{error}"
    else:
        raise AssertionError(f"{mutation.__name__} on {example} checked cleanly")


# --- valid mutations ---------------------------------------------------------------------------------


def rename_node(data, draw):
    """Rename a top-level node and every reference to it."""
    scoped = {n.get("name") for _, _, n, scope in leaves(data["model"]["layers"]) if scope}
    names = [n["name"] for n in data["model"]["layers"] if "name" in n and n["name"] not in scoped]
    if not names:
        return
    old, new = draw(st.sampled_from(names)), draw(st.from_regex(r"\A[a-z][a-z0-9_]{0,8}\Z"))
    taken = {n.get("name") for _, _, n, _ in leaves(data["model"]["layers"])} | set(data["model"]["inputs"]) | {"loss"}
    if new in taken or any(new == n.get("op") or new.startswith(n.get("op", "") + "_") for _, _, n, _ in leaves(data["model"]["layers"])):
        return  # would collide with an existing or an automatic name

    def fix(ref):
        for prefix in ("", "/"):
            if ref == prefix + old or ref.startswith(prefix + old + ":"):
                return prefix + new + ref[len(prefix + old):]
        return ref

    for _, _, node, _ in leaves(data["model"]["layers"]):
        if node.get("name") == old:
            node["name"] = new
        for key in ("inputs", "after"):
            if key in node:
                node[key] = [fix(r) for r in node[key]]
        if "share" in node:
            node["share"] = fix(node["share"])
    data["loss"][output_key(data)] = fix(data["loss"][output_key(data)])


def widen(data, draw):
    """Scale the filters and units of every layer but the last by one factor: shapes still agree.

    The last one sets the width of the logits (a classifier's classes, an
    autoencoder's image channels), which the labels fix."""
    factor = draw(st.integers(1, 3))
    sized = [node for _, _, node, _ in leaves(data["model"]["layers"]) if "filters" in node or "units" in node]
    for node in sized[:-1]:
        key = "filters" if "filters" in node else "units"
        if node.get("name") != data["loss"][output_key(data)]:
            node[key] *= factor


def change_classes(data, draw):
    for _, _, node, _ in leaves(data["model"]["layers"]):
        if node.get("name") == data["loss"].get("logits") and "units" in node:  # a dense classifier (not a reconstruction, not a regression)
            node["units"] = draw(st.integers(2, 20))


def lowercase_padding(data, draw):
    for _, _, node, _ in leaves(data["model"]["layers"]):
        if "padding" in node:
            node["padding"] = node["padding"].lower()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=st.sampled_from(sorted(SOURCES)), mutations=st.lists(st.sampled_from([rename_node, widen, change_classes, lowercase_padding]), min_size=1, max_size=3), data=st.data())
def test_a_valid_mutation_checks_cleanly(example, mutations, data):
    spec = copy.deepcopy(SOURCES[example])
    before = check(spec)
    for mutation in mutations:
        mutation(spec, data.draw)
    after = check(spec)
    assert len(after.nodes) == len(before.nodes)
    assert [n.op for n in after.nodes] == [n.op for n in before.nodes]


# --- anything at any place ------------------------------------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=False, width=32) | st.sampled_from(["", "x", "image", "conv1", "a/b", "/x", "x:1", "SAME", "cuda:0"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["op", "name", "inputs", "scope", "layers", "units", "shape"]), inner, max_size=3),
    max_leaves=6,
)


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=st.sampled_from(sorted(SOURCES)), data=st.data())
def test_any_value_anywhere_gives_a_graph_or_a_positioned_error(example, data):
    spec = copy.deepcopy(SOURCES[example])
    path = data.draw(st.sampled_from(list(paths(spec))[1:]))
    parent = spec
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = data.draw(JSONISH)
    try:
        check(spec)
    except SpecError as error:
        assert error.diagnostics and all(d.line is not None for d in error.diagnostics), str(error)


# --- the structural fuzzer: broken files, through the command line ------------------------------------
#
# Every shipped example, as YAML and as TOML, is mutated at random (seeded): keys deleted and
# duplicated, values swapped for other types, deep nesting, huge and negative numbers, unicode
# and control characters, binary junk, truncation. `tfn check` must exit 0 or 2 on each, never
# with a traceback or an internal error, and each line of an exit-2 report must start with
# FILE:LINE:COL. Some mutants that check accepts go on to `tfn train --steps 1` and
# `tfn time -n 1`, which must exit 0 or 2 too. TFN_FUZZ_MUTANTS raises the count for a long
# local run (thousands); TFN_FUZZ_SEED picks another seed.

FUZZ_MUTANTS = int(os.environ.get("TFN_FUZZ_MUTANTS", "240"))
FUZZ_RUNS = int(os.environ.get("TFN_FUZZ_RUNS", "20"))
FUZZ_SEED = int(os.environ.get("TFN_FUZZ_SEED", "0"))
PYDANTIC_WORDS = ("constrained-", "literal[", "function-", "lax-or-strict", "json-or-python", "Value error", "Input should", "[type=")


def toml_text(data: dict) -> str:
    """A TOML document of `data`: tables for mappings, arrays of tables for lists of mappings."""
    lines: list[str] = []

    def key(k) -> str:
        return str(k) if re.fullmatch(r"[A-Za-z0-9_-]+", str(k)) else json.dumps(str(k))

    def inline(value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan" if value != value else repr(value))
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            return json.dumps(value).replace("\x7f", "\\u007f")
        if isinstance(value, list):
            return "[" + ", ".join(inline(v) for v in value if v is not None) + "]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{key(k)} = {inline(v)}" for k, v in value.items() if v is not None) + "}"
        raise TypeError(value)

    def tables(value) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)

    def table(mapping: dict, path: list, header: str | None) -> None:
        if header:
            lines.extend(["", header])
        for k, v in mapping.items():
            if v is not None and not isinstance(v, dict) and not tables(v):
                lines.append(f"{key(k)} = {inline(v)}")
        for k, v in mapping.items():
            dotted = ".".join(key(p) for p in path + [k])
            if isinstance(v, dict):
                table(v, path + [k], f"[{dotted}]")
            elif tables(v):
                for item in v:
                    table(item, path + [k], f"[[{dotted}]]")

    table(data, [], None)
    return "\n".join(lines) + "\n"


def _example_texts() -> dict[tuple[str, str], str]:
    """(example, format) -> the text of every shipped example in both formats."""
    texts = {}
    for name in example_names():
        path = next(EXAMPLES.glob(f"{name}.*"))
        data = read_document(path).data
        texts[name, "yaml"] = path.read_text() if path.suffix == ".yaml" else yaml.safe_dump(data, sort_keys=False)
        texts[name, "toml"] = path.read_text() if path.suffix == ".toml" else toml_text(data)
    return texts


TEXTS = _example_texts()

HUGE = [2**31, 2**31 - 1, 2**63, -(2**63) - 1, 2**64, 10**40, -1, 0, -(2**31), 1e308, -1e308, 1e-320, 3.5]
ODD_STRINGS = ["", " ", "ñandú", "名前", "\U0001f600", "\u202e", "a\x00b", "\x07", "\x1b[31m", "a" * 5000, "\ufeff", "../../etc/passwd", "${HOME}", "x\ny"]
JUNK = [b"\xff\xfe", b"\x00", b"\xc3(", b"\x80\x80", b"\x1b", b"\x7f", b"\xef\xbb\xbf", b"\x0c", b"\r", b"\t", b"]]]", b"{{{", b"'''", b'"""', b": :", b"- -", b"= ="]


def _locations(value, path=()):
    """(path, value) of every value inside `value`, the root excluded."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield path + (k,), v
        yield from _locations(v, path + (k,))


def _replace(data, path, new):
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if new is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new


_DELETE = object()


def _other_type(rng: random.Random, value):
    choices = [None, True, 0, 7, 2.5, "text", [], [1, 2], {}, {"op": "relu"}, [{"a": 1}]]
    return rng.choice([c for c in choices if type(c) is not type(value)])


def _mutate_data(rng: random.Random, data: dict) -> tuple[str, dict]:
    data = copy.deepcopy(data)
    spots = list(_locations(data))
    path, value = rng.choice(spots)
    kind = rng.choice(["delete", "swap_type", "number", "string", "rename_key", "empty", "small_number", "drop_setting"])
    settings = [(p, v) for p, v in spots if p[0] in ("optimizer", "train", "data") and len(p) > 1 and p[1] != "source"]
    if kind == "delete":
        _replace(data, path, _DELETE)
    elif kind == "small_number":  # mostly valid: what training then meets
        numbers = [(p, v) for p, v in spots if isinstance(v, int) and not isinstance(v, bool)]
        path, _ = rng.choice(numbers)
        _replace(data, path, rng.choice([1, 2, 3, 5]))
    elif kind == "drop_setting" and settings:
        path, _ = rng.choice(settings)
        _replace(data, path, _DELETE)
    elif kind == "swap_type":
        _replace(data, path, _other_type(rng, value))
    elif kind == "number":
        numbers = [(p, v) for p, v in spots if isinstance(v, (int, float)) and not isinstance(v, bool)]
        path, _ = rng.choice(numbers)
        _replace(data, path, rng.choice(HUGE))
    elif kind == "string":
        strings = [(p, v) for p, v in spots if isinstance(v, str)]
        path, _ = rng.choice(strings)
        _replace(data, path, rng.choice(ODD_STRINGS))
    elif kind == "rename_key":
        keyed = [(p, v) for p, v in spots if isinstance(p[-1], str)]
        path, value = rng.choice(keyed)
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        parent[rng.choice(ODD_STRINGS[:6] + [path[-1] + "s", path[-1].upper()])] = parent.pop(path[-1])
    elif kind == "empty":
        _replace(data, path, rng.choice([[], {}, ""]))
    return kind, data


def _mutate_text(rng: random.Random, text: str, fmt: str) -> tuple[str, bytes]:
    raw = text.encode()
    kind = rng.choice(["truncate", "junk", "duplicate_line", "deep_nesting", "control_character", "swap_lines"])
    lines = text.splitlines(keepends=True)
    if kind == "truncate":
        return kind, raw[: rng.randrange(len(raw))]
    if kind == "junk":
        at = rng.randrange(len(raw) + 1)
        junk = rng.choice(JUNK) if rng.random() < 0.6 else bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        return kind, raw[:at] + junk + raw[at:]
    if kind == "duplicate_line":
        i = rng.randrange(len(lines))
        return kind, "".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :]).encode()
    if kind == "swap_lines":
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return kind, "".join(lines).encode()
    if kind == "control_character":
        at = rng.randrange(len(text) + 1)
        return kind, (text[:at] + rng.choice(["\x00", "\x07", "\x1b", "\x7f", "\u2028", "\x85", "\ufffe"]) + text[at:]).encode()
    separator = ": " if fmt == "yaml" else " = "
    candidates = [i for i, line in enumerate(lines) if separator in line and not line.lstrip().startswith("#")]
    i = rng.choice(candidates)
    depth = rng.choice([50, 99, 101, 150, 400, 1000, 3000])
    opened, closed = ("[" * depth, "]" * depth) if rng.random() < 0.5 else (("{a: " if fmt == "yaml" else "{a = ") * depth, "}" * depth)
    head = lines[i].split(separator, 1)[0]
    lines[i] = f"{head}{separator}{opened}1{closed}\n"
    return kind, "".join(lines).encode()


def fuzz_mutants(count: int, seed: int):
    """(label, file name, bytes) of `count` mutants, the same for the same seed."""
    rng = random.Random(seed)
    keys = sorted(TEXTS)
    for k in range(count):
        name, fmt = rng.choice(keys)
        if rng.random() < 0.5:
            kind, data = _mutate_data(rng, read_document(Path(f"x.{fmt}"), text=TEXTS[name, fmt]).data)
            raw = (yaml.safe_dump(data, sort_keys=False, allow_unicode=True) if fmt == "yaml" else toml_text(data)).encode()
        else:
            kind, raw = _mutate_text(rng, TEXTS[name, fmt], fmt)
        yield f"#{k} {name}.{fmt} {kind}", f"m{k}_{name}.{fmt}", raw


def _cli(*args: str) -> tuple[int, str, str]:
    """tfn ARGS in this process: (exit status, stdout, stderr)."""
    from tfn.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Data sources that download find nothing and cannot reach the network."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFN_DATA_DIR", str(tmp_path / "datasets"))
    for source in ("MNIST", "FASHION_MNIST"):
        monkeypatch.setenv(f"TFN_{source}_URL", "http://127.0.0.1:9/")
    return tmp_path


def test_every_example_reads_the_same_in_yaml_and_toml():
    for name in example_names():
        yaml_data = read_document(Path("x.yaml"), text=TEXTS[name, "yaml"]).data
        assert read_document(Path("x.toml"), text=TEXTS[name, "toml"]).data == yaml_data, name


def test_the_fuzzer_mutants_are_seeded():
    first = [raw for _, _, raw in fuzz_mutants(30, FUZZ_SEED)]
    assert first == [raw for _, _, raw in fuzz_mutants(30, FUZZ_SEED)]
    assert len(set(first)) > 25


def test_structural_fuzzer_check_exits_0_or_2_with_positions_and_runs_accepted_mutants(offline):
    problems, accepted = [], []
    for label, name, raw in fuzz_mutants(FUZZ_MUTANTS, FUZZ_SEED):
        (offline / name).write_bytes(raw)
        code, out, err = _cli("check", name)
        unpositioned = [line for line in err.splitlines() if not re.match(rf"{re.escape(name)}:\d+:\d+: error: ", line)]
        leaked = [w for w in PYDANTIC_WORDS if w in err]
        if code not in (0, 2) or "Traceback" in err or "internal error" in err or (code == 2 and (unpositioned or not err)) or leaked:
            (offline / "failed").mkdir(exist_ok=True)
            (offline / "failed" / name).write_bytes(raw)
            problems.append(f"{label}: exit {code}: {(unpositioned or [err])[0][:300]}{' leaks ' + str(leaked) if leaked else ''}")
        elif code == 0:
            accepted.append((label, name))
    assert not problems, f"{len(problems)} of {FUZZ_MUTANTS} mutants (seed {FUZZ_SEED}):\n" + "\n".join(problems[:20])
    assert len(accepted) >= FUZZ_RUNS, f"only {len(accepted)} mutants checked cleanly"
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only spins (three times the CPU time on 2 busy cores)
    try:
        for label, name in accepted[:: max(1, len(accepted) // max(1, FUZZ_RUNS))][:FUZZ_RUNS]:  # spread over the accepted
            for args in (("train", name, "--steps", "1", "--quiet", "--out", f"run_{name}"), ("time", name, "-n", "1", "--warmup", "0")):
                code, out, err = _cli(*args)
                if code not in (0, 2) or "Traceback" in err or "internal error" in err:
                    problems.append(f"{label}: tfn {args[0]}: exit {code}: {err[-500:]}")
    finally:
        torch.set_num_threads(threads)
    assert not problems, "\n".join(problems)
