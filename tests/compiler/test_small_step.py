"""The raw train step on small shapes (issue 14.2): row kernels over one operand share one pass,
and the train step's caller hands out a fresh output without allocating one when the last is
no longer referenced -- never one that a caller still holds."""
import numpy as np
import pytest

import netc
from netc.compiler import cache
from netc.compiler.backend.cpu import schedule
from netc.compiler.backend.cpu.codegen import generate
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


def test_small_products_are_computed_in_the_loop_that_reads_them(small):
    """The forward products and the one into the hidden layer's gradient (contraction 2 or 16)
    run inside their consumer's loop; the weight gradients (contraction: the batch) keep BLAS."""
    m, _, _ = small
    E = m.artifact.entries["train_step"]
    sched = E.memplan.schedule
    inlined = [n for K in sched.kernels if K.kind == "loop" for n in K.pre]
    assert len(inlined) == 3 and all(E.op(n) == "matmul" for n in inlined)
    blas = [K.node for K in sched.kernels if K.kind == "matmul"]
    assert len(blas) == 2 and all(E.attrs(n).get("ta") for n in blas)        # x^T g: over the batch
    assert not any(n in E.memplan.slot_of for n in inlined)                   # never stored
    src = m.artifact.source
    body = src[src.index("def train_step("):src.index("\n\n", src.index("def train_step("))]
    assert body.count("np.dot(") == 2


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_an_inlined_product_equals_the_reference(ta, tb):
    """A small product feeding a fused loop (and a reduction in it), every transpose flag; and
    one with a batch-long contraction, which stays a BLAS call."""
    from netc.compiler.backend import cpu
    G = Graph()
    a = G.leaf("input", "a", (3, B) if ta else (B, 3))
    w = G.leaf("input", "w", (4, 3) if tb else (3, 4))
    c = G.leaf("input", "c", (B, 4))
    p = G.add("matmul", [a, w], {"ta": ta, "tb": tb})
    h = G.add("maximum", [G.add("add", [p, c]), G.const(0.0)])
    s = G.add("reduce_sum", [h], {"axes": (0,)})
    g = G.add("matmul", [c, h], {"ta": True})              # [4, 4], contraction over the batch
    verify(G)
    cpu.fuse_elementwise(G)
    sched = schedule(G, [h, s, g], [])
    assert [n for K in sched.kernels for n in K.pre] == [p]
    assert [K.node for K in sched.kernels if K.kind == "matmul"] == [g]
    fn = Function("f", [a, w, c], returns=[h, s, g])
    module = cache.load_module(generate(G, [fn], "float64", "inlined product test"))
    rng = np.random.default_rng(2)
    feeds = {"a": rng.standard_normal((3, 5) if ta else (5, 3)), "w": rng.standard_normal((4, 3) if tb else (3, 4)),
             "c": rng.standard_normal((5, 4))}
    want = evaluate(G, feeds, [h, s, g])
    for got, n in zip(module.f(feeds["a"], feeds["w"], feeds["c"]), (h, s, g)):
        np.testing.assert_allclose(got, want[n], rtol=1e-12, atol=1e-12, err_msg=G.op(n))


def test_an_update_reading_its_param_through_an_inlined_product_is_not_written_in_place():
    """W <- W - W @ W: the loop computing the new W reads W at other indices (the product), so
    it must not overwrite W while it runs."""
    from netc.compiler.backend import cpu
    G = Graph()
    W = G.leaf("param", "W", (3, 3))
    v = G.add("sub", [W, G.add("matmul", [W, W])])
    verify(G)
    cpu.fuse_elementwise(G)
    sched = schedule(G, [v], [(W, v)])
    assert any(K.pre for K in sched.kernels) and v not in sched.inplace
    fn = Function("upd", [W], assigns=[(W, v)])
    module = cache.load_module(generate(G, [fn], "float64", "in-place test"))
    w = np.random.default_rng(3).standard_normal((3, 3))
    want = w - w @ w
    module.upd(w)
    np.testing.assert_allclose(w, want, rtol=1e-12, atol=1e-12)


SQUARE = """model square
input x[4]
target y: class[4]
h1 = relu(dense(x, 4))
h2 = tanh(dense(h1, 4))
p = softmax(dense(h2, 4))
loss cross_entropy(p, y)
output p
optimizer sgd(lr=0.1, momentum=0.9)
"""


def test_inlined_products_with_the_memory_plan_match_blas():
    """Layers of 4 units: every product but the weight gradients is computed in a loop over
    its own shape, whose operands of that shape the memory plan must not let the loop
    overwrite; the steps match the model compiled without fusion (BLAS products)."""
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((16, 4)), rng.integers(0, 4, 16)
    runs = []
    for disabled in ((), ("fuse",)):
        m = netc.compile(SQUARE, dtype="float64", seed=5, disabled_passes=disabled)
        E = m.artifact.entries["train_step"]
        inlined = [n for K in E.memplan.schedule.kernels for n in K.pre]
        assert (len(inlined) >= 4) == (not disabled)
        params, states, losses = m.param_arrays(), m.state_arrays(), np.zeros(1)
        outs = [m.artifact.train_step(X, y, 0.1, float(i + 1), params, states, losses).copy() for i in range(4)]
        outs.append(m.artifact.predict(X, params))          # a forward alone: operands die in the loops
        runs.append((outs, [p.copy() for p in params], losses.copy()))
    for a, b in zip(runs[0][0] + runs[0][1] + [runs[0][2]], runs[1][0] + runs[1][1] + [runs[1][2]]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
