"""Shapes of batched values: the symbolic batch axis `B`, how a shape is shown to the user,
and the error a shape rule raises. Shared by the IR (`ir`) and the op registry (`ops`)."""
from __future__ import annotations

from typing import Any, Tuple

B = "B"                      # the symbolic batch axis

Shape = Tuple[Any, ...]


def is_batched(shape: Shape) -> bool:
    return len(shape) > 0 and shape[0] == B


def per_sample(shape: Shape) -> Shape:
    """The shape a user sees: without the batch axis."""
    return tuple(shape[1:]) if is_batched(shape) else tuple(shape)


def fmt_shape(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in per_sample(shape)) + "]" if shape else "[] (a scalar)"


class ShapeError(Exception):
    """Raised by shape rules; the compiler turns it into a located diagnostic."""
