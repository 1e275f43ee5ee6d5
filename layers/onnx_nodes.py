"""Export-time kernels that ONNX writes as its own nodes (LRN, Resize, LSTM) instead of a decomposition.

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


@torch.library.custom_op("tfn::lstm", mutates_args=())
def lstm(
    x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor, sequence_lens: torch.Tensor, hidden_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ONNX's LSTM, forward, from zero states, with sequence_lens: X [T, N, F], W [1, 4u, F], R [1, 4u, u],
    B [1, 8u] (gate blocks i, o, f, c) give Y [T, 1, N, u] (zero past a sequence's length), Y_h and Y_c [1, N, u]
    (the states at its length): dynamic_rnn's meaning, which tfn's lstm has."""
    steps, n = x.shape[0], x.shape[1]
    h = c = x.new_zeros(n, hidden_size)
    projected = x @ w[0].T + b[0, : 4 * hidden_size] + b[0, 4 * hidden_size :]
    outputs = []
    for t in range(steps):
        i, o, f, candidate = (projected[t] + h @ r[0].T).chunk(4, 1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(candidate)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        live = (t < sequence_lens)[:, None]
        h, c = torch.where(live, h_new, h), torch.where(live, c_new, c)
        outputs.append(torch.where(live, h_new, torch.zeros_like(h_new)))
    y = torch.stack(outputs)[:, None] if outputs else x.new_zeros(0, 1, n, hidden_size)
    return y, h[None].clone(), c[None].clone()


@lstm.register_fake
def _lstm_shape(x, w, r, b, sequence_lens, hidden_size):
    return x.new_empty(x.shape[0], 1, x.shape[1], hidden_size), x.new_empty(1, x.shape[1], hidden_size), x.new_empty(1, x.shape[1], hidden_size)


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

    def lstm_node(x, w, r, b, sequence_lens, hidden_size):
        return onnx_op.LSTM(x, w, r, b, sequence_lens, hidden_size=hidden_size)

    return {torch.ops.tfn.lrn.default: lrn_node, torch.ops.tfn.resize.default: resize_node, torch.ops.tfn.lstm.default: lstm_node}


def as_kernel(name: str, node, *args) -> Kernel:
    """A kernel (xs, v, training) that calls custom op `node` on its one input with `args`."""

    def kernel(xs, v, training):
        return node(xs[0], *args)

    kernel.__name__ = name
    return kernel
