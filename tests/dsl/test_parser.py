"""The parser: the six examples, spans, precedence, layout, syntax errors, robustness."""
import re
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from netc.dsl import NetcError, Program, Span, parse, parse_file
from netc.dsl.ast import (Assign, BinOp, Bool, Call, InputDecl, Keyword, LayerDef, LayerParam,
                          ListExpr, LossDecl, ModelDecl, Name, Num, OptimizerDecl, OutputDecl,
                          ParamDecl, ScheduleDecl, Str, TargetDecl, TrainBlock, UnaryOp)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.net"))


def ex(name: str) -> Program:
    return parse_file(EXAMPLES / f"{name}.net")


def expr(text: str):
    """The expression `text`, parsed as the value of an assignment."""
    (stmt,) = parse(f"x = {text}\n").statements
    return stmt.value


def error(source: str):
    """The NetcError that parsing `source` raises."""
    with pytest.raises(NetcError) as info:
        parse(source, "t.net")
    return info.value


def n(name):
    return Name(name)


# ---------------------------------------------------------------- the six examples
def test_there_are_eight_examples():
    assert [f.stem for f in EXAMPLE_FILES] == ["digits", "digits_cnn", "lenet", "linear", "moons", "neuron",
                                               "spiral", "xor"]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_examples_parse(path):
    program = parse_file(path)
    assert program.file == str(path)
    assert program.statements[0] == ModelDecl(path.stem)
    assert len(program.of_type(TrainBlock)) == 1


def test_xor():
    p = ex("xor")
    assert p.of_type(TargetDecl) == [TargetDecl("y", "class", (Num(2),))]
    params = p.of_type(ParamDecl)
    assert [(q.name, q.dims, q.init) for q in params] == [
        ("W_h", (Num(3), Num(2)), n("glorot")), ("b_h", (Num(3),), Num(0.01)),
        ("W_o", (Num(2), Num(3)), n("glorot")), ("b_o", (Num(2),), Num(0.01))]
    assigns = p.of_type(Assign)
    assert [a.name for a in assigns] == ["h_pre", "h", "y_pre", "y_hat"]
    assert assigns[0].value == BinOp("+", BinOp("@", n("W_h"), n("x")), n("b_h"))
    assert assigns[1].value == Call("sigmoid", (n("h_pre"),), ())
    assert p.of_type(LossDecl) == [LossDecl(None, Call("cross_entropy", (n("y_hat"), n("y")), ()))]
    (opt,) = p.of_type(OptimizerDecl)
    assert opt.call == Call("sgd", (), (Keyword("lr", Num(1.0)), Keyword("momentum", Num(0.9))))
    train = p.of_type(TrainBlock)[0]
    assert [i.key for i in train.items] == ["data", "batch", "epochs"]
    assert train.get("batch").values == (n("full"),)


def test_digits():
    p = ex("digits")
    (layer,) = p.of_type(LayerDef)
    assert layer.name == "block"
    assert layer.params == (LayerParam("x", None), LayerParam("n", None))
    assert layer.body == ()
    assert layer.ret == Call("relu", (Call("dense", (n("x"), n("n")), (Keyword("init", n("he")),)),), ())
    losses = p.of_type(LossDecl)
    assert [l.name for l in losses] == ["main", "aux", "decay"]
    assert losses[1].value == BinOp("*", Num(0.3), Call("cross_entropy", (n("aux"), n("y")), ()))
    assert losses[2].value == BinOp("*", Num(1e-4), Call("l2", (n("weights"),), ()))
    assert p.of_type(OutputDecl) == [OutputDecl("p")]
    assert p.of_type(OptimizerDecl)[0].call.kwarg("nesterov") == Bool(True)
    (sched,) = p.of_type(ScheduleDecl)
    assert sched.call == Call("step", (), (Keyword("every", Num(20)), Keyword("gamma", Num(0.5))))
    assert p.of_type(TrainBlock)[0].get("data").values == (n("digits"),)


