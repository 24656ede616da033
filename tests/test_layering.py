"""The layering contract of docs/design.md.

`dsl/`, `compiler/` and `runtime/` are installed as `netc.dsl`, `netc.compiler` and `netc.runtime`
through setuptools' package-dir mapping. import-linter (grimp) finds a package's modules by walking
its folder, so `netc/` holds three symbolic links, `netc/dsl -> ../dsl` and so on, that show it
the package as installed; with them a plain `lint-imports` in the repository checks the contracts
of pyproject.toml. These tests run it, and look at every import between netc's modules (imports
inside functions included) for cycles.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import networkx as nx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOWER = ("netc.dsl", "netc.compiler", "netc.runtime")


@pytest.fixture(scope="module")
def imports():
    """{module: modules of netc it imports} for every module of the package."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("netc", cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_every_subpackage_is_seen(imports):
    for sub in LOWER + ("netc.cli", "netc.compiler.backend.cpu", "netc.compiler.backend.cuda"):
        assert sub in imports, f"{sub} is missing: are the links netc/dsl, netc/compiler, netc/runtime there?"


def test_import_linter_contracts_hold():
    """`lint-imports` in the repository, with the contracts of pyproject.toml: dsl imports
    nothing of netc, the compiler only dsl, the runtime the compiler and dsl, and the backends
    not each other."""
    exe = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable), "lint-imports")
    r = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
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
