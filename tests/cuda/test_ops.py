"""Every op of the registry, from its own table of cases: its CUDA lowering (a fused kernel or
a hand-written one) equals its NumPy reference, on the CUDA simulator. All cases go into ONE
generated module; and every op must have a CUDA lowering, so an op added to the registry
fails here until it is lowered."""
import numpy as np
import pytest

from netc.compiler import cache
from netc.compiler.codegen_cpu import Function
from netc.compiler.interp import evaluate
from netc.compiler.ir import B, Graph, verify
from netc.compiler.ops import REGISTRY

BATCH = 3
CASES = [(name, i) for name, op in sorted(REGISTRY.items()) for i in range(len(op.cases))]


def sample(shape, domain, rng):
    shape = tuple(BATCH if d == B else d for d in shape)
    domain = domain or "real"
    if domain.startswith("int:"):
        return rng.integers(0, int(domain[4:]), shape).astype(np.int64)
    x = np.asarray(rng.standard_normal(shape))
    if domain == "pos":
        return np.asarray(np.abs(x) + 0.5)
    if domain == "away0":
        return np.asarray(np.where(x >= 0, x + 0.3, x - 0.3))
    return x


def test_every_op_has_a_cuda_lowering():
    from netc.compiler.codegen_cuda import LOWERINGS
    missing = sorted(set(REGISTRY) - set(LOWERINGS))
    assert not missing, f"ops without a CUDA lowering (add them to codegen_cuda.LOWERINGS): {missing}"


@pytest.fixture(scope="module")
def module_and_cases():
    from netc.compiler import codegen_cuda
    rng = np.random.default_rng(0)
    G = Graph()
    fns, expected = [], {}
    for name, i in CASES:
        case = REGISTRY[name].cases[i]
        args, feeds = [], {}
        for k, shape in enumerate(case.shapes):
            dom = (case.domains or [None] * len(case.shapes))[k]
            leaf = G.leaf("input", f"{name}{i}_{k}", shape,
                          dtype="int" if dom and dom.startswith("int:") else "float")
            args.append(leaf)
            feeds[f"{name}{i}_{k}"] = sample(shape, dom, rng)
        n = G.add(name, args, case.attrs)
        fn = Function(f"k_{name}_{i}", args, returns=[n])
        fns.append(fn)
        expected[fn.name] = (feeds, evaluate(G, feeds, [n])[n], [G.node(a)["name"] for a in args])
    verify(G)
    source = codegen_cuda.generate(G, fns, "float64", "registry test")
    return cache.load_module(source), fns, expected


@pytest.mark.parametrize("name,i", CASES)
def test_cuda_lowering_matches_reference(module_and_cases, name, i):
    from numba import cuda
    module, fns, expected = module_and_cases
    feeds, want, order = expected[f"k_{name}_{i}"]
    args = [cuda.to_device(np.ascontiguousarray(feeds[k])) if np.ndim(feeds[k]) else np.float64(feeds[k])
            for k in order]
    got = getattr(module, f"k_{name}_{i}")(*args)
    got = got.copy_to_host() if hasattr(got, "copy_to_host") else np.asarray(got)
    np.testing.assert_allclose(got.reshape(np.shape(want)), want, rtol=1e-12, atol=1e-12,
                               err_msg=f"{name} case {i}")
