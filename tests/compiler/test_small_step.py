"""The raw train step on small shapes (issue 14.2): row kernels over one operand share one pass,
and the train step's caller hands out a fresh output without allocating one when the last is
no longer referenced -- never one that a caller still holds."""
import numpy as np
import pytest

import netc
from netc.compiler import cache
from netc.compiler.backend.cpu import schedule
from netc.compiler.backend.cpu.codegen import generate
from netc.compiler.fuse import entry_roots
from netc.compiler.interp import evaluate
from netc.compiler.ir import Graph, verify
from netc.compiler.shapes import B
from netc.compiler.traingraph import Function

SMALL = """model small
input x[2]
target y: class[2]
h1 = relu(dense(x, 16))
p = softmax(dense(h1, 2))
loss cross_entropy(p, y)
output p
optimizer sgd(lr=0.01, momentum=0.9)
"""


@pytest.fixture(scope="module")
def small():
    m = netc.compile(SMALL, seed=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 2)).astype(np.float32)
    y = rng.integers(0, 2, 32)
    return m, X, y


def test_softmax_and_the_losss_log_softmax_share_one_pass_over_the_rows(small):
    m, _, _ = small
    E = m.artifact.entries["train_step"]
    rows = [[E.op(n) for n in K.nodes] for K in E.memplan.schedule.kernels if K.kind == "rows"]
    assert rows == [["softmax", "log_softmax"]]
    src = m.artifact.source
    body = src[src.index("def train_step("):src.index("\n\n", src.index("def train_step("))]
    assert body.count("np.exp(") == 1                  # the exps of a row are taken once


def test_row_kernels_of_one_operand_in_one_pass_match_the_reference():
    """softmax, log_softmax and logsumexp of the same rows: one kernel, each its own values;
    a softmax of other rows stays a kernel of its own."""
    G = Graph()
    x = G.leaf("input", "x", (B, 5))
    z = G.leaf("input", "z", (B, 5))
    outs = [G.add("softmax", [x]), G.add("log_softmax", [x]), G.add("logsumexp", [x], {"axes": (1,)}),
            G.add("softmax", [z])]
    verify(G)
    sched = schedule(G, outs, [])
    kinds = [(K.kind, [G.op(n) for n in K.nodes]) for K in sched.kernels]
    assert ("rows", ["softmax", "log_softmax", "logsumexp"]) in kinds and ("rows", ["softmax"]) in kinds
    fn = Function("rows", [x, z], returns=outs)
    module = cache.load_module(generate(G, [fn], "float64", "row kernels test"))
    rng = np.random.default_rng(1)
    X, Z = rng.standard_normal((4, 5)) * 3, rng.standard_normal((4, 5))
    want = evaluate(G, {"x": X, "z": Z}, outs)
    for got, n in zip(module.rows(X, Z), outs):
        np.testing.assert_allclose(got, want[n], rtol=1e-12, atol=1e-12, err_msg=G.op(n))


def test_a_kept_output_is_never_written_again(small):
    m, X, y = small
    step = m.artifact.train_step
    params, states, losses = m.param_arrays(), m.state_arrays(), np.zeros(1)
    kept, copies = [], []
    for i in range(6):
        out = step(X, y, np.float32(0.1), np.float32(i + 1), params, states, losses)
        if i % 2 == 0:                  # keep every other one, and a view of another
            kept.append(out)
            copies.append(out.copy())
        elif i == 3:
            kept.append(out[:5])
            copies.append(out[:5].copy())
    for k, c in zip(kept, copies):
        np.testing.assert_array_equal(k, c)
    for a in range(len(kept)):
        for b in range(a + 1, len(kept)):
            assert not np.shares_memory(kept[a], kept[b])


def test_a_dropped_output_is_written_again_instead_of_allocating(small):
    m, X, y = small
    step = m.artifact.train_step
    params, states, losses = m.param_arrays(), m.state_arrays(), np.zeros(1)
    addr = step(X, y, np.float32(0.1), np.float32(1), params, states, losses).ctypes.data
    again = step(X, y, np.float32(0.1), np.float32(2), params, states, losses)
    assert again.ctypes.data == addr
    mine = np.empty_like(again)
    assert step(X, y, np.float32(0.1), np.float32(3), params, states, losses, mine) is mine
