"""Residual: a skip connection around a block of layers, y = x + f(x).

The engine walks a model as a program of steps (see `curvlab.engine`): a Residual is the step
"remember x" (fork), its layers in turn, and "add what was remembered" (join). Backprop runs
the program backwards — the join hands its cotangent to both the block and the skip, the fork
adds the two back together — and the R-passes do the same with tangents, so no rule of a
Residual's own is needed. Its layers' parameters sit in place in the flat layout.
"""

from .base import Layer, describe

FORK, JOIN = "fork", "join"


class Residual(Layer):
    """x + f(x), f the given layers applied in turn; f must keep the feature shape. A block
    whose output is zero (e.g. a last Dense layer with zero weights) makes it the identity."""

    def __init__(self, layers):
        layers = list(layers)
        if not layers:
            raise ValueError("cl.Residual needs at least one layer: Residual([...]) computes "
                             "x + f(x) with f the layers in turn")
        for i, mod in enumerate(layers):
            if not isinstance(mod, Layer):
                raise TypeError(f"Residual: layer {i} is {type(mod).__name__} {mod!r}, not a "
                                "curvlab layer")
        self.layers = layers

    def clone(self):
        new = super().clone()
        new.layers = [mod.clone() for mod in self.layers]
        return new

    def program(self):
        """fork, the block's steps, join."""
        return [FORK] + [step for mod in self.layers for step in mod.program()] + [JOIN]

    def build(self, in_shape):
        shape = in_shape
        for i, mod in enumerate(self.layers):
            try:
                shape = mod.build(shape)
            except ValueError as e:
                raise ValueError(f"Residual layer {i}: {e}") from None
        if tuple(shape) != tuple(in_shape):
            raise ValueError(
                f"{self!r}: the block maps {describe(in_shape)} to {describe(shape)}, but x + f(x) "
                "needs f to keep the shape"
            )
        self.in_shape = self.out_shape = in_shape
        return in_shape

    def __repr__(self):
        return f"Residual({self.layers!r})"
