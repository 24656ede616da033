"""docs/language.md cannot drift from the compiler: every ```net example in it checks (parse,
elaborate, build the train graph, resolve the train block) without errors or warnings; every
```net-error example fails with exactly the diagnostics of the ```text block after it; and
every built-in, initializer, optimizer, schedule and train key is documented."""
import re
from pathlib import Path

import pytest

from netc.compiler.builtins import BUILTINS
from netc.compiler.initializers import INITIALIZERS as INIT_NAMES
from netc.compiler.trainblock import TRAIN_KEYS
from netc.compiler.optim import OPTIMIZER_ARGS
from netc.runtime.build import check_source
from netc.dsl import NetcError
from netc.runtime.schedules import SCHEDULES

DOC = Path(__file__).resolve().parents[2] / "docs" / "language.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```([\w-]*)\n(.*?)^```$", TEXT, flags=re.M | re.S)
EXAMPLES = [code for lang, code in BLOCKS if lang == "net"]
ERRORS = [(code, BLOCKS[i + 1][1]) for i, (lang, code) in enumerate(BLOCKS) if lang == "net-error"]


def program(code: str) -> str:
    """A fragment gets `model doc`, `input x[4]` and `target y: class[3]` where it lacks them."""
    if re.match(r"\s*(#[^\n]*\n\s*)*model\b", code):
        return code
    head = "model doc\n"
    if not re.search(r"^input\b", code, re.M):
        head += "input x[4]\n"
    if not re.search(r"^target\b", code, re.M):
        head += "target y: class[3]\n"
    return head + code


def check(source: str):
    return check_source(source, "example.net")[0].model


def test_the_reference_has_examples():
    assert len(EXAMPLES) >= 20 and len(ERRORS) >= 2


@pytest.mark.parametrize("code", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_example_checks(code):
    model = check(program(code))
    assert model.warnings == [], [w.message for w in model.warnings]


@pytest.mark.parametrize("code,expected", ERRORS, ids=[f"error{i}" for i in range(len(ERRORS))])
def test_error_example_prints_what_the_reference_shows(code, expected):
    with pytest.raises(NetcError) as info:
        check(program(code))
    assert info.value.render() == expected.rstrip("\n")


def test_a_complete_example_compiles_to_kernels():
    import netc
    source = next(code for code in EXAMPLES if code.startswith("# a complete program"))
    model = netc.compile(source)
    assert model.loss_names == ["loss"] and list(model.params) == ["h.dense.W", "h.dense.b", "p.dense.W", "p.dense.b"]


@pytest.mark.parametrize("name", sorted(set(BUILTINS) | set(INIT_NAMES) - {"ones"} | set(OPTIMIZER_ARGS)
                                        | set(SCHEDULES) | set(TRAIN_KEYS)))
def test_every_name_is_documented(name):
    assert f"`{name}" in TEXT, f"docs/language.md does not document `{name}`"
