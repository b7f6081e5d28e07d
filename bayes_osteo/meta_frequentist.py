"""Frequentist meta-analysis of one set of study estimates: the cross-check for the Bayesian fit.

Model: ``y_i ~ N(theta_i, s_i^2)`` with known ``s_i``; fixed effect ``theta_i = mu``; random
effects ``theta_i ~ N(mu, tau^2)``. Estimators follow metafor (Viechtbauer 2010):

- fixed effect: inverse-variance weights ``w_i = 1/s_i^2``; Cochran's ``Q`` and ``I^2 = (Q - df)/Q``;
- DerSimonian-Laird: ``tau^2 = max(0, (Q - (k-1)) / (sum w - sum w^2 / sum w))``;
- REML: ``tau^2`` maximising the restricted likelihood (bounded 1-D optimisation, boundary at 0);
- random-effects rows: ``I^2 = tau^2 / (tau^2 + s^2)`` with Higgins & Thompson's typical
  within-study variance ``s^2 = (k-1) sum w / ((sum w)^2 - sum w^2)``;
- Knapp-Hartung: ``SE_KH = sqrt(q / sum w*)``, ``q = sum w* (y - mu)^2 / (k-1)``, t with ``k-1`` df;
- prediction interval: ``mu +- z sqrt(SE^2 + tau^2)`` (metafor's default), and with Knapp-Hartung
  ``mu +- t_{k-1} sqrt(SE_KH^2 + tau^2)``.

I^2 is a fraction in [0, 1] everywhere in this package.

Examples
--------
>>> import numpy as np
>>> from bayes_osteo.meta_frequentist import frequentist_table
>>> tab = frequentist_table(np.array([-0.5, -0.2, -0.9]), np.array([0.2, 0.3, 0.25]))
>>> list(tab.index)
['fixed', 'DL', 'REML']
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, stats

__all__ = ["fixed_effect", "dersimonian_laird", "reml_tau2", "frequentist_table", "egger_test",
           "typical_within_variance"]

_Z = stats.norm.ppf(0.975)


def typical_within_variance(se: np.ndarray) -> float:
    """Higgins & Thompson (2002) typical within-study variance (``se^2`` for a single study)."""
    w = 1.0 / np.asarray(se, float) ** 2
    k = w.size
    if k == 1:
        return float(1.0 / w[0])
    return float((k - 1) * w.sum() / (w.sum() ** 2 - (w**2).sum()))


def _pooled(y: np.ndarray, v: np.ndarray, tau2: float) -> tuple[float, float, np.ndarray]:
    w = 1.0 / (v + tau2)
    mu = float(np.sum(w * y) / np.sum(w))
    return mu, float(1.0 / np.sqrt(np.sum(w))), w


def fixed_effect(y: np.ndarray, se: np.ndarray) -> dict:
    """Inverse-variance fixed-effect estimate, SE, Cochran's Q and I^2."""
    y, v = np.asarray(y, float), np.asarray(se, float) ** 2
    mu, s, w = _pooled(y, v, 0.0)
    q = float(np.sum(w * (y - mu) ** 2))
    df = y.size - 1
    i2 = max(0.0, (q - df) / q) if q > 0 and df > 0 else 0.0
    return {"estimate": mu, "se": s, "Q": q, "Q_df": df, "I2": i2}


def dersimonian_laird(y: np.ndarray, se: np.ndarray) -> float:
    """DerSimonian-Laird moment estimate of ``tau^2`` (truncated at 0)."""
    y, v = np.asarray(y, float), np.asarray(se, float) ** 2
    w = 1 / v
    q = fixed_effect(y, np.sqrt(v))["Q"]
    c = w.sum() - (w**2).sum() / w.sum()
    return float(max(0.0, (q - (y.size - 1)) / c))


def _reml_negloglik(tau2: float, y: np.ndarray, v: np.ndarray) -> float:
    mu, _, w = _pooled(y, v, tau2)
    return 0.5 * (np.sum(np.log(v + tau2)) + np.log(np.sum(w)) + np.sum(w * (y - mu) ** 2))


def reml_tau2(y: np.ndarray, se: np.ndarray) -> float:
    """REML estimate of ``tau^2``: bounded 1-D maximisation of the restricted likelihood."""
    y, v = np.asarray(y, float), np.asarray(se, float) ** 2
    if y.size < 2:
        raise ValueError("REML needs at least 2 studies.")
    upper = 10 * float(np.var(y) + v.max()) + 1e-8
    res = optimize.minimize_scalar(_reml_negloglik, bounds=(0.0, upper), args=(y, v), method="bounded",
                                   options={"xatol": 1e-12, "maxiter": 2000})
    t2 = float(res.x)
    # The boundary tau^2 = 0 is a candidate the bounded search can approach but not reach.
    if _reml_negloglik(0.0, y, v) <= _reml_negloglik(t2, y, v):
        t2 = 0.0
    return t2


