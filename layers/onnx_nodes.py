"""Export-time kernels that ONNX writes as its own nodes (LRN, Resize) instead of a decomposition.

An op whose semantics one ONNX node has exactly returns, from
:meth:`tfn.layers.base.Op.build_onnx`, a kernel that calls one of the torch
custom ops below (namespace ``tfn::``). They compute what the op's own kernel
computes, so a trace sees one call; :func:`translation_table` tells torch's
ONNX exporter which ONNX node each one is. Importing this module imports torch:
only build_onnx and the exporter do, lazily.
"""

from __future__ import annotations

import torch

from tfn.layers.base import Kernel


@torch.library.custom_op("tfn::lrn", mutates_args=())
def lrn(x: torch.Tensor, size: int, alpha: float, beta: float, bias: float) -> torch.Tensor:
    """ONNX's LRN (and PyTorch's): alpha is divided by the window `size`."""
    return torch.nn.functional.local_response_norm(x, size, alpha, beta, bias)


@lrn.register_fake
def _lrn_shape(x, size, alpha, beta, bias):
    return torch.empty_like(x)


#: the resize kernels by their parameters, built once: the custom op's eager run computes the op's own taps
_resamplers: dict[tuple, object] = {}


@torch.library.custom_op("tfn::resize", mutates_args=())
def resize(x: torch.Tensor, size: list[int], method: str, align_corners: bool, half_pixel_centers: bool) -> torch.Tensor:
    """tfn's resize (layers/resizing.py) of [N, C, H, W] to [N, C, *size], written as ONNX's Resize on export."""
    from tfn.layers.resizing import separable_resampler

    key = (tuple(x.shape[2:]), tuple(size), method, align_corners, half_pixel_centers)
    if key not in _resamplers:
        _resamplers[key] = separable_resampler(method, x.shape[2:], size, align_corners, half_pixel_centers)
    return _resamplers[key](x).clone()  # a custom op's output may not alias its input (an axis that keeps its size)


@resize.register_fake
def _resize_shape(x, size, method, align_corners, half_pixel_centers):
    return x.new_empty((*x.shape[:2], *size))


def translation_table(opset: int) -> dict:
    """torch.onnx.export's custom_translation_table: each custom op above as its ONNX node (onnxscript) of `opset`."""
    import onnxscript

    onnx_op = getattr(onnxscript, f"opset{opset}")

    from tfn.layers.resizing import onnx_resize_attributes

    def lrn_node(x, size, alpha, beta, bias):
        return onnx_op.LRN(x, size=size, alpha=alpha, beta=beta, bias=bias)

    def resize_node(x, size, method, align_corners, half_pixel_centers):
        attributes = onnx_resize_attributes(method, align_corners, half_pixel_centers)
        # sizes of the spatial axes only: the batch stays dynamic
        return onnx_op.Resize(x, None, None, onnx_op.Constant(value_ints=list(size)), axes=[2, 3], **attributes)

    return {torch.ops.tfn.lrn.default: lrn_node, torch.ops.tfn.resize.default: resize_node}


def as_kernel(name: str, node, *args) -> Kernel:
    """A kernel (xs, v, training) that calls custom op `node` on its one input with `args`."""

    def kernel(xs, v, training):
        return node(xs[0], *args)

    kernel.__name__ = name
    return kernel
