"""compiler/summary.py's FLOPs table covers the registry, and its counts are linear in the batch."""
import pytest

from netc.compiler.ir import Graph
from netc.compiler.ops import REGISTRY
from netc.compiler.summary import FLOPS, flops, node_flops


def test_every_registry_op_has_a_flops_rule():
    assert sorted(op for op, spec in REGISTRY.items() if not spec.elementwise and op not in FLOPS) == []


@pytest.mark.parametrize("op", sorted(REGISTRY))
def test_flops_of_each_case_are_whole_nonnegative_and_linear_in_the_batch(op):
    for case in REGISTRY[op].cases:
        G = Graph()
        ins = [G.leaf("input", f"a{k}", s, dtype="int" if case.is_int(k) else "float") for k, s in enumerate(case.shapes)]
        n = G.add(op, ins, case.attrs)
        counts = [node_flops(G, n, b) for b in (1, 2, 3)]
        assert all(isinstance(c, int) and c >= 0 for c in counts)
        assert counts[2] - counts[1] == counts[1] - counts[0], (op, case, counts)
        assert flops(G, [n]) == (counts[1] - counts[0], 2 * counts[0] - counts[1])


def test_a_dense_layer_counts_two_flops_per_multiply_add():
    G = Graph()
    x = G.leaf("input", "x", ("B", 64))
    W = G.leaf("param", "W", (10, 64))
    m = G.add("matmul", [x, W], {"tb": True})
    assert flops(G, [m]) == (2 * 64 * 10, 0)
    g = G.leaf("input", "g", ("B", 10))
    dW = G.add("matmul", [g, x], {"ta": True})       # the weight gradient: contracted over the batch
    assert flops(G, [dW]) == (2 * 64 * 10, 0)
