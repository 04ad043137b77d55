"""Time models T(p) fitted to the measurements, and their least-squares fit in log-time.

Every model is a law (Amdahl for strong scaling, Gustafson for weak) times the baseline
time T0, plus optionally an overhead term that grows with the rank count:

    strong:  T(p) = T0 * (f + (1 - f) * p0 / p)            + c * h(p)
    weak:    T(p) = T0 * q / (alpha + (1 - alpha) * q)     + c * h(p),    q = p / p0

with h(p) = log2(p / p0) (tree-shaped collectives: c is seconds per doubling of ranks) or
h(p) = p - p0 (overhead linear in the ranks, the Universal Scalability Law's coherency
term: c is seconds per added rank). Timing noise is multiplicative, so the fit minimises
squared differences of log-times; parameters are (log T0, fraction, gamma = c / T0), with
bounds 0 <= fraction <= 1 and gamma >= 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, nnls

# Below this relative spread (1 ppm) log-time residuals count as zero: noise-free data
# would otherwise give log(0) in the information criteria.
RSS_FLOOR_PER_POINT = 1e-12


@dataclass(frozen=True)
class Model:
    name: str
    kind: str                 # "strong" | "weak"
    overhead: str | None      # None | "log2" | "linear"
    formula: str
    meaning: str

    @property
    def law(self) -> str:
        return "amdahl" if self.kind == "strong" else "gustafson"

    @property
    def fraction_name(self) -> str:
        return "f" if self.kind == "strong" else "alpha"

    @property
    def n_params(self) -> int:
        return 2 if self.overhead is None else 3

    def time_ratio(self, p: np.ndarray, p0: float, frac: np.ndarray,
                   gamma: np.ndarray | float = 0.0) -> np.ndarray:
        """T(p) / T0; broadcasts parameter arrays against rank arrays."""
        q = np.asarray(p, dtype=float) / p0
        strong = self.kind == "strong"
        ratio = frac + (1.0 - frac) / q if strong else q / (frac + (1.0 - frac) * q)
        if self.overhead == "log2":
            ratio = ratio + gamma * np.log2(q)
        elif self.overhead == "linear":
            ratio = ratio + gamma * (q - 1.0) * p0
        return ratio

    def jacobian(self, p: np.ndarray, p0: float, frac: float,
                 gamma: float = 0.0) -> np.ndarray:
        """d log(T(p) / T0) / d(fraction[, gamma]), one row per rank count."""
        q = np.asarray(p, dtype=float) / p0
        ratio = self.time_ratio(p, p0, frac, gamma)
        if self.kind == "strong":
            d_frac = 1.0 - 1.0 / q
        else:
            d_frac = q * (q - 1.0) / (frac + (1.0 - frac) * q) ** 2
        cols = [d_frac]
        if self.overhead == "log2":
            cols.append(np.log2(q))
        elif self.overhead == "linear":
            cols.append((q - 1.0) * p0)
        return np.column_stack(cols) / ratio[:, None]

    def speedup(self, p: np.ndarray, p0: float, frac: np.ndarray,
                gamma: np.ndarray | float = 0.0) -> np.ndarray:
        """Strong: T0 / T(p). Weak: the scaled speedup q * T0 / T(p) (see docs/SCALING.md)."""
        ratio = self.time_ratio(p, p0, frac, gamma)
        return 1.0 / ratio if self.kind == "strong" else (np.asarray(p) / p0) / ratio


_OVERHEAD_TEXT = {
    "log2": ("+ c·log2(p/p0)", "an overhead growing with log2 of the ranks (tree-shaped "
             "collectives: allreduce, barrier)"),
    "linear": ("+ c·(p − p0)", "an overhead growing linearly with the ranks (all-to-all "
               "exchanges, contention: the Universal Scalability Law)"),
}


def _models() -> dict[str, Model]:
    # The definition of q goes last, so that an added term never reads as part of it.
    base = {"strong": ("amdahl", "T0·(f + (1 − f)·p0/p)", "",
                       "a fixed serial fraction f of the baseline run (Amdahl)"),
            "weak": ("gustafson", "T0·q / (α + (1 − α)·q)", ", where q = p/p0",
                     "a fixed serial fraction α of each run (Gustafson)")}
    out = {}
    for kind, (law, formula, where, meaning) in base.items():
        out[law] = Model(law, kind, None, formula + where, meaning)
        for overhead, (term, what) in _OVERHEAD_TEXT.items():
            name = f"{law}+{overhead}"
            out[name] = Model(name, kind, overhead, f"{formula} {term}{where}",
                              f"{meaning} plus {what}")
    return out


MODELS = _models()


def models_for(kind: str) -> list[Model]:
    """The law first, then the overhead models, for one study kind."""
    return [m for m in MODELS.values() if m.kind == kind]


@dataclass
class RawFit:
    """Least-squares result: theta = (log T0, fraction[, gamma])."""

    theta: np.ndarray
    jac: np.ndarray        # of the weighted residuals with respect to theta
    rss: float             # of all log-times, repeats included


def bounds(model: Model) -> tuple[list[float], list[float]]:
    lo, hi = [-np.inf, 0.0], [np.inf, 1.0]
    if model.overhead:
        lo.append(0.0)
        hi.append(np.inf)
    return lo, hi


def _residuals(theta: np.ndarray, model: Model, p: np.ndarray, p0: float, ybar: np.ndarray,
               weight: np.ndarray) -> np.ndarray:
    gamma = theta[2] if model.overhead else 0.0
    ratio = model.time_ratio(p, p0, theta[1], gamma)
    return weight * (ybar - theta[0] - np.log(np.maximum(ratio, 1e-300)))


def _jacobian(theta: np.ndarray, model: Model, p: np.ndarray, p0: float, ybar: np.ndarray,
              weight: np.ndarray) -> np.ndarray:
    gamma = theta[2] if model.overhead else 0.0
    d = model.jacobian(p, p0, theta[1], gamma)
    return -weight[:, None] * np.column_stack([np.ones_like(p), d])


def initial_guesses(model: Model, p: np.ndarray, p0: float, ybar: np.ndarray) -> list[np.ndarray]:
    """Starting points from a linear fit (exact for noise-free data without overhead)."""
    t = np.exp(ybar)
    q = p / p0
    h = {"log2": np.log2(q), "linear": (q - 1.0) * p0, None: None}[model.overhead]
    if model.kind == "strong":
        cols = [np.ones_like(q), 1.0 / q] + ([h] if h is not None else [])
        coef, _ = nnls(np.column_stack(cols) / t[:, None], np.ones_like(t))
        t0 = coef[0] + coef[1]
        frac = coef[0] / t0 if t0 > 0 else 0.5
        starts = [[np.log(t0) if t0 > 0 else ybar[0], frac] + list(coef[2:] / max(t0, 1e-300))]
    else:
        inv = np.exp(ybar[0] - ybar)            # T0 / T(p) = 1 - alpha * (1 - 1/q)
        x = 1.0 - 1.0 / q
        alpha = float(np.clip(np.dot(x, 1.0 - inv) / max(np.dot(x, x), 1e-300), 0.0, 1.0))
        start = [ybar[0], alpha]
        if h is not None:
            rest = t / t[0] - q / (alpha + (1.0 - alpha) * q)
            start.append(max(float(np.dot(h, rest) / max(np.dot(h, h), 1e-300)), 0.0))
        starts = [start]
    if model.overhead:  # also try "no overhead": the fit may sit at gamma = 0
        starts.append(starts[0][:2] + [0.0])
    lo, hi = bounds(model)
    return [np.clip(np.array(s, dtype=float), lo, hi) for s in starts]


def fit_log_means(model: Model, p: np.ndarray, p0: float, ybar: np.ndarray, n: np.ndarray,
                  within: float, starts: list[np.ndarray]) -> RawFit:
    """Fit the model to the mean log-time per rank count, weighted by the repeats there.

    Minimising sum_i n_i (ybar_i - m_i)^2 gives the same fit as all repeats one by one;
    ``within`` (the spread of repeats about their means) completes the residual sum.
    """
    weight = np.sqrt(n)
    best = None
    for x0 in starts:
        res = least_squares(_residuals, x0, jac=_jacobian, bounds=bounds(model), method="trf",
                            x_scale="jac", xtol=1e-10, ftol=1e-10, gtol=1e-10,
                            args=(model, p, p0, ybar, weight))
        if best is None or res.cost < best.cost:
            best = res
    rss = float(2.0 * best.cost + within)
    return RawFit(best.x, best.jac, rss)


def information_criteria(rss: float, n: int, n_params: int) -> dict[str, float]:
    """AIC, AICc and BIC of a least-squares fit with Gaussian log-time errors.

    k counts the model's parameters plus the noise variance. AICc is infinite when there
    are too few repeats for its correction (n <= k + 1).
    """
    k = n_params + 1
    rss = max(rss, n * RSS_FLOOR_PER_POINT)
    base = n * np.log(rss / n)
    aic = base + 2 * k
    aicc = aic + 2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else np.inf
    return {"aic": float(aic), "aicc": float(aicc), "bic": float(base + k * np.log(n))}
