"""Learning-rate schedules, counted in epochs.

The training loop calls ``lr_at(epoch)`` once at the start of each epoch (``epoch`` is
0-based) and ``observe(metric)`` once at the end of each epoch. Every schedule reproduces the
PyTorch scheduler named in its docstring when that scheduler's ``step()`` is called once per
epoch, so a netc run and the equivalent PyTorch run use the same learning rates.

Each schedule is a class whose keyword-only constructor arguments are the arguments a
``.net`` file may give it; ``SCHEDULE_ARGS`` is derived from those signatures (in order, so
that positional arguments in the language map onto them), and ``make_schedule`` checks a
call against it with messages meant for the user.

Schedules are deterministic; the only mutable state (``plateau``'s, and ``warmup``'s when it
wraps a ``plateau``) round-trips through ``state_dict``/``load_state_dict`` as plain JSON
values, so a resumed run continues with exactly the learning rates it would have used.
"""

from __future__ import annotations

import abc
import inspect
import math
import numbers

from netc.dsl import UserError, did_you_mean


class ScheduleError(UserError, ValueError):
    """A schedule, or an argument of one, that makes no sense."""


class _Required:
    """Marks an argument without a default in ``SCHEDULE_ARGS``."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


def _integer(schedule: str, arg: str, value, minimum: int) -> int:
    """``value`` as an int (an integral float such as ``20.0`` is accepted)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value) and value == int(value) and value >= minimum
    if not ok:
        raise ScheduleError(f"{schedule}(): {arg} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _number(schedule: str, arg: str, value, low: float, high: float = math.inf,
            low_inclusive: bool = False, high_inclusive: bool = False) -> float:
    """``value`` as a float within the given bounds."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value >= low if low_inclusive else value > low) and \
             (value <= high if high_inclusive else value < high)
    if not ok:
        lo = f"{'>=' if low_inclusive else '>'} {low:g}"
        hi = "" if high == math.inf else f" and {'<=' if high_inclusive else '<'} {high:g}"
        raise ScheduleError(f"{schedule}(): {arg} must be a number {lo}{hi}, got {value!r}")
    return float(value)


def _json_float(x: float) -> float | str:
    """A float for JSON: non-finite values become the strings ``float()`` reads back."""
    return x if math.isfinite(x) else repr(x)


class Schedule(abc.ABC):
    """Base class: a learning rate per epoch, from ``base_lr`` (the optimizer's ``lr``)."""

    name = ""

    def __init__(self, base_lr: float, total_epochs: int):
        self.base_lr = float(base_lr)
        self.total_epochs = int(total_epochs)

    @abc.abstractmethod
    def lr_at(self, epoch: int) -> float:
        """The learning rate for 0-based ``epoch``."""

    @property
    def observes(self) -> bool:
        """Whether the rates depend on the values ``observe`` is given (``plateau``): the
        training loop then asks for an epoch's rate only after the previous epoch ended."""
        return False

    def observe(self, value: float) -> None:
        """Record the monitored metric at the end of an epoch (used by ``plateau`` only)."""

    def state_dict(self) -> dict:
        """The mutable state, as JSON-serialisable values."""
        return {"name": self.name}

    def load_state_dict(self, d: dict) -> None:
        """Restore what ``state_dict`` returned (from a schedule built with the same args)."""
        if d.get("name") != self.name:
            raise ScheduleError(f"cannot load the state of schedule {d.get('name')!r} "
                             f"into schedule {self.name!r}")

    def __repr__(self) -> str:
        return f"<schedule {self.name} base_lr={self.base_lr:g}>"


class Constant(Schedule):
    """``constant()``: always ``base_lr``."""

    name = "constant"

    def lr_at(self, epoch: int) -> float:
        return self.base_lr


class Step(Schedule):
    """``step(every, gamma=0.1)``: ``base_lr * gamma ** (epoch // every)`` (PyTorch ``StepLR``)."""

    name = "step"

    def __init__(self, base_lr: float, total_epochs: int, *, every, gamma=0.1):
        super().__init__(base_lr, total_epochs)
        self.every = _integer(self.name, "every", every, 1)
        self.gamma = _number(self.name, "gamma", gamma, 0.0)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.every)


