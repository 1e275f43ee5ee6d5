"""graph.json: deterministic, lossless, and valid against the JSON Schema shipped with the package."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

from tfn.specs import example_names, load
from tfn.specs.graph import Graph

EXAMPLES = example_names()


def graph_schema() -> dict:
    return json.loads(resources.files("tfn.specs").joinpath("graph.schema.json").read_text(encoding="utf-8"))


def test_the_schema_is_itself_valid():
    jsonschema.Draft202012Validator.check_schema(graph_schema())


@pytest.mark.parametrize("example", EXAMPLES)
def test_round_trip_is_lossless_and_deterministic(example):
    graph = load(example).graph
    text = graph.to_json()
    again = Graph.from_json(text)
    assert again == graph  # every field of every node, variable, input, output and loss
    assert again.to_json() == text  # byte for byte
    assert again.hash == graph.hash
    assert load(example).graph.to_json() == text  # compiling twice gives the same bytes


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_graph_validates_against_the_schema(example):
    document = json.loads(load(example).graph.to_json())
    jsonschema.Draft202012Validator(graph_schema()).validate(document)


def test_the_schema_rejects_what_is_not_a_graph():
    validator = jsonschema.Draft202012Validator(graph_schema())
    document = json.loads(load(EXAMPLES[0]).graph.to_json())
    for broken in (
        {**document, "format": "tf.graph"},
        {**document, "version": 2},
        {**document, "extra": 1},
        {**document, "nodes": [{**document["nodes"][0], "inputs": ["bad name!"]}]},
    ):
        assert not validator.is_valid(broken)


def test_the_hash_changes_with_the_structure(write_spec):
    from tests.conftest import MINIMAL_SPEC

    first = load(write_spec(MINIMAL_SPEC)).graph
    second = load(write_spec(MINIMAL_SPEC.replace("filters: 4", "filters: 5"), "other.yaml")).graph
    assert first.hash != second.hash
    assert len(first.hash) == 64


def test_reading_another_format_or_version_is_refused():
    text = load(EXAMPLES[0]).graph.to_json()
    with pytest.raises(ValueError, match="not a tfn graph"):
        Graph.from_json(text.replace('"tfn.graph"', '"other"'))
    with pytest.raises(ValueError, match="version 2; this tfn reads version 1"):
        Graph.from_json(text.replace('"version": 1', '"version": 2'))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["nodes"][1].update(inputs=["nowhere"]), "input 'nowhere' is not an output of an input or an earlier node"),
        (lambda d: d["nodes"].reverse(), "is not an output of an input or an earlier node"),
        (lambda d: d["nodes"][0].update(op="conv9d"), "unknown op 'conv9d'"),
        (lambda d: d["variables"].pop(0), "is not declared"),
        (lambda d: d.update(outputs=["ghost"]), "output 'ghost' is not a node's output"),
    ],
)
def test_an_inconsistent_graph_file_is_refused(edit, message):
    document = json.loads(load("lenet5").graph.to_json())
    edit(document)
    with pytest.raises(ValueError, match=message):
        Graph.from_json(json.dumps(document))
