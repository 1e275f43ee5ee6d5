"""The spec schema: one pydantic model per section, built from the op registry.

This is the single source of truth for validation and for the JSON Schema
that `tfn schema` prints. Node models are the ops' own parameter classes plus
the fields every node has (name, inputs, after, share, device); nothing here
lists op names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PositiveFloat, PositiveInt, StringConstraints, Tag, create_model

from tfn import layers

SPEC_VERSION = 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")]
Device = Annotated[str, StringConstraints(pattern=r"^(cpu|cuda|cuda:\d+)$")]
DType = Literal["float32", "float64", "int64", "int32"]


class InputSpec(Strict):
    """A model input: the shape of one sample, channels-first, and its dtype."""

    shape: list[PositiveInt] = Field(min_length=1)
    dtype: DType = "float32"


class NodeFields(Strict):
    """Fields every graph node has, whatever its op."""

    name: Name | None = None
    inputs: list[str] | None = None
    after: list[str] = []
    share: str | None = None
    device: Device | None = None


SCOPE_TAG = "<scope>"


def _node_model(op: layers.Op) -> type[BaseModel]:
    node_fields = {name: (f.annotation, f) for name, f in NodeFields.model_fields.items()}
    return create_model(
        f"{type(op).__name__}Node",
        __base__=op.Params,
        __doc__=op.doc(),
        op=(Literal[op.name], ...),
        **node_fields,
    )


def _loss_model(op: layers.Op) -> type[BaseModel]:
    return create_model(
        f"{type(op).__name__}Loss",
        __base__=op.Params,
        __doc__=op.doc(),
        op=(Literal[op.name], ...),
        logits=(str, Field(description="the node that gives the logits")),
        labels=(str, Field(description="the data field that gives the labels")),
        name=(Name, "loss"),
        weight=(float, 1.0),
    )


NODE_MODELS: dict[str, type[BaseModel]] = {name: _node_model(op) for name, op in layers.all_ops().items() if not op.is_loss}
LOSS_MODELS: dict[str, type[BaseModel]] = {name: _loss_model(op) for name, op in layers.all_ops().items() if op.is_loss}


def _tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return SCOPE_TAG if "scope" in value else value.get("op")
    return SCOPE_TAG if isinstance(value, ScopeNode) else getattr(value, "op", None)


class ScopeNode(Strict):
    """A name scope: its nodes are named `<scope>/<node>`, their variables `<scope>/<node>/<role>`."""

    scope: Name
    layers: list[LayerNode] = Field(min_length=1)
    device: Device | None = None


LayerNode = Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in NODE_MODELS.items()) + (Annotated[ScopeNode, Tag(SCOPE_TAG)],)],
    Discriminator(_tag),
]
ScopeNode.model_rebuild()

LossSpec = Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in LOSS_MODELS.items())],
    Discriminator(_tag),
]


class Model(Strict):
    inputs: dict[Name, InputSpec] = Field(min_length=1)
    layers: list[LayerNode] = Field(min_length=1)


# --- optimizers --------------------------------------------------------------


class GradientDescent(Strict):
    """tf.train.GradientDescentOptimizer: var -= learning_rate * grad."""

    type: Literal["gradient_descent"]
    learning_rate: PositiveFloat = 0.01


class Adam(Strict):
    """tf.train.AdamOptimizer."""

    type: Literal["adam"]
    learning_rate: PositiveFloat = 0.001
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    epsilon: PositiveFloat = 1e-8


Optimizer = Annotated[Union[GradientDescent, Adam], Field(discriminator="type")]


# --- data ----------------------------------------------------------------------


class DataBase(Strict):
    batch_size: PositiveInt = 32


class DigitsData(DataBase):
    """The UCI handwritten digits shipped with tfn: 1,797 8x8 grey images, 10 classes.

    Fields: `image` [1, 8, 8] float32 in [0, 1], `label` int64. Fixed splits:
    1,167 train, 270 validation, 360 test.
    """

    source: Literal["digits"]


Data = Annotated[Union[DigitsData], Field(discriminator="source")]


# --- training ----------------------------------------------------------------------


class Train(Strict):
    epochs: PositiveInt = 10
    seed: int = 0
    device: Literal["auto"] | Device = "auto"
    log_every: PositiveInt = Field(default=10, description="steps between logged training loss")
    keep: PositiveInt = Field(default=5, description="newest checkpoints kept")


class Spec(Strict):
    """A tfn experiment: the model graph, the loss, the optimizer, the data and the training settings."""

    version: Literal[1]
    name: Name
    model: Model
    loss: LossSpec
    optimizer: Optimizer = Adam(type="adam")
    data: Data
    train: Train = Train()


def json_schema() -> dict:
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tfn spec"
    return schema
