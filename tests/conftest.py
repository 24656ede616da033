"""Fixtures shared across the suite."""
import numpy as np
import pytest

from netc.compiler.interp import evaluate
from netc.compiler.ir import Graph, verify
from netc.compiler.ops import REGISTRY
from netc.compiler.traingraph import Function

# every (op, case) of the registry: the backends' kernel tests are parametrized over it
OP_CASES = [(name, i) for name, op in sorted(REGISTRY.items()) for i in range(len(op.cases))]


@pytest.fixture(scope="session")
def op_case_graph():
    """One graph holding every op case of the registry, each as an entry point `k_OP_I` with
    its own inputs, so that a backend compiles them all as ONE module (a compile per case would
    be slow). Returns (graph, functions, {entry: (feeds, reference value, argument order)})."""
    rng = np.random.default_rng(0)
    G = Graph()
    fns, expected = [], {}
    for name, i in OP_CASES:
        case = REGISTRY[name].cases[i]
        args, feeds = [], {}
        for k, shape in enumerate(case.shapes):
            leaf = G.leaf("input", f"{name}{i}_{k}", shape, dtype="int" if case.is_int(k) else "float")
            args.append(leaf)
            feeds[f"{name}{i}_{k}"] = case.sample(k, rng)
        n = G.add(name, args, case.attrs)
        fn = Function(f"k_{name}_{i}", args, returns=[n])
        fns.append(fn)
        expected[fn.name] = (feeds, evaluate(G, feeds, [n])[n], [G.node(a)["name"] for a in args])
    verify(G)
    return G, fns, expected
