"""Bayesian propensity scores: the score model, matching, strata, weights and balance.

Model (two-step: the outcome never enters it)::

    T_i ~ Bernoulli(e_i),   logit e_i = alpha + z_i' beta,
    alpha ~ Normal(0, 2.5),  beta_j ~ Normal(0, 2.5)   (prior name ``beta``; ``intercept``)

where ``z_i`` are the score covariates, standardised (centred, unit SD) so that the priors are
weakly informative on a common scale; categorical covariates are dummy-coded against their first
(sorted) level; continuous covariates may enter as restricted (natural) cubic splines
(:func:`restricted_cubic_spline`). The posterior draws of ``logit e_i`` are kept: the outcome
analyses in :mod:`bayes_osteo.propensity_methods` are repeated over a set of score draws and their
posteriors mixed, so the uncertainty of the score reaches the hazard ratio.

The adjustment designs (all functions of a score vector, so they serve one posterior draw or the
posterior mean alike):

- :func:`match_nearest` - 1:1 greedy nearest-neighbour matching on the logit score within a
  caliper (default 0.2 SD of the logit score, Austin 2011), without or with replacement;
  :func:`~bayes_osteo.cardinality.match_cardinality` - the most 1:1 pairs within the caliper with
  every |SMD| <= 0.1 (an integer programme); :func:`match_design` picks between them;
- :func:`ps_strata` - strata at the quantiles of the score (quintiles by default);
- :func:`iptw_weights` - inverse-probability-of-treatment weights for the ATE or the ATT,
  stabilised, with optional trimming (dropping subjects with extreme scores) or truncation;
- :func:`standardized_differences` - standardised mean differences (SMD) before and after.

References: Rosenbaum & Rubin (1983); Austin (2011) Pharm Stat 10:150 (caliper); Austin & Stuart
(2015) Stat Med 34:3661 (IPTW balance, SMD); Kaplan & Chen (2012) Psychometrika 77:581 (two-step
Bayesian propensity scores, propagation of score draws).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from scipy import optimize
from scipy.special import expit

from .base import BayesModel
from .data import DataValidationError, SurvivalData, _binary, _is_categorical, _numeric, _rows
from .data import fingerprint as _fingerprint
from .priors import Prior, _as_prior, create

__all__ = [
    "PropensityScore",
    "MatchResult",
    "match_nearest",
    "match_design",
    "ps_strata",
    "stratification_weights",
    "iptw_weights",
    "effective_sample_size",
    "standardized_differences",
    "smd_scale",
    "restricted_cubic_spline",
    "rcs_knots",
    "OverlapWarning",
    "BALANCE_THRESHOLD",
]

#: Conventional balance criterion: every |SMD| <= 0.1 (Austin 2009, Stat Med 28:3083).
BALANCE_THRESHOLD = 0.1

#: Default intercept prior of the score model (logit scale, covariates centred).
DEFAULT_INTERCEPT = Prior("Normal", mu=0, sigma=2.5)

#: Harrell's default knot quantiles for restricted cubic splines with 3-7 knots.
_RCS_QUANTILES = {
    3: (0.10, 0.50, 0.90),
    4: (0.05, 0.35, 0.65, 0.95),
    5: (0.05, 0.275, 0.50, 0.725, 0.95),
    6: (0.05, 0.23, 0.41, 0.59, 0.77, 0.95),
    7: (0.025, 0.1833, 0.3417, 0.50, 0.6583, 0.8167, 0.975),
}


class OverlapWarning(UserWarning):
    """Poor overlap of the treated and untreated score distributions (positivity)."""


# --------------------------------------------------------------------------------------------
# Splines
# --------------------------------------------------------------------------------------------
def rcs_knots(x: np.ndarray, n_knots: int = 4) -> np.ndarray:
    """Knots at Harrell's default quantiles of ``x`` (duplicates removed)."""
    if n_knots not in _RCS_QUANTILES:
        raise ValueError(f"n_knots must be between 3 and 7, got {n_knots!r}.")
    return np.unique(np.quantile(np.asarray(x, float), _RCS_QUANTILES[n_knots]))


def restricted_cubic_spline(x: np.ndarray, knots: Sequence[float]) -> np.ndarray:
    """Restricted (natural) cubic spline basis: cubic between knots, linear beyond the outer ones.

    Harrell's truncated-power parameterisation (Regression Modeling Strategies, sec. 2.4.5): with
    knots ``t_1 < ... < t_k`` the columns are ``x`` and, for ``j = 1..k-2``,

        [(x - t_j)+^3 - (x - t_{k-1})+^3 (t_k - t_j)/(t_k - t_{k-1})
                      + (x - t_k)+^3 (t_{k-1} - t_j)/(t_k - t_{k-1})] / (t_k - t_1)^2.

    Returns an array of shape ``(n, k - 1)``; the first column is ``x`` itself.

    Examples
    --------
    >>> import numpy as np
    >>> B = restricted_cubic_spline(np.linspace(0, 10, 5), [1.0, 5.0, 9.0])
    >>> B.shape
    (5, 2)
    """
    x = np.asarray(x, float)
    t = np.asarray(knots, float)
    k = t.size
    if k < 3 or np.any(np.diff(t) <= 0):
        raise ValueError(f"A restricted cubic spline needs >= 3 strictly increasing knots; got {t.tolist()}.")
    cols = [x]
    scale = (t[-1] - t[0]) ** 2
    d = t[-1] - t[-2]
    for j in range(k - 2):
        c = (np.clip(x - t[j], 0, None) ** 3
             - np.clip(x - t[-2], 0, None) ** 3 * (t[-1] - t[j]) / d
             + np.clip(x - t[-1], 0, None) ** 3 * (t[-2] - t[j]) / d)
        cols.append(c / scale)
    return np.column_stack(cols)


