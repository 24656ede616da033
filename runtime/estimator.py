"""scikit-learn-shaped estimators over a `.net` model, without scikit-learn (it is not a
dependency; where it is installed, its `clone`, `cross_val_score`, `Pipeline` and
`GridSearchCV` take these as they take its own):

    clf = netc.NetcClassifier("examples/moons.net", epochs=50, batch_size=32)
    clf.fit(X_train, y_train).score(X_test, y_test)      # accuracy
    clf.predict(X_test); clf.predict_proba(X_test); clf.classes_
    reg = netc.NetcRegressor("examples/linear.net").fit(X, y); reg.score(X, y)   # R^2

The constructor only stores its arguments (scikit-learn's rule); `fit` compiles the model
afresh (the kernels come from the cache after the first time), trains it with `Model.fit` and
keeps it as `model_`, its History as `history_`. `Estimator` takes either kind of model.
"""
from __future__ import annotations

import inspect
import re
from typing import Optional

import numpy as np

from netc.dsl.diagnostics import did_you_mean

from . import loop
from .build import build, read_source
from .model import FitError, Model

__all__ = ["Estimator", "NetcClassifier", "NetcRegressor"]


class Estimator:
    """A `.net` model (a path or source text) as a scikit-learn estimator. Arguments: `epochs`,
    `batch_size` (default: the train block's), `validation_split` (Keras': the last fraction
    of the training samples validates), `stop` ("auto": the train block's early stopping when
    there is validation data; None: none; or what Model.fit's `stop` takes), `standardize`
    (default: the train block's), `random_state` (the seed of the initial params and the
    shuffling; default: the train block's), `dtype`, `device`, `verbose` (0: silent)."""

    _kind: Optional[str] = None           # "classifier" | "regressor" | None (either)

    def __init__(self, model, *, epochs: Optional[int] = None, batch_size=None, validation_split: float = 0.0,
                 stop="auto", standardize: Optional[bool] = None, random_state: Optional[int] = None,
                 dtype: str = "float32", device: Optional[str] = "cpu", verbose: int = 0):
        self.model = model
        self.epochs = epochs
        self.batch_size = batch_size
        self.validation_split = validation_split
        self.stop = stop
        self.standardize = standardize
        self.random_state = random_state
        self.dtype = dtype
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------ scikit-learn's protocol
    @classmethod
    def _get_param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments by name (scikit-learn's `get_params`)."""
        return {k: getattr(self, k) for k in self._get_param_names()}

    def set_params(self, **params) -> "Estimator":
        """Set constructor arguments by name; an unknown name raises ValueError with a did-you-mean."""
        names = self._get_param_names()
        for k, v in params.items():
            if k not in names:
                hint = did_you_mean(k, names)
                raise ValueError(f"{type(self).__name__} has no parameter '{k}'" +
                                 (f"; {hint}" if hint else f" (its parameters: {', '.join(names)})"))
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        text = str(self.model)
        name = re.search(r"^\s*model\s+(\w+)", text, re.M)
        model = repr(text) if "\n" not in text else f"<source of model '{name.group(1)}'>" if name else "<source>"
        shown = [f"{k}={getattr(self, k)!r}" for k in self._get_param_names()
                 if k != "model" and getattr(self, k) is not defaults.get(k) and getattr(self, k) != defaults.get(k)]
        return f"{type(self).__name__}({', '.join([model] + shown)})"

    def __sklearn_tags__(self):
        """scikit-learn's tags (asked for only by scikit-learn, so imported here: it is optional)."""
        from sklearn.utils import ClassifierTags, InputTags, RegressorTags, Tags, TargetTags
        kind = self._estimator_type
        return Tags(estimator_type=kind, target_tags=TargetTags(required=True), transformer_tags=None,
                    classifier_tags=ClassifierTags() if kind == "classifier" else None,
                    regressor_tags=RegressorTags() if kind == "regressor" else None, input_tags=InputTags())

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    @property
    def _estimator_type(self) -> Optional[str]:
        if self._kind is not None:
            return self._kind
        m = getattr(self, "model_", None)
        return None if m is None else ("classifier" if m.is_classifier() else "regressor")

    # ------------------------------------------------------------ fit, predict, score
    def fit(self, X, y) -> "Estimator":
        """Compile the model afresh and train it on (X, y); returns self."""
        source, file = read_source(self.model)
        m = build(source, file, dtype=self.dtype, device=self.device, seed=self.random_state)
        if self.random_state is not None:
            m.settings.seed = int(self.random_state)
        self._check_kind(m)
        stop = self.stop
        if isinstance(stop, str) and stop == "auto":       # the file's, when it has something to watch
            watches_val = m.settings.stop is not None and m.settings.stop.monitor.startswith("val.")
            stop = loop.SETTINGS if self.validation_split or not watches_val else None
        self.history_ = m.fit(X, y, epochs=self.epochs, batch_size=self.batch_size,
                              validation_split=self.validation_split, stop=stop, standardize=self.standardize,
                              verbose=self.verbose)
        self.model_ = m
        self.n_features_in_ = int(np.prod(m.ir.input_shape))
        if m.is_classifier():
            self.classes_ = np.asarray(m.classes) if m.classes else np.arange(m.num_classes())
        return self

    def _check_kind(self, m: Model) -> None:
        if self._kind == "classifier" and not m.is_classifier():
            raise FitError(f"model '{m.name}' predicts real values, not classes: use NetcRegressor (or Estimator)")
        if self._kind == "regressor" and m.is_classifier():
            raise FitError(f"model '{m.name}' is a classifier: use NetcClassifier (or Estimator)")

    def _fitted(self) -> Model:
        if not hasattr(self, "model_"):
            raise FitError(f"this {type(self).__name__} is not fitted yet: call fit(X, y) first")
        return self.model_

    def predict(self, X) -> np.ndarray:
        """Class labels (as given to fit) for a classifier; the predicted values for a
        regression, (n,) when the target is one number, else (n, ...)."""
        m = self._fitted()
        if m.is_classifier():
            return m.predict_classes(X)
        out = m.predict(X)
        return out.reshape(len(out)) if out.ndim == 2 and out.shape[1] == 1 else out

    def predict_proba(self, X) -> np.ndarray:
        """(n, classes) probabilities, columns in the order of `classes_` (classifiers only)."""
        return self._fitted().predict_proba(X)

    def score(self, X, y) -> float:
        """The accuracy of a classifier, the R^2 of a regression (scikit-learn's `score`)."""
        return self._fitted().score(X, y)


class NetcClassifier(Estimator):
    """An Estimator whose model must predict classes (fit raises FitError otherwise)."""
    _kind = "classifier"


class NetcRegressor(Estimator):
    """An Estimator whose model must predict real values (fit raises FitError otherwise)."""
    _kind = "regressor"
