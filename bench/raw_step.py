"""netc's raw train step against the hand-fused Numba step (../shared/bench/numba_ref.py), in ONE
process, interleaved round by round, best round of each (issue 14.2).

    python bench/raw_step.py [small|mnist|wide] [--steps N] [--rounds R] [--wall]

Times per step: `netc` is `m.artifact.train_step` looked up after its first call (what a user's
loop calls), `netc-bound` the method bound before the first call (bench/run.py now takes it after),
`hand-fused` numba_ref's step2/step3. Thread CPU time by default (a process that shares its
cores is not charged for the time it waits), `--wall` for wall-clock time (use it for mnist:
BLAS's own threads are not the caller's CPU time)."""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import PEERS_DIR, _netc_model  # noqa: E402

sys.path.insert(0, os.path.abspath(PEERS_DIR))
import numba_ref  # noqa: E402
import peers  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config", nargs="?", default="small", choices=["small", "mnist", "wide"])
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--wall", action="store_true")
    a = ap.parse_args()
    clock = time.perf_counter if a.wall else time.thread_time
    c = peers.CFG[a.config]
    sizes, batch = c["sizes"], c["batch"]
    steps = a.steps or {"small": 5000, "mnist": 100, "wide": 10}[a.config]
    X, y = peers.data(sizes, batch)
    nb = len(X) // batch
    xs = [np.ascontiguousarray(X[j * batch:(j + 1) * batch]) for j in range(nb)]
    ts = [np.ascontiguousarray(y[j * batch:(j + 1) * batch], np.int64) for j in range(nb)]
    lr, mom = np.float32(0.01), np.float32(0.9)
    step_no = [np.float32(i + 1) for i in range(1024)]

    m = _netc_model(peers, a.config, sizes)
    params, states, losses = m.param_arrays(), m.state_arrays(), np.zeros(len(m.loss_names))
    bound = m.artifact.train_step                       # bound before the first call
    bound(xs[0], ts[0], lr, step_no[0], params, states, losses)
    after = m.artifact.train_step                       # looked up after it
    Ws, bs = peers.init(sizes)
    vs, vbs = [np.zeros_like(w) for w in Ws], [np.zeros_like(b) for b in bs]
    hand = numba_ref.step2 if len(Ws) == 2 else numba_ref.step3
    hand_args = [v for k in range(len(Ws)) for v in (Ws[k], bs[k])] + \
        [v for k in range(len(Ws)) for v in (vs[k], vbs[k])]

    def netc_loop(fn):
        def run(n):
            t = clock()
            for i in range(n):
                j = i % nb
                fn(xs[j], ts[j], lr, step_no[i & 1023], params, states, losses)
            return clock() - t
        return run

    def hand_loop(n):
        t = clock()
        for i in range(n):
            j = i % nb
            hand(xs[j], ts[j], *hand_args, lr, mom)
        return clock() - t

    runs = {"netc": netc_loop(after), "netc-bound": netc_loop(bound), "hand-fused": hand_loop}
    for f in runs.values():
        f(max(1, steps // 20))
    best = {k: float("inf") for k in runs}
    for _ in range(a.rounds):
        for k, f in runs.items():
            best[k] = min(best[k], f(steps) / steps)
    for k, v in best.items():
        print(f"{a.config:6s} {k:11s} {v * 1e6:9.2f} us/step  {batch / v:12.0f} samples/s  "
              f"{best['hand-fused'] / v:6.3f}x the hand-fused step")


if __name__ == "__main__":
    main()