class Exponential(Schedule):
    """``exponential(gamma)``: ``base_lr * gamma ** epoch`` (PyTorch ``ExponentialLR``)."""

    name = "exponential"

    def __init__(self, base_lr: float, total_epochs: int, *, gamma):
        super().__init__(base_lr, total_epochs)
        self.gamma = _number(self.name, "gamma", gamma, 0.0)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** epoch


class Cosine(Schedule):
    """``cosine(min_lr=0, epochs=None)``: cosine annealing from ``base_lr`` to ``min_lr``.

    ``lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * epoch / T)) / 2`` with ``T = epochs``,
    or the length of the training when ``epochs`` is not given (PyTorch
    ``CosineAnnealingLR(T_max=T, eta_min=min_lr)``, in its closed form). The last epoch of a
    training of ``T`` epochs runs just above ``min_lr``; past ``T`` the cosine continues.
    """

    name = "cosine"

    def __init__(self, base_lr: float, total_epochs: int, *, min_lr=0.0, epochs=None):
        super().__init__(base_lr, total_epochs)
        self.min_lr = _number(self.name, "min_lr", min_lr, 0.0, low_inclusive=True)
        if epochs is None:
            if total_epochs < 1:
                raise ScheduleError("cosine(): the schedule would last 0 epochs; give it epochs=N "
                                 "or train for more epochs (than the warm-up)")
            self.t_max = int(total_epochs)
        else:
            self.t_max = _integer(self.name, "epochs", epochs, 1)

    def lr_at(self, epoch: int) -> float:
        cos = (1.0 + math.cos(math.pi * epoch / self.t_max)) / 2.0
        return self.min_lr + (self.base_lr - self.min_lr) * cos


class Warmup(Schedule):
    """``warmup(epochs, then=constant(), start_factor=1/(epochs+1))``: a linear warm-up.

    For ``epoch < epochs``: ``lr = base_lr * (f + (1 - f) * epoch / epochs)`` with
    ``f = start_factor``; with the default ``f = 1 / (epochs + 1)`` this is
    ``lr = base_lr * (epoch + 1) / (epochs + 1)``: the learning rate climbs in equal steps,
    never starts at 0, and reaches ``base_lr`` at epoch ``epochs``, where the ``then``
    schedule starts at its own epoch 0 (with ``total_epochs - epochs`` epochs left). This is
    PyTorch's ``SequentialLR([LinearLR(start_factor=f, total_iters=epochs), then],
    milestones=[epochs])``.

    ``then`` is a ``Schedule``, a schedule name, or ``(name, kwargs)``. Metrics observed
    during the warm-up are not passed on: a ``plateau`` after it starts counting afterwards.
    """

    name = "warmup"

    def __init__(self, base_lr: float, total_epochs: int, *, epochs, then="constant",
                 start_factor=None):
        super().__init__(base_lr, total_epochs)
        self.epochs = _integer(self.name, "epochs", epochs, 1)
        if start_factor is None:
            start_factor = 1.0 / (self.epochs + 1)
        self.start_factor = _number(self.name, "start_factor", start_factor, 0.0, 1.0,
                                    high_inclusive=True)
        if isinstance(then, Schedule):
            self.then = then
        elif isinstance(then, str):
            self.then = make_schedule(then, base_lr, total_epochs - self.epochs)
        elif isinstance(then, (tuple, list)) and len(then) == 2 and isinstance(then[1], dict):
            self.then = make_schedule(then[0], base_lr, total_epochs - self.epochs, **then[1])
        else:
            raise ScheduleError(f"warmup(): then must be a schedule, got {then!r}")
        self._epoch = -1  # the epoch of the last lr_at call

    def lr_at(self, epoch: int) -> float:
        self._epoch = epoch
        if epoch < self.epochs:
            f = self.start_factor
            return self.base_lr * (f + (1.0 - f) * epoch / self.epochs)
        return self.then.lr_at(epoch - self.epochs)

    @property
    def observes(self) -> bool:
        return self.then.observes

    def observe(self, value: float) -> None:
        if self._epoch >= self.epochs:
            self.then.observe(value)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "epoch": self._epoch, "then": self.then.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self._epoch = int(d["epoch"])
        self.then.load_state_dict(d["then"])


