"""Fuzz (issue 15): nothing a user hands netc -- the *bytes* of a `.net` file, a damaged or odd
data file (CSV, .npz), a tampered checkpoint or run directory (model.json, settings.json,
metrics.jsonl) -- raises anything but netc's one user-error type, `UserError` (a message, exit
status 2). tests/compiler/test_mutations.py does the same over tokens.

Derandomized so CI is repeatable (2,400 cases here, in seconds); `NETC_FUZZ=N` runs N fresh
random cases of each fuzzer instead (the same variable as test_mutations)."""
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netc.dsl import UserError
from netc.dsl.parser import decode
from netc.runtime import build as B
from netc.runtime import session
from netc.runtime.build import check_source
from netc.runtime.model import Model
from netc.runtime.predictions import read_features
from netc.runtime.settings import resolve

ROOT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("NETC_FUZZ", 0))


def fuzz(default):
    return settings(max_examples=N or default, deadline=None, derandomize=not N, database=None,
                    suppress_health_check=list(HealthCheck))


def only_user_errors(fn, *args):
    """Run fn; a UserError is fine (and must render), anything else fails the test."""
    try:
        return fn(*args)
    except UserError as e:
        text = e.render()
        assert text and "Traceback" not in text
        return None


# ------------------------------------------------------------------ bytes of .net files
SOURCES = [p.read_bytes() for p in sorted((ROOT / "examples").glob("*.net"))]
ODD = [b"\xff", b"\xfe", b"\x00", b"\xe9", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\r", b"\r\n", b"\x1b[0m",
       b"\xf0\x9f\x92\xa9", b"\t", b"\x0c", b"\xe2\x80\xae", b"((((((((", b"9" * 400, b"**", b"1e999"]


@st.composite
def damaged_bytes(draw, sources):
    data = bytearray(draw(st.sampled_from(sources)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "odd", "delete", "truncate", "duplicate"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "odd":
            data[i:i] = draw(st.sampled_from(ODD))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[i:]
        else:
            j = draw(st.integers(i, min(i + 40, len(data))))
            data[i:i] = data[i:j]
    return bytes(data)


def check_bytes(data: bytes) -> None:
    source = decode(data, "fuzz.net")
    check_source(source, "fuzz.net")


@fuzz(1000)
@given(damaged_bytes(SOURCES))
def test_the_bytes_of_a_net_file_check_or_get_a_user_error(data):
    only_user_errors(check_bytes, data)


# ------------------------------------------------------------------ data files
TINY = """model tiny
input  x[2]
target y: class[3]
h = relu(dense(x, 4))
p = softmax(dense(h, 3))
loss cross_entropy(p, y)
optimizer adam(lr=0.01)
train {
  data   = blobs(n=60, centers=3, seed=0)
  split  = 0.8, 0.2
  batch  = 16
  epochs = 2
  standardize = true
}
"""

_COMPILED = {}


def cached_build(source, file="<string>", *, dtype="float32", device="cpu", disabled=(), seed=None):
    """runtime.build.build with its compiled model shared between the fuzz cases (what a
    checkpoint's fields do after the compile is the same for a fresh or a shared one)."""
    key = (source, dtype, device, tuple(disabled))
    if key not in _COMPILED:
        _COMPILED[key] = REAL_BUILD(source, file, dtype=dtype, device=device, disabled=disabled).artifact
    art = _COMPILED[key]
    return Model(art, resolve(art.model, file, source), file, source, seed)


REAL_BUILD = B.build


@pytest.fixture(scope="module")
def world():
    """A scratch folder with tiny.net, a finished run of it (run/) and its model (trained)."""
    from netc.cli import main
    d = Path(tempfile.mkdtemp(prefix="netc-fuzz-"))
    (d / "tiny.net").write_text(TINY)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        assert main(["train", "tiny.net", "--out", "run", "--quiet"]) == 0
        mp.setattr(B, "build", cached_build)
        mp.setattr(session, "build", cached_build)
        model = B.load(str(d / "run" / "last"))
        yield d, model
    shutil.rmtree(d, ignore_errors=True)


CELLS = ["", "nan", "inf", "-inf", "1e39", "1e400", "-1e400", "1e-400", "-", "x", "1,2", '"', '"1"', "0x10", "  ",
         "९", "1_0", "True", "0", "2", "3", "-1", "1.5", "cat", "\x00", "1e5", "NaN", " 1 ", "\\", "#", ";"]


@st.composite
def csv_texts(draw):
    rows = ["a,b,label"] + [f"{draw(st.sampled_from(['0.5', '-1.25', '3']))},{draw(st.sampled_from(['0', '2.5']))},"
                            f"{draw(st.sampled_from(['0', '1', '2']))}" for _ in range(draw(st.integers(0, 6)))]
    cells = [r.split(",") for r in rows]
    for _ in range(draw(st.integers(0, 4))):
        r = draw(st.integers(0, len(cells) - 1))
        kind = draw(st.sampled_from(["cell", "add", "drop", "row"]))
        if kind == "cell" and cells[r]:
            c = draw(st.integers(0, len(cells[r]) - 1))
            cells[r][c] = draw(st.sampled_from(CELLS))
        elif kind == "add":
            cells[r].append(draw(st.sampled_from(CELLS)))
        elif kind == "drop" and cells[r]:
            cells[r].pop()
        else:
            cells.insert(r, [draw(st.sampled_from(CELLS))])
    data = ("\n".join(",".join(c) for c in cells) + draw(st.sampled_from(["\n", "", "\r\n", "\n\n"]))).encode()
    if draw(st.booleans()):
        data = draw(damaged_bytes([data]))
    return data, draw(st.sampled_from([None, None, "label", "b", "0", "-1", "7", "nope"]))


def use_data(model, spec):
    ds = session.load_dataset(model, spec)
    model.prepare(ds.X, ds.y, ds.name)
    read_features(spec, 2)
    model.predict(read_features(spec, 2)[:, :2] if read_features(spec, 2).shape[1] >= 2 else np.zeros((0, 2)))


def write(folder, name, data):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


@fuzz(600)
@given(csv_texts())
def test_a_damaged_csv_file_is_read_or_refused_with_a_user_error(world, case):
    d, model = world
    data, label = case
    path = write(d, "fuzz.csv", data)
    spec = {"source": "csv", "args": [path], "kwargs": {} if label is None else
            {"label": int(label) if label.lstrip("-").isdigit() else label}}
    only_user_errors(use_data, model, spec)


ARRAYS = [np.zeros((5, 2)), np.ones((5, 3)), np.zeros((5,)), np.zeros(()), np.zeros((0, 2)), np.full((5, 2), np.nan),
          np.full((5, 2), 1e300), np.arange(5), np.array([0, 1, 2, 1, 0]), np.array([0, 1, 2, 3, 9]),
          np.array(["a", "b", "a", "c", "b"]), np.array([0.5, 1, 2, 1, 0]), np.zeros((5, 2), np.complex64),
          np.ones((5, 2), bool), np.zeros((5, 1, 2), np.int8), np.array([-1, 0, 1, 2, 0]), np.eye(5, 3),
          np.zeros((4, 2)), np.zeros((5, 2), np.float16), np.array([[0, 1]] * 5)]


@st.composite
def npz_files(draw):
    names = draw(st.lists(st.sampled_from(["X", "y", "x", "Y", "images", "labels", "other"]), max_size=3, unique=True))
    buf = io.BytesIO()
    np.savez(buf, **{n: draw(st.sampled_from(ARRAYS)) for n in names})
    data = buf.getvalue()
    kind = draw(st.sampled_from(["as is", "as is", "damaged", "npy", "pickle"]))
    if kind == "damaged":
        data = draw(damaged_bytes([data]))
    elif kind == "npy":
        buf = io.BytesIO()
        np.save(buf, draw(st.sampled_from(ARRAYS)))
        data = buf.getvalue() if draw(st.booleans()) else draw(damaged_bytes([buf.getvalue()]))
    elif kind == "pickle":
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        data = buf.getvalue()
    return data


@fuzz(400)
@given(npz_files())
def test_a_damaged_npz_file_is_read_or_refused_with_a_user_error(world, data):
    d, model = world
    path = write(d, "fuzz.npz", data)
    only_user_errors(use_data, model, {"source": "npz", "args": [path], "kwargs": {}})


# ------------------------------------------------------------------ checkpoint and run metadata
JSON = st.recursive(st.none() | st.booleans() | st.sampled_from([0, 1, -5, 2 ** 64, 10 ** 400, 3]) |
                    st.sampled_from([0.5, -1e308, float("nan"), float("inf"), 1e-320]) |
                    st.sampled_from(["", "x", "float32", "float64", "full", "val.loss", "csv", "blobs", "cosine"]),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(
                        ["name", "source", "args", "kwargs", "epoch", "state", "bit_generator", "x"]), kids, max_size=3),
                    max_leaves=6)


@st.composite
def tampered(draw, doc):
    """`doc` (JSON) with 1-3 values replaced, deleted or added, at any depth."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 3))):
        node, key = None, None
        cur = doc
        while isinstance(cur, (dict, list)) and cur and (node is None or draw(st.booleans())):
            node = cur
            key = draw(st.sampled_from(sorted(cur) if isinstance(cur, dict) else range(len(cur))))
            cur = cur[key]
        if node is None:
            return draw(JSON)
        kind = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if kind == "replace":
            node[key] = draw(JSON)
        elif kind == "delete":
            del node[key]
        elif isinstance(node, dict):
            node[draw(st.sampled_from(["x", "format", "done", "training", "settings"]))] = draw(JSON)
        else:
            node.append(draw(JSON))
    return doc


def meta_doc(world, name="last/model.json"):
    d, _ = world
    return json.loads((d / "run" / name).read_text())


@st.composite
def tampered_runs(draw, meta, settings_doc, metrics):
    which = draw(st.sampled_from(["model.json"] * 4 + ["settings.json", "metrics.jsonl", "raw"]))
    if which == "model.json":
        doc = draw(tampered(meta))
        if isinstance(doc, dict) and isinstance(doc.get("source"), str) and draw(st.booleans()):
            doc["source_sha256"] = meta["source_sha256"]       # a hash that fits: the schema is what is tested
        return which, json.dumps(doc).encode()
    if which == "settings.json":
        return which, json.dumps(draw(tampered(settings_doc))).encode()
    if which == "metrics.jsonl":
        lines = metrics.splitlines(keepends=True)
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = json.dumps(draw(tampered(json.loads(lines[i])))) + "\n" if draw(st.booleans()) else \
            draw(damaged_bytes([lines[i].encode()])).decode("utf-8", "replace")
        return which, "".join(lines).encode()
    return "model.json", draw(damaged_bytes([json.dumps(meta).encode()]))


def use_run(run):
    B.load(str(run / "last"))
    B.load(str(run))
    job = session.resume_job(str(run), epochs=3)
    job.results()


@pytest.fixture(scope="module")
def docs(world):
    d, _ = world
    return (json.loads((d / "run" / "last" / "model.json").read_text()),
            json.loads((d / "run" / "settings.json").read_text()), (d / "run" / "metrics.jsonl").read_text())


def test_the_untampered_run_loads_and_resumes(world):
    d, _ = world
    run = d / "copy"
    shutil.copytree(d / "run", run, dirs_exist_ok=True)
    use_run(run)


@fuzz(400)
@given(st.data())
def test_a_tampered_checkpoint_or_run_directory_is_refused_with_a_user_error(world, docs, data):
    d, _ = world
    which, content = data.draw(tampered_runs(*docs))
    run = d / "tampered"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(d / "run", run)
    (run / ("last" if which == "model.json" else ".") / which).write_bytes(content)
    only_user_errors(use_run, run)