def test_moons():
    p = ex("moons")
    train = p.of_type(TrainBlock)[0]
    assert train.get("stop").values == (
        Call("early", (Name("val.loss"),), (Keyword("patience", Num(20)),)),)
    assert train.get("metrics").values == (n("accuracy"), n("f1"))
    assert train.get("split").values == (Num(0.7), Num(0.15), Num(0.15))
    assert p.of_type(Assign)[0].value == Call("tanh", (Call("dense", (n("x"), Num(16)), ()),), ())


def test_linear_neuron_spiral():
    linear = ex("linear")
    assert linear.of_type(TargetDecl) == [TargetDecl("y", "real", (Num(1),))]
    assert linear.of_type(InputDecl) == [InputDecl("x", (Num(3),))]
    data = linear.of_type(TrainBlock)[0].get("data").values[0]
    assert data.func == "linear" and data.kwarg("noise") == Num(0.1)
    neuron = ex("neuron")
    assert neuron.of_type(ParamDecl)[0].init == Call("normal", (Num(0), Num(0.1)), ())
    assert neuron.of_type(Assign)[0].value == Call(
        "sigmoid", (BinOp("+", BinOp("@", n("w"), n("x")), n("b")),), ())
    spiral = ex("spiral")
    assert spiral.of_type(ScheduleDecl)[0].call == Call("cosine", (), (Keyword("min_lr", Num(0.0001)),))


# ---------------------------------------------------------------- spans
def span(line, col, end_line, end_col, file=None):
    return Span(file or str(EXAMPLES / "xor.net"), line, col, end_line, end_col)


def test_spans_of_an_assignment():
    # line 9: "h_pre = W_h @ x + b_h          # h~ = W^h x + b^h"
    a = ex("xor").of_type(Assign)[0]
    assert a.span == span(9, 1, 9, 22)
    assert a.name_span == span(9, 1, 9, 6)
    assert a.value.span == span(9, 9, 9, 22)
    assert a.value.left.span == span(9, 9, 9, 16)
    assert a.value.left.left.span == span(9, 9, 9, 12)
    assert a.value.right.span == span(9, 19, 9, 22)


def test_spans_of_declarations():
    p = ex("xor")
    model, inp, target = p.statements[:3]
    assert model.span == span(2, 1, 2, 10)                       # "model xor"
    assert inp.span == span(3, 1, 3, 12) and inp.name_span == span(3, 8, 3, 9)
    assert target.name_span == span(4, 8, 4, 9) and target.kind_span == span(4, 11, 4, 16)
    w = p.of_type(ParamDecl)[0]                                  # "param W_h[3, 2] = glorot"
    assert w.span == span(5, 1, 5, 25) and w.name_span == span(5, 7, 5, 10)
    assert w.dims[1].span == span(5, 14, 5, 15)


def test_spans_of_calls_blocks_and_items():
    path = str(EXAMPLES / "digits.net")
    p = ex("digits")
    layer = p.of_type(LayerDef)[0]
    assert layer.span == span(7, 1, 9, 2, path)
    assert layer.name_span == span(7, 7, 7, 12, path)
    assert layer.ret.span == span(8, 10, 8, 36, path)
    assert layer.ret.func_span == span(8, 10, 8, 14, path)
    train = p.of_type(TrainBlock)[0]
    assert train.span == span(23, 1, 30, 2, path)
    stop = train.get("stop")
    assert stop.key_span == span(29, 3, 29, 7, path)
    assert stop.values[0].args[0].span == span(29, 19, 29, 31, path)     # val.accuracy
    assert stop.values[0].kwargs[0].span == span(29, 33, 29, 44, path)   # patience=10


def test_span_of_a_multiline_call():
    (a,) = parse("y = f(\n  a,\n  b=2,\n)\n", "m.net").statements
    assert a.value.span == Span("m.net", 1, 5, 4, 2)
    assert a.value.kwargs[0].span == Span("m.net", 3, 3, 3, 6)


