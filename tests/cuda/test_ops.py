"""Every op of the registry, from its own table of cases: its CUDA lowering (a fused kernel or
a hand-written one) equals its NumPy reference, on the CUDA simulator. All cases go into ONE
generated module; and every op must have a CUDA lowering, so an op added to the registry
fails here until it is lowered."""
import numpy as np
import pytest

from netc.compiler import cache
from netc.compiler.ops import REGISTRY

BATCH = 3
CASES = [(name, i) for name, op in sorted(REGISTRY.items()) for i in range(len(op.cases))]


def test_every_op_has_a_cuda_lowering():
    from netc.compiler.backend.cuda.lowering import LOWERINGS
    missing = sorted(set(REGISTRY) - set(LOWERINGS))
    assert not missing, f"ops without a CUDA lowering (add them to backend/cuda/lowering.py): {missing}"


@pytest.fixture(scope="module")
def module_and_cases(op_case_graph):
    from netc.compiler.backend.cuda import codegen
    G, fns, expected = op_case_graph
    source = codegen.generate(G, fns, "float64", "registry test")
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
