"""Property tests: random mutations of the shipped examples.

Every invalidating mutation from the catalogue gives a SpecError whose every
diagnostic has a line (and says what the mutation broke), never another
exception; every valid mutation checks cleanly.
"""

from __future__ import annotations

import copy
from pathlib import Path

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


def break_reference(data, draw):
    where = draw(st.sampled_from(["inputs", "after", "logits"]))
    missing = draw(st.sampled_from(["nowhere", "nosuchscope/conv", "/nowhere"]))
    if where == "logits":
        data["loss"]["logits"] = missing
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
    data["loss"]["logits"] = fix(data["loss"]["logits"])


def widen(data, draw):
    """Scale every conv's filters and every hidden dense layer's units by one factor: shapes still agree."""
    factor = draw(st.integers(1, 3))
    for _, _, node, _ in leaves(data["model"]["layers"]):
        if "filters" in node:
            node["filters"] *= factor
        if "units" in node and node.get("name") != data["loss"]["logits"]:
            node["units"] *= factor


def change_classes(data, draw):
    for _, _, node, _ in leaves(data["model"]["layers"]):
        if node.get("name") == data["loss"]["logits"]:
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
