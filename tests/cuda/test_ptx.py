"""Every generated kernel (the examples' train_step, evaluate and predict, and the split step's
grad_step and apply_step of data-parallel training, float32) and
every hand-written kernel variant compiles to PTX for compute capability 9.0 with
numba.cuda.compile_ptx — no GPU needed. Runs in a subprocess: this directory's tests use the
simulator, whose numba.cuda cannot compile."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import glob, os, sys
    from numba import cuda
    from netc.compiler.backend.cuda import kernels as K
    from netc.compiler.cache import load_module
    from netc.compiler import backend
    from netc.compiler.frontend import check
    from netc.dsl import parse
    assert not K.SIM, "the PTX check must not run on the simulator"
    todo, seen = [], set()
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "examples", "*.net"))):
        checked = check(parse(open(path).read(), path))
        module = load_module(backend.get("cuda").source(checked, "float32", split=True))
        for name, sig in module.KERNELS:
            fn = getattr(module, name).py_func
            key = (fn.__code__.co_code, fn.__code__.co_consts, fn.__code__.co_names, sig)
            if key not in seen:
                seen.add(key)
                todo.append((os.path.basename(path) + ":" + name, fn, sig))
    for dtype in ("float32", "float64"):
        for k, sig in K.variants(dtype):
            todo.append(("backend.cuda.kernels." + k.py_func.__qualname__.split(".")[0] + " " + dtype, k.py_func, sig))
    for what, fn, sig in todo:
        ptx, _ = cuda.compile_ptx(fn, sig, cc=(9, 0))
        assert ".target sm_90" in ptx, what
    print("compiled", len(todo), "kernels to PTX for sm_90")
""")


def test_every_kernel_compiles_to_ptx_for_cc_90():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, "-c", SCRIPT, ROOT], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    assert "compiled" in r.stdout
