"""The op registry. Importing this package registers every op.

To add an op: write its class in the module of its family (or a new module
listed below), decorate it with @register, give it a docstring with a
one-line summary, an `Example:` node and an `Input ...` shape paragraph, and
`example_inputs` (the shapes its example runs on; `example_dtypes` when an
input is not float32, `integer_input_range` when an integer input indexes
something); then write its oracle test and regenerate tests/golden/op_names.txt. The contract battery
(tests/test_op_contract.py), `tfn layers` and the spec schema pick it up with
no edit elsewhere.
"""

from tfn.layers import activations, convolution, core, fractional, indexing, losses, math_ops, normalization, pooling, resizing, sequence, structure  # noqa: F401  (registers)
from tfn.layers.base import (
    MAX_ELEMENTS,
    MAX_SIZE,
    PREDICTIONS,
    IndexRangeError,
    Op,
    OpError,
    Params,
    TensorType,
    UnknownOpError,
    UserError,
    VariableDef,
    all_ops,
    get,
    is_integer,
    register,
    suggest,
)

__all__ = [
    "MAX_ELEMENTS",
    "MAX_SIZE",
    "PREDICTIONS",
    "IndexRangeError",
    "Op",
    "OpError",
    "Params",
    "TensorType",
    "UnknownOpError",
    "UserError",
    "VariableDef",
    "all_ops",
    "get",
    "is_integer",
    "register",
    "suggest",
]
