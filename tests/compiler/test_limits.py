"""Issue 15, findings 7, 8, 14 and 12: what a program may ask for is bounded -- nesting depth,
numbers, layer expansion, file length, the memory of a training step -- and each bound is a
located diagnostic, reached in bounded time and memory, never a RecursionError, an
OverflowError, a hang or an allocation that dies."""
import time

import pytest

from netc.compiler import elaborate
from netc.dsl import NetcError, parser
from netc.runtime.build import build, check_source

HEAD = "model m\ninput x[2]\ntarget y: class[2]\n"
TAIL = "p = softmax(dense(h, 2))\nloss cross_entropy(p, y)\noptimizer sgd(lr=0.1)\n"


def diagnose(source):
    t0 = time.perf_counter()
    with pytest.raises(NetcError) as e:
        check_source(source, "m.net")
    assert time.perf_counter() - t0 < 30
    return e.value


def doubling(levels):
    layers = "layer f0(a) {\n  return a + a\n}\n" + "".join(
        f"layer f{i}(a) {{\n  return f{i - 1}(a) + f{i - 1}(a)\n}}\n" for i in range(1, levels + 1))
    return HEAD + layers + f"h = f{levels}(x)\n" + TAIL


CASES = {
    "200 nested calls": (HEAD + "h = " + "relu(" * 200 + "x" + ")" * 200 + "\n" + TAIL, 4, "nested more than 100"),
    "600 chained +": (HEAD + "h = " + " + ".join(["x"] * 600) + "\n" + TAIL, 4, "nested more than 100"),
    "2 ** 100000": (HEAD + "h = x * (2 ** 100000)\n" + TAIL, 4, "2 ** 100000 is not a finite real number"),
    "10 ** 10 ** 10": (HEAD + "c = 10 ** 10 ** 10\nh = x * c\n" + TAIL, 4, "is not a finite real number"),
    "a 5000-digit literal": (HEAD + "h = x * " + "9" * 5000 + "\n" + TAIL, 4, "is too large"),
    "a layer doubling itself 25 deep": (doubling(25), None, "grows past"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_expression_limits_are_located_diagnostics(case):
    source, line, message = CASES[case]
    e = diagnose(source)
    assert len(e.diagnostics) == 1 and message in e.diagnostics[0].message, e.render()
    if line is not None:
        assert e.diagnostics[0].span.line == line
    assert len(e.diagnostics[0].message) < 200             # a 5000-digit number is not quoted whole


def test_what_is_within_the_limits_checks():
    for source in (HEAD + "h = " + "relu(" * 90 + "x" + ")" * 90 + "\n" + TAIL,
                   HEAD + "h = " + " + ".join(["x"] * 90) + "\n" + TAIL,
                   HEAD + "h = x * (2 ** 1000)\n" + TAIL, doubling(8)):
        check_source(source, "m.net")


def test_a_file_longer_than_the_limit_is_refused_quickly():
    source = HEAD + "h = x\n" + "# a comment\n" * parser.MAX_LINES + TAIL
    e = diagnose(source)
    assert "lines" in e.diagnostics[0].message and e.diagnostics[0].span.line == parser.MAX_LINES + 1


@pytest.mark.parametrize("shape", ["1000000, 1000000", "2**64, 2"])
def test_a_param_larger_than_the_machine_is_refused_at_check_naming_it(shape):
    source = HEAD + f"param W[{shape}]\nh = x\n" + TAIL
    e = diagnose(source)
    d = e.diagnostics[0]
    assert d.span.line == 4 and "param 'W'" in d.message and "more than this machine's" in d.message
    with pytest.raises(NetcError, match="more than this machine's"):
        build(source, "m.net")


def test_the_limits_are_the_documented_ones():
    assert parser.MAX_DEPTH == 100 and parser.MAX_LINES == 20_000
    assert elaborate.MAX_EXPANSIONS == 20_000 and elaborate.MAX_NODES == 200_000


@pytest.mark.parametrize("kind,args", [("glorot", ()), ("he_normal", ()), ("normal", (0.0, 0.1)),
                                       ("uniform", (-0.2, 0.2)), ("zeros", ())])
def test_params_are_drawn_in_the_models_dtype_with_the_same_numbers(kind, args, monkeypatch):
    """Finding 8: a float32 param is drawn into a float32 array (in chunks), never as a whole
    float64 array first -- the same numbers as the float64 draw cast, the generator left in
    the same state (so every later param, and the examples' runs, are unchanged)."""
    import numpy as np
    from netc.compiler import initializers as I
    monkeypatch.setattr(I._InDtype, "CHUNK", 1000)
    r64, r32 = np.random.default_rng(7), np.random.default_rng(7)
    want = I.INITIALIZERS[kind].sample(args, (130, 70), r64).astype(np.float32)
    got = I.initialize(kind, args, (130, 70), r32, np.float32)
    assert got.dtype == np.float32 and got.flags.c_contiguous and np.array_equal(got, want)
    assert r32.bit_generator.state == r64.bit_generator.state