# ---------------------------------------------------------------- expressions
@pytest.mark.parametrize("text, tree", [
    ("1 + 2 * 3", BinOp("+", Num(1), BinOp("*", Num(2), Num(3)))),
    ("a - b - c", BinOp("-", BinOp("-", n("a"), n("b")), n("c"))),
    ("a / b * c", BinOp("*", BinOp("/", n("a"), n("b")), n("c"))),
    ("a @ b * c", BinOp("*", BinOp("@", n("a"), n("b")), n("c"))),
    ("a * b @ c", BinOp("@", BinOp("*", n("a"), n("b")), n("c"))),
    ("a + b @ c", BinOp("+", n("a"), BinOp("@", n("b"), n("c")))),
    ("a ** b ** c", BinOp("**", n("a"), BinOp("**", n("b"), n("c")))),
    ("-x ** 2", UnaryOp("-", BinOp("**", n("x"), Num(2)))),
    ("2 ** -1", BinOp("**", Num(2), UnaryOp("-", Num(1)))),
    ("a * -b", BinOp("*", n("a"), UnaryOp("-", n("b")))),
    ("- - x", UnaryOp("-", UnaryOp("-", n("x")))),
    ("+x", n("x")),
    ("(a + b) * c", BinOp("*", BinOp("+", n("a"), n("b")), n("c"))),
    ("a - (b - c)", BinOp("-", n("a"), BinOp("-", n("b"), n("c")))),
    ("2 * x ** 2 + 1", BinOp("+", BinOp("*", Num(2), BinOp("**", n("x"), Num(2))), Num(1))),
    ("[a, 1, [2]]", ListExpr((n("a"), Num(1), ListExpr((Num(2),))))),
    ("[]", ListExpr(())),
    ("[a, b,]", ListExpr((n("a"), n("b")))),
    ("f()", Call("f", (), ())),
    ("f(a, b=1,)", Call("f", (n("a"),), (Keyword("b", Num(1)),))),
    ("f(g(x), k=[1, 2])", Call("f", (Call("g", (n("x"),), ()),), (Keyword("k", ListExpr((Num(1), Num(2)))),))),
    ("val.loss", Name("val.loss")),
    ("true", Bool(True)),
    ("false", Bool(False)),
    ('"a\\"b\\n"', Str('a"b\n')),
    ('"data/train.csv"', Str("data/train.csv")),
])
def test_expressions(text, tree):
    assert expr(text) == tree


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("0", 0), ("1e-4", 1e-4), (".5", 0.5), ("1.", 1.0), ("2.5E3", 2500.0), ("0.01", 0.01)])
def test_numbers_keep_ints_int(text, value):
    num = expr(text)
    assert num.value == value and type(num.value) is type(value)


def test_unary_minus_span_covers_the_sign():
    assert expr("-a").span == Span("<string>", 1, 5, 1, 7)


# ---------------------------------------------------------------- statements and layout
def test_all_statement_forms():
    p = parse(
        "model m\n"
        "input img[1, 8, 8]\n"
        "target y: klass[3]\n"
        "target r[1]\n"
        "param W[3, 2]\n"
        "output p\n"
        "loss mse(p, r)\n"
        "optimizer adam\n"
        "schedule constant\n"
        "layer f(x, n, act=relu) {\n"
        "  param V[n, dim(x)] = glorot\n"
        "  h = V @ x\n"
        "  return act(h)\n"
        "}\n")
    s = p.statements
    assert s[1] == InputDecl("img", (Num(1), Num(8), Num(8)))
    assert s[2] == TargetDecl("y", "klass", (Num(3),))
    assert s[3] == TargetDecl("r", "real", (Num(1),))
    assert s[4] == ParamDecl("W", (Num(3), Num(2)), None)
    assert s[6] == LossDecl(None, Call("mse", (n("p"), n("r")), ()))
    assert s[7].call == Call("adam", (), ()) and s[7].call.func_span == Span("<string>", 8, 11, 8, 15)
    assert s[8] == ScheduleDecl(Call("constant", (), ()))
    layer = s[9]
    assert layer.params[2] == LayerParam("act", n("relu"))
    assert layer.body == (ParamDecl("V", (n("n"), Call("dim", (n("x"),), ())), n("glorot")),
                          Assign("h", BinOp("@", n("V"), n("x"))))
    assert layer.ret == Call("act", (n("h"),), ())


