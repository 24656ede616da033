"""Learning-rate schedules: closed forms, PyTorch parity, checkpoint round-trips, errors."""

import json
import math

import pytest

from netc.runtime.schedules import (REQUIRED, SCHEDULE_ARGS, SCHEDULES, Schedule,
                                    make_schedule)

EPOCHS = 40
BASE_LR = 0.1

# A validation metric with improvements, long plateaus, tiny (sub-threshold) gains and a
# rise: exercises patience, the relative threshold and min_lr.
PLATEAU_METRIC = ([1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.69999, 0.65, 0.65, 0.66, 0.67, 0.68, 0.6]
                  + [0.6] * 12 + [0.5, 0.5, 0.4] + [0.45] * 12)


def run(schedule: Schedule, metric=None, epochs=EPOCHS):
    """The learning rates a training loop would use: lr_at at the start, observe at the end."""
    lrs = []
    for epoch in range(epochs):
        lrs.append(schedule.lr_at(epoch))
        schedule.observe(metric[epoch] if metric else 0.0)
    return lrs


def test_registry_and_args_agree():
    assert set(SCHEDULES) == {"constant", "step", "exponential", "cosine", "warmup", "plateau"}
    assert set(SCHEDULE_ARGS) == set(SCHEDULES)
    assert SCHEDULE_ARGS["step"] == {"every": REQUIRED, "gamma": 0.1}
    assert list(SCHEDULE_ARGS["plateau"]) == ["patience", "factor", "min_lr", "mode", "threshold"]


