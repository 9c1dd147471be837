"""Static checks of an exported ONNX graph for constructs TensorRT rejects or builds badly.

Public TensorRT ports of SAM stumble on two things that this module finds:
ops TensorRT's parser does not take (``repeat_interleave`` exports as OneHot +
Tile) and shapes computed from an input's *values* (the official decoder
resizes to ``orig_im_size``, a float input), which make the output shape
data-dependent.
"""

from __future__ import annotations

from typing import Any

UNSUPPORTED_OPS = frozenset({"OneHot", "Tile", "NonZero", "Loop", "If", "Scan"})
"""Ops that TensorRT rejects or that make shapes data-dependent; none is needed by SAM."""

SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Slice": (1, 2, 3, 4),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
    "Pad": (1, 3),
    "OneHot": (1,),
    "TopK": (1,),
    "Split": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
}
"""Per op, the operand positions that give a shape, sizes, axes or counts rather than data."""

_SHAPE_READERS = frozenset({"Shape", "Size"})


def tensorrt_hazards(model: Any) -> list[str]:
    """Describe every TensorRT hazard in an ``onnx.ModelProto``; an empty list means none was found.

    Reports each node whose op is in :data:`UNSUPPORTED_OPS`, and each shape
    operand (see :data:`SHAPE_OPERANDS`) computed from the values of a graph
    input. Dimensions read with Shape/Size do not count: a dynamic batch axis
    is fine, a shape built from ``orig_im_size``'s numbers is not.
    """
    graph = model.graph
    value_sources: dict[str, set[str]] = {value.name: {value.name} for value in graph.input}
    hazards = []
    for node in graph.node:
        name = node.name or node.output[0]
        if node.op_type in UNSUPPORTED_OPS:
            hazards.append(f"node {name!r} is a {node.op_type}, which TensorRT does not take")
        for position in SHAPE_OPERANDS.get(node.op_type, ()):
            if position < len(node.input) and value_sources.get(node.input[position]):
                inputs = sorted(value_sources[node.input[position]])
                hazards.append(
                    f"operand {position} of {node.op_type} node {name!r} is a shape computed from the values of "
                    f"input(s) {inputs}"
                )
        if node.op_type in _SHAPE_READERS:
            continue
        sources = set().union(*(value_sources.get(operand, set()) for operand in node.input))
        if sources:
            for output in node.output:
                value_sources[output] = sources
    return hazards
