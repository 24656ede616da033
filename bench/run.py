"""netc against its peers, interleaved in one run: MLP training throughput (samples/s) of the
raw step and of `fit` beside it, the compile time of the train step (cold and warm cache),
the whole-process time of `import netc` and `netc train examples/xor.net` (cold and warm
kernel cache), and peak memory.

    python bench/run.py [small|mnist|wide|all] [--rounds R] [--peers netc,netc-fit,numpy,torch,jax,numba]
                        [--steps N] [--no-compile] [--json FILE] [--peer-threads N]
    python bench/run.py lenet digits [--rounds R] [--steps N] [--peers netc,netc-fit,torch,torch-1t,jax,jax-1t]

The CNN configurations (`lenet`, `digits`: ../shared/bench/cnn_peers.py's models, weights and
data; netc runs the same layers as a .net program with the peers' weights set through
model.params) measure each peer twice, at its default thread count and with one thread
(`-1t`: on a busy machine PyTorch's default pool can be 30x slower than one thread), so each
is reported at its best setting.

--peer-threads N gives the peers N threads (by default they use their own defaults, which on
a busy machine oversubscribe the cores; netc picks its BLAS thread count itself).

The configurations, data, initial weights and peer implementations are those of
../shared/bench/peers.py and ../shared/bench/numba_ref.py (imported, not copied; set
NETC_PEERS_DIR to point elsewhere). Each measurement runs in its own subprocess (so peak
memory is that process's ru_maxrss and no peer warms another's caches), and the peers are
interleaved round by round; the best round of each is reported. netc is measured twice: the
raw `artifact.train_step` loop over pre-sliced batches (what the peers measure), and
`Model.fit` (the real training loop: batching, loss checks, per-epoch metrics).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS_DIR = os.environ.get("NETC_PEERS_DIR", os.path.join(ROOT, "..", "shared", "bench"))
ALL_PEERS = ["netc", "netc-fit", "numpy", "torch", "jax", "numba"]
CNN_CONFIGS = ["lenet", "digits"]
CNN_PEERS = ["netc", "netc-fit", "torch", "torch-1t", "jax", "jax-1t"]


def net_source(name: str, sizes) -> str:
    """The peers' MLP as a .net program: ReLU hidden layers, softmax cross-entropy, SGD momentum."""
    lines = [f"model {name}", f"input x[{sizes[0]}]", f"target y: class[{sizes[-1]}]"]
    prev = "x"
    for k, o in enumerate(sizes[1:-1]):
        lines.append(f"h{k + 1} = relu(dense({prev}, {o}))")
        prev = f"h{k + 1}"
    lines += [f"p = softmax(dense({prev}, {sizes[-1]}))", "loss cross_entropy(p, y)", "output p",
              "optimizer sgd(lr=0.01, momentum=0.9)"]
    return "\n".join(lines) + "\n"