@pytest.mark.parametrize("name, kwargs, expected", [
    ("constant", {}, lambda e: 0.1),
    ("step", {"every": 7, "gamma": 0.5}, lambda e: 0.1 * 0.5 ** (e // 7)),
    ("step", {"every": 10}, lambda e: 0.1 * 0.1 ** (e // 10)),
    ("exponential", {"gamma": 0.9}, lambda e: 0.1 * 0.9 ** e),
    ("cosine", {}, lambda e: 0.05 * (1 + math.cos(math.pi * e / 40))),
    ("cosine", {"min_lr": 0.01, "epochs": 10},
     lambda e: 0.01 + 0.09 * (1 + math.cos(math.pi * e / 10)) / 2),
    ("warmup", {"epochs": 4}, lambda e: 0.1 * min(e + 1, 5) / 5),
    ("warmup", {"epochs": 4, "start_factor": 0.5}, lambda e: 0.1 * min(0.5 + e / 8, 1.0)),
])
def test_closed_forms(name, kwargs, expected):
    lrs = run(make_schedule(name, BASE_LR, EPOCHS, **kwargs))
    assert lrs == pytest.approx([expected(e) for e in range(EPOCHS)], rel=1e-12)


def test_cosine_hand_values():
    s = make_schedule("cosine", 1.0, 4, min_lr=0.2)
    assert [s.lr_at(e) for e in range(5)] == pytest.approx(
        [1.0, 0.2 + 0.8 * (1 + math.sqrt(0.5)) / 2, 0.6, 0.2 + 0.8 * (1 - math.sqrt(0.5)) / 2, 0.2])


def test_warmup_then_counts_from_end_of_warmup():
    s = make_schedule("warmup", 0.1, 25, epochs=5, then=("step", {"every": 10, "gamma": 0.5}))
    lrs = run(s, epochs=25)
    assert lrs[:6] == pytest.approx([0.1 / 6, 0.2 / 6, 0.3 / 6, 0.4 / 6, 0.5 / 6, 0.1])
    assert lrs[14] == pytest.approx(0.1) and lrs[15] == pytest.approx(0.05)
    # the `then` schedule lasts what is left of the training
    cos = make_schedule("warmup", 0.1, 25, epochs=5, then="cosine")
    assert cos.then.t_max == 20
    # a ready-made Schedule is used as given
    ready = make_schedule("exponential", 0.1, 20, gamma=0.5)
    assert make_schedule("warmup", 0.1, 25, epochs=5, then=ready).lr_at(7) == 0.1 * 0.25


def test_warmup_passes_metrics_to_then_only_after_warmup():
    s = make_schedule("warmup", 1.0, 20, epochs=3, then=("plateau", {"patience": 1}))
    lrs = run(s, metric=[1.0] * 20, epochs=20)
    # plateau sees epochs 3.. only: best at epoch 3, two bad epochs (4, 5) -> reduced from 6
    assert lrs[3:7] == [1.0, 1.0, 1.0, 0.1]


def test_plateau_hand_sequence():
    s = make_schedule("plateau", 1.0, 10, patience=2, factor=0.5, min_lr=0.3)
    lrs = run(s, metric=[5, 4, 4, 4, 4, 3, 3, 3, 3, 3], epochs=10)
    assert lrs == [1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.3]


def test_plateau_max_mode():
    s = make_schedule("plateau", 1.0, 10, patience=0, mode="max")
    assert run(s, metric=[0.5, 0.6, 0.6, 0.7, 0.7], epochs=5) == pytest.approx(
        [1, 1, 1, 0.1, 0.1])


# --- parity with torch.optim.lr_scheduler -------------------------------------------------

def torch_run(build, metric=None, epochs=EPOCHS):
    """Learning rates of a PyTorch run that steps ``build(optimizer)`` once per epoch."""
    torch = pytest.importorskip("torch")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    scheduler = build(optimizer)
    lrs = []
    for epoch in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if metric:
            scheduler.step(metric[epoch])
        else:
            scheduler.step()
    return lrs


def _torch_parity_cases():
    def sched():
        return pytest.importorskip("torch").optim.lr_scheduler

    def warmup(o, n, then):
        return sched().SequentialLR(
            o, [sched().LinearLR(o, start_factor=1 / (n + 1), total_iters=n), then(o)], [n])

    return [
        ("step", {"every": 7, "gamma": 0.5}, lambda o: sched().StepLR(o, 7, gamma=0.5)),
        ("exponential", {"gamma": 0.93}, lambda o: sched().ExponentialLR(o, 0.93)),
        ("cosine", {"min_lr": 0.001},
         lambda o: sched().CosineAnnealingLR(o, T_max=EPOCHS, eta_min=0.001)),
        ("cosine", {"epochs": 12}, lambda o: sched().CosineAnnealingLR(o, T_max=12)),
        ("warmup", {"epochs": 5}, lambda o: warmup(o, 5, lambda o: sched().ConstantLR(o, 1.0))),
        ("warmup", {"epochs": 5, "then": ("cosine", {"min_lr": 0.001})},
         lambda o: warmup(o, 5, lambda o: sched().CosineAnnealingLR(o, EPOCHS - 5, 0.001))),
        ("warmup", {"epochs": 3, "then": ("step", {"every": 10, "gamma": 0.3})},
         lambda o: warmup(o, 3, lambda o: sched().StepLR(o, 10, gamma=0.3))),
    ]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name, kwargs, build", _torch_parity_cases(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_matches_torch(name, kwargs, build):
    expected = torch_run(build)
    assert run(make_schedule(name, BASE_LR, EPOCHS, **kwargs)) == pytest.approx(expected,
                                                                                rel=1e-9)


@pytest.mark.parametrize("kwargs", [
    {}, {"patience": 2, "factor": 0.5}, {"patience": 0, "factor": 0.3, "min_lr": 0.005},
    {"patience": 1, "threshold": 0.1}, {"patience": 2, "mode": "max"},
])
def test_plateau_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    metric = PLATEAU_METRIC
    if kwargs.get("mode") == "max":
        metric = [-m for m in metric]
    expected = torch_run(
        lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, **kwargs), metric)
    lrs = run(make_schedule("plateau", BASE_LR, EPOCHS, **kwargs), metric)
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert len(set(lrs)) > 1  # the metric does trigger reductions


# --- checkpoints ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs", [
    ("constant", {}), ("step", {"every": 5}), ("cosine", {"min_lr": 0.01}),
    ("plateau", {"patience": 2, "factor": 0.5}),
    ("warmup", {"epochs": 4, "then": ("plateau", {"patience": 1})}),
])
def test_state_round_trip_resumes_exactly(name, kwargs):
    metric = PLATEAU_METRIC
    full = run(make_schedule(name, BASE_LR, EPOCHS, **kwargs), metric)

    first = make_schedule(name, BASE_LR, EPOCHS, **kwargs)
    half = EPOCHS // 2
    lrs = run(first, metric, epochs=half)
    state = json.loads(json.dumps(first.state_dict(), allow_nan=False))
    resumed = make_schedule(name, BASE_LR, EPOCHS, **kwargs)
    resumed.load_state_dict(state)
    for epoch in range(half, EPOCHS):
        lrs.append(resumed.lr_at(epoch))
        resumed.observe(metric[epoch])
    assert lrs == full


def test_plateau_state_before_any_metric_is_strict_json():
    s = make_schedule("plateau", BASE_LR, EPOCHS)
    state = json.loads(json.dumps(s.state_dict(), allow_nan=False))
    fresh = make_schedule("plateau", BASE_LR, EPOCHS)
    fresh.load_state_dict(state)
    assert fresh.best == math.inf


def test_load_state_of_another_schedule_fails():
    with pytest.raises(ValueError, match="'step' into schedule 'cosine'"):
        make_schedule("cosine", BASE_LR, EPOCHS).load_state_dict({"name": "step"})


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs, message", [
    ("cosin", {}, r"unknown schedule 'cosin' \(did you mean 'cosine'\?\); schedules: constant"),
    ("step", {"every": 3, "gama": 0.5}, r"no argument 'gama' \(did you mean 'gamma'\?\)"),
    ("step", {}, r"step\(\) is missing every"),
    ("step", {"every": 2.5}, r"every must be an integer >= 1, got 2.5"),
    ("exponential", {"gamma": -1}, r"gamma must be a number > 0"),
    ("plateau", {"factor": 1.0}, r"factor must be a number > 0 and < 1"),
    ("plateau", {"mode": "up"}, r'mode must be "min" or "max"'),
    ("warmup", {"epochs": 0}, r"epochs must be an integer >= 1"),
    ("warmup", {"epochs": 3, "then": 5}, r"then must be a schedule"),
    ("warmup", {"epochs": 40, "then": "cosine"}, r"cosine\(\): the schedule would last 0"),
])
def test_errors(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(name, BASE_LR, EPOCHS, **kwargs)


def test_integral_float_arguments_are_accepted():
    assert make_schedule("step", BASE_LR, EPOCHS, every=20.0).every == 20
