"""Simulated survival cohorts and simulated study-level log hazard ratios, with the truth attached.

Cohort model (proportional hazards)::

    h(t | T, x) = h0(t) * exp(log(hr) * T + x' beta)
    T | x ~ Bernoulli(expit(logit(p_treat) + confounding * z(x))),  z = standardised prognostic
                                                                    index -x' beta / sd(x' beta)

so ``confounding > 0`` treats lower-risk patients more often (as happens with surgery for
metastases). Event times come from inverting the cumulative hazard of the baseline ``h0``
(:class:`Weibull` or :class:`Piecewise`); censoring is the earliest of exponential drop-out
(``censoring`` = its hazard) and administrative censoring (uniform ``accrual`` over
``[0, accrual]`` and ``follow_up`` after the last patient entered).

Study model (normal-normal random effects on the log-HR scale)::

    theta_i ~ N(mu, tau^2),   s_i ~ Uniform(se_range),   y_i ~ N(theta_i, s_i^2)

Everything here is SIMULATED and the returned frames say so in ``attrs["simulated"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .data import StudyEstimates, SurvivalData

__all__ = ["Weibull", "Piecewise", "Covariate", "cohort", "studies", "cohort_data"]


@dataclass(frozen=True)
class Weibull:
    """Weibull baseline hazard ``h0(t) = (shape/scale) (t/scale)^(shape-1)``, ``S0 = exp(-(t/scale)^shape)``.

    ``shape=1`` is exponential with mean ``scale``; the baseline median is
    ``scale * log(2)^(1/shape)``.
    """

    shape: float = 1.0
    scale: float = 1.0

    def __post_init__(self):
        if not (self.shape > 0 and self.scale > 0):
            raise ValueError(f"Weibull needs shape > 0 and scale > 0; got {self.shape}, {self.scale}.")

    def inverse_cumhaz(self, h: np.ndarray) -> np.ndarray:
        return self.scale * np.power(h, 1.0 / self.shape)

    def cumhaz(self, t: np.ndarray) -> np.ndarray:
        return np.power(np.asarray(t, float) / self.scale, self.shape)

    def describe(self) -> str:
        return f"Weibull(shape={self.shape}, scale={self.scale})"


@dataclass(frozen=True)
class Piecewise:
    """Piecewise-constant baseline hazard: ``hazards[j]`` on ``[cuts[j-1], cuts[j])``, ``cuts[-1] = 0``.

    ``cuts`` are the interior cut points (increasing, > 0); ``len(hazards) == len(cuts) + 1``
    (the last hazard applies beyond the last cut).
    """

    cuts: tuple[float, ...]
    hazards: tuple[float, ...]

    def __init__(self, cuts: Sequence[float], hazards: Sequence[float]):
        c = np.asarray(cuts, float).ravel()
        h = np.asarray(hazards, float).ravel()
        if h.size != c.size + 1:
            raise ValueError(f"Piecewise needs len(hazards) == len(cuts) + 1; got {h.size} and {c.size}.")
        if np.any(c <= 0) or np.any(np.diff(c) <= 0):
            raise ValueError(f"Piecewise cuts must be positive and increasing; got {c.tolist()}.")
        if np.any(~np.isfinite(h)) or np.any(h <= 0):
            raise ValueError(f"Piecewise hazards must be finite and > 0; got {h.tolist()}.")
        object.__setattr__(self, "cuts", tuple(c.tolist()))
        object.__setattr__(self, "hazards", tuple(h.tolist()))

    def _grid(self):
        edges = np.concatenate([[0.0], self.cuts])
        h = np.asarray(self.hazards)
        cum = np.concatenate([[0.0], np.cumsum(h[:-1] * np.diff(edges))])  # H0 at each edge
        return edges, h, cum

    def cumhaz(self, t: np.ndarray) -> np.ndarray:
        edges, h, cum = self._grid()
        t = np.asarray(t, float)
        j = np.searchsorted(edges, t, side="right") - 1
        return cum[j] + h[j] * (t - edges[j])

    def inverse_cumhaz(self, target: np.ndarray) -> np.ndarray:
        edges, h, cum = self._grid()
        target = np.asarray(target, float)
        j = np.searchsorted(cum, target, side="right") - 1
        return edges[j] + (target - cum[j]) / h[j]

    def describe(self) -> str:
        return f"Piecewise(cuts={list(self.cuts)}, hazards={list(self.hazards)})"


@dataclass(frozen=True)
class Covariate:
    """A simulated prognostic covariate: ``dist`` "normal" (standard normal) or "binary" (Bernoulli(p))."""

    log_hr: float
    dist: str = "normal"
    p: float = 0.5

    def __post_init__(self):
        if self.dist not in ("normal", "binary"):
            raise ValueError(f"Covariate dist must be 'normal' or 'binary'; got {self.dist!r}.")
        if not 0 < self.p < 1:
            raise ValueError(f"Covariate p must be in (0, 1); got {self.p}.")

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.dist == "normal":
            return rng.standard_normal(n)
        return (rng.random(n) < self.p).astype(float)


def _covariates(covariates) -> dict[str, Covariate]:
    if covariates is None:
        return {}
    if not isinstance(covariates, Mapping):
        raise ValueError("covariates must be a mapping name -> log-HR (float) or name -> Covariate; "
                         f"got {type(covariates).__name__}.")
    out = {}
    for name, c in covariates.items():
        if name in ("time", "event", "treatment", "entry"):
            raise ValueError(f"Covariate name {name!r} is reserved; rename it.")
        out[str(name)] = c if isinstance(c, Covariate) else Covariate(float(c))
    return out


def cohort(n: int, hr: float, *, baseline: Weibull | Piecewise | None = None,
           covariates: Mapping[str, float | Covariate] | None = None, confounding: float = 0.0,
           treatment_prob: float = 0.5, censoring: float | None = None,
           accrual: float | None = None, follow_up: float | None = None,
           seed: Any = None) -> pd.DataFrame:
    """Simulate a cohort with a proportional-hazards treatment effect (SIMULATED data).

    Parameters
    ----------
    n : int
        Number of patients.
    hr : float
        True conditional hazard ratio of the treatment (``log(hr)`` is its Cox coefficient).
    baseline : Weibull or Piecewise
        Baseline hazard of an untreated patient with covariates 0. Default ``Weibull(1.0, 1.0)``.
    covariates : mapping
        ``{name: log_hr}`` for standard-normal covariates, or ``{name: Covariate(...)}``.
    confounding : float
        Log-odds of treatment per SD of the prognostic index; > 0 means lower-risk patients are
        treated more often. Needs covariates when non-zero.
    treatment_prob : float
        Treatment probability at an average prognostic index.
    censoring : float, optional
        Hazard of independent exponential drop-out (None: no drop-out).
    accrual, follow_up : float, optional
        Uniform accrual over ``[0, accrual]``; analysis ``follow_up`` after accrual ends, so a
        patient entering at ``e`` is administratively censored at ``accrual + follow_up - e``.
        ``follow_up`` alone censors everyone at ``follow_up``.
    seed : int, SeedSequence or Generator
        Random seed.

    Returns
    -------
    DataFrame
        Columns ``time``, ``event``, ``treatment`` and the covariates; ``attrs`` hold
        ``duration``, ``event``, ``treatment``, ``covariates`` (ready for
        :func:`cohort_data` / ``SurvivalData.from_frame``), ``simulated=True``, ``true_hr``,
        ``true_log_hr``, ``true_coefficients`` and the generating settings.

    Examples
    --------
    >>> from bayes_osteo.simulate import cohort, Weibull
    >>> df = cohort(200, 0.5, baseline=Weibull(1.2, 36), covariates={"age": 0.3},
    ...             censoring=0.01, seed=1)
    >>> df.attrs["true_log_hr"] == float(np.log(0.5)), sorted(df.columns)
    (True, ['age', 'event', 'time', 'treatment'])
    """
    n = int(n)
    if n < 2:
        raise ValueError(f"cohort needs n >= 2 patients; got n={n}.")
    if not (np.isfinite(hr) and hr > 0):
        raise ValueError(f"hr must be a positive finite hazard ratio; got {hr}.")
    if not 0 < treatment_prob < 1:
        raise ValueError(f"treatment_prob must be in (0, 1); got {treatment_prob}.")
    if censoring is not None and not censoring > 0:
        raise ValueError(f"censoring is an exponential drop-out hazard and must be > 0; got {censoring}.")
    if accrual is not None and (not accrual > 0 or follow_up is None):
        raise ValueError("accrual needs a positive accrual period and a follow_up after it; "
                         f"got accrual={accrual}, follow_up={follow_up}.")
    if follow_up is not None and not follow_up > 0:
        raise ValueError(f"follow_up must be > 0; got {follow_up}.")
    baseline = baseline if baseline is not None else Weibull()
    if not isinstance(baseline, Weibull | Piecewise):
        raise ValueError(f"baseline must be Weibull(...) or Piecewise(...); got {type(baseline).__name__}.")
    covs = _covariates(covariates)
    if confounding != 0 and not covs:
        raise ValueError("confounding needs covariates to act through; pass covariates={...}.")

    rng = np.random.default_rng(seed)
    X = {name: c.draw(rng, n) for name, c in covs.items()}
    beta = np.array([c.log_hr for c in covs.values()])
    lp_x = np.column_stack(list(X.values())) @ beta if covs else np.zeros(n)
    sd = lp_x.std()
    z = -(lp_x - lp_x.mean()) / sd if sd > 0 else np.zeros(n)
    p_t = stats.logistic.cdf(stats.logistic.ppf(treatment_prob) + confounding * z)
    trt = (rng.random(n) < p_t).astype(np.int64)
    if trt.min() == trt.max():  # a cohort needs both arms (only possible for tiny n): flip one
        trt[rng.integers(n)] = 1 - trt[0]
    lp = np.log(hr) * trt + lp_x
    t_event = baseline.inverse_cumhaz(rng.standard_exponential(n) * np.exp(-lp))
    t_cens = np.full(n, np.inf)
    if censoring is not None:
        t_cens = np.minimum(t_cens, rng.exponential(1.0 / censoring, n))
    if follow_up is not None:
        entry = rng.uniform(0, accrual, n) if accrual is not None else np.zeros(n)
        t_cens = np.minimum(t_cens, (accrual or 0.0) + follow_up - entry)
    event = (t_event <= t_cens).astype(np.int64)
    time = np.minimum(t_event, t_cens)
    # Protect against an underflow to 0 with extreme hazards (durations must be > 0).
    time = np.maximum(time, np.finfo(float).tiny)

    df = pd.DataFrame({"time": time, "event": event, "treatment": trt, **X})
    df.attrs.update({
        "simulated": True,
        "description": "SIMULATED cohort from bayes_osteo.simulate.cohort (proportional hazards).",
        "duration": "time", "event": "event", "treatment": "treatment",
        "covariates": list(covs),
        "true_hr": float(hr), "true_log_hr": float(np.log(hr)),
        "true_coefficients": {"treatment": float(np.log(hr)),
                              **{k: float(c.log_hr) for k, c in covs.items()}},
        "baseline": baseline.describe(), "confounding": float(confounding),
        "censoring": censoring, "accrual": accrual, "follow_up": follow_up,
    })
    return df


def cohort_data(df: pd.DataFrame, **kwargs: Any) -> SurvivalData:
    """``SurvivalData`` for a frame from :func:`cohort` (columns named by its ``attrs``)."""
    a = df.attrs
    return SurvivalData.from_frame(df, duration=a.get("duration", "time"), event=a.get("event", "event"),
                                   covariates=a.get("covariates", []),
                                   treatment=a.get("treatment", "treatment"), **kwargs)


def studies(k: int, mu: float, tau: float, *, se_range: tuple[float, float] = (0.1, 0.5),
            seed: Any = None, estimates: bool = False) -> pd.DataFrame | StudyEstimates:
    """Simulate ``k`` study log hazard ratios from a normal-normal random-effects model (SIMULATED).

    Parameters
    ----------
    k : int
        Number of studies.
    mu, tau : float
        True pooled log-HR and between-study SD (``tau = 0``: fixed effect).
    se_range : (float, float)
        Standard errors are drawn uniformly on this range.
    seed : int, SeedSequence or Generator
        Random seed.
    estimates : bool
        Return :class:`~bayes_osteo.StudyEstimates` instead of the frame.

    Returns
    -------
    DataFrame
        Columns ``study``, ``log_hr``, ``se``, ``hr``, ``ci_low``, ``ci_high`` (95%) and the true
        ``theta``; ``attrs`` hold ``mu``, ``tau``, ``simulated=True``.

    Examples
    --------
    >>> from bayes_osteo.simulate import studies
    >>> df = studies(8, mu=-0.5, tau=0.2, seed=3)
    >>> len(df), df.attrs["simulated"]
    (8, True)
    """
    k = int(k)
    if k < 1:
        raise ValueError(f"studies needs k >= 1; got {k}.")
    if not (np.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be >= 0; got {tau}.")
    lo, hi = (float(v) for v in se_range)
    if not 0 < lo <= hi:
        raise ValueError(f"se_range must satisfy 0 < low <= high; got {se_range}.")
    rng = np.random.default_rng(seed)
    theta = mu + tau * rng.standard_normal(k)
    se = rng.uniform(lo, hi, k)
    y = theta + se * rng.standard_normal(k)
    z = stats.norm.ppf(0.975)
    df = pd.DataFrame({"study": [f"study_{i + 1}" for i in range(k)], "log_hr": y, "se": se,
                       "hr": np.exp(y), "ci_low": np.exp(y - z * se), "ci_high": np.exp(y + z * se),
                       "theta": theta})
    df.attrs.update({"simulated": True, "mu": float(mu), "tau": float(tau),
                     "se_range": (lo, hi),
                     "description": "SIMULATED study estimates from bayes_osteo.simulate.studies."})
    if estimates:
        return StudyEstimates(df["log_hr"].to_numpy(), df["se"].to_numpy(), df["study"].to_numpy())
    return df
