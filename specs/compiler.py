"""Compile a spec document into the graph IR.

Names, references, sharing, control edges, placement and shapes are checked
here, after parsing and before any tensor exists. The compiler reads the
document's data itself rather than the validated Spec, node by node, so a
schema problem in one node does not hide a bad reference or a shape error in
another: every problem of the file is reported in one run, each with its
position.

Name resolution: a reference means the node of that name in the innermost
enclosing scope that has one, then the next scope out, up to the top level,
whether the name holds a `/` or not (inside `mixed`, `branch_1/conv` is
`mixed/branch_1/conv` if that exists, else the top-level `branch_1/conv`). A
leading `/` names a top-level node only (`/conv` from inside a scope that has
its own `conv`). `node:1` is the node's second output.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

from pydantic import BaseModel, ValidationError

from tfn import layers
from tfn.layers import OpError, TensorType
from tfn.specs.data_rules import data_section_problems
from tfn.specs.documents import Document
from tfn.specs.errors import Diagnostic, SpecError, format_path
from tfn.specs.graph import Graph, Input, Loss, Node, Variable, split_ref
from tfn.specs.schema import LOSS_MODELS, NODE_MODELS, InputSpec, NodeFields, Train

_INVALID = object()  # a field present in the document but rejected by the schema (already reported)
_ONE_NAMESPACE = "nodes, scopes and variables share one namespace, as in TF: rename one"


def _field(raw: dict, key: str) -> Any:
    """A node field (name, inputs, after, share, device) as the schema reads it;
    None when absent, _INVALID when the schema rejects it."""
    if key not in raw:
        return None
    try:
        return getattr(NodeFields.model_validate({key: raw[key]}), key)
    except ValidationError:
        return _INVALID


def _valid(model: type[BaseModel] | None, raw: Any) -> BaseModel | None:
    if model is None or not isinstance(raw, dict):
        return None
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


@dataclass
class _Entry:
    """One node of the spec, flattened out of its scopes."""

    path: tuple  # where it sits in the document
    scope: str
    raw: dict  # the node as written
    node: BaseModel | None  # the validated node model; None when the schema rejected it
    device: str | None
    name: str = ""

    @property
    def op(self) -> str | None:
        op = self.raw.get("op")
        return op if isinstance(op, str) else None

    def field(self, key: str) -> Any:
        return _field(self.raw, key)


def _flatten(items: Any, path: tuple, scope: str, device: str | None, out: list[_Entry]) -> None:
    if not isinstance(items, list):
        return  # the schema reports it
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        inner_device = _field(item, "device")
        inner_device = device if inner_device in (None, _INVALID) else inner_device
        if "scope" in item:
            name = item["scope"]
            if isinstance(name, str) and name:
                _flatten(item.get("layers"), path + (i, "layers"), _full(scope, name.strip("/")), inner_device, out)
            continue
        op = item.get("op")
        out.append(_Entry(path + (i,), scope, item, _valid(NODE_MODELS.get(op) if isinstance(op, str) else None, item), inner_device))


def _candidates(name: str, scope: str) -> list[str]:
    """What a reference may mean, most specific first: inside scope `a/b`, `x` is
    a/b/x, then a/x, then x (also when x holds a `/`); `/x` is only the top-level x."""
    if name.startswith("/"):
        return [name[1:]]
    parts = scope.split("/") if scope else []
    return [_full("/".join(parts[:k]), name) for k in range(len(parts), -1, -1)]


def _full(scope: str, name: str) -> str:
    return f"{scope}/{name}" if scope else name


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


class _Compiler:
    def __init__(self, doc: Document):
        self.doc = doc
        self.data = _dict(doc.data)
        self.model = _dict(self.data.get("model"))
        self.problems: list[Diagnostic] = []
        self.label_inputs: dict[str, Input] = {}  # label and sample-weight fields the losses add as inputs
        self.model_input_names: set[str] = set()

    def fail(self, path: tuple, message: str, key: bool = False) -> None:
        self.problems.append(self.doc.error(path, message, key))

    def line_of(self, path: tuple) -> str:
        where = self.doc.where(path)
        return str(where[0]) if where else "?"

    # --- names -----------------------------------------------------------------

    def model_inputs(self) -> dict[str, Input | None]:
        """The declared inputs; None for one whose declaration the schema rejected."""
        declared = {}
        for name, raw in _dict(self.model.get("inputs")).items():
            spec = _valid(InputSpec, raw)
            declared[str(name)] = Input(str(name), TensorType((None, *spec.shape), spec.dtype)) if spec else None
            try:
                _bounded([declared[str(name)].type] if spec else [], [], what="input")
            except OpError as exc:
                self.fail(("model", "inputs", name, "shape"), str(exc))
                declared[str(name)] = None
        return declared

    def assign_names(self, entries: list[_Entry], inputs: dict) -> dict[str, _Entry]:
        taken: dict[str, _Entry] = {}
        for e in entries:
            name = e.field("name")
            if isinstance(name, str):
                e.name = _full(e.scope, name)
                if e.name in taken:
                    where = f"first defined at line {self.line_of(taken[e.name].path)}"
                elif e.name in inputs:
                    where = f"a model input, line {self.line_of(('model', 'inputs', e.name))}"
                else:
                    taken[e.name] = e
                    continue
                self.fail(e.path + ("name",), f"duplicate node name {e.name!r} ({where})")
        used = set(taken) | set(inputs)
        for e in entries:
            if not e.name:  # TF's unique_name: conv2d, conv2d_1, ...; scoped: block/conv2d
                base = _full(e.scope, e.op or "node")
                name, k = base, 0
                while name in used:
                    k += 1
                    name = f"{base}_{k}"
                e.name = name
                used.add(name)
                taken[name] = e
        return taken

    def resolve(self, ref: str, entry: _Entry, path: tuple, names: dict[str, _Entry], inputs: dict, earlier_only: bool) -> str | None:
        """A reference as written in the spec -> the full node name, or None after reporting."""
        name, index = split_ref(ref)
        candidates = _candidates(name, entry.scope)
        for full in candidates:
            if full in inputs:
                if index:
                    self.fail(path, f"{ref!r}: model input {full!r} has one output; write {full!r}")
                    return None
                return full
            if full in names:
                target = names[full]
                if earlier_only and target.path >= entry.path:
                    what = "itself" if target is entry else f"defined later, at line {self.line_of(target.path)}"
                    self.fail(path, f"{ref!r} is {what}; a node can only take inputs from (and share with) nodes above it")
                    return None
                return full if index == 0 else f"{full}:{index}"
        absolute = name.lstrip("/")
        scope = absolute.rsplit("/", 1)[0] if "/" in absolute else None
        if scope is not None and not any(n.startswith(c.rsplit("/", 1)[0] + "/") for c in candidates for n in names):
            scopes = sorted({n.rsplit("/", 1)[0] for n in names if "/" in n})
            hint = layers.suggest(scope, scopes)
            known = f" (did you mean {hint!r}?)" if hint else f"; scopes: {', '.join(scopes)}" if scopes else "; the spec has no scopes"
            self.fail(path, f"unknown scope {scope!r} in reference {ref!r}{known}")
            return None
        hint = layers.suggest(absolute, [n for n in list(names) + list(inputs) if n != entry.name])
        self.fail(path, f"unknown node {ref!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
        return None

    def resolve_list(self, e: _Entry, key: str, names, inputs, earlier_only: bool) -> list[str] | None:
        refs = e.field(key)
        if refs is _INVALID:
            return None
        resolved = [self.resolve(r, e, e.path + (key, i), names, inputs, earlier_only) for i, r in enumerate(refs or [])]
        return None if None in resolved else resolved

    # --- the graph -------------------------------------------------------------

    def compile(self) -> Graph | None:
        entries: list[_Entry] = []
        _flatten(self.model.get("layers"), ("model", "layers"), "", None, entries)
        inputs = self.model_inputs()
        self.model_input_names = set(inputs)
        names = self.assign_names(entries, inputs)
        types: dict[str, tuple[TensorType, ...]] = {n: (i.type,) for n, i in inputs.items() if i}
        nodes: dict[str, Node] = {}
        variables: dict[str, Variable] = {}
        controls: dict[str, tuple[str, ...]] = {}
        previous: str | None = next(iter(inputs)) if len(inputs) == 1 else None
        for e in entries:
            refs = self.node_inputs(e, previous, names, inputs)
            previous = e.name
            after = self.resolve_list(e, "after", names, inputs, earlier_only=False)
            controls[e.name] = tuple(after or ())
            share = e.field("share")
            if isinstance(share, str):  # resolved now, so a bad name is reported even when the node fails below
                share = self.resolve(share, e, e.path + ("share",), names, inputs, earlier_only=True) or _INVALID
            if refs is None or e.node is None or share is _INVALID:
                continue  # reported
            op = layers.get(e.op)
            lo, hi = op.arity
            if len(refs) < lo or (hi is not None and len(refs) > hi):
                want = f"{lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
                self.fail(e.path + ("inputs",) if "inputs" in e.raw else e.path + ("op",), f"op {op.name} takes {want} input(s), got {len(refs)}")
                continue
            in_types = self.input_types(e, refs, types)
            if in_types is None:
                continue
            node = self.build_node(e, op, refs, in_types, share, nodes, variables)
            if node is not None:
                nodes[e.name] = node
                types[e.name] = node.outputs
        self.variable_clashes(variables, nodes, names)
        losses = self.losses(inputs, types, nodes, names, bool(entries))
        for name, ctrl in controls.items():
            if name in nodes:
                nodes[name] = replace(nodes[name], control_inputs=ctrl)
        if self.problems:
            return None
        order = self.topological_order(nodes, names)
        if self.problems:
            return None
        declared = tuple(i for i in inputs.values() if i) + tuple(i for n, i in self.label_inputs.items() if n not in inputs)
        logits = tuple(dict.fromkeys(nodes[l.node].inputs[0] for l in losses))
        return Graph(str(self.data.get("name")), declared, tuple(nodes[n] for n in order), tuple(variables.values()), logits, tuple(losses))

    def variable_clashes(self, variables: dict[str, Variable], nodes: dict[str, Node], names: dict[str, _Entry]) -> None:
        """Nodes and variables share one namespace, as in TF: node `d` owns variable `d/kernel`, so a
        node `kernel` in scope `d` may not exist. The later of the two in the file is reported."""
        owners = {v: node.name for node in nodes.values() for v in node.variables.values()}
        for variable in variables:
            if variable not in names or variable not in owners:
                continue
            owner, node = names[owners[variable]], names[variable]
            if node.path > owner.path:
                where = node.path + ("name",) if "name" in node.raw else node.path + ("op",)
                self.fail(where, f"duplicate name {variable!r}: node {owner.name!r} (line {self.line_of(owner.path)}) has a variable of that name; {_ONE_NAMESPACE}")
            else:
                where = owner.path + ("name",) if "name" in owner.raw else owner.path + ("op",)
                self.fail(where, f"duplicate name {variable!r}: node {variable!r} (line {self.line_of(node.path)}) and a variable of this node; {_ONE_NAMESPACE}")

    def node_inputs(self, e: _Entry, previous: str | None, names, inputs) -> list[str] | None:
        if "inputs" not in e.raw:
            if previous is None:
                if inputs:
                    listed = ", ".join(inputs)
                    self.fail(e.path + ("op",), f"the first node has no default input: the model has inputs {listed}; name them with `inputs:`")
                return None
            return [previous]
        return self.resolve_list(e, "inputs", names, inputs, earlier_only=True)

    def input_types(self, e: _Entry, refs: list[str], types) -> list[TensorType] | None:
        in_types = []
        for i, r in enumerate(refs):
            name, index = split_ref(r)
            if name not in types:
                return None  # an upstream node failed: already reported
            if index >= len(types[name]):
                where = e.path + ("inputs", i) if "inputs" in e.raw else e.path + ("op",)
                self.fail(where, f"{r!r}: node {name!r} has {len(types[name])} output(s), numbered from 0")
                return None
            in_types.append(types[name][index])
        return in_types

    def build_node(self, e: _Entry, op, refs, in_types, share: str | None, nodes, variables) -> Node | None:
        params = op.Params.model_validate({k: getattr(e.node, k) for k in op.Params.model_fields})
        try:
            outputs = op.infer(params, in_types)
            defs = op.variables(params, in_types)
            _bounded(outputs, defs)
        except OpError as exc:
            self.fail(e.path + ((exc.field,) if exc.field and exc.field in e.raw else ("op",)), str(exc))
            return None
        own = {d.role: Variable(f"{e.name}/{d.role}", tuple(d.shape), d.trainable, d.initializer, fans=d.fans, regularizer=d.regularizer) for d in defs}
        roles = {role: v.name for role, v in own.items()}
        if share is not None:
            roles = self.shared_roles(e, op, share, own, nodes, variables)
            if roles is None:
                return None
        else:
            variables.update((v.name, v) for v in own.values())
        attrs = params.model_dump(mode="json")
        return Node(e.name, op.name, attrs, tuple(refs), (), e.scope, e.device, tuple(outputs), roles)

    def shared_roles(self, e: _Entry, op, target_name: str, own: dict, nodes, variables) -> dict | None:
        """The variables of `target_name` by role, if this node can use them; else None after reporting."""
        path = e.path + ("share",)
        if split_ref(target_name)[0] not in nodes:
            if target_name in self.model_input_names:
                self.fail(path, f"cannot share variables of {target_name!r}: it is a model input")
            return None  # else the target itself failed: reported
        target = nodes[split_ref(target_name)[0]]
        if target.op != op.name:
            self.fail(path, f"cannot share variables of {target.name!r}: it is a {target.op}, this node is a {op.name}")
            return None
        if not own:
            self.fail(path, f"cannot share variables of {target.name!r}: op {op.name} has no variables")
            return None
        theirs = {role: variables[name] for role, name in target.variables.items()}
        if {r: (v.shape, v.trainable) for r, v in own.items()} != {r: (v.shape, v.trainable) for r, v in theirs.items()}:
            mine = ", ".join(f"{r} {list(v.shape)}" for r, v in own.items())
            other = ", ".join(f"{r} {list(v.shape)}" for r, v in theirs.items())
            self.fail(path, f"cannot share variables of {target.name!r}: it has {other}, this node needs {mine}")
            return None
        return dict(target.variables)

    def losses(self, inputs, types, nodes, names, have_nodes: bool) -> list[Loss]:
        """`loss:` is one loss or a list of weighted losses, named loss, loss_1, ... unless named."""
        raw = self.data.get("loss")
        if isinstance(raw, list):
            found = []
            for i, item in enumerate(raw):
                found += self.loss(item, ("loss", i), "loss" if i == 0 else f"loss_{i}", inputs, types, nodes, names, have_nodes)
            return found
        return self.loss(raw, ("loss",), "loss", inputs, types, nodes, names, have_nodes)

    def loss(self, raw, path, default_name, inputs, types, nodes, names, have_nodes: bool) -> list[Loss]:
        if not isinstance(raw, dict):
            return []
        op = raw.get("op")
        spec = _valid(LOSS_MODELS.get(op) if isinstance(op, str) else None, raw)
        key = "predictions" if raw.get("logits") is None and raw.get("predictions") is not None else "logits"
        logits_ref = raw.get(key)
        if not isinstance(logits_ref, str) or not have_nodes:
            return []
        holder = _Entry(path, "", raw, spec, None, default_name)
        logits = self.resolve(logits_ref, holder, path + (key,), names, inputs, earlier_only=False)
        if spec is None or logits is None or split_ref(logits)[0] not in types:
            return []
        logits_node, index = split_ref(logits)
        if index >= len(types[logits_node]):
            self.fail(path + (key,), f"{logits!r}: node {logits_node!r} has {len(types[logits_node])} output(s), numbered from 0")
            return []
        op = layers.get(spec.op)
        logits_type = types[logits_node][index]
        params = op.Params.model_validate({k: getattr(spec, k) for k in op.Params.model_fields})
        try:
            label_type = op.label_type(params, logits_type)
        except OpError as exc:
            self.fail(path + (key,), str(exc))
            return []
        # fields the loss reads from the data: the labels and, optionally, per-example weights ([N] unless declared)
        fields = {spec.labels: label_type} | ({spec.sample_weight: TensorType((None,))} if spec.sample_weight else {})
        field_types = []
        for field, default_type in fields.items():
            if field in inputs:
                if inputs[field] is None:
                    return []
                field_types.append(inputs[field].type)
            else:
                self.label_inputs.setdefault(field, Input(field, default_type))
                field_types.append(self.label_inputs[field].type)
        name = spec.name or default_name
        if name in names or name in inputs or name in nodes:
            self.fail(path + ("name",), f"the loss node is named {name!r}, which a node already uses; set {format_path(path)}.name")
            return []
        try:
            outputs = op.infer(params, [logits_type, *field_types])
        except OpError as exc:
            self.fail(path + ((exc.field,) if exc.field in raw else ("labels",)), str(exc))
            return []
        self.check_top_k(raw, path, logits, logits_type, label_type)
        nodes[name] = Node(name, op.name, params.model_dump(mode="json"), (logits, *fields), outputs=tuple(outputs))
        return [Loss(name, spec.weight)]

    def check_top_k(self, raw: dict, path: tuple, logits: str, logits_type: TensorType, label_type: TensorType) -> None:
        """top_k_accuracy with k at or above the number of classes would count every sample as right."""
        train = _dict(self.data.get("train"))
        if isinstance(raw.get("metrics"), list):
            metrics, where = raw["metrics"], path + ("metrics",)
        elif path in (("loss",), ("loss", 0)) and isinstance(train.get("metrics"), list):
            metrics, where = train["metrics"], ("train", "metrics")  # the first loss's metrics default to train.metrics
        else:
            return
        if "top_k_accuracy" not in metrics or not label_type.dtype.startswith("int") or logits_type.rank < 2:
            return
        k, classes = train.get("top_k", Train.model_fields["top_k"].default), logits_type.shape[1]
        if type(k) is not int or classes is None or k < classes:
            return  # a k that is not an int is the schema's to report
        given = "top_k" in train
        self.fail(
            ("train", "top_k") if given else where + (metrics.index("top_k_accuracy"),),
            f"top_k_accuracy with k = {k}{'' if given else ' (the default of train.top_k)'} counts every sample as right: "
            f"the logits {logits!r} give {classes} classes; set train.top_k below {classes}",
        )

    def topological_order(self, nodes: dict[str, Node], names: dict[str, _Entry]) -> list[str]:
        """Kahn's algorithm over data and control edges, keeping spec order among ready nodes."""
        rank = {name: i for i, name in enumerate(nodes)}
        deps = {n: {split_ref(r)[0] for r in node.inputs + node.control_inputs} & nodes.keys() for n, node in nodes.items()}
        users: dict[str, list[str]] = {n: [] for n in nodes}
        for n, ds in deps.items():
            for d in sorted(ds, key=rank.get):
                users[d].append(n)
        waiting = {n: len(ds) for n, ds in deps.items()}
        ready = [(rank[n], n) for n, c in waiting.items() if c == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            _, n = heapq.heappop(ready)
            order.append(n)
            for u in users[n]:
                waiting[u] -= 1
                if waiting[u] == 0:
                    heapq.heappush(ready, (rank[u], u))
        if len(order) < len(nodes):
            cycle = _find_cycle({n: deps[n] for n in nodes if n not in set(order)}, rank)
            # data edges only point backwards in the file, so the cycle has a control edge: report that `after:` entry
            for node, dep in zip(cycle, cycle[1:]):
                controls = [split_ref(c)[0] for c in nodes[node].control_inputs]
                if dep in controls:
                    order_text = " -> ".join(reversed(cycle))
                    self.fail(names[node].path + ("after", controls.index(dep)), f"control dependencies make a cycle: {order_text} (each runs before the next)")
                    break
        return order


def _bounded(outputs: Sequence[TensorType], variables: Sequence[layers.VariableDef], what: str = "output") -> None:
    """No tensor beyond MAX_ELEMENTS: a sample of an output (or input), or a variable."""
    sizes = [(f"{what} {t} has {t.sample_size:,} elements per sample", t.sample_size) for t in outputs]
    sizes += [(f"variable {v.role} {list(v.shape)} has {math.prod(v.shape):,} elements", math.prod(v.shape)) for v in variables]
    for text, size in sizes:
        if size > layers.MAX_ELEMENTS:
            raise OpError(f"{text}; tfn allows at most 2**40 = {layers.MAX_ELEMENTS:,} in one tensor")


def _find_cycle(deps: dict[str, set[str]], rank: dict[str, int]) -> list[str]:
    """A cycle [a, b, ..., a] among nodes that all wait on one another (each depends on the next)."""
    start = min(deps, key=rank.get)
    seen: dict[str, int] = {}
    path = []
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min((d for d in deps[node] if d in deps), key=rank.get)
    return path[seen[node] :] + [node]


def compile_spec(doc: Document, schema_problems: Sequence[Diagnostic] = ()) -> Graph:
    """The graph of a parsed spec document, or SpecError with every problem found.

    ``schema_problems`` are those the schema validation found already; they are
    reported together with the graph's own problems, sorted by position.
    """
    compiler = _Compiler(doc)
    graph = compiler.compile()
    inputs = {name: i.type.dtype for name, i in [*compiler.label_inputs.items(), *compiler.model_inputs().items()] if i}
    problems = list(dict.fromkeys([*schema_problems, *compiler.problems, *data_section_problems(doc, inputs, frozenset(compiler.label_inputs))]))
    if problems or graph is None:
        raise SpecError(problems or [Diagnostic(doc.path, None, None, "", "the spec does not compile")])
    return graph
