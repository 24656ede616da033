"""TrainSettings' JSON form and overrides, and the command line's `--data` values."""
import os

import pytest

import netc
from netc.runtime.data import DataError
from netc.runtime.settings import TrainSettings, parse_data_arg

SRC = """model m
input x[2]
target y: class[2]
p = softmax(dense(x, 2))
loss cross_entropy(p, y)
optimizer sgd(lr=0.1)
train {
  data = moons(n=100, seed=3)
  batch = 16
  epochs = 4
}
"""


def test_data_arg_is_read_as_a_train_block_writes_it():
    assert parse_data_arg("moons(n=400, noise=0.2, seed=7)") == \
        {"source": "moons", "args": [], "kwargs": {"n": 400, "noise": 0.2, "seed": 7}}
    assert parse_data_arg("digits") == {"source": "digits", "args": [], "kwargs": {}}
    assert parse_data_arg('idx("a.gz", "b.gz")')["args"] == [os.path.abspath("a.gz"), os.path.abspath("b.gz")]
    assert parse_data_arg('csv("d.csv", label="y")') == \
        {"source": "csv", "args": [os.path.abspath("d.csv")], "kwargs": {"label": "y"}}
    assert parse_data_arg("data.csv", "2") == {"source": "csv", "args": [os.path.abspath("data.csv")],
                                               "kwargs": {"label": 2}}


@pytest.mark.parametrize("text,error,message", [
    ("moon", DataError, "no file or data source 'moon' (did you mean 'moons'?)"),
    ("Moons(n=5)", DataError, "did you mean 'moons'?"),
    ("moons(n=", netc.NetcError, "cannot read 'moons(n=' as a data source"),
    ("moons(1 2)", netc.NetcError, "each argument is a value or key=value"),
    ("moons digits", netc.NetcError, "give one data source"),
])
def test_bad_data_args_are_user_errors(text, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")) as e:
        parse_data_arg(text)
    assert isinstance(e.value, netc.UserError)


def test_settings_json_round_trip_and_overrides():
    m = netc.compile(SRC)
    s = m.settings
    doc = s.to_json()
    assert doc["batch"] == 16 and doc["epochs"] == 4
    assert doc["data"] == {"source": "moons", "args": [], "kwargs": {"n": 100, "seed": 3}}
    s.override(seed=5, epochs=7, batch="full")
    assert (s.seed, s.epochs, s.batch) == (5, 7, None)
    fresh = netc.compile(SRC).settings
    fresh.apply_json(s.to_json())
    assert fresh.to_json() == s.to_json()
    with pytest.raises(netc.NetcError, match="--batch is a number >= 1 or 'full', got '0'"):
        TrainSettings.check_overrides({"batch": "0"})
    with pytest.raises(netc.NetcError, match="--epochs must be >= 0"):
        s.override(epochs=-1)