# --------------------------------------------------------------------------------------------
# Designs from a score vector
# --------------------------------------------------------------------------------------------
def _check_t(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t)
    if not np.isin(t, (0, 1)).all():
        raise DataValidationError("The treatment indicator must be 0/1.")
    if t.min() == t.max():
        raise DataValidationError("The treatment indicator takes one value only: both arms are needed.")
    return t.astype(np.int64)


@dataclass(frozen=True)
class MatchResult:
    """A 1:1 nearest-neighbour matching.

    Attributes
    ----------
    pairs : DataFrame
        One row per matched pair: ``treated``, ``control`` (row positions), ``distance`` (absolute
        difference of the logit scores).
    weights : ndarray
        Per subject: 1 for a matched subject, 0 for an unmatched one; with replacement a control
        counts as often as it was used.
    caliper : float
        The caliper on the logit scale (``caliper_sd * SD(logit score)``), ``inf`` when none.
    n_treated, n_control : int
        Subjects in each arm before matching.
    n_pairs : int
        Matched pairs (= matched treated subjects).
    n_treated_dropped, n_control_unused : int
        Treated subjects without a control within the caliper; controls never used.
    """

    pairs: pd.DataFrame
    weights: np.ndarray
    caliper: float
    n_treated: int
    n_control: int
    replace: bool

    @property
    def n_pairs(self) -> int:
        return int(len(self.pairs))

    @property
    def n_treated_dropped(self) -> int:
        return self.n_treated - self.n_pairs

    @property
    def n_control_matched(self) -> int:
        return int(self.pairs["control"].nunique())

    @property
    def n_control_unused(self) -> int:
        return self.n_control - self.n_control_matched

    @property
    def mask(self) -> np.ndarray:
        """Subjects in the matched sample."""
        return self.weights > 0

    def counts(self) -> dict[str, int | float]:
        """Matched and dropped counts (what a report states)."""
        return {"n_treated": self.n_treated, "n_control": self.n_control, "n_pairs": self.n_pairs,
                "n_treated_matched": self.n_pairs, "n_treated_dropped": self.n_treated_dropped,
                "n_control_matched": self.n_control_matched, "n_control_unused": self.n_control_unused,
                "caliper_logit": float(self.caliper), "replace": bool(self.replace)}


def match_nearest(logit_score: np.ndarray, treatment: np.ndarray, *, caliper: float | None = 0.2,
                  replace: bool = False, order: str = "largest",
                  mahalanobis: np.ndarray | None = None, random_seed: Any = None) -> MatchResult:
    """1:1 greedy nearest-neighbour matching of treated to control subjects on the logit score.

    Parameters
    ----------
    logit_score : ndarray
        Logit of the propensity score, one per subject.
    treatment : ndarray
        0/1 treatment indicator.
    caliper : float or None
        Maximum allowed distance in units of the SD of the logit score over all subjects (default
        0.2, Austin 2011). ``None``: no caliper.
    replace : bool
        Match with replacement (a control may serve several treated subjects).
    order : {"largest", "smallest", "random", "data"}
        Order in which treated subjects pick their control (without replacement the result
        depends on it): highest score first (default; the hardest to match go first), lowest
        first, random (``random_seed``) or data order.
    mahalanobis : ndarray, shape (n, r), optional
        Covariates for Mahalanobis-distance matching *within* the score caliper (Rubin & Thomas
        2000): among the controls within the caliper, the one nearest in Mahalanobis distance
        (full-sample covariance) is taken. Default: nearest on the logit score.

    Returns
    -------
    MatchResult
        Pairs, per-subject weights and the matched / dropped counts. The estimand of an outcome
        analysis of the matched sample is the effect among the (matched) treated: ATT.

    Examples
    --------
    >>> import numpy as np
    >>> m = match_nearest(np.array([0.1, 0.0, 2.0, 0.12, 5.0]), np.array([1, 0, 1, 0, 0]))
    >>> m.n_pairs, m.n_treated_dropped
    (1, 1)
    """
    lg = np.asarray(logit_score, float)
    t = _check_t(treatment)
    if lg.shape != t.shape:
        raise ValueError("logit_score and treatment must have the same length.")
    if not np.isfinite(lg).all():
        raise ValueError("The logit score has non-finite values (a score of exactly 0 or 1).")
    width = np.inf if caliper is None else float(caliper) * float(np.std(lg, ddof=1))
    if caliper is not None and caliper <= 0:
        raise ValueError(f"caliper must be > 0 (SD units of the logit score) or None; got {caliper!r}.")
    tr = np.flatnonzero(t == 1)
    co = np.flatnonzero(t == 0)
    if order == "largest":
        tr = tr[np.argsort(-lg[tr], kind="stable")]
    elif order == "smallest":
        tr = tr[np.argsort(lg[tr], kind="stable")]
    elif order == "random":
        tr = np.random.default_rng(random_seed).permutation(tr)
    elif order != "data":
        raise ValueError(f"order must be 'largest', 'smallest', 'random' or 'data'; got {order!r}.")
    if mahalanobis is not None:
        M = np.asarray(mahalanobis, float)
        M = M[:, None] if M.ndim == 1 else M
        if M.shape[0] != t.size:
            raise ValueError("mahalanobis must have one row per subject.")
        # whiten with the full-sample covariance so that Euclidean = Mahalanobis distance
        L = np.linalg.pinv(np.linalg.cholesky(np.cov(M, rowvar=False).reshape(M.shape[1], -1)
                                              + 1e-10 * np.eye(M.shape[1])))
        W = (M - M.mean(0)) @ L.T
    available = np.ones(co.size, bool)
    rows = []
    w = np.zeros(t.size)
    for i in tr:
        d = np.abs(lg[co] - lg[i])
        if not replace:
            d = np.where(available, d, np.inf)
        if mahalanobis is not None:
            ok = d <= width
            if not ok.any():
                continue
            dm = np.where(ok, np.sqrt(((W[co] - W[i]) ** 2).sum(1)), np.inf)
            j = int(np.argmin(dm))
        else:
            j = int(np.argmin(d))
        if np.isfinite(d[j]) and d[j] <= width:
            rows.append((int(i), int(co[j]), float(d[j])))
            w[i] += 1
            w[co[j]] += 1
            if not replace:
                available[j] = False
    pairs = pd.DataFrame(rows, columns=["treated", "control", "distance"])
    return MatchResult(pairs=pairs, weights=w, caliper=width, n_treated=int(tr.size),
                       n_control=int(co.size), replace=bool(replace))


