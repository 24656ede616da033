"""The layering contract of docs/design.md, checked on the installed shape of the package.

`dsl/`, `compiler/` and `runtime/` are installed as `netc.dsl`, `netc.compiler` and `netc.runtime`
through setuptools' package-dir mapping, which import-linter (grimp) cannot follow: it walks the
`netc/` folder only. So the tests copy the sources into one `netc/` tree, as a wheel lays them out,
and check that tree: import-linter's contracts from pyproject.toml, then every import between netc's
modules (imports inside functions included) for cycles.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import networkx as nx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBPACKAGES = ("dsl", "compiler", "runtime")
LOWER = tuple(f"netc.{p}" for p in SUBPACKAGES)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A copy of the package as installed: netc/ with dsl/, compiler/ and runtime/ inside."""
    top = tmp_path_factory.mktemp("layout")
    skip = shutil.ignore_patterns("__pycache__", "datasets", "*.lark")
    shutil.copytree(os.path.join(ROOT, "netc"), top / "netc", ignore=skip)
    for sub in SUBPACKAGES:
        shutil.copytree(os.path.join(ROOT, sub), top / "netc" / sub, ignore=skip)
    return top


@pytest.fixture(scope="module")
def imports(staged):
    """{module: modules of netc it imports} for every module of the staged tree."""
    grimp = pytest.importorskip("grimp")
    sys.path.insert(0, str(staged))
    saved = {k: v for k, v in sys.modules.items() if k == "netc" or k.startswith("netc.")}
    for k in saved:
        del sys.modules[k]
    try:
        graph = grimp.build_graph("netc", cache_dir=None)
        return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    finally:
        sys.path.remove(str(staged))
        for k in [k for k in sys.modules if k == "netc" or k.startswith("netc.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def test_every_subpackage_is_seen(imports):
    for sub in LOWER + ("netc.cli", "netc.compiler.backend.cpu", "netc.compiler.backend.cuda"):
        assert sub in imports, f"{sub} is missing from the staged tree"


def test_import_linter_contracts_hold(staged):
    """`lint-imports` with the contracts of pyproject.toml: dsl imports nothing of netc, the
    compiler only dsl, the runtime the compiler and dsl, and the backends not each other."""
    exe = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable), "lint-imports")
    env = dict(os.environ, PYTHONPATH=str(staged))
    r = subprocess.run([exe, os.path.join(ROOT, "pyproject.toml"), "--no-cache"], cwd=staged, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_no_import_cycle(imports):
    G = nx.DiGraph([(m, t) for m, ts in imports.items() for t in ts])
    cycles = list(nx.simple_cycles(G))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c + [c[0]]) for c in cycles)


def test_nothing_below_the_front_door_imports_it(imports):
    """`netc` itself (netc/__init__.py: compile, load) and `netc.cli` are the front door;
    dsl, compiler and runtime never import them (import-linter's layers cannot say so for the
    root package itself)."""
    bad = {m: sorted(ts & {"netc", "netc.cli"}) for m, ts in imports.items()
           if m.startswith(LOWER) and ts & {"netc", "netc.cli"}}
    assert not bad, bad
