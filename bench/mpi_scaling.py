"""Data-parallel scaling on MPI: samples/s of bench/run.py's `mnist` and `wide` MLPs for 1 and 2
ranks with one thread each, the allreduce's share of a step, and what to expect across
machines on 10 and 100 Gbit/s links from the gradient buffer's size.

    python bench/mpi_scaling.py [mnist|wide|all] [--ranks 1,2] [--steps N] [--rounds R] [--json FILE]

1 rank is the single-process fused train step (what `netc train` runs without MPI); N > 1 ranks
run the data-parallel step of runtime/distributed.py (grad_step on each rank's share of the
global batch, one Allreduce of the gradient buffer, apply_step) under `mpiexec -n N`, every rank
with one BLAS thread (NETC_THREADS=1), on the same global batch as bench/run.py's config. Each
measurement is its own mpiexec launch; rounds are interleaved and the best is reported. Prints
a Markdown section for bench/RESULTS.md. A timed benchmark: run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import net_source  # noqa: E402  (bench/run.py: the peers' MLP as a .net program)

CONFIGS = {"mnist": dict(sizes=[784, 256, 128, 10], batch=128, steps=300),     # bench/run.py's
           "wide": dict(sizes=[784, 1024, 1024, 10], batch=256, steps=60)}
LINKS_GBIT = (10, 100)
LATENCY_S = 20e-6            # one message's latency on an ordinary TCP/Ethernet link, about


def worker(which: str, steps: int) -> dict:
    """In one rank (or the single process): time `steps` train steps on random data."""
    import numpy as np

    import netc
    from netc.runtime import distributed
    cfg = CONFIGS[which]
    sizes, B = cfg["sizes"], cfg["batch"]
    comm = distributed.setup()
    m = netc.compile(net_source(which, sizes))
    rng = np.random.default_rng(0)
    nb = 8
    X = rng.standard_normal((nb * B, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], nb * B).astype(np.int64)
    params, states = m.param_arrays(), m.state_arrays()
    art, lr = m.artifact, np.float32(0.01)
    losses = np.zeros(len(m.loss_names))
    warm = 5
    if comm is None:
        xs = [np.ascontiguousarray(X[j * B:(j + 1) * B]) for j in range(nb)]
        ys = [np.ascontiguousarray(y[j * B:(j + 1) * B]) for j in range(nb)]
        for i in range(warm + steps):
            if i == warm:
                t0 = time.perf_counter()
            art.train_step(xs[i % nb], ys[i % nb], lr, np.float32(i + 1), params, states, losses)
        total = time.perf_counter() - t0
        grad_n = sum(a.size for p, a in zip(m.ir.params, params) if p.trainable)
        return {"ranks": 1, "step_s": total / steps, "samples_per_s": B * steps / total, "allreduce_s": 0.0,
                "grad_numbers": grad_n, "grad_bytes": grad_n * 4, "threads": art.threads.get("threads")}
    from mpi4py import MPI              # optional dependency: only under mpiexec
    size, rank = comm.Get_size(), comm.Get_rank()
    off = distributed.shares(B, size)
    k = int(off[rank + 1] - off[rank])
    xs = [np.ascontiguousarray(X[j * B + off[rank]:j * B + off[rank + 1]]) for j in range(nb)]
    ys = [np.ascontiguousarray(y[j * B + off[rank]:j * B + off[rank + 1]]) for j in range(nb)]
    g = np.zeros(art.grad_size, np.float32)
    w = np.float32(k / B)
    t_red = 0.0
    for i in range(warm + steps):
        if i == warm:
            comm.Barrier()
            t0, t_red = time.perf_counter(), 0.0
        step = np.float32(i + 1)
        art.grad_step(xs[i % nb], ys[i % nb], step, params, g, losses)
        g *= w
        t1 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, g, op=MPI.SUM)
        t_red += time.perf_counter() - t1
        art.apply_step(lr, step, params, states, g)
    total = time.perf_counter() - t0
    # the allreduce alone (no compute to wait for): its cost on this machine's shared memory
    comm.Barrier()
    t1 = time.perf_counter()
    for _ in range(steps):
        comm.Allreduce(MPI.IN_PLACE, g, op=MPI.SUM)
    raw = (time.perf_counter() - t1) / steps
    worst = comm.allreduce(total, op=MPI.MAX)
    red = comm.allreduce(t_red, op=MPI.MAX)
    return {"ranks": size, "step_s": worst / steps, "samples_per_s": B * steps / worst,
            "allreduce_s": red / steps, "allreduce_alone_s": raw, "grad_numbers": int(g.size),
            "grad_bytes": int(g.nbytes), "threads": art.threads.get("threads")}


def measure(which: str, ranks: int, steps: int) -> dict:
    env = dict(os.environ, NETC_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", which, "--steps", str(steps)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
        cmd = [mpiexec, "-n", str(ranks)] + cmd
    else:
        for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_RANK"):
            env.pop(var, None)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{which} on {ranks} ranks failed:\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1])


def across_machines(grad_bytes: int, step_s: float, batch: int) -> str:
    """What a ring allreduce of the buffer costs over a link, against one step's compute."""
    out = []
    for n in (2, 4, 8):
        for gbit in LINKS_GBIT:
            bw = gbit * 1e9 / 8
            t = 2 * (n - 1) / n * grad_bytes / bw + 2 * (n - 1) * LATENCY_S
            compute = step_s / n            # each machine's share of the global batch (ideal split)
            eff = compute / (compute + t)
            out.append(f"{n} machines at {gbit} Gbit/s: allreduce {t * 1e3:.2f} ms per step against "
                       f"{compute * 1e3:.2f} ms of compute: {eff * n:.1f}x the one-machine throughput "
                       f"({batch * eff * n / step_s:,.0f} samples/s)")
    return "; ".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", nargs="?", default="all", choices=["mnist", "wide", "all"])
    ap.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default 1,2)")
    ap.add_argument("--steps", type=int, help="timed steps per measurement (default: bench/run.py's)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = worker(args.worker, args.steps or CONFIGS[args.worker]["steps"])
        from netc.runtime import distributed
        if distributed.is_root():
            print(json.dumps(res))
        return 0
    configs = list(CONFIGS) if args.which == "all" else [args.which]
    ranks = [int(r) for r in args.ranks.split(",")]
    best: dict = {}
    for _ in range(args.rounds):
        for which in configs:
            for n in ranks:
                res = measure(which, n, args.steps or CONFIGS[which]["steps"])
                key = (which, n)
                if key not in best or res["samples_per_s"] > best[key]["samples_per_s"]:
                    best[key] = res
    print("## Data parallel on MPI (bench/mpi_scaling.py)\n")
    print("One thread per rank (NETC_THREADS=1), the config's global batch split over the ranks; "
          "1 rank is the single-process fused step.\n")
    print("| config | ranks | samples/s | speed-up | step (ms) | allreduce (ms, share of step) | allreduce alone (ms) |")
    print("|---|---|---|---|---|---|---|")
    for which in configs:
        one = best.get((which, 1))
        for n in ranks:
            r = best[(which, n)]
            up = f"{r['samples_per_s'] / one['samples_per_s']:.2f}x" if one else "-"
            red = f"{r['allreduce_s'] * 1e3:.3f} ({100 * r['allreduce_s'] / r['step_s']:.0f} %)" if n > 1 else "-"
            alone = f"{r['allreduce_alone_s'] * 1e3:.3f}" if n > 1 else "-"
            print(f"| {which} | {n} | {r['samples_per_s']:,.0f} | {up} | {r['step_s'] * 1e3:.3f} | {red} | {alone} |")
    print()
    for which in configs:
        one = best.get((which, 1))
        if one is None:
            continue
        mb = one["grad_bytes"] / 1e6
        print(f"**Across machines, {which}** (gradient buffer {one['grad_numbers']:,} float32 = {mb:.2f} MB, "
              f"one step {one['step_s'] * 1e3:.2f} ms on one thread; a ring allreduce sends and receives "
              f"2(N-1)/N of the buffer per machine, plus {LATENCY_S * 1e6:.0f} us latency per message): "
              + across_machines(one["grad_bytes"], one["step_s"], CONFIGS[which]["batch"]) + ".\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{w}/{n}": r for (w, n), r in best.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