MATCHINGS = ("nearest", "cardinality")


def match_design(logit_score: np.ndarray, treatment: np.ndarray, *, matching: str = "nearest",
                 caliper: float | None = 0.2, replace: bool = False, order: str = "largest",
                 mahalanobis: np.ndarray | None = None, balance_X: np.ndarray | None = None,
                 balance_binary: np.ndarray | None = None, tol: float = 0.1,
                 random_seed: Any = None) -> MatchResult:
    """Dispatch to :func:`match_nearest` or cardinality matching (``matching="cardinality"``,
    which needs ``balance_X``; ``replace``, ``order`` and ``mahalanobis`` do not apply to it)."""
    if matching == "nearest":
        return match_nearest(logit_score, treatment, caliper=caliper, replace=replace, order=order,
                             mahalanobis=mahalanobis, random_seed=random_seed)
    if matching == "cardinality":
        from .cardinality import match_cardinality

        if replace:
            raise ValueError("Cardinality matching is without replacement: drop replace=True.")
        if balance_X is None:
            raise ValueError("Cardinality matching needs the balance covariates (balance_X).")
        return match_cardinality(logit_score, treatment, balance_X, caliper=caliper, tol=tol,
                                 binary=balance_binary)
    raise ValueError(f"matching must be one of {MATCHINGS}; got {matching!r}.")


def ps_strata(score: np.ndarray, k: int = 5) -> np.ndarray:
    """Stratum codes ``0..k-1`` at the ``k``-quantiles of the score over all subjects.

    Examples
    --------
    >>> import numpy as np
    >>> np.bincount(ps_strata(np.linspace(0.05, 0.95, 10), k=5)).tolist()
    [2, 2, 2, 2, 2]
    """
    s = np.asarray(score, float)
    if int(k) != k or k < 2:
        raise ValueError(f"k (number of score strata) must be an integer >= 2; got {k!r}.")
    if k > s.size // 2:
        raise ValueError(f"k={k} strata for {s.size} subjects leaves fewer than 2 per stratum.")
    edges = np.quantile(s, np.linspace(0, 1, int(k) + 1)[1:-1])
    return np.searchsorted(edges, s, side="left").astype(np.int64)


def stratification_weights(strata: np.ndarray, treatment: np.ndarray) -> np.ndarray:
    """Marginal-mean weights through stratification: ``n_s / n_{s,a}`` for a subject of arm ``a``
    in stratum ``s`` (0 in a stratum lacking an arm).

    The weighted mean difference of a covariate equals the size-weighted average of the
    within-stratum differences, so balance "after stratification" is measured with them.
    """
    s = np.asarray(strata)
    t = _check_t(treatment)
    w = np.zeros(s.size)
    for lev in np.unique(s):
        m = s == lev
        n1, n0 = int((t[m] == 1).sum()), int((t[m] == 0).sum())
        if n1 == 0 or n0 == 0:
            continue
        w[m & (t == 1)] = m.sum() / n1
        w[m & (t == 0)] = m.sum() / n0
    return w


