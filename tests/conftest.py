"""Fixtures shared across the suite."""
import os
import subprocess
import sys
import textwrap

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


# ------------------------------------------------------------ PyTorch twins (skip without torch)
@pytest.fixture(scope="session")
def bn_torch():
    """bn_torch(params, prefix, C, momentum, eps, nd): a float64 torch BatchNorm1d (nd=1) or
    BatchNorm2d (nd=2) holding netc's `PREFIX.gamma` / `PREFIX.beta` from `params`."""
    torch = pytest.importorskip("torch")

    def make(p, prefix, C, momentum, eps, nd):
        bn = (torch.nn.BatchNorm1d if nd == 1 else torch.nn.BatchNorm2d)(C, eps=eps, momentum=momentum).double()
        with torch.no_grad():
            bn.weight.copy_(torch.tensor(p[f"{prefix}.gamma"]))
            bn.bias.copy_(torch.tensor(p[f"{prefix}.beta"]))
        return bn
    return make


@pytest.fixture(scope="session")
def check_bn_state():
    """check_bn_state(model, prefix, bn): netc's running statistics, gamma and beta under
    PREFIX equal the torch BatchNorm's within 1e-6."""
    def check(model, prefix, bn):
        for ours, theirs in (("running_mean", bn.running_mean), ("running_var", bn.running_var),
                             ("gamma", bn.weight), ("beta", bn.bias)):
            np.testing.assert_allclose(model.params[f"{prefix}.{ours}"], theirs.detach().numpy(),
                                       rtol=1e-6, atol=1e-6, err_msg=f"{prefix}.{ours}")
    return check


NRT_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["NUMBA_NRT_STATS"] = "1"
    import numpy as np, numba
    from numba.core.runtime import rtsys
    import netc
    m = netc.compile(os.environ["NRT_MODEL"], disabled_passes=sys.argv[1:])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16,) + tuple(m.ir.input_shape)).astype(np.float32)
    t = m.ir.target
    y = rng.integers(0, t.classes, 16) if t.kind == "class" else \\
        rng.standard_normal((16,) + tuple(t.shape)).astype(np.float32)
    params, states = m.param_arrays(), m.state_arrays()
    losses = np.zeros(len(m.loss_names))
    step = m.artifact.train_step
    for i in range(3):
        step(X, y, np.float32(0.1), np.float32(i + 1), params, states, losses)
    # what unboxing the same arguments costs: a function that does nothing with them
    fn = m.artifact.module.train_step
    nargs = fn.nopython_signatures[0].args
    noop = numba.njit(lambda *a: None)
    args = [X, y, np.float32(0.1), np.float32(4)] + params + states + [losses]
    E = m.artifact.entries["train_step"]
    out = np.empty((16,) + tuple(E.shape(E.outputs["output"])[1:]), np.float32)
    if len(nargs) > len(args):                      # out, arena
        args += [out, np.empty(10, np.float32)][:len(nargs) - len(args)]
    noop(*args)
    def allocs(f, a, n=20):
        s0 = rtsys.get_allocation_stats()
        for i in range(n):
            f(*a)
        s1 = rtsys.get_allocation_stats()
        return (s1.alloc - s0.alloc) / n, (s1.mi_alloc - s0.mi_alloc) / n
    full = [X, y, np.float32(0.1), np.float32(5), params, states, losses]
    print((allocs(step, full), allocs(noop, args)))
""")


@pytest.fixture(scope="session")
def nrt_allocations():
    """nrt_allocations(model_source, disabled=()) -> ((allocations, MemInfos) per steady-state
    train step, the same for a do-nothing function of the same arguments), measured with
    Numba's NRT statistics in a fresh process (the model needs an `output`)."""
    def measure(model, disabled=()):
        r = subprocess.run([sys.executable, "-c", NRT_SCRIPT, *disabled], capture_output=True, text=True,
                           timeout=600, env=dict(os.environ, NUMBA_NRT_STATS="1", NRT_MODEL=model))
        assert r.returncode == 0, r.stderr
        return eval(r.stdout.strip().splitlines()[-1])
    return measure
