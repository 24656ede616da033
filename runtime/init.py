"""Param initializers (host side, seeded): the names of the language's `init` arguments."""
from __future__ import annotations

import numpy as np


def fans(shape):
    """(fan_in, fan_out) as PyTorch computes them: W[out, in, *kernel]."""
    if len(shape) < 2:
        n = shape[0] if shape else 1
        return n, n
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def initialize(kind: str, args, shape, rng: np.random.Generator) -> np.ndarray:
    """A float64 array of `shape` drawn by initializer `kind` (see docs/language.md)."""
    fan_in, fan_out = fans(shape)
    if kind == "zeros":
        return np.zeros(shape)
    if kind == "ones":
        return np.ones(shape)
    if kind == "const":
        return np.full(shape, float(args[0]))
    if kind == "normal":
        return rng.normal(args[0], args[1], shape)
    if kind == "uniform":
        return rng.uniform(args[0], args[1], shape)
    if kind == "glorot":           # Glorot/Xavier uniform, Keras' default
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape)
    if kind == "glorot_normal":
        return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), shape)
    if kind == "he":               # He/Kaiming uniform for ReLU layers
        limit = np.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, shape)
    if kind == "he_normal":
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    raise ValueError(f"unknown initializer {kind}")
