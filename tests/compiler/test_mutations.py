"""The checker never crashes: the example programs (and the language reference's), mutated at random (tokens deleted,
duplicated, swapped, replaced by other tokens or words of the language, random characters
inserted), either check or get a netc diagnostic — never any other exception.

"Check" is the front half of `netc.compile`: parse, elaborate, build the train graph
(autodiff and the optimizer's update included) and resolve the train block."""
import re
from pathlib import Path

import os

from hypothesis import HealthCheck, given, settings, strategies as st

from netc.runtime.build import check_source
from netc.dsl import NetcError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.net"))
# the six example programs, and the examples of the language reference (more constructs)
DOC_BLOCKS = re.findall(r"^```net\n(.*?)^```$", (ROOT / "docs" / "language.md").read_text(), flags=re.M | re.S)
SOURCES = [p.read_text() for p in EXAMPLES] + [
    b if re.match(r"\s*(#[^\n]*\n\s*)*model\b", b) else "model doc\ninput x[4]\ntarget y: class[3]\n" + b
    for b in DOC_BLOCKS]
TOKEN = re.compile(r"\s+|[A-Za-z_][A-Za-z0-9_.]*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\*\*|\"[^\"\n]*\"|.", re.S)
TOKENS = [TOKEN.findall(s) for s in SOURCES]
# words and symbols worth trying in other places
VOCABULARY = ("0 -1 2.5 1e308 1e-9 x y p h1 W_h relu dense sum max min concat transpose onehot dim l2 l1 "
              "weights params softmax sigmoid log_softmax gelu cross_entropy mse huber log exp true false "
              'glorot normal uniform he zeros block layer param loss output input target model schedule '
              'optimizer train full early val.loss val.accuracy warmup cosine step plateau sgd adam "s" '
              '( ) [ ] { } , = @ * ** + - / : # \n').split(" ")
CHARS = "()[]{}=,.+-*/@#:\"'\n\t 0123456789_ax$;!"


def check(source: str) -> None:
    check_source(source, "mutant.net")


@st.composite
def mutants(draw):
    k = draw(st.integers(0, len(SOURCES) - 1))
    toks = list(TOKENS[k])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "word", "char"]))
        i = draw(st.integers(0, len(toks) - 1))
        if kind == "delete":
            del toks[i]
        elif kind == "duplicate":
            toks.insert(i, toks[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(toks) - 1))
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == "replace":
            toks[i] = toks[draw(st.integers(0, len(toks) - 1))]
        elif kind == "word":
            toks[i] = draw(st.sampled_from(VOCABULARY))
        else:
            toks.insert(i, draw(st.text(CHARS, min_size=1, max_size=3)))
        if not toks:
            toks = [""]
    return "".join(toks)


# Derandomized so CI is repeatable; NETC_FUZZ=N explores N fresh random mutants instead.
@settings(max_examples=int(os.environ.get("NETC_FUZZ", 2000)), deadline=None,
          derandomize="NETC_FUZZ" not in os.environ, suppress_health_check=list(HealthCheck))
@given(mutants())
def test_mutated_examples_check_or_get_a_diagnostic(source):
    try:
        check(source)
    except NetcError as e:
        assert e.diagnostics, "a NetcError without diagnostics"
        for d in e.diagnostics:
            assert d.span.line >= 0 and d.message
        e.render()


def test_the_examples_themselves_check():
    assert len(SOURCES) > 20
    for source in SOURCES:
        check(source)