def _row(y, v, tau2, *, method: str, fe: dict) -> dict:
    k = y.size
    mu, s, w = _pooled(y, v, tau2)
    if method == "fixed":
        i2 = fe["I2"]
    else:
        i2 = tau2 / (tau2 + typical_within_variance(np.sqrt(v)))
    out = {"k": k, "estimate": mu, "se": s, "ci_low": mu - _Z * s, "ci_high": mu + _Z * s,
           "z": mu / s, "p": float(2 * stats.norm.sf(abs(mu / s))),
           "tau2": tau2, "tau": float(np.sqrt(tau2)), "I2": i2, "Q": fe["Q"], "Q_df": fe["Q_df"],
           "Q_p": float(stats.chi2.sf(fe["Q"], fe["Q_df"])) if fe["Q_df"] > 0 else np.nan,
           "pi_low": mu - _Z * np.sqrt(s**2 + tau2), "pi_high": mu + _Z * np.sqrt(s**2 + tau2)}
    if k >= 2:
        qkh = float(np.sum(w * (y - mu) ** 2) / (k - 1))
        skh = float(np.sqrt(qkh / np.sum(w)))
        t = stats.t.ppf(0.975, k - 1)
        out.update({"kh_se": skh, "kh_ci_low": mu - t * skh, "kh_ci_high": mu + t * skh,
                    "kh_pi_low": mu - t * np.sqrt(skh**2 + tau2),
                    "kh_pi_high": mu + t * np.sqrt(skh**2 + tau2)})
    else:
        out.update(dict.fromkeys(["kh_se", "kh_ci_low", "kh_ci_high", "kh_pi_low", "kh_pi_high"], np.nan))
    return out


def frequentist_table(y: np.ndarray, se: np.ndarray) -> pd.DataFrame:
    """Rows ``fixed``, ``DL``, ``REML`` (random-effects rows need k >= 2; with k = 1 only ``fixed``).

    Columns: ``k, estimate, se, ci_low, ci_high, z, p, tau2, tau, I2, Q, Q_df, Q_p, pi_low, pi_high,
    kh_se, kh_ci_low, kh_ci_high, kh_pi_low, kh_pi_high`` (log scale), and ``hr, hr_ci_low,
    hr_ci_high``.
    """
    y, se = np.asarray(y, float), np.asarray(se, float)
    v = se**2
    fe = fixed_effect(y, se)
    rows = {"fixed": _row(y, v, 0.0, method="fixed", fe=fe)}
    if y.size >= 2:
        rows["DL"] = _row(y, v, dersimonian_laird(y, se), method="DL", fe=fe)
        rows["REML"] = _row(y, v, reml_tau2(y, se), method="REML", fe=fe)
    tab = pd.DataFrame.from_dict(rows, orient="index")
    tab.index.name = "method"
    tab["hr"] = np.exp(tab["estimate"])
    tab["hr_ci_low"] = np.exp(tab["ci_low"])
    tab["hr_ci_high"] = np.exp(tab["ci_high"])
    return tab


def egger_test(y: np.ndarray, se: np.ndarray) -> dict:
    """Egger's regression test for funnel asymmetry (Egger et al., BMJ 1997).

    OLS of the standard normal deviate ``y/se`` on precision ``1/se``; the intercept measures
    small-study asymmetry, tested with t on ``k - 2`` df. Needs k >= 3 (k >= 10 for useful power).
    """
    y, se = np.asarray(y, float), np.asarray(se, float)
    k = y.size
    if k < 3:
        raise ValueError(f"Egger's test needs at least 3 studies; got {k}.")
    X = np.column_stack([np.ones(k), 1 / se])
    z = y / se
    beta, *_ = np.linalg.lstsq(X, z, rcond=None)
    resid = z - X @ beta
    df = k - 2
    sigma2 = float(resid @ resid / df) if df > 0 else np.nan
    cov = sigma2 * np.linalg.inv(X.T @ X)
    se_b0 = float(np.sqrt(cov[0, 0]))
    t = float(beta[0] / se_b0) if se_b0 > 0 else np.nan
    return {"k": k, "intercept": float(beta[0]), "intercept_se": se_b0, "t": t, "df": df,
            "p": float(2 * stats.t.sf(abs(t), df)) if np.isfinite(t) else np.nan,
            "slope": float(beta[1])}