def test_keywords_are_names_where_a_keyword_cannot_be():
    p = parse("model input\nloss loss = model + output\ntrain {\n  loss = 1\n}\n")
    assert p.statements[0] == ModelDecl("input")
    assert p.statements[1] == LossDecl("loss", BinOp("+", n("model"), n("output")))
    assert p.statements[2].items[0].key == "loss"


def test_comments_blank_lines_and_trailing_whitespace():
    source = ("\n\n# a comment\n   \nmodel m   # trailing comment\n\n\t\n"
              "x = 1   \n# between\n\ntrain {\n\n  # inside\n  epochs = 3   \n\n}\n\n# end\n")
    p = parse(source)
    assert [type(s) for s in p.statements] == [ModelDecl, Assign, TrainBlock]
    assert p.statements[1].span.line == 8
    assert p.statements[2].items[0].values == (Num(3),)


def test_multiline_call_and_list():
    p = parse("optimizer sgd(lr=0.1,\n              momentum=0.9)  # comment\n"
              "x = concat([a,\n\n  b],\n  axis=0)\n")
    assert p.statements[0].call.kwargs == (Keyword("lr", Num(0.1)), Keyword("momentum", Num(0.9)))
    assert p.statements[1].value == Call("concat", (ListExpr((n("a"), n("b"))),), (Keyword("axis", Num(0)),))


def test_crlf_line_endings_give_the_same_program_and_columns():
    text = (EXAMPLES / "moons.net").read_text()
    lf, crlf = parse(text), parse(text.replace("\n", "\r\n"))
    assert crlf.statements == lf.statements
    assert [s.span for s in crlf.statements] == [s.span for s in lf.statements]


def test_no_final_newline():
    p = parse("model m\nx = f(1)")
    assert p.statements[1] == Assign("x", Call("f", (Num(1),), ()))
    assert parse("train {\n  epochs = 3\n}").statements[0].get("epochs").values == (Num(3),)


def test_empty_sources_and_empty_train_blocks():
    assert parse("").statements == ()
    assert parse("\n  \n# only a comment").statements == ()
    assert parse("train {}\n").statements == (TrainBlock(()),)
    assert parse("train {\n}\n").statements == (TrainBlock(()),)
    assert parse("train {\n\n  # nothing\n}").statements == (TrainBlock(()),)
    assert parse("train { epochs = 3 }").statements[0].items[0].key == "epochs"


def test_train_values():
    (train,) = parse('train {\n  data = csv("path.csv", label="column")\n  split = 0.8, 0.1, 0.1\n'
                     '  batch = full\n  shuffle = true\n}\n').statements
    assert train.get("data").values == (Call("csv", (Str("path.csv"),), (Keyword("label", Str("column")),)),)
    assert train.get("split").values == (Num(0.8), Num(0.1), Num(0.1))
    assert train.get("shuffle").values == (Bool(True),)


