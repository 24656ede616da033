"""Param initializers: the one table of the language's `init` values -- each name with its
arguments, their defaults, a check of their values and the sampler that draws the array.

The elaborator validates an initializer against this table when it checks a program
(`resolve`), and the runtime draws each param's first values from it (`initialize`), so a new
initializer is one entry here (and a row in docs/language.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from netc.dsl import ast as A
from netc.dsl.diagnostics import did_you_mean

from .values import InitSpec


def fans(shape):
    """(fan_in, fan_out) as PyTorch computes them: W[out, in, *kernel]."""
    if len(shape) < 2:
        n = shape[0] if shape else 1
        return n, n
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


@dataclass(frozen=True)
class Initializer:
    """One initializer. `params`: its arguments in order, each (name, default), None for a
    required one. `sample(args, shape, rng)` draws a float64 array of `shape` from the full
    argument tuple. `check(args)` returns what is wrong with valid-looking numbers, or None.
    `example` is shown when a required argument is missing."""
    name: str
    params: Tuple[Tuple[str, Optional[float]], ...]
    sample: Callable[[tuple, tuple, np.random.Generator], np.ndarray]
    example: str = ""
    check: Optional[Callable[[tuple], Optional[str]]] = None


def _glorot(args, shape, rng):           # Glorot/Xavier uniform, Keras' default
    fan_in, fan_out = fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


def _glorot_normal(args, shape, rng):
    fan_in, fan_out = fans(shape)
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), shape)


def _he(args, shape, rng):               # He/Kaiming uniform for ReLU layers
    fan_in, _ = fans(shape)
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, shape)


def _he_normal(args, shape, rng):
    fan_in, _ = fans(shape)
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)


def _normal_check(args):
    return f"the standard deviation of normal must be positive, got {args[1]:g}" if args[1] <= 0 else None


def _uniform_check(args):
    return None if args[0] < args[1] else f"uniform(low, high) needs low < high, got {args[0]:g} and {args[1]:g}"


# the initializers a program may name, in the order messages list them
INITIALIZERS: Dict[str, Initializer] = {i.name: i for i in [
    Initializer("zeros", (), lambda args, shape, rng: np.zeros(shape)),
    Initializer("ones", (), lambda args, shape, rng: np.ones(shape)),
    Initializer("normal", (("mean", 0.0), ("std", None)), lambda args, shape, rng: rng.normal(args[0], args[1], shape),
                "normal(0, 0.1)", _normal_check),
    Initializer("uniform", (("low", None), ("high", None)),
                lambda args, shape, rng: rng.uniform(args[0], args[1], shape), "uniform(-0.1, 0.1)", _uniform_check),
    Initializer("glorot", (), _glorot),
    Initializer("glorot_normal", (), _glorot_normal),
    Initializer("he", (), _he),
    Initializer("he_normal", (), _he_normal),
]}

# a number written as the initializer (`param b[3] = 0.5`): every element equals it; 0 is `zeros`
CONSTANT = Initializer("const", (("value", None),), lambda args, shape, rng: np.full(shape, float(args[0])))


class _InDtype:
    """The generator as a sampler sees it, drawing `uniform` and `normal` into an array of the
    model's dtype a million values at a time: the same numbers (and the same generator state
    after) as one float64 draw cast to the dtype -- NumPy draws them value by value -- without
    a float64 array of the whole param. Everything else is the generator's own."""
    CHUNK = 1 << 20

    def __init__(self, rng: np.random.Generator, dtype):
        self._rng, self._dtype = rng, np.dtype(dtype)

    def __getattr__(self, name):
        return getattr(self._rng, name)

    def _fill(self, method, a, b, size):
        if size is None or not (np.isscalar(a) and np.isscalar(b)):
            return getattr(self._rng, method)(a, b, size)
        out = np.empty(size, self._dtype)
        flat = out.reshape(-1)
        for i in range(0, flat.size, self.CHUNK):
            n = min(self.CHUNK, flat.size - i)
            flat[i:i + n] = getattr(self._rng, method)(a, b, n)
        return out

    def uniform(self, low=0.0, high=1.0, size=None):
        return self._fill("uniform", low, high, size)

    def normal(self, loc=0.0, scale=1.0, size=None):
        return self._fill("normal", loc, scale, size)


def initialize(kind: str, args, shape, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """An array of `shape` and `dtype` drawn by initializer `kind` (see docs/language.md):
    the values of a float64 draw, cast; drawn in chunks, so a float32 param never exists in
    float64 as a whole."""
    init = CONSTANT if kind == CONSTANT.name else INITIALIZERS.get(kind)
    if init is None:
        raise ValueError(f"unknown initializer {kind}")
    return np.ascontiguousarray(init.sample(args, shape, _InDtype(rng, dtype)), dtype)


def constant(value: float) -> InitSpec:
    """The initializer of a number."""
    return InitSpec("zeros") if value == 0 else InitSpec(CONSTANT.name, (float(value),))


def resolve(name: Optional[str], where: A.Span, call: Optional[A.Call], span: A.Span,
            number: Callable[[A.Expr], float], error: Callable[..., None]) -> InitSpec:
    """Check an initializer written by `name` (at `where`; None when the expression names no
    initializer), as a call `call` or a bare name, against the table. `number(expr)` evaluates
    an argument to a number; `error(span, message, hint)` reports a mistake and does not return.
    Arguments are evaluated and checked in the order they are written."""
    if name not in INITIALIZERS:
        shown = f"'{name}'" if name is not None else "this expression"
        error(where, f"unknown initializer {shown}",
              did_you_mean(str(name), INITIALIZERS) or "one of: " + ", ".join(INITIALIZERS) + ", or a number")
    init = INITIALIZERS[name]
    want = init.params
    names = [k for k, _ in want]
    given: Dict[str, float] = {}
    if call is not None:
        if len(call.args) > len(want):
            error(call.args[len(want)].span,
                  f"initializer '{name}' takes {len(want)} argument{'s' if len(want) != 1 else ''}"
                  + (f" ({', '.join(names)})" if want else "") + f", got {len(call.args)}")
        given = {k: number(a) for k, a in zip(names, call.args)}
        for kw in call.kwargs:
            if kw.name not in names:
                error(kw.span, f"unknown argument '{kw.name}' of initializer '{name}'",
                      did_you_mean(kw.name, names) or ("allowed: " + ", ".join(names) if names
                                                       else f"'{name}' takes no arguments"))
            if kw.name in given:
                error(kw.span, f"argument '{kw.name}' of initializer '{name}' is given twice")
            given[kw.name] = number(kw.value)
    missing = [k for k, d in want if k not in given and d is None]
    if missing:
        error(span, f"initializer '{name}' needs {' and '.join(repr(k) for k in missing)}",
              f"write e.g. `{init.example}`")
    args = tuple(float(given.get(k, d)) for k, d in want)
    if not all(math.isfinite(a) for a in args):
        error(span, f"the arguments of initializer '{name}' must be finite numbers")
    problem = init.check(args) if init.check else None
    if problem:
        error(span, problem)
    return InitSpec(name, args)