class Plateau(Schedule):
    """``plateau(patience=10, factor=0.1, min_lr=0, mode="min", threshold=1e-4)``.

    PyTorch ``ReduceLROnPlateau`` (relative threshold, no cooldown, eps 1e-8): after each
    epoch, ``observe`` gets the monitored metric; it improves when it is below
    ``best * (1 - threshold)`` (``mode="min"``) or above ``best * (1 + threshold)``
    (``mode="max"``). After more than ``patience`` epochs in a row without improvement,
    ``lr`` becomes ``max(lr * factor, min_lr)`` (unless that changes it by less than 1e-8)
    and the count restarts.
    """

    name = "plateau"
    _EPS = 1e-8

    def __init__(self, base_lr: float, total_epochs: int, *, patience=10, factor=0.1,
                 min_lr=0.0, mode="min", threshold=1e-4):
        super().__init__(base_lr, total_epochs)
        self.patience = _integer(self.name, "patience", patience, 0)
        self.factor = _number(self.name, "factor", factor, 0.0, 1.0)
        self.min_lr = _number(self.name, "min_lr", min_lr, 0.0, low_inclusive=True)
        if mode not in ("min", "max"):
            raise ScheduleError(f'plateau(): mode must be "min" or "max", got {mode!r}')
        self.mode = mode
        self.threshold = _number(self.name, "threshold", threshold, 0.0, low_inclusive=True)
        self.lr = self.base_lr
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0

    def lr_at(self, epoch: int) -> float:
        return self.lr

    def _improves(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best * (1.0 - self.threshold)
        return value > self.best * (1.0 + self.threshold)

    @property
    def observes(self) -> bool:
        return True

    def observe(self, value: float) -> None:
        value = float(value)
        if self._improves(value):
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            new_lr = max(self.lr * self.factor, self.min_lr)
            if self.lr - new_lr > self._EPS:
                self.lr = new_lr
            self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {**super().state_dict(), "lr": self.lr, "best": _json_float(self.best),
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.lr = float(d["lr"])
        self.best = float(d["best"])
        self.bad_epochs = int(d["bad_epochs"])


def restore(sched: "Schedule", state) -> None:
    """`sched.load_state_dict(state)` for a state read from a checkpoint: one that does not
    fit (damaged, tampered) is a ScheduleError, never a KeyError or TypeError."""
    try:
        if not isinstance(state, dict):
            raise TypeError(state)
        sched.load_state_dict(state)
    except ScheduleError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        raise ScheduleError(f"the checkpoint's state of schedule {sched.name!r} is damaged") from None


SCHEDULES: dict[str, type] = {cls.name: cls for cls in
                              (Constant, Step, Exponential, Cosine, Warmup, Plateau)}


def _arguments(cls: type) -> dict:
    """The keyword-only constructor arguments of ``cls`` and their defaults, in order."""
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: REQUIRED if p.default is p.empty else p.default
            for p in params if p.kind is p.KEYWORD_ONLY}


SCHEDULE_ARGS: dict[str, dict] = {name: _arguments(cls) for name, cls in SCHEDULES.items()}


def _did_you_mean(word: str, choices) -> str:
    """ (did you mean 'x'?) after a message, or nothing."""
    hint = did_you_mean(word, choices)
    return f" ({hint})" if hint else ""


def make_schedule(name: str, base_lr: float, total_epochs: int, **kwargs) -> Schedule:
    """Build the schedule ``name(**kwargs)`` for a training of ``total_epochs`` epochs.

    Raises ``ScheduleError`` (a ValueError) for an unknown schedule, an unknown or missing argument, or a value
    out of range, with a message that names what is allowed.
    """
    if name not in SCHEDULES:
        raise ScheduleError(f"unknown schedule {name!r}{_did_you_mean(name, SCHEDULES)}; "
                         f"schedules: {', '.join(SCHEDULES)}")
    allowed = SCHEDULE_ARGS[name]
    listing = ", ".join(allowed) or "none"
    for key in kwargs:
        if key not in allowed:
            raise ScheduleError(f"schedule {name}() has no argument {key!r}"
                             f"{_did_you_mean(key, allowed)}; its arguments: {listing}")
    missing = [k for k, v in allowed.items() if v is REQUIRED and k not in kwargs]
    if missing:
        raise ScheduleError(f"schedule {name}() is missing {', '.join(missing)}")
    return SCHEDULES[name](base_lr, total_epochs, **kwargs)