def cnn_source(name: str, cfg) -> str:
    """cnn_peers.py's layers as a .net program: conv2d/relu/maxpool/flatten/dense, softmax
    cross-entropy, SGD lr 0.01 momentum 0.9 (the peers' update)."""
    c, h, w = cfg["input"]
    lines = [f"model {name}", f"input img[{c}, {h}, {w}]", "target y: class[10]"]
    expr = "img"
    for layer in cfg["layers"]:
        if layer[0] == "conv":
            expr = f"conv2d({expr}, {layer[1]}, {layer[2]}, pad={layer[3]})"
        elif layer[0] == "relu":
            expr = f"relu({expr})"
        elif layer[0] == "pool":
            expr = f"maxpool({expr}, {layer[1]})"
        elif layer[0] == "flatten":
            expr = f"flatten({expr})"
        elif layer[0] == "dense":
            expr = f"dense({expr}, {layer[1]})"
        if layer[0] in ("pool", "dense") and expr != "img":          # one definition per stage
            lines.append(f"h{len(lines)} = {expr}")
            expr = f"h{len(lines) - 1}"
    lines += [f"p = softmax({expr})", "loss cross_entropy(p, y)", "output p", "optimizer sgd(lr=0.01, momentum=0.9)"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- workers (one per subprocess)
def _peers():
    sys.path.insert(0, os.path.abspath(PEERS_DIR))
    import peers
    return peers


def _netc_model(peers, which, sizes):
    import netc
    m = netc.compile(net_source(which, sizes))
    Ws, bs = peers.init(sizes)
    names = list(m.params)
    for k in range(len(Ws)):               # dense k: W then b, in the order the layers are defined
        m.params[names[2 * k]] = Ws[k]
        m.params[names[2 * k + 1]] = bs[k]
    return m


def time_raw_steps(m, X, y, batch, steps, timeit):
    """(seconds, extra) of `steps` calls of the compiled train step over pre-sliced batches
    (what the peers time)."""
    import numpy as np
    nb = len(X) // batch
    xs = [np.ascontiguousarray(X[j * batch:(j + 1) * batch]) for j in range(nb)]
    ts = [np.ascontiguousarray(y[j * batch:(j + 1) * batch], np.int64) for j in range(nb)]
    params, states = m.param_arrays(), m.state_arrays()
    losses = np.zeros(len(m.loss_names))
    lr = np.float32(0.01)
    step_no = [np.float32(i + 1) for i in range(steps + 64)]
    # the step as a program holds it once the model has run (its first call compiles it and
    # puts the lean caller on the artifact; a method bound before that goes through _call)
    m.artifact.train_step(xs[0], ts[0], lr, step_no[0], [a.copy() for a in params], [a.copy() for a in states], losses)
    train_step = m.artifact.train_step

    def step(i):
        j = i % nb
        train_step(xs[j], ts[j], lr, step_no[i % len(step_no)], params, states, losses)
    return timeit(step, steps), {"loss": float(losses[0]), "threads": m.artifact.threads}


def time_fit(m, X, y, batch, steps):
    """Seconds `Model.fit` takes for `steps` steps (whole epochs, scaled), after a warm epoch."""
    nb = len(X) // batch
    epochs = max(1, steps // nb)
    m.fit(X, y, epochs=1, batch=batch, shuffle=False)             # warm: compile, buffers
    t = time.perf_counter()
    m.fit(X, y, epochs=epochs, batch=batch, shuffle=False)
    return (time.perf_counter() - t) * steps / (epochs * nb)


def work_netc(peers, which, sizes, batch, steps, X, y):
    return time_raw_steps(_netc_model(peers, which, sizes), X, y, batch, steps, peers.timeit)


def work_netc_fit(peers, which, sizes, batch, steps, X, y):
    return time_fit(_netc_model(peers, which, sizes), X, y, batch, steps), {}


def work_numpy(peers, which, sizes, batch, steps, X, y):
    return peers.bench_numpy(sizes, batch, steps, X, y), {}


def work_torch(peers, which, sizes, batch, steps, X, y):
    import torch
    return peers.bench_torch(sizes, batch, steps, X, y), {"threads": torch.get_num_threads()}


def work_jax(peers, which, sizes, batch, steps, X, y):
    return peers.bench_jax(sizes, batch, steps, X, y), {}


def work_numba(peers, which, sizes, batch, steps, X, y):
    import numpy as np
    import numba_ref as R
    Ws, bs = peers.init(sizes)
    nbt = len(X) // batch
    xs = [np.ascontiguousarray(X[j * batch:(j + 1) * batch]) for j in range(nbt)]
    ts = [y[j * batch:(j + 1) * batch].astype(np.int64) for j in range(nbt)]
    vs = [np.zeros_like(a) for a in Ws]
    vbs = [np.zeros_like(b) for b in bs]
    lr, mom = np.float32(0.01), np.float32(0.9)
    if len(Ws) == 2:
        f = lambda i: R.step2(xs[i % nbt], ts[i % nbt], Ws[0], bs[0], Ws[1], bs[1], vs[0], vbs[0], vs[1], vbs[1], lr, mom)
    else:
        f = lambda i: R.step3(xs[i % nbt], ts[i % nbt], Ws[0], bs[0], Ws[1], bs[1], Ws[2], bs[2],
                              vs[0], vbs[0], vs[1], vbs[1], vs[2], vbs[2], lr, mom)
    return peers.timeit(f, steps), {}


def work_compile(peers, which, sizes, batch, steps, X, y):
    """Compile time of the train step in this process: netc.compile + the first train_step
    call (where Numba compiles it, or loads it from its cache)."""
    import numpy as np
    t0 = time.perf_counter()
    import netc
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    m = netc.compile(net_source(which, sizes))
    t_compile = time.perf_counter() - t0
    xs, ts = np.ascontiguousarray(X[:batch]), np.ascontiguousarray(y[:batch], np.int64)
    t0 = time.perf_counter()
    m.artifact.train_step(xs, ts, np.float32(0.01), np.float32(1), m.param_arrays(), m.state_arrays(),
                          np.zeros(1))
    t_first = time.perf_counter() - t0
    # what `fit` compiles instead: the epoch loop with the step's body inside (not timed above)
    t_epoch = m.artifact.compile_epoch(X, y.astype(np.int64), batch, 0.01, m.param_arrays(), m.state_arrays())
    return t_compile + t_first, {"import_s": t_import, "compile_s": t_compile, "first_call_s": t_first,
                                 "epoch_compile_s": t_epoch, "timings": m.artifact.timings}


def _cnn_peers():
    sys.path.insert(0, os.path.abspath(PEERS_DIR))
    import cnn_peers
    return cnn_peers


def _netc_cnn(cp, which):
    import netc
    cfg = cp.CNN[which]
    m = netc.compile(cnn_source(which, cfg))
    Ws, bs = cp.init(cfg)
    names = list(m.params)
    assert len(names) == 2 * len(Ws), names
    for k in range(len(Ws)):               # layer k: W then b, in the order the layers are defined
        m.params[names[2 * k]] = Ws[k]
        m.params[names[2 * k + 1]] = bs[k]
    return m


def cnn_worker(peer: str, which: str, steps: int):
    """(seconds, extra) of one CNN measurement."""
    cp = _cnn_peers()
    cfg = cp.CNN[which]
    X, y = cp.data(cfg)
    batch = cfg["batch"]
    if peer.endswith("-1t"):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()
        import torch
        torch.set_num_threads(1)
    if peer in ("torch", "torch-1t"):
        import torch
        return cp.bench_torch(cfg, steps, X, y), {"threads": torch.get_num_threads()}
    if peer in ("jax", "jax-1t"):
        return cp.bench_jax(cfg, steps, X, y), {}
    m = _netc_cnn(cp, which)
    if peer == "netc-fit":
        return time_fit(m, X, y, batch, steps), {}
    return time_raw_steps(m, X, y, batch, steps, cp.timeit)


WORKERS = {"netc": work_netc, "netc-fit": work_netc_fit, "numpy": work_numpy, "torch": work_torch,
           "jax": work_jax, "numba": work_numba, "compile": work_compile}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def limit_peer_threads(n: int) -> None:
    """--peer-threads N: the peers get N threads too (BLAS, PyTorch intra-op, XLA)."""
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    import threadpoolctl
    threadpoolctl.threadpool_limits(n)
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass


def worker(peer: str, which: str, steps: int) -> None:
    if os.environ.get("NETC_BENCH_PEER_THREADS") and not peer.startswith("netc") and peer != "compile":
        limit_peer_threads(int(os.environ["NETC_BENCH_PEER_THREADS"]))
    if which in CNN_CONFIGS:
        seconds, extra = cnn_worker(peer, which, steps)
        batch = _cnn_peers().CNN[which]["batch"]
        print("RESULT " + json.dumps({"peer": peer, "config": which, "steps": steps, "seconds": seconds,
                                      "samples_per_s": steps * batch / seconds, "maxrss_mb": peak_rss_mb(),
                                      **extra}), flush=True)
        return
    peers = _peers()
    c = peers.CFG[which]
    sizes, batch = c["sizes"], c["batch"]
    X, y = peers.data(sizes, batch)
    seconds, extra = WORKERS[peer](peers, which, sizes, batch, steps, X, y)
    rss = peak_rss_mb()
    print("RESULT " + json.dumps({"peer": peer, "config": which, "steps": steps, "seconds": seconds,
                                  "samples_per_s": steps * batch / seconds, "maxrss_mb": rss, **extra}), flush=True)


# ---------------------------------------------------------------- driver
def run_worker(peer, which, steps, env=None, timeout=900):
    e = dict(os.environ, **(env or {}))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", peer, which, str(steps)],
                       capture_output=True, text=True, env=e, timeout=timeout)
    wall = time.perf_counter() - t0
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["process_wall_s"] = wall
            return res
    return {"peer": peer, "config": which, "error": (r.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def load() -> str:
    return "%.2f %.2f %.2f" % os.getloadavg()


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        keep = [l for l in lscpu.splitlines() if l.split(":")[0].strip() in
                ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "L2 cache", "L3 cache",
                 "Hypervisor vendor")]
    except OSError:
        keep = []
    import numba
    import numpy
    vers = f"python {sys.version.split()[0]}, numpy {numpy.__version__}, numba {numba.__version__}"
    for mod in ("torch", "jax"):
        try:
            vers += f", {mod} {__import__(mod).__version__}"
        except ImportError:
            vers += f", {mod} not installed"
    return "\n".join(keep + [f"versions: {vers}"])


def main(argv):
    if argv and argv[0] == "--worker":
        worker(argv[1], argv[2], int(argv[3]))
        return
    opt = lambda k, d: argv[argv.index(k) + 1] if k in argv else d
    named = []
    for k, a in enumerate(argv):
        if a.startswith("--"):
            break
        named.append(a)
    which = named[0] if named else "all"
    rounds = int(opt("--rounds", 2))
    cnn = bool(named) and all(n in CNN_CONFIGS for n in named)
    peer_list = opt("--peers", ",".join(CNN_PEERS if cnn else ALL_PEERS)).split(",")
    configs = ["small", "mnist", "wide"] if which == "all" else named
    peers = _peers()
    cnn_steps = {n: _cnn_peers().CNN[n]["steps"] for n in CNN_CONFIGS}
    print(machine())
    print(f"load average at start: {load()}\n", flush=True)
    report = {"machine": machine(), "results": {}, "compile": None}
    for cfg in configs:
        steps = int(opt("--steps", cnn_steps[cfg] if cfg in CNN_CONFIGS else peers.CFG[cfg]["steps"]))
        best = {}
        for r in range(rounds):
            for peer in peer_list:
                before = load()
                env = {"NETC_BENCH_PEER_THREADS": opt("--peer-threads", "")}
                res = run_worker(peer, cfg, steps, env=env)
                res["load_before"], res["load_after"] = before, load()
                if "error" in res:
                    print(f"{cfg:6s} {peer:9s} round {r + 1}: failed: {res['error']}", flush=True)
                    best.setdefault(peer, res)
                    continue
                print(f"{cfg:6s} {peer:9s} round {r + 1}: {res['samples_per_s']:12.0f} samples/s  "
                      f"peak {res['maxrss_mb']:6.0f} MB  load {before}", flush=True)
                if "samples_per_s" not in best.get(peer, {}) or res["samples_per_s"] > best[peer]["samples_per_s"]:
                    best[peer] = res
        report["results"][cfg] = best
        print_table(cfg, best)
    if "--no-compile" not in argv and not cnn:
        report["compile"] = compile_times()
        report["process"] = process_times()
    if "--json" in argv:
        with open(opt("--json", "bench/results.json"), "w") as f:
            json.dump(report, f, indent=1, default=str)


def print_table(cfg, best):
    """The raw step (`netc`) and `fit` (`netc-fit`) side by side against each peer."""
    rate = lambda p: best.get(p, {}).get("samples_per_s")
    n, f = rate("netc"), rate("netc-fit")
    print(f"\n{cfg}: samples/s (best of rounds), ratio netc step/peer, netc fit/peer, peak RSS")
    for peer, res in best.items():
        if "samples_per_s" not in res:
            print(f"  {peer:9s} failed: {res.get('error')}")
            continue
        ratio = f"{n / res['samples_per_s']:7.2f}x" if n and peer != "netc" else ""
        fratio = f"{f / res['samples_per_s']:7.2f}x" if f and peer != "netc-fit" else ""
        print(f"  {peer:9s} {res['samples_per_s']:12.0f}  step {ratio:9s} fit {fratio:9s} "
              f"{res['maxrss_mb']:6.0f} MB   load {res['load_before']}")
    print(flush=True)


def process_times():
    """What a user waits for, each a fresh process: `python -c "import netc"`, and `netc train
    examples/xor.net` (500 full-batch epochs, quiet) with a cold kernel cache, then warm."""
    xor = os.path.join(ROOT, "examples", "xor.net")
    out = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NETC_CACHE_DIR=os.path.join(d, "cache"))
        runs = [("import netc", [sys.executable, "-c", "import netc"])]
        runs += [(f"netc train xor.net, {kind} cache", [sys.executable, "-m", "netc.cli", "train", xor, "--quiet",
                                                         "--out", os.path.join(d, f"run-{kind}")])
                 for kind in ("cold", "warm")]
        for name, argv in runs:
            before = load()
            t0 = time.perf_counter()
            r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=d)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                print(f"{name}: failed: {(r.stderr.strip().splitlines() or ['?'])[-1][:300]}", flush=True)
                continue
            out[name] = {"seconds": wall, "load": before}
            print(f"{name:32s} whole process {wall:6.2f} s  load {before}", flush=True)
    return out


def compile_times():
    """mnist train step: cold (empty cache), then warm (the same cache), each in a fresh process."""
    with tempfile.TemporaryDirectory() as d:
        env = {"NETC_CACHE_DIR": d}
        out = {}
        for kind in ("cold", "warm", "warm"):
            res = run_worker("compile", "mnist", 1, env=env)
            if "error" in res:
                print(f"compile {kind}: failed: {res['error']}")
                continue
            res["load"] = load()
            out.setdefault(kind, res)
            print(f"mnist train step compile, {kind:4s}: {res['seconds']:.2f} s (netc.compile {res['compile_s']:.2f} s "
                  f"+ first call {res['first_call_s']:.2f} s; fit's epoch loop {res.get('epoch_compile_s', 0):.2f} s; "
                  f"import netc {res['import_s']:.2f} s; "
                  f"process {res['process_wall_s']:.2f} s)  load {res['load']}", flush=True)
        return out


if __name__ == "__main__":
    main(sys.argv[1:])
