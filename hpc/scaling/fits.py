"""Fitted models with 95% intervals: the union of a bootstrap and a covariance interval.

Bootstrap: the repeats at each rank count are resampled (with a fixed seed) and the model
is refitted to every resample; the interval spans the 2.5 and 97.5 percentiles. It sees
noise that differs between rank counts, but with the usual 3 to 5 repeats it is too narrow
(measured: 85-93% coverage instead of 95%; docs/SCALING.md).
Covariance: parameters are drawn from the multivariate t distribution of the least-squares
estimate, with the residual variance pooled over all points (t with n - k degrees of
freedom); percentiles of the draws. Right coverage when the relative noise is alike at
every rank count (measured: 90-98%).
The reported interval is the union of both, so it holds when either assumption does. With
a single repeat somewhere the bootstrap cannot see that point's noise and only the
covariance is used. Draws and resamples are clipped to the bounds (0 <= f, alpha <= 1,
c >= 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpc.scaling.data import Measurements
from hpc.scaling.estimate import Estimate, boot_means, finite_or_none, from_samples, union
from hpc.scaling.models import (
    MODELS,
    Model,
    RawFit,
    bounds,
    fit_log_means,
    information_criteria,
    initial_guesses,
)
from hpc.scaling.predict import Predictions, predict

DEFAULT_BOOT = 400
DEFAULT_SEED = 20240601
BOOTSTRAP = "bootstrap over repeats within each rank count (percentile, fixed seed)"
COVARIANCE = "covariance of the least-squares fit (multivariate t, pooled residuals)"
BOTH = f"union of a {BOOTSTRAP} and the {COVARIANCE}"


@dataclass
class ModelFit:
    """One fitted model: parameters with 95% intervals, information criteria, predictions.

    ``fraction`` is Amdahl's f (strong scaling) or Gustafson's alpha (weak scaling), both
    fractions of the baseline run of ``baseline_ranks`` ranks; ``overhead`` is c in seconds
    per doubling of ranks (log2 models) or per added rank (linear models).
    """

    model: str
    kind: str
    baseline_ranks: int
    t0: Estimate
    fraction: Estimate
    overhead: Estimate | None
    rss: float
    n: int
    aic: float
    aicc: float
    bic: float
    ci_method: str
    predictions: Predictions

    @property
    def spec(self) -> Model:
        return MODELS[self.model]

    @property
    def f(self) -> float:
        """Amdahl's serial fraction (strong-scaling fits only)."""
        if self.kind != "strong":
            raise AttributeError("a weak-scaling fit has .alpha, not .f")
        return self.fraction.value

    @property
    def f_ci(self) -> tuple[float | None, float | None]:
        self.f  # noqa: B018 - raises for weak fits
        return self.fraction.ci

    @property
    def alpha(self) -> float:
        """Gustafson's serial fraction of the parallel run (weak-scaling fits only)."""
        if self.kind != "weak":
            raise AttributeError("a strong-scaling fit has .f, not .alpha")
        return self.fraction.value

    @property
    def alpha_ci(self) -> tuple[float | None, float | None]:
        self.alpha  # noqa: B018 - raises for strong fits
        return self.fraction.ci

    def speedup(self, p: np.ndarray) -> np.ndarray:
        """The fitted speedup curve at rank counts ``p``."""
        gamma = self.gamma
        return self.spec.speedup(np.asarray(p, dtype=float), self.baseline_ranks,
                                 self.fraction.value, gamma)

    @property
    def gamma(self) -> float:
        if self.overhead is None or not self.t0.value:
            return 0.0
        return (self.overhead.value or 0.0) / self.t0.value

    def to_dict(self) -> dict:
        return {"model": self.model, "kind": self.kind, "baseline_ranks": self.baseline_ranks,
                "formula": self.spec.formula, "meaning": self.spec.meaning,
                "t0": self.t0.to_dict(), "fraction_name": self.spec.fraction_name,
                "fraction": self.fraction.to_dict(),
                "overhead": self.overhead.to_dict() if self.overhead else None,
                "rss": self.rss, "n": self.n, "aic": finite_or_none(self.aic),
                "aicc": finite_or_none(self.aicc), "bic": finite_or_none(self.bic),
                "ci_method": self.ci_method, "predictions": self.predictions.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelFit:
        def ic(key: str) -> float:
            return np.inf if d[key] is None else float(d[key])

        return cls(d["model"], d["kind"], int(d["baseline_ranks"]), Estimate.from_dict(d["t0"]),
                   Estimate.from_dict(d["fraction"]), Estimate.from_dict(d["overhead"]),
                   float(d["rss"]), int(d["n"]), ic("aic"), ic("aicc"), ic("bic"),
                   d["ci_method"], Predictions.from_dict(d["predictions"]))


@dataclass
class FitInput:
    """What every model's fit needs from the measurements, bootstrap resamples included."""

    p: np.ndarray           # rank counts
    p0: float               # baseline ranks
    ybar: np.ndarray        # mean log-time per rank count
    n: np.ndarray           # repeats per rank count
    within: float           # sum of squared deviations of log-times from their means
    boot_ybar: np.ndarray   # [n_boot, rank counts]; empty: covariance only
    seed: int
    n_draws: int            # parameter draws for the covariance interval

    @property
    def ci_method(self) -> str:
        return BOTH if self.boot_ybar.size else COVARIANCE


def fit_input(meas: Measurements, idx: list[np.ndarray] | None, seed: int,
              n_draws: int = DEFAULT_BOOT) -> FitInput:
    """Log-time means per rank count; ``idx`` are bootstrap indices (None: covariance only)."""
    logs = [np.log(g.times) for g in meas.groups]
    ybar = np.array([y.mean() for y in logs])
    within = float(sum(((y - y.mean()) ** 2).sum() for y in logs))
    if idx is None:
        boot = np.empty((0, len(logs)))
    else:
        boot = np.column_stack([boot_means(y, i) for y, i in zip(logs, idx, strict=True)])
    return FitInput(meas.ranks, float(meas.baseline_ranks), ybar,
                    np.array([y.size for y in logs], dtype=float), within, boot, seed, n_draws)


def fit_model(model: Model, data: FitInput) -> ModelFit:
    """Fit one model; intervals as the module docstring describes."""
    starts = initial_guesses(model, data.p, data.p0, data.ybar)
    raw = fit_log_means(model, data.p, data.p0, data.ybar, data.n, data.within, starts)
    n = int(data.n.sum())
    sets = [_covariance_draws(model, raw, n, data.seed, data.n_draws)]
    if data.boot_ybar.size:
        sets.append(np.array([fit_log_means(model, data.p, data.p0, yb, data.n, 0.0,
                                            [raw.theta]).theta for yb in data.boot_ybar]))
    sets = [s for s in sets if s.size]
    ic = information_criteria(raw.rss, n, model.n_params)

    def estimate(value: float, of_params) -> Estimate:
        return union([from_samples(value, of_params(s)) for s in sets], value)

    t0 = estimate(np.exp(raw.theta[0]), lambda s: np.exp(s[:, 0]))
    fraction = estimate(raw.theta[1], lambda s: s[:, 1])
    overhead = None
    if model.overhead:
        overhead = estimate(raw.theta[2] * np.exp(raw.theta[0]),
                            lambda s: s[:, 2] * np.exp(s[:, 0]))
    return ModelFit(model.name, model.kind, int(data.p0), t0, fraction, overhead, raw.rss, n,
                    ic["aic"], ic["aicc"], ic["bic"], data.ci_method,
                    predict(model, data.p0, raw.theta, sets))


def _covariance_draws(model: Model, raw: RawFit, n: int, seed: int,
                      count: int) -> np.ndarray:
    """Parameter draws from the fit's multivariate t; empty when no degrees of freedom."""
    dof = n - raw.theta.size
    if dof <= 0:
        return np.empty((0, raw.theta.size))
    jtj = raw.jac.T @ raw.jac
    cov = np.linalg.pinv(jtj) * raw.rss / dof
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal(np.zeros(raw.theta.size), cov, size=count,
                                check_valid="ignore", method="eigh")
    scale = np.sqrt(rng.chisquare(dof, size=count) / dof)
    lo, hi = bounds(model)
    return np.clip(raw.theta + z / scale[:, None], lo, hi)
