"""Every op of the registry, from its own table of cases: the gradient built by its vjp rule
equals central finite differences (float64), and its generated CPU kernel equals its NumPy
reference. Registering an op is what gets it tested."""
import importlib
import inspect
import os
import zlib

import numpy as np
import pytest

from netc.compiler import backend, cache
from netc.compiler.autodiff import grad
from netc.compiler.backend.contract import CompiledModel, MissingLowering
from netc.compiler.backend.cpu import lowering as cpu_lowering
from netc.compiler.backend.cpu.codegen import generate
from netc.compiler.frontend import check, lower
from netc.compiler.interp import evaluate
from netc.compiler.ir import Graph, verify
from netc.compiler.shapes import B
from netc.compiler.ops import REGISTRY
from netc.compiler.traingraph import Function
from netc.dsl import parse

BATCH = 3
CASES = [(name, i) for name, op in sorted(REGISTRY.items()) for i in range(len(op.cases))]   # as conftest.OP_CASES


def build(name, case, rng):
    """A graph: leaf inputs -> the op. Returns (G, leaves, node, values)."""
    G = Graph()
    leaves, values = [], {}
    for k, shape in enumerate(case.shapes):
        leaves.append(G.leaf("input", f"a{k}", shape, dtype="int" if case.is_int(k) else "float"))
        values[f"a{k}"] = case.sample(k, rng, BATCH)
    n = G.add(name, leaves, case.attrs)
    verify(G)
    return G, leaves, n, values


@pytest.mark.parametrize("name,i", CASES)
def test_gradient_matches_finite_differences(name, i):
    op = REGISTRY[name]
    if op.vjp is None:
        pytest.skip(f"{name} is not differentiable (by design)")
    rng = np.random.default_rng(zlib.crc32(f"{name}/{i}".encode()))      # the same data every run
    G, leaves, n, values = build(name, op.cases[i], rng)
    shape = tuple(BATCH if d == B else d for d in G.shape(n))
    w = rng.standard_normal(shape)
    wn = G.leaf("input", "w", G.shape(n))
    prod = G.add("mul", [n, wn])
    axes = tuple(range(len(G.shape(prod))))
    loss = G.add("reduce_sum", [prod], {"axes": axes}) if axes else prod
    float_leaves = [l for l in leaves if G.node(l)["dtype"] == "float"]
    grads = grad(G, loss, float_leaves)
    verify(G)
    feeds = dict(values, w=w)
    got = evaluate(G, feeds, [grads[l] for l in float_leaves])
    for leaf in float_leaves:
        key = G.node(leaf)["name"]
        x = values[key]
        num = np.zeros_like(x, dtype=np.float64)
        h = 1e-6
        for idx in np.ndindex(x.shape):
            for sign in (1, -1):
                xp = x.copy()
                xp[idx] += sign * h
                val = evaluate(G, dict(feeds, **{key: xp}), [loss])[loss]
                num[idx] += sign * val / (2 * h)
        g = np.broadcast_to(got[grads[leaf]], x.shape)
        err = np.max(np.abs(g - num)) / max(1.0, np.max(np.abs(num)))
        assert err <= 1e-6, f"{name} case {i}: d/d{key} off by {err:.2e}\nvjp {g}\nfd {num}"


def test_cpu_kernels_match_reference(op_case_graph):
    """Every case's generated CPU kernel (all cases in ONE module) equals its reference."""
    G, fns, expected = op_case_graph
    module = cache.load_module(generate(G, fns, "float64", "registry test"))
    for fn in fns:
        feeds, want, order = expected[fn.name]
        got = getattr(module, fn.name)(*[feeds[k] for k in order])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=fn.name)


def test_every_op_has_cases_and_lowering():
    for name, op in REGISTRY.items():
        assert op.cases, f"{name} has no test cases"
        assert name in cpu_lowering.LOWERINGS, f"{name} has no CPU lowering"


EXAMPLE_XOR = open(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "xor.net")).read()


@pytest.mark.parametrize("backend_name", sorted(backend.BACKENDS))
def test_every_op_has_an_entry_in_each_backend_table(backend_name):
    """Registering an op is not enough: each backend's lowering table needs its entry."""
    table = importlib.import_module(backend.BACKENDS[backend_name] + ".lowering").LOWERINGS
    missing = sorted(set(REGISTRY) - set(table))
    assert not missing, f"ops without a {backend_name} lowering: {missing}"


@pytest.mark.parametrize("backend_name", sorted(backend.BACKENDS))
def test_a_missing_lowering_fails_loudly_naming_the_op_and_the_backend(backend_name):
    G = Graph()
    x = G.leaf("input", "x", (B, 3))
    n = G.add("frobnicate", [x], shape=(B, 3), dtype="float")       # in no table
    codegen = importlib.import_module(backend.BACKENDS[backend_name] + ".codegen")
    with pytest.raises(MissingLowering) as e:
        codegen.generate(G, [Function("f", [x], returns=[n])], "float64")
    assert (e.value.op, e.value.backend) == ("frobnicate", backend_name)
    assert "frobnicate" in str(e.value) and backend_name in str(e.value).lower()


def test_the_cpu_artifact_is_a_compiled_model():
    checked = check(parse(EXAMPLE_XOR, "xor.net"))
    art = lower(checked, "cpu", "float64")
    assert isinstance(art, CompiledModel)
    assert list(inspect.signature(art.train_step).parameters) == \
        ["x", "y", "lr", "step", "params", "states", "losses", "out"]
