"""Diagnostics that teach: a table of wrong programs, each with the message, line and column
it must get; every error of a file reported at once, sorted; the caret under the whole span;
warnings for suspicious but legal programs; `netc check` printing them.

The checks run the front half of `netc.compile` (parse, elaborate, build the train graph,
resolve the train block): everything but code generation, so no Numba compile is needed."""
import textwrap

import pytest

from netc.compiler.elaborate import elaborate
from netc.runtime.build import check_source
from netc.dsl import NetcError, parse

HEAD = "model m\ninput x[4]\ntarget y: class[3]\n"        # lines 1-3: bodies below start at line 4


def check(source: str, file: str = "t.net"):
    """The model and its settings, or a NetcError: what `netc check` finds, without kernels."""
    return check_source(source, file)[0].model


def diagnose(source: str):
    """The NetcError that checking `source` raises, or None."""
    try:
        check(source)
    except NetcError as e:
        return e
    return None


def body(text: str) -> str:
    return HEAD + textwrap.dedent(text).lstrip("\n")


LAYER_F = """
layer f(x, n) {
  return relu(dense(x, n))
}
"""

# (id, source, message fragment, line, column[, hint fragment])
WRONG = [
    # ---- syntax
    ("missing comma", body("h = dense(x 3)\n"), "unexpected number 3", 4, 13),
    ("unclosed parenthesis", body("h = dense(x, 3\np = softmax(h)\n"), "unexpected name 'p'", 5, 1,
     "'(' at line 4, column 10 is still open"),
    ("bad character", body("h = x $ 2\n"), "unexpected character '$'", 4, 7),
    ("unterminated string", body('train {\n  data = csv("a.csv)\n}\n'), "unterminated string", 5, 14),
    ("keyword as a name", body("loss = 3\n"), "unexpected '='", 4, 6, "'loss' is a keyword here"),
    ("number too large", body("h = dense(x, 3) * 1e999\n"), "the number 1e999 is too large", 4, 19),
    # ---- names, functions, layers
    ("unknown name", body("p = softmax(dense(z, 3))\n"), "unknown name 'z'", 4, 19),
    ("misspelled name", body("hidden = relu(dense(x, 8))\np = softmax(dense(hiden, 3))\n"),
     "unknown name 'hiden'", 5, 19, "did you mean 'hidden'?"),
    ("misspelled function", body("p = softmaxx(dense(x, 3))\n"), "unknown function or layer 'softmaxx'", 4, 5,
     "did you mean 'softmax'?"),
    ("misspelled layer", body(LAYER_F + "h = g(x, 3)\np = softmax(blok(h, 3))\n"), "unknown function or layer 'g'",
     7, 5),
    ("misspelled layer suggestion", body("layer block(x, n) {\n  return relu(dense(x, n))\n}\np = softmax(blok(x, 3))\n"),
     "unknown function or layer 'blok'", 7, 13, "did you mean 'block'?"),
    ("calling a tensor", body("h = dense(x, 3)\np = softmax(h(x))\n"), "'h' is not a function: it holds a tensor", 5, 13),
    ("name used before any definition in a layer", body("z = 2\nlayer f(x) {\n  return x * z\n}\nh = f(x)\n"),
     "unknown name 'z'", 6, 14, "a layer sees only its arguments"),
    # ---- arity and keywords
    ("too many arguments", body("p = softmax(dense(x, 3), 2)\n"), "softmax takes 1 argument (x), got 2", 4, 26),
    ("missing argument", body("h = dense(x)\n"), "dense needs the argument 'n'", 4, 5, "call it as dense(x, n)"),
    ("unknown keyword", body("h = dense(x, 3, bais=false)\n"), "unknown argument 'bais' of dense", 4, 17,
     "did you mean 'bias'?"),
    ("layer arity", body(LAYER_F + "h = f(x, 3, 4)\n"), "layer 'f' takes 2 arguments (x, n), got 3", 7, 13),
    ("layer unknown keyword", body(LAYER_F + "h = f(x, m=4)\n"), "unknown argument 'm' of layer 'f'", 7, 10,
     "allowed: x, n"),
    # ---- shapes and sizes
    ("shape mismatch for +", body("param b[5]\nh = dense(x, 3) + b\n"), "shapes [3] and [5] do not match for '+'", 5, 5),
    ("shape mismatch for @", body("param W[3, 5]\nh = W @ x\n"), "shapes [3, 5] and [4] do not fit for '@'", 5, 5,
     "last size of A (5) to equal the first size of B (4)"),
    ("negative size", "model m\ninput x[-4]\n", "the size of input 'x' must be positive, got -4", 2, 9),
    ("zero size", body("h = dense(x, 0)\n"), "the size of a dense layer must be a positive whole number", 4, 14),
    ("fractional size", body("param W[2.5, 4]\nloss sum(W)\n"), "must be a whole number, got 2.5", 4, 9),
    ("zero size inside a layer", body(LAYER_F + "h = f(x, 0)\n"), "size of a dense layer must be a positive", 5, 24,
     "layer 'f' called at line 7, column 5"),
    ("concat of a scalar", body("c = concat(x, sum(x))\n"), "concat joins vectors", 4, 5),
    ("transpose of a sample", body("t = transpose(x)\n"), "transpose needs a param matrix, got [4]", 4, 15),
    # ---- definitions
    ("redefinition", body("h = dense(x, 3)\nh = relu(x)\n"), "'h' is defined twice (first at line 4)", 5, 1),
    ("cycle", body("a = b + 1\nb = a * 2\nloss sum(a)\n"), "'a' is defined in terms of itself (a -> b -> a)", 5, 5),
    ("layer defined twice", body(LAYER_F + "layer f(x) {\n  return x\n}\n"), "layer 'f' is defined twice (first at line 4)",
     7, 7),
    ("argument redefined in a layer", body("layer f(x, n) {\n  n = 3\n  return dense(x, n)\n}\nh = f(x, 2)\n"),
     "'n' is an argument of layer 'f'", 5, 3),
    ("recursive layer", body("layer f(x) {\n  return f(x)\n}\nh = f(x)\n"), "layer 'f' calls itself (f -> f)", 5, 10,
     "layers may not be recursive"),
    ("mutually recursive layers", body("layer f(x) {\n  return g(x)\n}\nlayer g(x) {\n  return f(x)\n}\nh = f(x)\n"),
     "layer 'f' calls itself (f -> g -> f)", 8, 10),
    ("two outputs", body("p = softmax(dense(x, 3))\noutput p\noutput p\n"), "a second `output` statement", 6, 1),
    # ---- losses and targets
    ("non-scalar loss", body("p = softmax(dense(x, 3))\nloss p\n"), "a loss must be a scalar per sample, got shape [3]",
     5, 6, "reduce it with sum(...) or mean(...)"),
    ("class target fed to mse", body("p = softmax(dense(x, 3))\nloss mse(p, y)\n"),
     "mse compares real values, but 'y' holds class labels", 5, 13),
    ("class labels in arithmetic", body("p = softmax(dense(x, 3))\nloss cross_entropy(p, y) + mean(y)\n"),
     "'y' holds class labels", 5, 33, "onehot(y)"),
    ("wrong number of classes", body("p = softmax(dense(x, 4))\nloss cross_entropy(p, y)\n"),
     "the prediction has 4 classes but the target 'y' has 3", 5, 20),
    ("two losses with one name", body("p = softmax(dense(x, 3))\nloss main = cross_entropy(p, y)\nloss main = 0\n"),
     "two loss terms are named 'main' (the first at line 5)", 6, 1),
    ("a term named like the total", body("p = softmax(dense(x, 3))\nloss main = cross_entropy(p, y)\nloss loss = 0\n"),
     "with several terms, 'loss' names their total", 6, 1),
    ("unknown target kind", "model m\ninput x[4]\ntarget y: clas[3]\n", "unknown target kind 'clas'", 3, 11,
     "did you mean 'class'?"),
    ("output from the target", body("p = softmax(dense(x, 3))\nq = p * mean(onehot(y))\noutput q\n"),
     "output 'q' depends on the target 'y'", 6, 8),
    # ---- initializers
    ("unknown initializer", body("param W[3, 4] = glorott\n"), "unknown initializer 'glorott'", 4, 17,
     "did you mean 'glorot'?"),
    ("initializer missing an argument", body("param W[3, 4] = normal(0)\n"), "initializer 'normal' needs 'std'", 4, 17),
    ("initializer with a bad range", body("param W[3, 4] = uniform(1, 0)\n"), "uniform(low, high) needs low < high", 4, 17),
    ("initializer given arguments", body("h = dense(x, 3, init=he(2))\n"), "initializer 'he' takes 0 arguments, got 1",
     4, 25),
    # ---- optimizer, schedule, train block
    ("unknown optimizer", body("optimizer adan(lr=0.1)\n"), "unknown optimizer 'adan'", 4, 11, "did you mean 'adam'?"),
    ("unknown optimizer argument", body("optimizer sgd(lr=0.1, momentun=0.9)\n"),
     "unknown argument 'momentun' of optimizer sgd", 4, 23, "did you mean 'momentum'?"),
    ("negative learning rate", body("optimizer sgd(lr=-0.1)\n"), "'lr' of sgd must not be negative", 4, 18),
    ("unknown schedule", body("schedule cosin\n"), "unknown schedule 'cosin'", 4, 10, "did you mean 'cosine'?"),
    ("unknown schedule argument", body("schedule step(every=2, gama=0.5)\n"), "unknown argument 'gama' of schedule step",
     4, 24, "did you mean 'gamma'?"),
    ("unknown train key", body("train {\n  epoch = 3\n}\n"), "unknown train setting 'epoch'", 5, 3,
     "did you mean 'epochs'?"),
    ("zero batch", body("train {\n  batch = 0\n}\n"), "'batch' must be a whole number >= 1, got 0", 5, 3),
    ("unknown metric", body("train {\n  metrics = acuracy\n}\n"), "unknown metric 'acuracy'", 5, 3,
     "did you mean 'accuracy'?"),
    ("early stopping on an unknown metric", body("train {\n  stop = early(val.acuracy)\n}\n"),
     "early stopping cannot watch 'val.acuracy'", 5, 3, "did you mean 'val.accuracy'?"),
    ("unknown data source", body("train {\n  data = moon(n=100)\n}\n"), "unknown data source 'moon'", 5, 3,
     "did you mean 'moons'?"),
    ("division by zero", body("a = 1 / 0\nh = dense(x, 3) * a\n"), "division by zero", 4, 5),
]


