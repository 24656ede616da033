"""The passes one by one, on graphs only (no Numba compile): each leaves a graph the verifier
accepts, each does its rewrite, DCE leaves the predict graph without loss, target or
auxiliary head, fusion groups what it should, memory planning shares slots; `netc graph`'s DOT
tells forward, backward and update apart."""
import glob
import os

import pytest

from netc.compiler import passes as P
from netc.compiler.backend import cpu
from netc.compiler.backend.cpu import schedule
from netc.compiler.elaborate import elaborate
from netc.compiler.frontend import check
from netc.compiler.fuse import entry_roots
from netc.compiler.graphviz import to_dot
from netc.compiler.ir import Graph, verify
from netc.dsl import parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.net")))

MLP = """model mlp
input x[6]
target y: class[3]
h = relu(dense(x, 5))
p = softmax(dense(h, 3))
output p
loss cross_entropy(p, y)
optimizer sgd(lr=0.1, momentum=0.9)
"""


def graphs_of(source, disabled=(), file="<string>"):
    checked = check(parse(source, file), disabled, verify_each=True)
    graphs, rep2 = cpu.entry_graphs(checked)
    report = dict(checked.train.report)
    report.update(rep2)
    return checked.model, checked.train.graph, graphs, report


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_every_pass_leaves_a_verified_graph_on_the_examples(path):
    with open(path) as f:
        src = f.read()
    _, G, graphs, report = graphs_of(src, file=path)     # verify_each: the verifier ran after every pass
    assert set(report) == set(P.PASS_NAMES)
    for E in graphs.values():
        verify(E)


def test_pass_list_is_one_ordered_list_of_named_functions():
    assert P.PASS_NAMES == ["stabilize", "simplify", "fold_constants", "cse", "dce", "fuse", "memplan"]
    assert all(callable(f) and ph in ("forward", "train", "entry") for _, ph, f in P.PASSES)


def test_dce_predict_graph_has_no_loss_target_or_auxiliary_head():
    with open(os.path.join(ROOT, "examples", "digits.net")) as f:
        model, G, graphs, _ = graphs_of(f.read())
    pred = graphs["predict"]
    ops = {pred.op(n) for n in pred.g.nodes}
    names = {pred.node(n)["name"] for n in pred.g.nodes if pred.node(n)["name"]}
    assert "target" not in ops and "onehot" not in ops and "log_softmax" not in ops
    assert not any(k.startswith(("loss", "update")) for k in pred.outputs)
    assert not any(n.startswith("aux.") for n in names), names          # the auxiliary head is gone
    assert "x" in names and "p.dense.W" in names and any(n.startswith("h2.") for n in names)
    assert any(n.startswith("aux.") for n in (G.node(m)["name"] or "" for m in G.g.nodes))   # it was there
    # without dce the predict graph keeps everything
    _, _, kept, _ = graphs_of(open(os.path.join(ROOT, "examples", "digits.net")).read(), disabled=("dce",))
    assert "target" in {kept["predict"].op(n) for n in kept["predict"].g.nodes}


def test_stabilize_rewrites_the_three_patterns():
    src = ("model s\ninput x[2]\ntarget y: class[3]\nz = dense(x, 3)\np = softmax(z)\n"
           "loss a = cross_entropy(p, y)\nloss b = log(sum(exp(z)))\n"
           "q = sigmoid(sum(z))\nloss c = -log(q) - log(1 - q)\noptimizer sgd()\n")
    model = elaborate(parse(src))
    G = model.graph
    fired = P.stabilize(G)
    verify(G)
    ops = [G.op(n) for n in G.g.nodes]
    assert fired == 4
    assert "log_softmax" in ops and "logsumexp" in ops and ops.count("softplus") == 2
    assert not any(G.op(n) == "log" for n in G.topo(list(G.outputs.values()) or None))


def test_simplify_fold_and_cse_on_a_small_graph():
    G = Graph()
    x = G.leaf("input", "x", ("B", 3))
    one = G.const(1.0)
    a = G.add("mul", [x, one])                                    # x * 1 -> x
    c = G.add("add", [G.const(2.0), G.const(3.0)])                # 2 + 3 -> 5
    e1 = G.add("exp", [a])
    e2 = G.add("exp", [a])                                        # the same value twice
    out = G.add("mul", [G.add("add", [e1, e2]), c])
    G.outputs["out"] = out
    assert P.simplify(G) == 1
    assert P.fold_constants(G) == 1
    assert P.cse(G) == 1
    P.dce(G)
    verify(G)
    assert sorted(G.op(n) for n in G.g.nodes) == ["add", "const", "exp", "input", "mul"]
    assert [G.attrs(n)["value"] for n in G.g.nodes if G.op(n) == "const"] == [5.0]


def test_relu_gradient_mask_reads_relu_output():
    _, G, graphs, report = graphs_of(MLP)
    E = graphs["train_step"]
    masks = [n for n in E.g.nodes if E.op(n) == "greater"]
    assert masks and all(E.op(E.inputs(n)[0]) == "maximum" for n in masks if E.op(E.inputs(n)[1]) == "const")


def kernels(E):
    losses, returns, assigns = entry_roots(E)
    return schedule(E, losses + returns + [v for _, v in assigns], assigns)


