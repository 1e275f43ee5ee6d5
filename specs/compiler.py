"""Compile a validated spec into the graph IR.

Names, references, sharing, control edges and shapes are checked here, after
the schema and before any tensor exists; every problem is collected and
reported at once with its position in the file.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace

from tfn import layers
from tfn.layers import OpError, TensorType
from tfn.specs.documents import Document
from tfn.specs.errors import Diagnostic, SpecError
from tfn.specs.graph import Graph, Input, Loss, Node, Variable, split_ref
from tfn.specs.schema import ScopeNode, Spec


@dataclass
class _Entry:
    """One node of the spec, flattened out of its scopes."""

    path: tuple  # where it sits in the document
    scope: str
    spec: object  # the validated node model
    device: str | None
    name: str = ""


def _flatten(items, path: tuple, scope: str, device: str | None, out: list) -> None:
    for i, item in enumerate(items):
        if isinstance(item, ScopeNode):
            inner = f"{scope}/{item.scope}" if scope else item.scope
            _flatten(item.layers, path + (i, "layers"), inner, item.device or device, out)
        else:
            out.append(_Entry(path + (i,), scope, item, item.device or device))


def _full(scope: str, name: str) -> str:
    return f"{scope}/{name}" if scope else name


class _Compiler:
    def __init__(self, doc: Document, spec: Spec):
        self.doc, self.spec = doc, spec
        self.problems: list[Diagnostic] = []

    def fail(self, path: tuple, message: str, key: bool = False) -> None:
        self.problems.append(self.doc.error(path, message, key))

    # --- names ---------------------------------------------------------------

    def assign_names(self, entries: list[_Entry]) -> dict[str, _Entry]:
        taken: dict[str, _Entry] = {}
        inputs = set(self.spec.model.inputs)
        for e in entries:
            if e.spec.name is not None:
                e.name = _full(e.scope, e.spec.name)
                if e.name in taken or e.name in inputs:
                    first = self.doc.where(taken[e.name].path) if e.name in taken else self.doc.where(("model", "inputs", e.name))
                    self.fail(e.path + ("name",), f"duplicate node name {e.name!r} (first defined at line {first[0] if first else '?'})")
                else:
                    taken[e.name] = e
        used = set(taken) | inputs
        for e in entries:
            if e.spec.name is None:  # TF's unique_name: conv2d, conv2d_1, ...
                base = _full(e.scope, e.spec.op)
                name, k = base, 0
                while name in used:
                    k += 1
                    name = f"{base}_{k}"
                e.name = name
                used.add(name)
                taken[name] = e
        return taken

    def resolve(self, ref: str, entry: _Entry, path: tuple, names: dict[str, _Entry], earlier_only: bool) -> str | None:
        """A reference as written in the spec -> the full node name, or None after reporting."""
        name, index = split_ref(ref)
        inputs = self.spec.model.inputs
        if "/" in name:
            candidates = [name]
        else:  # innermost scope outward, then the top level
            parts = entry.scope.split("/") if entry.scope else []
            candidates = [_full("/".join(parts[:k]), name) for k in range(len(parts), -1, -1)]
        for full in candidates:
            if full in inputs and index == 0:
                return full
            if full in names:
                target = names[full]
                if earlier_only and target.path >= entry.path:
                    line = (self.doc.where(target.path) or ("?",))[0]
                    self.fail(path, f"{ref!r} is defined later, at line {line}; a node can only take inputs from nodes above it")
                    return None
                return full if index == 0 else f"{full}:{index}"
        scope = name.rsplit("/", 1)[0] if "/" in name else None
        if scope is not None and not any(n.startswith(scope + "/") for n in names):
            self.fail(path, f"unknown scope {scope!r} in reference {ref!r}")
            return None
        hint = layers.suggest(name, list(names) + list(inputs))
        self.fail(path, f"unknown node {ref!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
        return None

    # --- the graph -------------------------------------------------------------

    def compile(self) -> Graph:
        spec = self.spec
        entries: list[_Entry] = []
        _flatten(spec.model.layers, ("model", "layers"), "", None, entries)
        names = self.assign_names(entries)
        inputs = {name: Input(name, TensorType((None, *i.shape), i.dtype)) for name, i in spec.model.inputs.items()}
        types: dict[str, tuple[TensorType, ...]] = {n: (i.type,) for n, i in inputs.items()}
        nodes: dict[str, Node] = {}
        variables: dict[str, Variable] = {}
        controls: dict[str, tuple[str, ...]] = {}
        previous: str | None = next(iter(inputs)) if len(inputs) == 1 else None

        for e in entries:
            op = layers.get(e.spec.op)
            refs = self.node_inputs(e, previous, names)
            previous = e.name
            controls[e.name] = tuple(r for i, a in enumerate(e.spec.after) if (r := self.resolve(a, e, e.path + ("after", i), names, earlier_only=False)))
            if refs is None:
                continue
            lo, hi = op.arity
            if len(refs) < lo or (hi is not None and len(refs) > hi):
                want = f"{lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
                self.fail(e.path + ("inputs",), f"op {op.name} takes {want} inputs, got {len(refs)}")
                continue
            in_types = []
            for r in refs:
                name, index = split_ref(r)
                if name not in types:
                    break  # an upstream node failed: already reported
                if index >= len(types[name]):
                    self.fail(e.path + ("inputs",), f"{r!r}: node {name!r} has {len(types[name])} output(s)")
                    break
                in_types.append(types[name][index])
            else:
                node = self.build_node(e, op, refs, in_types, nodes, variables, names)
                if node is not None:
                    nodes[e.name] = node
                    types[e.name] = node.outputs

        losses = self.losses(inputs, types, nodes, names)
        if self.problems:
            raise SpecError(self.problems)
        for name, ctrl in controls.items():
            if name in nodes:
                nodes[name] = replace(nodes[name], control_inputs=ctrl)
        order = self.topological_order(nodes, entries, names)
        if self.problems:
            raise SpecError(self.problems)
        logits = tuple(dict.fromkeys(nodes[l.node].inputs[0] for l in losses))
        return Graph(spec.name, tuple(inputs.values()), tuple(nodes[n] for n in order), tuple(variables.values()), logits, tuple(losses))

    def node_inputs(self, e: _Entry, previous: str | None, names) -> list[str] | None:
        if e.spec.inputs is None:
            if previous is None:
                listed = ", ".join(self.spec.model.inputs)
                self.fail(e.path + ("op",), f"the first node has no default input: the model has inputs {listed}; name them with `inputs:`")
                return None
            return [previous]
        resolved = [self.resolve(r, e, e.path + ("inputs", i), names, earlier_only=True) for i, r in enumerate(e.spec.inputs)]
        return None if None in resolved else resolved

    def build_node(self, e: _Entry, op, refs, in_types, nodes, variables, names) -> Node | None:
        params = op.Params.model_validate({k: getattr(e.spec, k) for k in op.Params.model_fields})
        try:
            outputs = op.infer(params, in_types)
            defs = op.variables(params, in_types)
        except OpError as exc:
            self.fail(e.path + ((exc.field,) if exc.field else ("op",)), str(exc))
            return None
        own = {d.role: Variable(f"{e.name}/{d.role}", tuple(d.shape), d.trainable, d.initializer, fans=d.fans, regularizer=d.regularizer) for d in defs}
        roles = {role: v.name for role, v in own.items()}
        if e.spec.share is not None:
            roles = self.shared_roles(e, op, own, nodes, variables, names)
            if roles is None:
                return None
        else:
            variables.update((v.name, v) for v in own.values())
        attrs = params.model_dump(mode="json")
        return Node(e.name, op.name, attrs, tuple(refs), (), e.scope, e.device, tuple(outputs), roles)

    def shared_roles(self, e: _Entry, op, own: dict, nodes, variables, names) -> dict | None:
        path = e.path + ("share",)
        target_name = self.resolve(e.spec.share, e, path, names, earlier_only=True)
        if target_name is None or target_name not in nodes:
            return None  # reported, or the target itself failed
        target = nodes[target_name]
        if target.op != op.name:
            self.fail(path, f"cannot share variables of {target.name!r}: it is a {target.op}, this node is a {op.name}")
            return None
        theirs = {role: variables[name] for role, name in target.variables.items()}
        if {r: v.shape for r, v in own.items()} != {r: v.shape for r, v in theirs.items()}:
            mine = ", ".join(f"{r} {list(v.shape)}" for r, v in own.items())
            other = ", ".join(f"{r} {list(v.shape)}" for r, v in theirs.items())
            self.fail(path, f"cannot share variables of {target.name!r}: it has {other}, this node needs {mine}")
            return None
        return dict(target.variables)

    def losses(self, inputs, types, nodes, names) -> list[Loss]:
        spec = self.spec.loss
        path = ("loss",)
        op = layers.get(spec.op)
        holder = _Entry(path, "", spec, None, spec.name)
        logits = self.resolve(spec.logits, holder, path + ("logits",), names, earlier_only=False)
        if logits is None or split_ref(logits)[0] not in types:
            return []
        logits_type = types[split_ref(logits)[0]][split_ref(logits)[1]]
        params = op.Params.model_validate({k: getattr(spec, k) for k in op.Params.model_fields})
        try:
            label_type = op.label_type(params, logits_type)
        except OpError as exc:
            self.fail(path + ("logits",), str(exc))
            return []
        if spec.labels in inputs:
            label_type = inputs[spec.labels].type
        else:
            inputs[spec.labels] = Input(spec.labels, label_type)
        if spec.name in nodes or spec.name in inputs:
            self.fail(path + ("name",), f"the loss node is named {spec.name!r}, which a node already uses; set loss.name")
            return []
        try:
            outputs = op.infer(params, [logits_type, label_type])
        except OpError as exc:
            self.fail(path + ("labels",), str(exc))
            return []
        nodes[spec.name] = Node(spec.name, op.name, params.model_dump(mode="json"), (logits, spec.labels), outputs=tuple(outputs))
        return [Loss(spec.name, spec.weight)]

    def topological_order(self, nodes: dict[str, Node], entries, names) -> list[str]:
        """Kahn's algorithm over data and control edges, keeping spec order among ready nodes."""
        rank = {name: i for i, name in enumerate(nodes)}
        deps = {n: {split_ref(r)[0] for r in node.inputs + node.control_inputs} & nodes.keys() for n, node in nodes.items()}
        users: dict[str, list[str]] = {n: [] for n in nodes}
        for n, ds in deps.items():
            for d in ds:
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
            stuck = [n for n in nodes if n not in set(order)]
            for n in stuck:
                if nodes[n].control_inputs and n in names:
                    self.fail(names[n].path + ("after",), f"control dependencies make a cycle through {', '.join(stuck)}")
                    break
            else:
                self.fail(("model",), f"the graph has a cycle through {', '.join(stuck)}")
        return order


def compile_spec(doc: Document, spec: Spec) -> Graph:
    return _Compiler(doc, spec).compile()