IMG = "model m\ninput img[1, 8, 8]\ntarget y: class[3]\n"        # images; bodies start at line 4

# (id, source, message fragment, line, column[, hint fragment]): images (issue 10)
WRONG_IMAGES = [
    ("dense on an image", IMG + "h = dense(img, 3)\n", "dense needs a per-sample vector, got shape [1, 8, 8]", 4, 11,
     "flatten it first"),
    ("kernel larger than its input", IMG + "h = conv2d(img, 4, 9)\n",
     "the 9x9 kernel of conv2d is larger than its input [1, 8, 8]", 4, 20, "pad the input"),
    ("kernel larger than its padded input", IMG + "param K[2, 1, 11, 3]\nh = conv(img, K, pad=1)\n",
     "the 11x3 kernel of conv is larger than its input [1, 8, 8] (padded by 1x1: 10x10)", 5, 15),
    ("channel mismatch", IMG + "param K[4, 3, 3, 3]\nh = conv(img, K)\n",
     "the kernel [4, 3, 3, 3] has 3 input channels but the image [1, 8, 8] has 1", 5, 15, "[4, 1, 3, 3]"),
    ("conv of a vector", body("h = conv2d(x, 4, 3)\n"), "conv2d needs images [C, H, W] per sample, got shape [4]",
     4, 12, "input NAME[C, H, W]"),
    ("kernel not a 4-d param", IMG + "param K[4, 3]\nh = conv(img, K)\n",
     "the kernel of conv must be a param [n, C, kh, kw], got shape [4, 3]", 5, 15),
    ("pooling window larger than its input", IMG + "h = maxpool(img, 9)\n",
     "the 9x9 window of maxpool is larger than its input [1, 8, 8]", 4, 18),
    ("bad stride", IMG + "h = avgpool(img, 2, stride=0)\n", "stride of avgpool must be a whole number >= 1", 4, 28,
     "stride=2 or stride=[2, 3]"),
    ("bad kernel size", IMG + "h = conv2d(img, 4, [2, 2, 2])\n", "k of conv2d must be a whole number >= 1 or a pair",
     4, 20),
    ("reshape to another size", IMG + "h = reshape(img, [8, 9])\n",
     "reshape cannot make [1, 8, 8] (64 elements) into [8, 9] (72 elements)", 4, 18),
]


