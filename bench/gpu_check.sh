#!/usr/bin/env bash
# bench/gpu_check.sh — the CUDA backend on a real NVIDIA GPU, in under 5 minutes:
#   1. the CUDA tests (tests/cuda) run for real, not on the simulator;
#   2. the `mnist` and `wide` configurations of bench/peers.py (the shared peer benchmark):
#      netc CUDA vs PyTorch CUDA (eager), same MLP, batch, SGD with momentum; prints the ratios;
#   3. `lenet` of cnn_peers.py (next to peers.py): netc CUDA vs PyTorch CUDA, same layers and weights.
# Usage: bash bench/gpu_check.sh            (from the repository root; PEERS=path/to/peers.py)
# Exits 1 with a message when there is no GPU, no numba-cuda or no CUDA toolkit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PEERS=${PEERS:-}
for p in bench/peers.py ../shared/bench/peers.py /work/shared/bench/peers.py; do
  if [ -z "$PEERS" ] && [ -f "$p" ]; then PEERS=$p; fi
done

echo "== GPU"
if ! "$PY" - <<'EOF'
import importlib.util, sys
if importlib.util.find_spec("numba_cuda") is None:
    sys.exit("gpu_check: numba-cuda is not installed (pip install -e '.[cuda]')")
from numba import cuda
if not cuda.is_available():
    sys.exit("gpu_check: no CUDA GPU, driver or toolkit found (numba.cuda.is_available() is false); "
             "this check needs an NVIDIA GPU")
d = cuda.get_current_device()
print(f"{d.name.decode() if isinstance(d.name, bytes) else d.name}, compute capability {d.compute_capability}")
EOF
then
  exit 1
fi

echo "== CUDA tests on the GPU (no simulator)"
unset NUMBA_ENABLE_CUDASIM
NETC_CUDA_REAL=1 timeout 180 "$PY" -m pytest -q -x tests/cuda 2>&1 | tail -5

echo "== netc CUDA vs PyTorch CUDA (mnist, wide)"
if [ -z "$PEERS" ]; then echo "gpu_check: peers.py not found (set PEERS=...)"; exit 1; fi
PEERS="$PEERS" timeout 150 "$PY" - <<'EOF'
import importlib.util, os, sys, time
import numpy as np
spec = importlib.util.spec_from_file_location("peers", os.environ["PEERS"])
peers = importlib.util.module_from_spec(spec); spec.loader.exec_module(peers)
from numba import cuda
import netc

def netc_source(sizes):
    lines = [f"model mlp", f"input x[{sizes[0]}]", f"target y: class[{sizes[-1]}]"]
    h = "x"
    for k, o in enumerate(sizes[1:-1]):
        lines.append(f"h{k} = relu(dense({h}, {o}, init=he))")
        h = f"h{k}"
    lines += [f"p = softmax(dense({h}, {sizes[-1]}))", "loss cross_entropy(p, y)",
              "optimizer sgd(lr=0.01, momentum=0.9)"]
    return "\n".join(lines) + "\n"

def bench_netc(sizes, batch, steps, X, y):
    m = netc.compile(netc_source(sizes), device="cuda", seed=0)
    art = m.artifact
    Xd, yd = cuda.to_device(X), cuda.to_device(y)          # the data set stays on the device
    params, states = m.param_arrays(), m.state_arrays()
    nb = len(X) // batch
    epochs = max(steps // nb, 1)
    art.train_epoch(Xd, yd, batch, np.float32(0.01), 0, params, states)    # compile + warm up
    cuda.synchronize()
    t = time.perf_counter()
    for e in range(epochs):
        art.train_epoch(Xd, yd, batch, np.float32(0.01), (e + 1) * nb, params, states)
    cuda.synchronize()
    dt = time.perf_counter() - t
    art.release()
    return dt, epochs * nb

def bench_torch_cuda(sizes, batch, steps, X, y):
    import torch
    torch.manual_seed(0)
    dev = torch.device("cuda")
    layers = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(i, o))
        if k < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X).to(dev), torch.from_numpy(y).to(dev)
    nb = len(X) // batch
    def step(i):
        j = i % nb
        opt.zero_grad(set_to_none=True)
        lossf(model(Xt[j * batch:(j + 1) * batch]), yt[j * batch:(j + 1) * batch]).backward()
        opt.step()
    for i in range(20):
        step(i)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    torch.cuda.synchronize()
    return time.perf_counter() - t, steps