def iptw_weights(score: np.ndarray, treatment: np.ndarray, *, estimand: str = "ATE",
                 stabilize: bool = True, trim: float | None = None,
                 truncate: float | None = None) -> np.ndarray:
    """Inverse-probability-of-treatment weights.

    ``ATE``: ``1/e`` for the treated and ``1/(1-e)`` for controls; stabilised, multiplied by the
    marginal probability of the subject's arm (Robins et al. 2000), so each arm's weights sum to
    about its size. ``ATT``: 1 for the treated and ``e/(1-e)`` for controls; stabilised, the control
    weights are rescaled to sum to the number of controls.

    Parameters
    ----------
    score : ndarray
        Propensity scores in (0, 1).
    treatment : ndarray
        0/1 indicator.
    estimand : {"ATE", "ATT"}
    stabilize : bool
    trim : float, optional
        Trimming (Sturmer et al. 2010): subjects with a score outside ``[trim, 1 - trim]`` get
        weight 0, i.e. leave the analysis (the estimand becomes the effect in the trimmed
        population). E.g. 0.05.
    truncate : float, optional
        Truncation: weights above their ``1 - truncate`` quantile are set to it (e.g. 0.01).

    Returns
    -------
    ndarray
        Weights (0 for trimmed subjects).

    Examples
    --------
    >>> import numpy as np
    >>> iptw_weights(np.array([0.5, 0.5, 0.25, 0.75]), np.array([1, 0, 1, 0]),
    ...              stabilize=False).tolist()
    [2.0, 2.0, 4.0, 4.0]
    """
    e = np.asarray(score, float)
    t = _check_t(treatment)
    if np.any((e <= 0) | (e >= 1)) or not np.isfinite(e).all():
        raise ValueError("Propensity scores must lie strictly inside (0, 1) to form weights.")
    est = str(estimand).upper()
    keep = np.ones(e.size, bool)
    if trim is not None:
        if not 0 < trim < 0.5:
            raise ValueError(f"trim must be in (0, 0.5), e.g. 0.05; got {trim!r}.")
        keep = (e >= trim) & (e <= 1 - trim)
        if not (keep & (t == 1)).any() or not (keep & (t == 0)).any():
            raise ValueError(f"trim={trim} leaves an arm without subjects.")
    if est == "ATE":
        w = np.where(t == 1, 1 / e, 1 / (1 - e))
        if stabilize:
            p1 = t[keep].mean()
            w = w * np.where(t == 1, p1, 1 - p1)
    elif est == "ATT":
        w = np.where(t == 1, 1.0, e / (1 - e))
        if stabilize:
            c = keep & (t == 0)
            w = np.where(t == 0, w * c.sum() / w[c].sum(), w)
    else:
        raise ValueError(f"estimand must be 'ATE' or 'ATT'; got {estimand!r}.")
    w = np.where(keep, w, 0.0)
    if truncate is not None:
        if not 0 < truncate < 0.5:
            raise ValueError(f"truncate must be in (0, 0.5), e.g. 0.01; got {truncate!r}.")
        cap = np.quantile(w[keep], 1 - truncate)
        w = np.minimum(w, cap)
    return w


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2``."""
    w = np.asarray(weights, float)
    return float(w.sum() ** 2 / np.sum(w**2)) if np.any(w > 0) else 0.0


def _wmean(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w[:, None] * x).sum(0) / w.sum()


def smd_scale(X: np.ndarray, treatment: np.ndarray, *, binary: np.ndarray | None = None) -> np.ndarray:
    """The SMD denominator per column: ``sqrt((s1^2 + s0^2) / 2)`` of the unweighted full sample
    (``p(1-p)`` variances for binary columns, detected when ``binary`` is None)."""
    X = np.asarray(X, float)
    X = X[:, None] if X.ndim == 1 else X
    t = _check_t(treatment)
    if binary is None:
        binary = np.array([np.isin(X[:, j], (0, 1)).all() for j in range(X.shape[1])])
    v1 = np.where(binary, X[t == 1].mean(0) * (1 - X[t == 1].mean(0)), X[t == 1].var(0, ddof=1))
    v0 = np.where(binary, X[t == 0].mean(0) * (1 - X[t == 0].mean(0)), X[t == 0].var(0, ddof=1))
    return np.sqrt((v1 + v0) / 2)


def standardized_differences(X: np.ndarray, treatment: np.ndarray,
                             weights: np.ndarray | None = None, *,
                             binary: np.ndarray | None = None) -> np.ndarray:
    """Standardised mean differences (treated minus control) of the columns of ``X``.

    ``SMD = (mean_1 - mean_0) / sqrt((s1^2 + s0^2) / 2)`` with (weighted) means; the denominator is
    always the *unweighted* pooled SD of the full sample (variance ``p(1-p)`` for binary columns),
    so a change in the SMD reflects a change in the mean difference only (Austin & Stuart 2015;
    cobalt's ``s.d.denom = "pooled"``).
    """
    X = np.asarray(X, float)
    X = X[:, None] if X.ndim == 1 else X
    t = _check_t(treatment)
    var = smd_scale(X, t, binary=binary) ** 2
    w = np.ones(t.size) if weights is None else np.asarray(weights, float)
    m1 = _wmean(X[t == 1], w[t == 1])
    m0 = _wmean(X[t == 0], w[t == 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, (m1 - m0) / np.sqrt(var), 0.0)


# --------------------------------------------------------------------------------------------
# The score model
# --------------------------------------------------------------------------------------------
@dataclass
class _Design:
    Z: np.ndarray                 # standardised model matrix (n x q)
    columns: list[str]            # model matrix column names
    center: np.ndarray
    scale: np.ndarray
    balance_X: np.ndarray         # covariates on their own scale for balance (n x r)
    balance_names: list[str]
    balance_binary: np.ndarray
    column_covariate: list[str]   # for each model column, the covariate it codes
    knots: dict = field(default_factory=dict)


class PropensityScore(BayesModel):
    """Bayesian logistic propensity-score model (two-step: the outcome never informs it).

    ``T_i ~ Bernoulli(e_i)``, ``logit e_i = intercept + z_i' beta`` on standardised covariates
    ``z_i``, priors ``intercept ~ Normal(0, 2.5)``, ``beta ~ Normal(0, 2.5)`` (override with
    ``priors={"intercept": ..., "beta": ...}``). Splines: ``splines={"age": 4}`` enters ``age`` as a
    restricted cubic spline with 4 knots.

    Parameters
    ----------
    data : SurvivalData or DataFrame
        The cohort (the rows of ``data.frame`` for a :class:`SurvivalData`).
    treatment : str, optional
        0/1 treatment column; default the SurvivalData's treatment.
    covariates : sequence of str, optional
        Score covariates (columns of the frame); default the SurvivalData's covariates.
    splines : mapping or sequence, optional
        Covariates to enter as restricted cubic splines: ``{"age": 4}`` (knots) or ``["age"]``
        (4 knots).
    priors : mapping, optional
        ``intercept`` and ``beta`` priors (``bayes_osteo.Prior``).

    Notes
    -----
    Before fitting, every covariate is checked for separation: a covariate whose values in the two
    arms do not overlap (it predicts treatment perfectly) raises :class:`DataValidationError`
    naming it, as does a linear combination of covariates that does; a level found in one arm only
    (quasi-complete separation) gives an :class:`OverlapWarning` naming the covariate.

    :meth:`fit` returns the fitted object itself (``ps = PropensityScore(...).fit()``); the
    DataTree is in :attr:`result`.

    Examples
    --------
    >>> import numpy as np, pandas as pd, bayes_osteo as bo
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"x": rng.normal(size=60), "months": rng.exponential(10, 60),
    ...                    "death": 1})
    >>> df["trt"] = (rng.random(60) < 1 / (1 + np.exp(-df["x"]))).astype(int)
    >>> sd = bo.SurvivalData.from_frame(df, duration="months", event="death",
    ...                                 covariates=["x"], treatment="trt")
    >>> ps = bo.PropensityScore(sd).fit(draws=200, tune=200, chains=2, random_seed=1,
    ...                                 progressbar=False)  # doctest: +SKIP
    >>> ps.balance()  # doctest: +SKIP
    """

    kind = "propensity"
    prior_names = ("beta",)
    patient_level = True
    default_sampler = "pymc"

    def __init__(self, data: SurvivalData | pd.DataFrame, *, treatment: str | None = None,
                 covariates: Sequence[str] | None = None,
                 splines: Mapping[str, int] | Sequence[str] | None = None,
                 priors: Mapping[str, Any] | None = None):
        priors = dict(priors or {})
        intercept = priors.pop("intercept", None)
        super().__init__(priors=priors)
        self.priors["intercept"] = (_as_prior(intercept, "intercept") if intercept is not None
                                    else DEFAULT_INTERCEPT.deepcopy())
        if isinstance(data, SurvivalData):
            if data.frame is None:
                raise ValueError("PropensityScore needs the SurvivalData's source frame (data.frame).")
            frame = data.frame
            treatment = treatment or data.treatment
            if covariates is None:
                covariates = [c for c in data.spec()["covariates"] if c != treatment]
            self.survival_data: SurvivalData | None = data
        elif isinstance(data, pd.DataFrame):
            frame = data
            self.survival_data = None
        else:
            raise TypeError(f"PropensityScore needs a SurvivalData or a DataFrame, got {type(data).__name__}.")
        if treatment is None:
            raise ValueError("Name the 0/1 treatment column: PropensityScore(data, treatment='...').")
        covariates = [covariates] if isinstance(covariates, str) else list(covariates or [])
        if not covariates:
            raise ValueError("The propensity model needs at least one covariate (covariates=[...]).")
        covariates = [c for c in covariates if c != treatment]
        missing = [c for c in [treatment, *covariates] if c not in frame.columns]
        if missing:
            raise DataValidationError(f"Column(s) {missing} not in the data; available: {list(frame.columns)}.")
        na = frame[[treatment, *covariates]].isna()
        if na.to_numpy().any():
            col = na.any().idxmax()
            raise DataValidationError(
                f"Column {col!r} has missing values in row(s) {_rows(na[col].to_numpy(), frame.index)}; "
                "impute or drop them before the propensity model.")
        self.frame = frame
        self.treatment_col = treatment
        self.t = _binary(frame, treatment, "treatment").astype(np.int64)
        if self.t.min() == self.t.max():
            raise DataValidationError(f"Treatment column {treatment!r} takes the single value "
                                      f"{self.t[0]}: both arms are needed for a propensity score.")
        self.covariates = covariates
        if splines is None:
            splines = {}
        elif not isinstance(splines, Mapping):
            splines = {c: 4 for c in ([splines] if isinstance(splines, str) else splines)}
        unknown = sorted(set(splines) - set(covariates))
        if unknown:
            raise ValueError(f"splines names {unknown}, which are not score covariates {covariates}.")
        self.splines = dict(splines)
        self.design = self._make_design()
        self._check_separation()
        self.result: xr.DataTree | None = None

    # -- design ----------------------------------------------------------------------------
    def _make_design(self) -> _Design:
        cols, names, owner = [], [], []
        bcols, bnames = [], []
        knots = {}
        for c in self.covariates:
            s = self.frame[c]
            if _is_categorical(s):
                levels = sorted(pd.unique(s.astype(str)))
                if len(levels) < 2:
                    raise DataValidationError(f"Covariate {c!r} is constant ({levels[0]!r}); remove it.")
                sv = s.astype(str).to_numpy()
                for lev in levels[1:]:
                    x = (sv == lev).astype(float)
                    cols.append(x)
                    names.append(f"{c}[{lev}]")
                    owner.append(c)
                    bcols.append(x)
                    bnames.append(f"{c}[{lev}]")
                if c in self.splines:
                    raise ValueError(f"Covariate {c!r} is categorical; it cannot enter as a spline.")
                continue
            x = _numeric(self.frame, c)
            if not np.isfinite(x).all():
                raise DataValidationError(f"Covariate {c!r} has non-finite values in row(s) "
                                          f"{_rows(~np.isfinite(x), self.frame.index)}.")
            if np.ptp(x) == 0:
                raise DataValidationError(f"Covariate {c!r} is constant ({x[0]!r}); remove it.")
            bcols.append(x)
            bnames.append(c)
            if c in self.splines:
                kn = rcs_knots(x, int(self.splines[c]))
                if kn.size < 3:
                    raise ValueError(f"Covariate {c!r} has too few distinct values for a spline "
                                     f"({np.unique(x).size}); enter it linearly.")
                knots[c] = kn.tolist()
                B = restricted_cubic_spline(x, kn)
                for j in range(B.shape[1]):
                    cols.append(B[:, j])
                    names.append(c if j == 0 else f"{c}_rcs{j}")
                    owner.append(c)
            else:
                cols.append(x)
                names.append(c)
                owner.append(c)
        X = np.column_stack(cols)
        center = X.mean(0)
        scale = X.std(0)
        Bx = np.column_stack(bcols)
        binary = np.array([np.isin(Bx[:, j], (0, 1)).all() for j in range(Bx.shape[1])])
        return _Design(Z=(X - center) / scale, columns=names, center=center, scale=scale,
                       balance_X=Bx, balance_names=bnames, balance_binary=binary,
                       column_covariate=owner, knots=knots)

    def _check_separation(self) -> None:
        t = self.t
        d = self.design
        name_t = self.treatment_col
        quasi = []
        for j, nm in enumerate(d.balance_names):
            x = d.balance_X[:, j]
            x1, x0 = x[t == 1], x[t == 0]
            if x1.min() > x0.max() or x0.min() > x1.max():
                hi_arm = "treated" if x1.min() > x0.max() else "untreated"
                cut = (max(x0.max(), x1.max()) + min(x0.min(), x1.min())) / 2
                lo, hi = (x0.max(), x1.min()) if hi_arm == "treated" else (x1.max(), x0.min())
                raise DataValidationError(
                    f"No overlap: covariate {nm!r} perfectly predicts treatment {name_t!r} "
                    f"(every subject with {nm} >= {hi:g} is {hi_arm}, every one with {nm} <= {lo:g} "
                    f"is not; cut near {cut:g}). The propensity score is 0 or 1 and no propensity "
                    f"method can compare like with like. Remove {nm!r} from the score covariates if "
                    "it is an instrument, or restrict the cohort to the range where both arms occur.")
            if x1.min() >= x0.max() or x0.min() >= x1.max():
                quasi.append(nm)
        for nm in quasi:
            warnings.warn(
                f"Near-complete separation: covariate {nm!r} has values (a level or a tail) found in "
                f"one treatment arm only; the score there is pushed towards 0 or 1 (held back only by "
                f"the prior). Check overlap (overlap_data()) and consider trimming.",
                OverlapWarning, stacklevel=3)
        # A linear combination separating the arms (complete separation in several covariates).
        n, q = d.Z.shape
        if n <= q + 1:
            raise DataValidationError(
                f"{n} subjects for {q} score columns: the arms are always separable. Use fewer "
                "covariates.")
        s = np.where(t == 1, 1.0, -1.0)
        A = -s[:, None] * np.column_stack([np.ones(n), d.Z])
        lp = optimize.linprog(np.zeros(q + 1), A_ub=A, b_ub=-np.ones(n),
                              bounds=[(None, None)] * (q + 1), method="highs")
        if lp.status == 0:
            coef = lp.x[1:]
            involved = sorted({d.column_covariate[j] for j in np.flatnonzero(np.abs(coef) > 1e-8)})
            raise DataValidationError(
                f"No overlap: treatment {name_t!r} is perfectly predicted by a linear combination of "
                f"the covariates {involved}. The propensity score is 0 or 1 for every subject. "
                "Drop or coarsen some of them, or restrict the cohort to the region of overlap.")

    # -- BayesModel ------------------------------------------------------------------------
    def options(self) -> dict:
        return {"treatment": self.treatment_col, "covariates": self.covariates,
                "splines": self.splines, "knots": self.design.knots}

    def data_fingerprint(self) -> str:
        return _fingerprint(self.t, self.design.Z, np.array(self.design.columns, dtype=object))

    def build(self) -> pm.Model:
        d = self.design
        coords = {"ps_covariate": d.columns, "obs": np.arange(d.Z.shape[0])}
        with pm.Model(coords=coords) as m:
            Z = pm.Data("Z", d.Z, dims=("obs", "ps_covariate"))
            t = pm.Data("t", self.t, dims="obs")
            alpha = create(self.priors["intercept"], "intercept")
            beta = create(self.priors["beta"], "beta", dims="ps_covariate")
            pm.Bernoulli("treated", logit_p=alpha + Z @ beta, observed=t, dims="obs")
        return m

    def postprocess(self, dt: xr.DataTree) -> xr.DataTree:
        post = dt["posterior"].to_dataset()
        eta = post["intercept"] + xr.dot(post["beta"], xr.DataArray(
            self.design.Z, dims=("obs", "ps_covariate"),
            coords={"ps_covariate": self.design.columns}), dim="ps_covariate")
        post["logit_ps"] = eta.transpose("chain", "draw", "obs")
        post["ps"] = expit(post["logit_ps"])
        # coefficients per unit of the covariate as coded (unstandardised)
        post["beta_unscaled"] = post["beta"] / xr.DataArray(
            self.design.scale, dims="ps_covariate", coords={"ps_covariate": self.design.columns})
        dt["posterior"] = xr.DataTree(post)
        return dt

    def fit(self, draws: int = 1000, tune: int = 1000, chains: int = 4, random_seed: Any = None,
            progressbar: bool = False, *, nuts_sampler: str | None = None, check: bool = True,
            **sampler_kwargs: Any) -> PropensityScore:
        """Sample the score model with NUTS; returns ``self`` (the DataTree is :attr:`result`).

        Convergence is checked on ``intercept`` and ``beta``. Warns (:class:`OverlapWarning`) when
        posterior-mean scores fall below 0.01 or above 0.99 (``overlap_data().attrs`` also counts
        the subjects outside the common support).
        """
        self.result = super().fit(draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                                  progressbar=progressbar, nuts_sampler=nuts_sampler, check=False,
                                  **sampler_kwargs)
        if check:
            # The parameters only: the per-subject scores are functions of them, and 125 R-hats of
            # derived quantities add noise, not information.
            from .summarize import check_convergence

            params = xr.DataTree.from_dict({
                "posterior": self.result["posterior"].to_dataset()[["intercept", "beta"]],
                "sample_stats": self.result["sample_stats"].to_dataset()})
            check_convergence(params, stacklevel=3)
        self._overlap_warnings()
        return self

    # -- the fitted score ------------------------------------------------------------------
    def _need_fit(self) -> xr.Dataset:
        if self.result is None:
            raise RuntimeError("Fit the propensity model first: ps = PropensityScore(...).fit().")
        return self.result["posterior"].to_dataset()

    def logit_draws(self) -> np.ndarray:
        """Posterior draws of the logit score, shape ``(chains * draws, n)``."""
        lg = self._need_fit()["logit_ps"].transpose("chain", "draw", "obs").to_numpy()
        return lg.reshape(-1, lg.shape[-1])

    def logit_score(self) -> np.ndarray:
        """Posterior mean of the linear predictor (the logit score), per subject."""
        return self.logit_draws().mean(0)

    def score(self) -> np.ndarray:
        """The score at the posterior mean of its logit, ``expit(E[logit e_i])``, per subject.

        The linear predictor's posterior is close to normal, so its mean is the natural point
        estimate; the matching, strata and weights of ``ps_draws="mean"`` analyses use it.
        """
        return expit(self.logit_score())

    def draw_indices(self, n_draws: int) -> np.ndarray:
        """``n_draws`` posterior draws (flattened chain-draw index), evenly spaced across chains."""
        S = self.logit_draws().shape[0]
        if not 1 <= n_draws <= S:
            raise ValueError(f"n_ps_draws must be between 1 and {S} (the score draws); got {n_draws}.")
        return np.unique(np.linspace(0, S - 1, int(n_draws)).round().astype(int))

    def map_logit(self) -> np.ndarray:
        """The logit score at the posterior mode (:meth:`find_map`; no sampling).

        Under vague priors this is the maximum-likelihood logistic fit: a fast plug-in for
        simulation replicates and large cohorts.
        """
        mode = self.find_map()
        return float(mode["intercept"]) + self.design.Z @ np.asarray(mode["beta"], float)

    def _resolve_logit(self, logit: np.ndarray | None) -> np.ndarray:
        return self.logit_score() if logit is None else np.asarray(logit, float)

    def _mahalanobis(self, distance: str) -> np.ndarray | None:
        if distance == "logit":
            return None
        if distance == "mahalanobis":
            return self.design.balance_X
        raise ValueError(f"distance must be 'logit' or 'mahalanobis'; got {distance!r}.")

    def match(self, *, caliper: float | None = 0.2, replace: bool = False, order: str = "largest",
              distance: str = "logit", matching: str = "nearest", tol: float = BALANCE_THRESHOLD,
              logit: np.ndarray | None = None, random_seed: Any = None) -> MatchResult:
        """1:1 matching at the posterior-mean logit score (or ``logit``).

        ``matching="nearest"`` (default): greedy nearest neighbour, :func:`match_nearest`;
        ``distance="mahalanobis"`` then picks the control nearest in the score covariates within
        the caliper. ``matching="cardinality"``: the most pairs within the caliper with every
        balance covariate's ``|SMD| <= tol``
        (:func:`~bayes_osteo.cardinality.match_cardinality`; no replacement).
        """
        return match_design(self._resolve_logit(logit), self.t, matching=matching, caliper=caliper,
                            replace=replace, order=order, mahalanobis=self._mahalanobis(distance),
                            balance_X=self.design.balance_X, balance_binary=self.design.balance_binary,
                            tol=tol, random_seed=random_seed)

    def strata(self, k: int = 5, *, logit: np.ndarray | None = None) -> np.ndarray:
        """Score strata at the ``k``-quantiles (:func:`ps_strata`)."""
        return ps_strata(self._resolve_logit(logit), k)

    def weights(self, estimand: str = "ATE", *, stabilize: bool = True, trim: float | None = None,
                truncate: float | None = None, logit: np.ndarray | None = None) -> np.ndarray:
        """IPT weights (:func:`iptw_weights`) at the posterior-mean score unless ``logit`` is given."""
        return iptw_weights(expit(self._resolve_logit(logit)), self.t, estimand=estimand,
                            stabilize=stabilize, trim=trim, truncate=truncate)

    def ess(self, estimand: str = "ATE", **weight_options: Any) -> pd.Series:
        """Kish effective sample size of the IPT weights: treated, control and total."""
        w = self.weights(estimand, **weight_options)
        return pd.Series({"treated": effective_sample_size(w[self.t == 1]),
                          "control": effective_sample_size(w[self.t == 0]),
                          "total": effective_sample_size(w),
                          "n_treated": int((self.t == 1).sum()), "n_control": int((self.t == 0).sum())},
                         name=f"ess_{estimand.lower()}")

    def balance(self, methods: Sequence[str] = ("matching", "stratification", "iptw"), *,
                estimand: str = "ATE", caliper: float | None = 0.2, replace: bool = False,
                distance: str = "logit", matching: str = "nearest", k: int = 5,
                stabilize: bool = True, trim: float | None = None,
                truncate: float | None = None, logit: np.ndarray | None = None) -> pd.DataFrame:
        """Standardised mean differences per covariate, before and after each adjustment.

        Index: covariate (dummy levels as ``name[level]``; spline covariates on their own scale).
        Columns: ``smd_before`` and ``smd_after_<method>`` for ``methods`` (``matching``,
        ``stratification``, ``iptw``), computed at the posterior-mean score (or ``logit``) with
        :func:`standardized_differences`. ``attrs``: ``threshold`` (0.1), ``balanced`` per method
        (every |SMD| <= 0.1), ``matching`` counts, ``ess`` after weighting, the options used.
        """
        lg = self._resolve_logit(logit)
        d = self.design
        X, t, b = d.balance_X, self.t, d.balance_binary
        out = pd.DataFrame({"smd_before": standardized_differences(X, t, binary=b)},
                           index=pd.Index(d.balance_names, name="covariate"))
        attrs: dict[str, Any] = {"threshold": BALANCE_THRESHOLD, "balanced": {}}
        for meth in methods:
            if meth == "matching":
                m = self.match(caliper=caliper, replace=replace, distance=distance,
                               matching=matching, logit=lg)
                w = m.weights
                attrs["matching"] = {**m.counts(), "algorithm": matching}
            elif meth == "stratification":
                w = stratification_weights(ps_strata(lg, k), t)
                attrs["stratification"] = {"k": k}
            elif meth == "iptw":
                w = iptw_weights(expit(lg), t, estimand=estimand, stabilize=stabilize, trim=trim,
                                 truncate=truncate)
                attrs["iptw"] = {"estimand": estimand.upper(), "stabilize": stabilize, "trim": trim,
                                 "truncate": truncate}
                attrs["ess"] = {"treated": effective_sample_size(w[t == 1]),
                                "control": effective_sample_size(w[t == 0]),
                                "total": effective_sample_size(w)}
            else:
                raise ValueError(f"Unknown balance method {meth!r}; use 'matching', "
                                 "'stratification' or 'iptw' (covariate adjustment has no balance).")
            col = f"smd_after_{meth}"
            out[col] = standardized_differences(X, t, w, binary=b)
            attrs["balanced"][meth] = bool((out[col].abs() <= BALANCE_THRESHOLD).all())
        out.attrs.update(attrs)
        return out

    def overlap_data(self, *, ci_prob: float = 0.95) -> pd.DataFrame:
        """Per-subject scores for an overlap plot: ``treatment`` (0/1), ``ps`` (posterior-mean
        score), ``logit_ps``, ``ps_low``/``ps_high`` (equal-tailed interval of the score draws).

        ``attrs``: ``common_support`` (the score range both arms cover) and ``n_outside`` (subjects
        outside it).
        """
        draws = self.logit_draws()
        lo, hi = np.quantile(expit(draws), [(1 - ci_prob) / 2, (1 + ci_prob) / 2], axis=0)
        lg = draws.mean(0)
        ps = expit(lg)
        out = pd.DataFrame({"treatment": self.t, "ps": ps, "logit_ps": lg, "ps_low": lo,
                            "ps_high": hi}, index=self.frame.index)
        t = self.t
        cs = (float(max(ps[t == 1].min(), ps[t == 0].min())),
              float(min(ps[t == 1].max(), ps[t == 0].max())))
        out.attrs.update({"common_support": cs,
                          "n_outside": int(((ps < cs[0]) | (ps > cs[1])).sum()),
                          "treatment": self.treatment_col, "ci_prob": ci_prob})
        return out

    def _overlap_warnings(self) -> None:
        ov = self.overlap_data()
        ps = ov["ps"].to_numpy()
        extreme = int(((ps < 0.01) | (ps > 0.99)).sum())
        msgs = []
        if extreme:
            msgs.append(f"{extreme} subject(s) have a score below 0.01 or above 0.99 (weights "
                        "will be extreme)")
        if msgs:
            warnings.warn("Overlap: " + "; ".join(msgs) + ". Consider trim=0.05 for IPTW, a "
                          "caliper for matching, or restricting the cohort.", OverlapWarning,
                          stacklevel=3)

    def coefficients(self) -> pd.DataFrame:
        """Posterior mean, SD and 95% interval of the score coefficients (per unit as coded)."""
        b = self._need_fit()["beta_unscaled"].transpose("chain", "draw", "ps_covariate").to_numpy()
        b = b.reshape(-1, b.shape[-1])
        lo, hi = np.quantile(b, [0.025, 0.975], axis=0)
        return pd.DataFrame({"mean": b.mean(0), "sd": b.std(0, ddof=1), "ci_low": lo, "ci_high": hi,
                             "odds_ratio": np.exp(b.mean(0))},
                            index=pd.Index(self.design.columns, name="ps_covariate"))