@pytest.mark.parametrize("case", WRONG_IMAGES, ids=[c[0] for c in WRONG_IMAGES])
def test_wrong_image_program(case):
    test_wrong_program(case)


def test_image_errors_are_reported_at_once():
    err = diagnose(IMG + "a = dense(img, 3)\nb = conv2d(img, 4, 9)\nparam K[4, 3, 3, 3]\nc = conv(img, K)\n")
    assert err is not None
    assert [d.span.line for d in err.diagnostics] == [4, 5, 7], err.render()


def test_the_table_is_large_and_distinct():
    assert len(WRONG) >= 30
    assert len({c[0] for c in WRONG}) == len(WRONG)
    assert len({c[2] for c in WRONG}) >= 30          # at least 30 different messages


@pytest.mark.parametrize("case", WRONG, ids=[c[0] for c in WRONG])
def test_wrong_program(case):
    name, source, fragment, line, col, *hint = case
    err = diagnose(source)
    assert err is not None, f"{name}: no error"
    first = err.diagnostics[0]
    assert fragment in first.message, err.render()
    assert (first.span.file, first.span.line, first.span.col) == ("t.net", line, col), err.render()
    if hint:
        assert first.hint and hint[0] in first.hint, err.render()
    text = err.render()
    assert text.startswith(f"t.net:{line}:{col}: error: "), text
    # the source line and a caret under the span
    lines = text.splitlines()
    assert lines[1] == "    " + source.splitlines()[line - 1].expandtabs(1)
    assert lines[2].index("^") == 4 + col - 1