for which in ("mnist", "wide"):
    c = peers.CFG[which]
    X, y = peers.data(c["sizes"], c["batch"])
    res = {}
    for name, fn in (("netc cuda", bench_netc), ("torch cuda", bench_torch_cuda)):
        try:
            t, steps = fn(c["sizes"], c["batch"], c["steps"], X, y)
            res[name] = steps * c["batch"] / t
            print(f"{which:6s} {name:11s} {res[name]:12.0f} samples/s  {steps / t:9.0f} steps/s", flush=True)
        except Exception as e:
            print(f"{which:6s} {name:11s} failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
    if len(res) == 2:
        print(f"{which:6s} netc/torch  {res['netc cuda'] / res['torch cuda']:.2f}x "
              f"(targets: mnist >= 1x, wide >= 0.5x)", flush=True)
EOF

echo "== netc CUDA vs PyTorch CUDA (lenet)"
CNN_PEERS="$(dirname "$PEERS")/cnn_peers.py"
if [ ! -f "$CNN_PEERS" ]; then echo "gpu_check: $CNN_PEERS not found"; exit 1; fi
CNN_PEERS="$CNN_PEERS" timeout 150 "$PY" - <<'EOF'
import importlib.util, os, sys, time
import numpy as np
def module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m
cp = module("cnn_peers", os.environ["CNN_PEERS"])
run = module("bench_run", os.path.join("bench", "run.py"))
from numba import cuda
import netc

cfg = cp.CNN["lenet"]
X, y = cp.data(cfg)
batch, steps = cfg["batch"], cfg["steps"]
nb = len(X) // batch
res = {}

def bench_netc():
    m = netc.compile(run.cnn_source("lenet", cfg), device="cuda", seed=0)
    Ws, bs = cp.init(cfg)
    names = list(m.params)
    for k in range(len(Ws)):
        m.params[names[2 * k]], m.params[names[2 * k + 1]] = Ws[k], bs[k]
    art = m.artifact
    Xd, yd = cuda.to_device(X), cuda.to_device(y)
    params, states = m.param_arrays(), m.state_arrays()
    epochs = max(steps // nb, 1)
    art.train_epoch(Xd, yd, batch, np.float32(0.01), 0, params, states)    # compile + warm up
    cuda.synchronize()
    t = time.perf_counter()
    for e in range(epochs):
        art.train_epoch(Xd, yd, batch, np.float32(0.01), (e + 1) * nb, params, states)
    cuda.synchronize()
    dt = time.perf_counter() - t
    art.release()
    return dt, epochs * nb

def bench_torch():
    import torch
    dev = torch.device("cuda")
    Ws, bs = cp.init(cfg)
    mods, k = [], 0
    for layer in cfg["layers"]:
        if layer[0] == "conv":
            m = torch.nn.Conv2d(Ws[k].shape[1], layer[1], layer[2], padding=layer[3])
        elif layer[0] == "dense":
            m = torch.nn.Linear(Ws[k].shape[1], layer[1])
        else:
            mods.append(torch.nn.ReLU() if layer[0] == "relu" else
                        torch.nn.MaxPool2d(layer[1]) if layer[0] == "pool" else torch.nn.Flatten())
            continue
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(Ws[k])); m.bias.copy_(torch.from_numpy(bs[k]))
        mods.append(m); k += 1
    model = torch.nn.Sequential(*mods).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X).to(dev), torch.from_numpy(y).to(dev)
    def step(i):
        j = i % nb
        opt.zero_grad(set_to_none=True)
        lossf(model(Xt[j * batch:(j + 1) * batch]), yt[j * batch:(j + 1) * batch]).backward()
        opt.step()
    for i in range(20):
        step(i)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    torch.cuda.synchronize()
    return time.perf_counter() - t, steps

for name, fn in (("netc cuda", bench_netc), ("torch cuda", bench_torch)):
    try:
        t, n = fn()
        res[name] = n * batch / t
        print(f"lenet  {name:11s} {res[name]:12.0f} samples/s  {n / t:9.0f} steps/s", flush=True)
    except Exception as e:
        print(f"lenet  {name:11s} failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
if len(res) == 2:
    print(f"lenet  netc/torch  {res['netc cuda'] / res['torch cuda']:.2f}x", flush=True)
EOF
