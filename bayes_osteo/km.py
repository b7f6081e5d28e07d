"""Descriptive Kaplan-Meier curves and the log-rank test (statsmodels-backed, nothing Bayesian).

* :func:`kaplan_meier` - KM estimate per group with Greenwood standard errors and pointwise
  95% confidence bands on the log(-log) scale (the bands stay in [0, 1]), numbers at risk and
  events at each distinct time; statsmodels ``SurvfuncRight``.
* :func:`logrank` - the (optionally stratified) log-rank test; statsmodels ``survdiff``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.duration.survfunc import SurvfuncRight, survdiff

from .data import SurvivalData

__all__ = ["kaplan_meier", "logrank"]


def _group_values(sd: SurvivalData, by: str) -> np.ndarray:
    if sd.frame is None or by not in sd.frame.columns:
        cols = [] if sd.frame is None else list(sd.frame.columns)
        raise ValueError(f"by={by!r} is not a column of the data frame; columns: {cols}.")
    return sd.frame[by].to_numpy()


def kaplan_meier(sd: SurvivalData, by: str | None = None, *, ci_prob: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier survival estimate (per group when ``by`` is a column of the data frame).

    Returns a frame with columns ``[<by>, "time", "survival", "se", "ci_low", "ci_high",
    "n_risk", "n_events", "n_censored"]``: one row per distinct exit time, preceded by a row at
    time 0 (survival 1), so plots can draw the step function directly. Left truncation
    (``sd.entry``) is honoured. Bands: pointwise, ``ci_prob``, log(-log) transform.

    Examples
    --------
    >>> import pandas as pd, bayes_osteo as bo
    >>> df = pd.DataFrame({"t": [1, 2, 3, 4.0], "d": [1, 0, 1, 1], "g": [0, 1, 0, 1]})
    >>> sd = bo.SurvivalData.from_frame(df, duration="t", event="d", treatment="g")
    >>> kaplan_meier(sd)["survival"].round(3).tolist()
    [1.0, 0.75, 0.75, 0.375, 0.0]
    """
    z = stats.norm.ppf(0.5 + ci_prob / 2)
    if by is None:
        levels, groups = [None], [np.ones(sd.n, bool)]
    else:
        vals = _group_values(sd, by)
        levels = sorted(pd.unique(vals), key=lambda v: (str(type(v)), v))
        groups = [vals == lev for lev in levels]
    parts = []
    for lev, m in zip(levels, groups, strict=True):
        t, d = sd.time[m], sd.event[m]
        ent = None if sd.entry is None else sd.entry[m]
        sf = SurvfuncRight(t, d, entry=ent)
        st = np.asarray(sf.surv_times, float)
        S = np.asarray(sf.surv_prob, float)
        se = np.asarray(sf.surv_prob_se, float)
        # statsmodels reports only event times; add censoring-only times for complete steps
        ut = np.unique(t)
        k = np.searchsorted(st, ut, side="right") - 1
        S_all = np.where(k >= 0, S[np.maximum(k, 0)], 1.0)
        se_all = np.where(k >= 0, se[np.maximum(k, 0)], 0.0)
        n_risk = np.array([np.sum((t >= u) & ((ent < u) if ent is not None else True)) for u in ut])
        n_ev = np.array([np.sum((t == u) & (d > 0)) for u in ut])
        n_cens = np.array([np.sum((t == u) & (d == 0)) for u in ut])
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = np.log(-np.log(S_all))
            half = z * se_all / np.abs(S_all * np.log(S_all))
            lo = np.exp(-np.exp(ll + half))
            hi = np.exp(-np.exp(ll - half))
        lo = np.where((S_all > 0) & (S_all < 1), lo, S_all)
        hi = np.where((S_all > 0) & (S_all < 1), hi, S_all)
        part = pd.DataFrame({"time": np.concatenate([[0.0], ut]),
                             "survival": np.concatenate([[1.0], S_all]),
                             "se": np.concatenate([[0.0], se_all]),
                             "ci_low": np.concatenate([[1.0], lo]),
                             "ci_high": np.concatenate([[1.0], hi]),
                             "n_risk": np.concatenate([[n_risk[0] if n_risk.size else m.sum()], n_risk]),
                             "n_events": np.concatenate([[0], n_ev]),
                             "n_censored": np.concatenate([[0], n_cens])})
        if by is not None:
            part.insert(0, by, lev)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out.attrs.update({"ci_prob": ci_prob, "ci_kind": "pointwise log(-log)", "estimator": "Kaplan-Meier"})
    return out


def logrank(sd: SurvivalData, by: str, *, strata: str | None = None) -> pd.DataFrame:
    """Log-rank test of equal survival across the levels of ``by`` (statsmodels ``survdiff``).

    ``strata`` (a column of the data frame) gives the stratified test. Returns a one-row frame
    with ``by``, ``chisq``, ``df`` (levels - 1), ``p_value`` and, per level, the number of
    subjects ``n_<level>`` and observed events ``events_<level>``.
    """
    g = _group_values(sd, by)
    levels = sorted(pd.unique(g), key=lambda v: (str(type(v)), v))
    if len(levels) < 2:
        raise ValueError(f"logrank needs at least two groups in {by!r}; found {levels}.")
    st = None if strata is None else _group_values(sd, strata)
    if st is not None and sd.entry is not None:
        # statsmodels' stratified survdiff does not subset entry times by stratum.
        raise ValueError("logrank: a stratified test with left truncation is not supported "
                         "(statsmodels' survdiff mishandles it); drop strata= or entry.")
    chisq, p = survdiff(sd.time, sd.event, g, strata=st, entry=sd.entry)
    row = {"by": by, "chisq": float(chisq), "df": len(levels) - 1, "p_value": float(p)}
    for lev in levels:
        row[f"events_{lev}"] = int(sd.event[g == lev].sum())
        row[f"n_{lev}"] = int((g == lev).sum())
    return pd.DataFrame([row])