# ---------------------------------------------------------------- syntax errors
@pytest.mark.parametrize("source, line, col, fragment", [
    ("x = )\n", 1, 5, "unexpected ')' — expected an expression"),
    ("model m\nx = 2 $ 3\n", 2, 7, "unexpected character '$'"),
    ("model m\ntrain {\n  epochs = 3\n", 3, 13, "unexpected end of file — expected a name or '}'"),
    ("model\n", 1, 6, "unexpected end of line — expected a name"),
    ("h = W x + b\n", 1, 7, "unexpected name 'x' — expected an operator or end of line"),
    ("x = 1 2\n", 1, 7, "unexpected number 2"),
    ("h = dense(x, 16))\n", 1, 17, "unexpected ')' — expected an operator or end of line"),
    ("x = f(1,,2)\n", 1, 9, "unexpected ',' — expected an expression or ')'"),
    ("param W[] = glorot\n", 1, 9, "unexpected ']' — expected an expression"),
    ("target y: class\n", 1, 16, "expected '['"),
    ("target y class[2]\n", 1, 10, "unexpected name 'class' — expected ':' or '['"),
    ("x = (1 + 2", 1, 11, "unexpected end of file — expected an operator or ')'"),
    ("x = (1 + 2  # a comment\n\n", 1, 11, "unexpected end of file"),
    ("x = ", 1, 4, "unexpected end of file — expected an expression"),
    ("x = a.\n", 1, 7, "expected a name"),
    (") = 1\n", 1, 1, "unexpected ')' — expected a statement"),
    ("f(1)\n", 1, 2, "unexpected '(' — expected '='"),
    ("layer f(x) {\n  y = x\n}\n", 3, 1, "unexpected '}' — expected a statement or 'return'"),
    ("layer f(x) {\n  return x\n  y = x\n}\n", 3, 3, "unexpected name 'y' — expected '}'"),
    ("train {\n  3 = 4\n}\n", 2, 3, "unexpected number 3 — expected a name or '}'"),
    ('x = "abc\n', 1, 5, "unterminated string"),
    ("x = 'abc'\n", 1, 5, "unexpected character \"'\""),
    ('x = "a\\qb"\n', 1, 7, "unknown escape '\\q' in a string"),
    ("x = f(a=1, 2)\n", 1, 12, "positional argument after a keyword argument"),
    ("x = f(a=1, a=2)\n", 1, 12, "duplicate keyword argument 'a'"),
    ("layer f(x=1, y) { return x }\n", 1, 14, "parameter 'y' without a default follows one with a default"),
    ("layer f(x, x) { return x }\n", 1, 12, "duplicate parameter 'x'"),
])
def test_syntax_errors(source, line, col, fragment):
    (d,) = error(source).diagnostics
    assert (d.span.file, d.span.line, d.span.col) == ("t.net", line, col)
    assert fragment in d.message


def test_error_span_covers_the_offending_token():
    (d,) = error("x = foo barbaz\n").diagnostics
    assert d.span == Span("t.net", 1, 9, 1, 15)
    (d,) = error("x = 1 +\n").diagnostics
    assert d.span == Span("t.net", 1, 8, 1, 9)      # the end of the line, one column wide


def test_hints():
    (d,) = error("input = 3\n").diagnostics
    assert "'input' is a keyword" in d.hint
    (d,) = error("model m\ntrain {\n  epochs = 3\n").diagnostics
    assert d.hint == "the '{' at line 2, column 7 is never closed"
    (d,) = error("x = 'a'\n").diagnostics
    assert "double quotes" in d.hint


def test_errors_on_several_lines_are_all_reported_sorted():
    e = error("model m\nx = )\ny = 1\nz = 1 2\nw = $\n")
    assert [(d.span.line, d.span.col) for d in e.diagnostics] == [(2, 5), (4, 7), (5, 5)]
    text = str(e)
    assert "t.net:2:5: error: unexpected ')'" in text
    assert "    z = 1 2\n          ^" in text


def test_recovery_inside_and_after_blocks():
    e = error("train {\n  data = )\n  batch = 2 3\n  epochs = 5\n}\nx = $\n"
              "trian {\n  a = 1\n}\ny = f(a=1, 2)\n")
    assert [d.span.line for d in e.diagnostics] == [2, 3, 6, 7, 10]


def test_a_missing_parenthesis_is_reported_once_and_parsing_goes_on():
    e = error("h = dense(x, 16\ny = 2\nz = )\n")
    first, second = e.diagnostics
    assert (first.span.line, first.span.col) == (2, 1)
    assert first.hint == "the '(' at line 1, column 10 is still open"
    assert (second.span.line, second.span.col) == (3, 5)


def test_syntax_and_argument_errors_together():
    e = error("x = f(a=1, 2)\ny = )\n")
    assert [d.message.split(" —")[0] for d in e.diagnostics] == [
        "positional argument after a keyword argument", "unexpected ')'"]


def test_internal_errors_become_diagnostics(monkeypatch):
    from netc.dsl import parser

    def broken(self, tree):
        raise ValueError("boom")

    monkeypatch.setattr(parser._ToAst, "transform", broken)
    (d,) = error("model m\n").diagnostics
    assert d.message == "internal parser error: ValueError: boom"
    assert (d.span.line, d.span.col) == (1, 1)