def test_fusion_bias_activation_mask_and_whole_update_in_one_loop_each():
    _, G, graphs, report = graphs_of(MLP)
    E = graphs["train_step"]
    assert report["fuse"] > 0
    sched = E.memplan.schedule
    loops = [[E.op(n) for n in K.nodes] for K in sched.kernels if K.kind == "loop"]
    assert ["add", "maximum", "greater"] in loops or ["add", "maximum"] in loops           # bias + relu
    assert any("mul" in ops and "reduce_sum" in ops and "maximum" not in ops for ops in loops)  # mask * g, bias grad
    # the momentum update of each param: one loop writing the param and its state in place
    names = {E.node(n)["name"]: n for n in E.g.nodes if E.op(n) in ("param", "state")}
    for p in ("h.dense.W", "h.dense.b", "p.dense.W", "p.dense.b"):
        ks = {sched.kernel_of[v] for v, leaf in sched.inplace.items() if leaf in (names[p], names[p + ".momentum"])}
        assert len(ks) == 1, p
        assert sum(1 for v, leaf in sched.inplace.items() if sched.kernel_of[v] in ks) == 2
    # without the pass every elementwise op is its own loop
    _, _, off, _ = graphs_of(MLP, disabled=("fuse",))
    sched_off = off["train_step"].memplan.schedule
    assert sum(K.kind == "loop" for K in sched_off.kernels) > 2 * sum(K.kind == "loop" for K in sched.kernels)


def test_memplan_shares_slots_and_keeps_live_values_apart():
    _, G, graphs, report = graphs_of(MLP)
    E = graphs["train_step"]
    mp = E.memplan
    assert report["memplan"] > 0 and len(mp.slots) < len(mp.slot_of)
    sched = mp.schedule
    # two values in one slot never live at the same time
    pos = {n: sched.kernel_of[n] for n in mp.slot_of}
    last = {n: max([pos[n]] + [sched.kernel_of[u] for u in E.users(n) if u in sched.kernel_of]) for n in mp.slot_of}
    by_slot = {}
    for n, s in mp.slot_of.items():
        by_slot.setdefault(s, []).append(n)
    for s, vals in by_slot.items():
        vals.sort(key=lambda n: pos[n])
        for a, b in zip(vals, vals[1:]):
            assert last[a] <= pos[b], (s, a, b)
    _, _, off, _ = graphs_of(MLP, disabled=("memplan",))
    assert off["train_step"].memplan is None


def test_graph_dot_tells_forward_backward_update_apart():
    _, G, graphs, _ = graphs_of(MLP)
    dot = to_dot(graphs["train_step"], "mlp")
    assert dot.startswith('digraph "mlp"') and dot.rstrip().endswith("}")
    for phase in ("forward", "backward", "update", "param", "state"):
        assert f'class="{phase}"' in dot, phase
    assert "subgraph cluster_g" in dot                      # fused loops
    fills = {line.split('fillcolor="')[1][:7] for line in dot.splitlines() if 'class="forward"' in line}
    assert len(fills) == 1 and fills != {line.split('fillcolor="')[1][:7] for line in dot.splitlines()
                                          if 'class="backward"' in line}


def test_fusion_never_reads_a_reduction_of_its_own_loop():
    """expand(reduce_sum(e), like=e) must not join e's loop through `like`: the sum would be
    read before it is complete."""
    import numpy as np
    from netc.compiler.interp import evaluate
    from netc.compiler.ir import Graph
    from netc.compiler.shapes import B
    G = Graph()
    x = G.leaf("input", "x", (B, 3))
    e = G.add("exp", [x])
    s = G.add("reduce_sum", [e], {"axes": (1,)})
    out = G.add("mul", [e, G.add("expand", [s, e], {"axes": (1,)})])
    G.outputs["out"] = out
    cpu.fuse_elementwise(G)
    groups = {n: G.node(n).get("group") for n in (e, s, out)}
    expand = G.inputs(out)[1]
    assert G.node(expand).get("group") != groups[s], "expand joined the loop that computes its sum"
    X = np.random.default_rng(0).standard_normal((4, 3))
    want = np.exp(X) * np.exp(X).sum(1, keepdims=True)
    np.testing.assert_allclose(evaluate(G, {"x": X}, [out])[out], want)


def test_one_grouping_for_both_backends_follows_their_rules():
    """fuse.group is the CPU's and the CUDA backend's grouping: the CPU's rules end a loop with
    the reduction of its values; rules without sinks (CUDA: reductions are kernels of their
    own) keep it out. An operand read only for its shape (`like`) is no dependency where the
    rules say so: t and the product that reads it share a kernel although t is the shape of
    an expand the product reads through a reduction."""
    from netc.compiler import fuse
    from netc.compiler.backend.cuda.lowering import RULES as CUDA
    from netc.compiler.ir import Graph
    from netc.compiler.shapes import B
    G = Graph()
    x = G.leaf("input", "x", (B, 3))
    v = G.leaf("input", "v", (B,))
    t = G.add("tanh", [x])
    e1 = G.add("expand", [v, t], {"axes": (1,)})            # v over t's shape: reads only t's shape
    r = G.add("reduce_sum", [e1], {"axes": (1,)})
    e2 = G.add("expand", [G.add("neg", [r]), t], {"axes": (1,)})
    out = G.add("mul", [t, e2])
    G.outputs["out"] = out
    cpu_, merged = fuse.group(G, cpu.RULES, G.topo())
    assert cpu_[r] == cpu_[e1] and merged > 0                   # the sum accumulates in e1's loop
    assert cpu_[e2] != cpu_[r]                                  # ... and is not read in that loop
    gpu, _ = fuse.group(G, CUDA, fuse.needed_nodes(G, [out], CUDA))
    assert r not in gpu and gpu[t] == gpu[e2] == gpu[out]
    steps = fuse.steps(G, [out], CUDA)
    assert [st.kind for st in steps] == ["fused", "node", "fused", "fused"]
    assert [len(st.nodes) for st in fuse.steps(G, [out], CUDA, fuse=False) if st.kind == "fused"] == [1] * 5