def test_every_error_of_a_file_is_reported_at_once_in_order():
    source = body("""
        h = dense(x, 3) + zz
        p = softmaxx(h)
        param W[3, 5]
        q = W @ x
        loss cross_entropy(p, y)
        optimizer sgd(lr=0.1, momentun=0.9)
        train {
          epoch = 3
        }
    """)
    err = diagnose(source)
    where = [(d.span.line, d.span.col) for d in err.diagnostics]
    assert where == sorted(where)
    messages = [d.message for d in err.diagnostics]
    assert any("unknown name 'zz'" in m for m in messages)
    assert any("softmaxx" in m for m in messages)
    assert any("do not fit for '@'" in m for m in messages)
    assert any("momentun" in m for m in messages)
    assert any("epoch" in m for m in messages)
    # the loss uses p, whose definition failed: no second error for it
    assert len(messages) == 5, err.render()


def test_syntax_errors_are_all_reported():
    err = diagnose(body("h = dense(x 3)\np = softmax(h))\nloss = 2\n"))
    assert [d.span.line for d in err.diagnostics] == [4, 5, 6]


def test_the_caret_is_under_the_whole_span():
    err = diagnose(body("param W[3, 5]\nh = W @ x + 1\n"))
    lines = err.render().splitlines()
    assert lines[1] == "    h = W @ x + 1"
    assert lines[2] == "        ^^^^^"


def test_layer_params_have_hierarchical_names_in_diagnostics():
    source = body("""
        layer block(x, n) {
          extra = dense(x, n)
          return relu(dense(x, n))
        }
        h1 = block(x, 8)
        p = softmax(dense(h1, 3))
        loss cross_entropy(p, y)
    """)
    model = check(source)
    unused = [w.message for w in model.warnings]
    assert unused == ["param 'h1.block.extra.dense.W' reaches no loss and not the output",
                      "param 'h1.block.extra.dense.b' reaches no loss and not the output"]


# ---------------------------------------------------------------- warnings
WARNINGS = [
    ("unused param", body("param W[3, 4]\np = softmax(dense(x, 3))\nloss cross_entropy(p, y)\n"),
     "param 'W' is never used", 4, 1),
    ("loss without params", body("p = softmax(dense(x, 3))\nloss main = cross_entropy(p, y)\nloss c = mean(x * x)\n"),
     "loss 'c' does not depend on any param", 6, 1),
    ("sigmoid into cross_entropy", body("p = sigmoid(dense(x, 3))\nloss cross_entropy(p, y)\n"),
     "sigmoid feeds cross_entropy over 3 classes", 5, 20),
    ("softmax into binary_cross_entropy",
     "model m\ninput x[4]\ntarget t[2]\np = softmax(dense(x, 2))\nloss binary_cross_entropy(p, t)\n",
     "softmax feeds binary_cross_entropy", 5, 27),
    ("logits into cross_entropy", body("loss cross_entropy(dense(x, 3), y)\n"),
     "cross_entropy expects probabilities", 4, 20),
    ("softmax of one value", "model m\ninput x[4]\ntarget t[1]\np = softmax(dense(x, 1))\nloss mse(p, t)\n",
     "softmax of a single value is constant", 4, 5),
]


