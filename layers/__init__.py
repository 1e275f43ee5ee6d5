"""The op registry. Importing this package registers every op.

To add an op: write its class in the module of its family (or a new module
listed below), decorate it with @register, and add its test. Nothing else.
"""

from tfn.layers import activations, convolution, core, fractional, losses, normalization, pooling, structure  # noqa: F401  (registers)
from tfn.layers.base import Op, OpError, Params, TensorType, UnknownOpError, VariableDef, all_ops, get, register, suggest

__all__ = ["Op", "OpError", "Params", "TensorType", "UnknownOpError", "VariableDef", "all_ops", "get", "register", "suggest"]
