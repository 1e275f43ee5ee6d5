"""specs/: spec file -> validated Spec -> graph IR.

    doc = read_document("spec.yaml")      # data + positions
    spec, problems = check_schema(doc)     # pydantic schema, positioned errors
    graph = compile_spec(doc, problems)    # names, references, shapes, variables;
                                           # raises SpecError with every problem of both stages
or all at once: ``load("spec.yaml")`` (a path or a shipped example's name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfn.specs.compiler import compile_spec
from tfn.specs.documents import Document, read_document
from tfn.specs.errors import Diagnostic, SpecError, UserError
from tfn.specs.graph import Graph
from tfn.specs.schema import Spec, json_schema
from tfn.specs.validate import check_schema, validate

EXAMPLES = Path(__file__).parent / "examples"


def example_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".toml"))


def resolve_spec_path(target: str | Path) -> Path:
    """A path to a spec file, a model directory (a run or an imported model: its spec.yaml), or the name of a shipped example."""
    path = Path(target)
    if path.is_dir():
        if (path / "spec.yaml").is_file():
            return path / "spec.yaml"
        raise UserError(f"{target}: error: a directory without spec.yaml is not a model directory (a run, or a model from `tfn import`)")
    if path.exists():
        return path
    if path.suffix == "" and "/" not in str(target):
        for suffix in (".yaml", ".toml"):
            if (EXAMPLES / f"{target}{suffix}").exists():
                return EXAMPLES / f"{target}{suffix}"
    from tfn.layers import suggest

    hint = suggest(str(target), example_names())
    raise UserError(
        f"{target}: error: no such file or shipped example"
        + (f" (did you mean {hint!r}?)" if hint else f"; shipped examples: {', '.join(example_names())}")
    )


@dataclass(frozen=True)
class LoadedSpec:
    path: Path
    doc: Document
    spec: Spec
    graph: Graph


SPEC_DATA = "<spec>"


def load(target: str | Path | dict, overrides: list[str] = ()) -> LoadedSpec:
    """Read, validate and compile a spec file, a shipped example, or a spec given as data (a dict).

    A dict's problems are reported as `<spec>: error: PATH: ...`.
    """
    if isinstance(target, dict):
        import yaml

        path = Path(SPEC_DATA + ".yaml")
        doc = read_document(path, text=yaml.safe_dump(target, sort_keys=False), display=SPEC_DATA)
        doc.shows_positions = False
    else:
        path = resolve_spec_path(target)
        display = str(target) if path.parent == EXAMPLES else str(path)
        doc = read_document(path, display=display)
    if overrides:
        from tfn.specs.overrides import apply_overrides

        apply_overrides(doc, overrides)
    spec, problems = check_schema(doc)
    graph = compile_spec(doc, problems)  # raises with the schema's problems and the graph's, all at once
    assert spec is not None  # compile_spec raised if the schema had problems
    return LoadedSpec(path, doc, spec, graph)


def load_graph(target: str | Path) -> Graph:
    """A graph from a spec (or shipped example), a graph.json file, or a run directory."""
    path = Path(target)
    graph_file = path / "graph.json" if path.is_dir() else path
    if graph_file.suffix == ".json" and graph_file.is_file():
        try:
            return Graph.from_json(graph_file.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{graph_file}: error: not a valid tfn graph definition: {exc}") from None
    if path.is_dir():
        raise UserError(f"{path}: error: a directory without graph.json is not a run directory")
    return load(target).graph


__all__ = [
    "Diagnostic",
    "Document",
    "Graph",
    "LoadedSpec",
    "Spec",
    "SpecError",
    "UserError",
    "check_schema",
    "compile_spec",
    "example_names",
    "json_schema",
    "load",
    "load_graph",
    "read_document",
    "resolve_spec_path",
    "validate",
]