def test_parse_file_of_a_missing_file(tmp_path):
    with pytest.raises(NetcError, match="cannot read"):
        parse_file(tmp_path / "missing.net")


def test_parses_in_threads():
    sources = [f.read_text() for f in EXAMPLE_FILES]
    expected = [parse(s).statements for s in sources]
    results, failures = {}, []

    def work(i):
        try:
            for _ in range(20):
                assert parse(sources[i]).statements == expected[i]
                with pytest.raises(NetcError):
                    parse("x = (\ny = )\n" + sources[i])
            results[i] = True
        except Exception as e:       # reported below: a thread's exception is not the test's
            failures.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures and len(results) == len(sources), [str(f) for f in failures[:1]]


# ---------------------------------------------------------------- robustness
def parses_or_reports(source: str) -> None:
    try:
        assert isinstance(parse(source), Program)
    except NetcError as e:
        assert e.diagnostics and all(d.span.line >= 1 for d in e.diagnostics)
        assert "internal parser error" not in str(e)
        str(e)                       # renders


TOKEN = re.compile(r'[A-Za-z_][\w.]*|\d+\.?\d*(?:e-?\d+)?|"[^"]*"|\*\*|\n|[^\s\w]')
TOKENS = TOKEN.findall("".join(f.read_text() for f in EXAMPLE_FILES))


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200)
       | st.text(alphabet="()[]{}=,.+-*/@:#\"'\\\n\r\t 0123456789.eaxy_", max_size=200))
def test_random_text_never_escapes_as_a_python_error(source):
    parses_or_reports(source)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(EXAMPLE_FILES).flatmap(
    lambda f: st.permutations(TOKEN.findall(f.read_text()))))
def test_shuffled_example_tokens_never_escape_as_a_python_error(tokens):
    parses_or_reports(" ".join(tokens))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=80))
def test_random_token_sequences_never_escape_as_a_python_error(tokens):
    parses_or_reports(" ".join(tokens))


def test_a_number_too_large_to_be_finite_is_an_error():
    err = error("model m\nx = 1e999 + 2\n")
    (d,) = err.diagnostics
    assert d.message == "the number 1e999 is too large"
    assert (d.span.line, d.span.col, d.span.end_col) == (2, 5, 10)


# ---------------------------------------------------------------- Lark's tables between processes
_PARSE_XOR = ("import sys; from netc.dsl import parse; "
              "p = parse(open(sys.argv[1]).read(), 'xor.net'); print(len(p.statements))")


def test_the_parse_tables_are_cached_beside_the_kernel_cache_and_a_damaged_file_is_rebuilt(tmp_path):
    """A process parses with the LALR tables a previous one wrote (not rebuilt, so not
    rewritten), in `$NETC_CACHE_DIR-parser/` (not among the kernel cache's entries); a damaged
    or cut-short file is rebuilt and rewritten, the parse unchanged."""
    import os
    import subprocess
    import sys
    xor = Path(__file__).parents[2] / "examples" / "xor.net"
    env = dict(os.environ, NETC_CACHE_DIR=str(tmp_path / "cache"))

    def run():
        r = subprocess.run([sys.executable, "-c", _PARSE_XOR, str(xor)], env=env, capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        return r.stdout
    first = run()
    files = list((tmp_path / "cache-parser").iterdir())
    assert len(files) == 1 and files[0].name.startswith("grammar-") and not (tmp_path / "cache").exists()
    written = files[0].read_bytes()
    os.utime(files[0], (1, 1))
    assert run() == first and files[0].stat().st_mtime == 1          # loaded, not rebuilt
    head = written.split(b"\n", 1)[0]          # the hash of the grammar, options and versions
    for damage in (b"garbage\n" + written[40:], written[:len(written) // 2], b""):
        files[0].write_bytes(damage)
        assert run() == first
        rewritten = files[0].read_bytes()
        assert rewritten != damage and rewritten.split(b"\n", 1)[0] == head      # rebuilt and rewritten
        os.utime(files[0], (1, 1))
        assert run() == first and files[0].stat().st_mtime == 1                   # and loaded again