@pytest.mark.parametrize("case", WARNINGS, ids=[c[0] for c in WARNINGS])
def test_warning(case):
    name, source, fragment, line, col = case
    model = check(source)
    found = [w for w in model.warnings if fragment in w.message]
    assert len(found) == 1, [w.message for w in model.warnings]
    assert (found[0].span.line, found[0].span.col, found[0].severity) == (line, col, "warning")


@pytest.mark.parametrize("path", ["digits", "linear", "moons", "neuron", "spiral", "xor"])
def test_the_examples_have_no_warnings(path):
    from pathlib import Path
    file = Path(__file__).resolve().parents[2] / "examples" / f"{path}.net"
    model = check(file.read_text(), str(file))
    assert model.warnings == []


def test_netc_check_prints_warnings_and_errors(tmp_path, capsys):
    from netc.cli import main
    good = tmp_path / "warn.net"
    good.write_text("model w\ninput x[4]\ntarget y: class[3]\nparam W[3, 4]\n"
                    "p = softmax(dense(x, 3))\nloss cross_entropy(p, y)\n")
    assert main(["check", str(good)]) == 0
    err = capsys.readouterr().err
    assert f"{good}:4:1: warning: param 'W' is never used" in err
    bad = tmp_path / "bad.net"
    bad.write_text("model b\ninput x[4]\ntarget y: class[3]\np = softmax(dense(x, 3)) + zz\n"
                   "loss cross_entropy(softmax(dense(x, 3)), yy)\n")
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4:28: error: unknown name 'zz'" in err
    assert f"{bad}:5:42: error: unknown name 'yy'" in err
    assert "hint: did you mean 'y'?" in err


def test_no_input_with_a_loss_on_a_second_target_is_a_diagnostic():
    """Found by the mutation test: `input` mutated into a second `target`."""
    src = "model m\ntarget x[3]\ntarget y[1]\ny_hat = dense(x, 1)\nloss mse(y_hat, y)\n"
    with pytest.raises(NetcError) as e:
        elaborate(parse(src, "m.net"))
    assert "the model has no `input`" in str(e.value)


def test_independent_mistakes_behind_a_failed_definition_are_all_reported():
    """A bad initializer does not hide the param's shape mismatch, and a failed left operand
    does not hide an unknown name on the right."""
    src = textwrap.dedent("""\
        model typo
        input  x[2]
        target y: class[3]
        param W[4, 3] = glorott
        h = relu(W @ x + b)
        p = softmax(dense(h, 3))
        loss cross_entropy(p, y)
        """)
    with pytest.raises(NetcError) as e:
        elaborate(parse(src, "typo.net"))
    got = [(d.span.line, d.span.col, d.message) for d in e.value.diagnostics]
    assert got == [(4, 17, "unknown initializer 'glorott'"),
                   (5, 10, "shapes [4, 3] and [2] do not fit for '@'"),
                   (5, 18, "unknown name 'b'")]


def test_a_regularizer_of_a_list_held_by_a_name():
    """`ws = [W1, W2]` then `l2(ws)`: the list's items are checked where the name is written
    (this raised an AttributeError before: a traceback for a user's program)."""
    src = body("param W1[3, 4]\nws = [W1]\nloss cross_entropy(softmax(W1 @ x), y) + l2(ws)\n")
    model = check(src)
    assert [l.name for l in model.losses] == ["loss"]
    e = diagnose(body("param W1[3, 4]\nws = [W1, 2]\nloss cross_entropy(softmax(W1 @ x), y) + l2(ws)\n"))
    assert [(d.span.line, d.span.col, d.message) for d in e.diagnostics] == [(6, 45, "l2 takes tensors")]
