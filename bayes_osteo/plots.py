"""Figures (matplotlib; through ``arviz_plots`` where it has the plot).

Every function takes the data a model or summary returned (a ``DataTree``, a ``DataFrame``, a
``StudyEstimates`` ...) and an optional matplotlib ``ax``, draws, and returns the
:class:`matplotlib.figure.Figure`. Nothing here fits a model: the numbers come from the model and
summary modules. Hazard ratios are drawn on a log axis labelled on the HR scale; intervals are 95%
equal-tailed (:data:`bayes_osteo.base.CI_PROB`).

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import bayes_osteo as bo
>>> st = bo.StudyEstimates([-1.2, -0.9, -1.5], [0.3, 0.4, 0.5], study=["a", "b", "c"])
>>> fig = bo.plots.funnel(st)
>>> fig.axes[0].get_xscale()
'log'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from scipy import stats

from .base import CI_PROB

__all__ = ["forest", "funnel", "hazard_ratio_plot", "survival", "km", "love", "ps_overlap", "prior_posterior",
           "hr_over_time", "trace", "rank", "rank_histograms", "close_all"]

_Q = ((1 - CI_PROB) / 2, 0.5, (1 + CI_PROB) / 2)
_SAMPLE_DIMS = ("chain", "draw")
_COLORS = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2", "C3"])


# -- helpers ---------------------------------------------------------------------------------
def _axes(ax, figsize=(7, 4.5)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    else:
        fig = ax.get_figure()
    return fig, ax


def _hr_axis(ax, axis: str = "x") -> None:
    """Log scale labelled with plain HR values (0.1, 0.2, 0.5, 1, 2 ...)."""
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    if axis == "x":
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(fmt)
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(fmt)
        ax.yaxis.set_minor_formatter(NullFormatter())


def _post(dt: xr.DataTree) -> xr.Dataset:
    if isinstance(dt, xr.Dataset):
        return dt
    if "posterior" not in dt.children:
        raise ValueError("Need a result with a 'posterior' group (the DataTree returned by fit()).")
    return dt["posterior"].to_dataset()


def _hr_var(post: xr.Dataset, name: str) -> xr.DataArray | None:
    if name in post:
        return post[name]
    if f"log_{name}" in post:
        return np.exp(post[f"log_{name}"])
    return None


def _quantiles(da: xr.DataArray) -> xr.DataArray:
    dims = [d for d in _SAMPLE_DIMS if d in da.dims]
    return da.quantile(list(_Q), dim=dims)


def _flat(da: xr.DataArray) -> np.ndarray:
    dims = [d for d in da.dims if d not in _SAMPLE_DIMS]
    return da.transpose(*[d for d in _SAMPLE_DIMS if d in da.dims], *dims).to_numpy().reshape(
        -1, *[da.sizes[d] for d in dims])


def close_all() -> None:
    """Close every open figure (reports make many)."""
    plt.close("all")


# -- meta-analysis -----------------------------------------------------------------------------
def forest(meta_dt: xr.DataTree, studies=None, ax=None, *, title: str | None = None) -> Figure:
    """Forest plot on the HR scale: each study's reported HR (square, 95% CI), its shrunken
    estimate ``exp(theta_i)`` (posterior median and 95% interval, when the result has ``theta``),
    the pooled HR (diamond) and the 95% prediction interval for a new study (whisker line).

    Parameters
    ----------
    meta_dt : DataTree
        A :class:`~bayes_osteo.MetaAnalysis` result (``hr`` scalar or dim ``group``; ``theta`` dim
        ``study``; ``hr_new``/``log_hr_new``).
    studies : StudyEstimates, optional
        The data; without it only the posterior quantities are drawn.
    ax : matplotlib Axes, optional
    """
    post = _post(meta_dt)
    hr = _hr_var(post, "hr")
    if hr is None:
        raise KeyError("forest needs 'hr' or 'log_hr' in the posterior of a meta-analysis result.")
    theta = np.exp(post["theta"]) if "theta" in post else None  # study effects are log-HRs
    new = _hr_var(post, "hr_new")
    group_dim = next((d for d in hr.dims if d not in _SAMPLE_DIMS), None)
    groups = list(hr[group_dim].values) if group_dim else [None]

    k = studies.k if studies is not None else (theta.sizes.get("study", 0) if theta is not None else 0)
    st_groups = (np.asarray(studies.group, dtype=object) if studies is not None and studies.group is not None
                 else np.array([groups[0]] * k, dtype=object))
    th_q = _quantiles(theta) if theta is not None else None
    n_rows = k + 2 * len(groups) + len(groups)
    fig, ax = _axes(ax, figsize=(8, max(3.0, 0.32 * n_rows + 1.2)))

    y = 0.0
    ticks, labels = [], []
    legend_done = set()

    def lab(name):
        if name in legend_done:
            return None
        legend_done.add(name)
        return name

    for gi, g in enumerate(groups):
        idx = [i for i in range(k) if (st_groups[i] == g or g is None or len(groups) == 1)]
        if g is not None and len(groups) > 1:
            ticks.append(y)
            labels.append(f"{g}")
            y -= 1
        for i in idx:
            name = str(studies.study[i]) if studies is not None else str(theta["study"].values[i])
            if studies is not None:
                z = stats.norm.ppf(_Q[2])
                lo, hi = np.exp(studies.log_hr[i] - z * studies.se[i]), np.exp(studies.log_hr[i] + z * studies.se[i])
                ax.plot([lo, hi], [y + 0.12, y + 0.12], color="0.25", lw=1.2)
                w = 1 / studies.se[i] ** 2
                ax.scatter([studies.hr[i]], [y + 0.12], marker="s", color="0.25",
                           s=18 + 60 * w / (1 / studies.se.min() ** 2), zorder=3, label=lab("reported (95% CI)"))
            if th_q is not None and i < th_q.sizes.get("study", 0):
                q = th_q.isel(study=i).to_numpy()
                ax.plot([q[0], q[2]], [y - 0.18, y - 0.18], color=_COLORS[0], lw=1.6, alpha=0.9)
                ax.scatter([q[1]], [y - 0.18], marker="o", color=_COLORS[0], s=14, zorder=3,
                           label=lab("shrunken estimate (95% CrI)"))
            ticks.append(y)
            labels.append("    " + name if len(groups) > 1 else name)
            y -= 1
        # pooled diamond
        hg = hr.sel({group_dim: g}) if group_dim else hr
        lo, med, hi = _quantiles(hg).to_numpy()
        ax.fill([lo, med, hi, med], [y, y + 0.3, y, y - 0.3], color=_COLORS[1], zorder=3,
                label=lab(f"pooled HR ({CI_PROB:.0%} CrI)"))
        ticks.append(y)
        labels.append(f"Pooled {'' if g is None else g}".strip() + f"  {med:.2f} [{lo:.2f}, {hi:.2f}]")
        y -= 1
        if new is not None:
            ng = new.sel({group_dim: g}) if group_dim and group_dim in new.dims else new
            plo, pmed, phi = _quantiles(ng).to_numpy()
            ax.plot([plo, phi], [y, y], color=_COLORS[1], lw=2.5, alpha=0.6,
                    label=lab(f"prediction interval ({CI_PROB:.0%})"))
            ax.scatter([pmed], [y], marker="|", color=_COLORS[1], s=60)
            ticks.append(y)
            labels.append(f"New study  [{plo:.2f}, {phi:.2f}]")
            y -= 1
        if gi < len(groups) - 1:
            ax.axhline(y + 0.5, color="0.85", lw=0.8)
            y -= 0.5
    ax.axvline(1.0, color="0.5", ls="--", lw=0.8)
    ax.set_yticks(ticks, labels, fontsize=8)
    _hr_axis(ax, "x")
    ax.set_xlabel("Hazard ratio (log scale)")
    ax.set_ylim(y + 0.3, 0.8)
    ax.legend(loc="best", fontsize=7, frameon=False)
    ax.set_title(title or "Forest plot")
    return fig


def funnel(studies, meta_dt: xr.DataTree | None = None, ax=None) -> Figure:
    """Funnel plot: each study's HR (log axis) against its standard error (inverted axis), with
    the pooled HR (posterior median of ``hr`` if ``meta_dt`` is given, else the inverse-variance
    fixed-effect estimate) and its pseudo 95% limits ``exp(mu +- 1.96 SE)``.

    Groups (if any) are drawn in different colours.
    """
    fig, ax = _axes(ax, figsize=(6, 4.5))
    se = np.asarray(studies.se, float)
    y = np.asarray(studies.log_hr, float)
    groups = studies.groups
    post = _post(meta_dt) if meta_dt is not None else None
    smax = float(se.max()) * 1.1
    grid = np.linspace(0, smax, 50)
    z = stats.norm.ppf(_Q[2])
    for gi, g in enumerate(groups):
        m = np.ones_like(se, bool) if g is None else (np.asarray(studies.group, dtype=object) == g)
        c = _COLORS[gi % len(_COLORS)]
        ax.scatter(np.exp(y[m]), se[m], color=c, s=22, zorder=3, label=None if g is None else str(g))
        if post is not None and _hr_var(post, "hr") is not None:
            hr = _hr_var(post, "hr")
            gd = next((d for d in hr.dims if d not in _SAMPLE_DIMS), None)
            mu = float(np.log(hr.sel({gd: g}).median() if gd and g is not None else hr.median()))
        else:
            w = 1 / se[m] ** 2
            mu = float(np.sum(w * y[m]) / w.sum())
        ax.plot(np.exp(mu - z * grid), grid, color=c, ls=":", lw=0.9)
        ax.plot(np.exp(mu + z * grid), grid, color=c, ls=":", lw=0.9)
        ax.plot([np.exp(mu)] * 2, [0, smax], color=c, lw=1)
    ax.axvline(1.0, color="0.5", ls="--", lw=0.8)
    ax.set_ylim(smax, 0)
    _hr_axis(ax, "x")
    ax.set_xlabel("Hazard ratio (log scale)")
    ax.set_ylabel("Standard error of log HR")
    if len(groups) > 1:
        ax.legend(fontsize=7, frameon=False)
    ax.set_title("Funnel plot (dotted: pseudo 95% limits)")
    return fig


def hazard_ratio_plot(table: pd.DataFrame, ax=None, *, title: str | None = None) -> Figure:
    """Posterior HRs with 95% intervals, one row per entry of a
    :func:`bayes_osteo.summarize.hazard_ratios` table (columns ``hr_median``, ``ci_low``,
    ``ci_high``; ``p_hr_lt_1`` printed at the right when present)."""
    tab = table
    fig, ax = _axes(ax, figsize=(7, max(2.5, 0.42 * len(tab) + 1.2)))
    ypos = np.arange(len(tab))[::-1]
    ax.hlines(ypos, tab["ci_low"], tab["ci_high"], color=_COLORS[0], lw=2)
    ax.scatter(tab["hr_median"], ypos, color=_COLORS[0], zorder=3, s=28)
    ax.axvline(1.0, color="0.5", ls="--", lw=0.8)
    ax.set_yticks(ypos, [str(i) for i in tab.index], fontsize=8)
    _hr_axis(ax, "x")
    if "p_hr_lt_1" in tab:
        for yy, p in zip(ypos, tab["p_hr_lt_1"], strict=True):
            ax.annotate(f"P(HR<1)={p:.2f}", (1.01, yy), xycoords=("axes fraction", "data"),
                        fontsize=7, va="center")
    ax.set_xlabel(f"Hazard ratio (posterior median, {CI_PROB:.0%} CrI; log scale)")
    ax.set_title(title or "Posterior hazard ratios")
    return fig


# -- survival ----------------------------------------------------------------------------------
def _km_frame(df: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Normalise a Kaplan-Meier table to columns time, survival, ci_low, ci_high, group, n_risk."""
    out = df.reset_index() if "time" not in df.columns else df.copy()
    ren = {by: "group"} if by and by in out.columns else {}
    for c in out.columns:
        lc = str(c).lower()
        if lc in ("surv", "survival", "s", "km", "estimate", "surv_prob"):
            ren[c] = "survival"
        elif lc in ("lower", "ci_lower", "lcl", "ci_low"):
            ren[c] = "ci_low"
        elif lc in ("upper", "ci_upper", "ucl", "ci_high"):
            ren[c] = "ci_high"
        elif lc in ("at_risk", "n_at_risk", "n_risk", "numrisk"):
            ren[c] = "n_risk"
        elif lc in ("by", "stratum", "level"):
            ren[c] = "group"
    out = out.rename(columns=ren)
    if "group" not in out.columns:
        out["group"] = "all"
    return out


def km(sd, by: str | None = None, ax=None, *, at_risk: bool = True, times=None,
       table: pd.DataFrame | None = None) -> Figure:
    """Kaplan-Meier curves (step functions, 95% pointwise band), censoring ticks and a
    numbers-at-risk table below the axis.

    ``table`` (optional) is a precomputed :func:`bayes_osteo.cox.kaplan_meier` frame; otherwise it
    is computed from ``sd`` (a :class:`~bayes_osteo.SurvivalData`).
    """
    if table is None:
        from .cox import kaplan_meier

        table = kaplan_meier(sd, by=by)
    tab = _km_frame(table, by)
    fig, ax = _axes(ax, figsize=(7, 5))
    _draw_km(ax, tab)
    if at_risk:
        _at_risk_table(ax, sd, by, times)
    ax.set_title("Kaplan-Meier estimate" + (f" by {by}" if by else ""))
    return fig


def _draw_km(ax, tab: pd.DataFrame, *, alpha_band: float = 0.12, prefix: str = "KM") -> dict:
    colors = {}
    for gi, (g, d) in enumerate(tab.groupby("group", sort=False)):
        c = _COLORS[gi % len(_COLORS)]
        colors[str(g)] = c
        d = d.sort_values("time", kind="stable")
        t = np.concatenate([[0.0], d["time"].to_numpy(float)])
        s = np.concatenate([[1.0], d["survival"].to_numpy(float)])
        ax.step(t, s, where="post", color=c, lw=1.4, label=f"{prefix}: {g}")
        if {"ci_low", "ci_high"} <= set(d.columns):
            lo = np.concatenate([[1.0], d["ci_low"].to_numpy(float)])
            hi = np.concatenate([[1.0], d["ci_high"].to_numpy(float)])
            ax.fill_between(t, lo, hi, step="post", color=c, alpha=alpha_band, lw=0)
        if "n_censored" in d.columns:
            cens = d.loc[d["n_censored"] > 0]
            ax.plot(cens["time"], cens["survival"], "|", color=c, ms=6)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_ylabel("Survival probability")
    ax.set_xlabel("Time")
    return colors


def _at_risk_table(ax, sd, by, times=None) -> None:
    """Numbers at risk under the axis, computed from the raw times (count with time >= t)."""
    if sd is None:
        return
    t_all = np.asarray(sd.time, float)
    if times is None:
        ticks = [v for v in ax.get_xticks() if 0 <= v <= t_all.max()]
    else:
        ticks = list(times)
    if by is None:
        groups = [("all", np.ones_like(t_all, bool))]
    else:
        frame = getattr(sd, "frame", None)
        col = frame[by].to_numpy() if frame is not None and by in frame.columns else np.asarray(sd.column(by))
        levels = sorted(pd.unique(col), key=lambda v: (str(type(v)), v))  # the KM table's order
        groups = [(f"{by}={v}", col == v) for v in levels]
    lines = []
    for g, m in groups:
        lines.append((g, [int(np.sum(t_all[m] >= tk)) for tk in ticks]))
    ax.set_xticks(ticks)
    n = len(lines)
    for j, (g, counts) in enumerate(lines):
        yy = -0.2 - 0.07 * j
        ax.text(-0.01, yy, f"{g}", transform=ax.transAxes, ha="right", va="center", fontsize=7,
                color=_COLORS[j % len(_COLORS)])
        for tk, cnt in zip(ticks, counts, strict=True):
            ax.text(tk, yy, str(cnt), transform=ax.get_xaxis_transform(), ha="center", va="center",
                    fontsize=7)
    ax.text(-0.01, -0.2 + 0.07, "At risk", transform=ax.transAxes, ha="right", va="center",
            fontsize=7, weight="bold")
    ax.figure.get_layout_engine()  # constrained layout makes room for the table via the texts
    ax.margins(y=0.0)
    if n:
        ax.xaxis.set_label_coords(0.5, -0.2 - 0.07 * n - 0.03)
    ax.set_xlabel(f"Time ({getattr(sd, 'duration_col', 'time')})")


def _survival_frame(df: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Normalise a posterior-survival table to time, group, median, ci_low, ci_high."""
    out = df.reset_index() if "time" not in df.columns else df.copy()
    ren = {by: "group"} if by and by in out.columns else {}
    for c in out.columns:
        lc = str(c).lower()
        if lc in ("s_median", "survival_median", "median", "surv_median", "survival"):
            ren[c] = "median"
        elif lc in ("s_ci_low", "survival_ci_low", "lower", "ci_low", "s_low"):
            ren[c] = "ci_low"
        elif lc in ("s_ci_high", "survival_ci_high", "upper", "ci_high", "s_high"):
            ren[c] = "ci_high"
        elif lc in ("by", "level", "stratum"):
            ren[c] = "group"
    out = out.rename(columns=ren)
    if "group" not in out.columns:
        out["group"] = "all"
    return out


def survival(cox, dt: xr.DataTree, by: str | None = None, ax=None, at_risk: bool = True, *,
             times=None, survival_table: pd.DataFrame | None = None) -> Figure:
    """Kaplan-Meier curves with the model's posterior survival (median line and 95% band) per
    level of ``by``, and a numbers-at-risk table.

    ``cox`` is a fitted :class:`~bayes_osteo.CoxModel` (piecewise baseline, or partial likelihood
    with its Breslow baseline per draw) and ``dt`` its result;
    the posterior curves come from ``cox.survival(dt, times, by=by)`` on a grid of 60 times up to
    the last follow-up (or ``survival_table``, a frame with ``time``, the ``by`` level, ``median``,
    ``ci_low``, ``ci_high``).
    """
    sd = cox.sd if hasattr(cox, "sd") else getattr(cox, "data", None)
    fig, ax = _axes(ax, figsize=(7.5, 5.2))
    if sd is not None:
        from .cox import kaplan_meier

        colors = _draw_km(ax, _km_frame(kaplan_meier(sd, by=by), by), alpha_band=0.0)
    else:
        colors = {}
    if survival_table is None:
        tmax = float(np.max(sd.time)) if sd is not None else None
        grid = np.linspace(0, tmax, 61)[1:] if times is None else np.asarray(times, float)
        survival_table = cox.survival(dt, times=grid, by=by)
    tab = _survival_frame(survival_table, by)
    for gi, (g, d) in enumerate(tab.groupby("group", sort=False)):
        c = colors.get(str(g), _COLORS[gi % len(_COLORS)])
        d = d.sort_values("time")
        t = np.concatenate([[0.0], d["time"].to_numpy(float)])
        ax.plot(t, np.concatenate([[1.0], d["median"].to_numpy(float)]), color=c, lw=2, ls="--",
                label=f"posterior: {g}")
        ax.fill_between(t, np.concatenate([[1.0], d["ci_low"].to_numpy(float)]),
                        np.concatenate([[1.0], d["ci_high"].to_numpy(float)]), color=c, alpha=0.18,
                        lw=0)
    if at_risk and sd is not None:
        _at_risk_table(ax, sd, by, None)
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    ax.set_title(f"Survival: Kaplan-Meier (steps) and posterior ({CI_PROB:.0%} band)")
    return fig


def hr_over_time(df: pd.DataFrame, ax=None, *, label: str | None = None) -> Figure:
    """HR(t): a piecewise or smooth time-varying hazard ratio with its 95% band.

    ``df`` has a ``time`` column (or index; for piecewise effects ``start``/``end``) and
    ``hr_median``/``ci_low``/``ci_high`` (``median`` accepted).
    """
    d = df.reset_index() if "time" not in df.columns and "start" not in df.columns else df.copy()
    med = "hr_median" if "hr_median" in d else "median"
    fig, ax = _axes(ax, figsize=(6.5, 4))
    if {"start", "end"} <= set(d.columns):
        t = np.concatenate([d["start"].to_numpy(float), d["end"].to_numpy(float)[-1:]])
        ax.stairs(d[med].to_numpy(float), t, color=_COLORS[0], lw=2, label=label)
        ax.stairs(d["ci_high"].to_numpy(float), t, baseline=d["ci_low"].to_numpy(float),
                  fill=True, color=_COLORS[0], alpha=0.2)
    else:
        d = d.sort_values("time")
        ax.plot(d["time"], d[med], color=_COLORS[0], lw=2, label=label)
        ax.fill_between(d["time"], d["ci_low"], d["ci_high"], color=_COLORS[0], alpha=0.2, lw=0)
    ax.axhline(1.0, color="0.5", ls="--", lw=0.8)
    _hr_axis(ax, "y")
    ax.set_xlabel("Time")
    ax.set_ylabel("Hazard ratio (log scale)")
    ax.set_title(f"HR over time ({CI_PROB:.0%} band)")
    if label:
        ax.legend(fontsize=8, frameon=False)
    return fig


# -- propensity --------------------------------------------------------------------------------
def love(balance_df: pd.DataFrame, ax=None, *, threshold: float = 0.1) -> Figure:
    """Love plot: absolute standardised mean differences per covariate, before adjustment and
    after each method, with the usual 0.1 threshold.

    ``balance_df`` is :meth:`PropensityScore.balance` output: either wide (index covariate, one
    numeric column per method, e.g. ``unadjusted``, ``iptw``) or long (columns ``covariate``,
    ``method``, ``smd``).
    """
    b = balance_df.copy()
    cols = {str(c).lower(): c for c in b.columns}
    if {"covariate", "method"} <= set(cols) and ("smd" in cols or "abs_smd" in cols):
        val = cols.get("smd", cols.get("abs_smd"))
        b = b.pivot_table(index=cols["covariate"], columns=cols["method"], values=val, sort=False)
    else:
        if "covariate" in cols:
            b = b.set_index(cols["covariate"])
        b = b.select_dtypes("number")
    b = b.abs()
    fig, ax = _axes(ax, figsize=(6.5, max(3.0, 0.35 * len(b) + 1.2)))
    ypos = np.arange(len(b))[::-1]
    markers = ["o", "s", "^", "D", "v", "P"]
    for j, c in enumerate(b.columns):
        ax.scatter(b[c].to_numpy(float), ypos, marker=markers[j % len(markers)],
                   color=_COLORS[j % len(_COLORS)], label=str(c), zorder=3,
                   facecolors="none" if j == 0 else None)
    ax.axvline(threshold, color="0.4", ls="--", lw=0.8)
    ax.axvline(0, color="0.7", lw=0.6)
    ax.set_yticks(ypos, [str(i) for i in b.index], fontsize=8)
    ax.set_xlabel("|standardised mean difference|")
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.set_title("Covariate balance (Love plot)")
    return fig


def ps_overlap(ps, ax=None, *, treatment=None, bins: int = 20) -> Figure:
    """Overlap of the propensity-score distributions of treated and untreated patients
    (mirrored histograms).

    ``ps`` is a DataFrame with columns ``ps`` (or ``propensity``/``score``) and ``treatment``
    (0/1), a fitted :class:`PropensityScore` (``.scores()``/``.ps`` and ``.treatment_values``),
    or an array of scores together with ``treatment=``.
    """
    score, z = _ps_arrays(ps, treatment)
    fig, ax = _axes(ax, figsize=(6.5, 4))
    edges = np.linspace(0, 1, bins + 1)
    h1, _ = np.histogram(score[z == 1], edges)
    h0, _ = np.histogram(score[z == 0], edges)
    w = np.diff(edges)
    ax.bar(edges[:-1], h1, width=w, align="edge", color=_COLORS[0], alpha=0.75,
           label=f"treated (n={int((z == 1).sum())})")
    ax.bar(edges[:-1], -h0, width=w, align="edge", color=_COLORS[1], alpha=0.75,
           label=f"untreated (n={int((z == 0).sum())})")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{abs(v):g}"))
    ax.set_xlim(0, 1)
    ax.set_xlabel("Propensity score")
    ax.set_ylabel("Patients")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title("Propensity-score overlap")
    return fig


def _ps_arrays(ps, treatment) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(ps, pd.DataFrame):
        cols = {str(c).lower(): c for c in ps.columns}
        sc = next((cols[c] for c in ("ps", "propensity", "score", "ps_mean", "e") if c in cols), None)
        tr = next((cols[c] for c in ("treatment", "treated", "z") if c in cols), None)
        if sc is None or (tr is None and treatment is None):
            raise ValueError(f"ps_overlap needs columns 'ps' and 'treatment'; got {list(ps.columns)}.")
        return ps[sc].to_numpy(float), (ps[tr].to_numpy() if tr is not None else np.asarray(treatment))
    if hasattr(ps, "scores") or hasattr(ps, "ps"):
        sc = ps.scores() if callable(getattr(ps, "scores", None)) else getattr(ps, "ps", None)
        if isinstance(sc, pd.DataFrame):
            return _ps_arrays(sc, treatment)
        if isinstance(sc, xr.DataArray):
            dims = [d for d in _SAMPLE_DIMS if d in sc.dims]
            sc = sc.mean(dims).to_numpy() if dims else sc.to_numpy()
        z = treatment
        if z is None:
            sd = getattr(ps, "sd", None)
            tname = getattr(ps, "treatment", None)
            z = getattr(ps, "treatment_values", None)
            if z is None and sd is not None and isinstance(tname, str):
                z = sd.column(tname)
        return np.asarray(sc, float), np.asarray(z)
    if treatment is None:
        raise ValueError("ps_overlap: give treatment= (0/1 per patient) with an array of scores.")
    return np.asarray(ps, float), np.asarray(treatment)


# -- priors and posteriors ---------------------------------------------------------------------
def prior_posterior(dt: xr.DataTree, var: str, prior, ax=None, *, coords: Mapping | None = None,
                    hr_scale: bool = False, label: str | None = None) -> Figure:
    """Prior density (line) against the posterior (histogram + KDE) of one scalar quantity.

    ``prior`` is a scalar :class:`~bayes_osteo.Prior` (drawn with its scipy counterpart,
    :func:`bayes_osteo.priors.to_scipy`) or a :class:`~bayes_osteo.NormalMixture`. ``coords``
    selects one element of a vector variable, e.g. ``{"covariate": "metastasectomy"}``.
    """
    from .priors import NormalMixture, to_scipy

    post = _post(dt)
    if var not in post:
        raise KeyError(f"{var!r} is not in the posterior; variables: {list(post.data_vars)}")
    da = post[var]
    if coords:
        da = da.sel(coords)
    extra = [d for d in da.dims if d not in _SAMPLE_DIMS]
    if extra:
        raise ValueError(f"prior_posterior draws one scalar; select one element of {var!r} with "
                         f"coords= over dims {extra}.")
    x = da.to_numpy().ravel()
    fig, ax = _axes(ax, figsize=(6, 4))
    lo, hi = np.quantile(x, [0.001, 0.999])
    pad = 0.5 * (hi - lo)
    if isinstance(prior, NormalMixture):
        plo, phi = prior.quantile([0.005, 0.995])
        pdf = prior.pdf
    else:
        dist = to_scipy(prior)
        plo, phi = dist.ppf([0.005, 0.995])
        pdf = dist.pdf
    grid = np.linspace(min(lo - pad, plo), max(hi + pad, phi), 400)
    if prior is not None and not isinstance(prior, NormalMixture) and prior.distribution.startswith("Half"):
        grid = grid[grid >= 0]
    ax.hist(x, bins=40, density=True, color=_COLORS[0], alpha=0.35, label="posterior draws")
    kde = stats.gaussian_kde(x)
    g2 = np.linspace(lo - 0.1 * pad, hi + 0.1 * pad, 300)
    ax.plot(g2, kde(g2), color=_COLORS[0], lw=1.8, label="posterior (KDE)")
    ax.plot(grid, pdf(grid), color=_COLORS[1], lw=1.8, ls="--", label=f"prior: {_prior_label(prior)}")
    ax.set_xlabel(label or var)
    ax.set_ylabel("Density")
    ax.set_xlim(grid.min(), grid.max())
    if hr_scale:
        ax2 = ax.secondary_xaxis("top", functions=(np.exp, np.log))
        ax2.set_xlabel("HR")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"Prior vs posterior: {label or var}")
    return fig


def _prior_label(prior) -> str:
    from .priors import NormalMixture

    if isinstance(prior, NormalMixture):
        return f"mixture of {prior.n_components} normals"
    kw = ", ".join(f"{k}={v:g}" if isinstance(v, int | float) else f"{k}={v}" for k, v in prior.parameters.items())
    return f"{prior.distribution}({kw})"


# -- MCMC diagnostics (arviz_plots) ------------------------------------------------------------
def _arviz_figure(pc) -> Figure:
    fig = pc.get_viz("figure")
    if hasattr(fig, "item"):
        fig = fig.item()
    return fig


def _scalar_vars(dt, var_names):
    post = _post(dt)
    if var_names is None:
        var_names = [v for v in ("log_hr", "tau", "frailty_sd", "subgroup_sd", "smoothing_sd")
                     if v in post] or list(post.data_vars)[:4]
    return list(var_names)


def trace(dt: xr.DataTree, var_names: Sequence[str] | None = None, ax=None) -> Figure:
    """Trace and marginal density per chain (``arviz_plots.plot_trace_dist``).

    ``ax`` is accepted for a uniform signature but ignored: ArviZ lays out its own grid.
    """
    import arviz_plots as azp

    pc = azp.plot_trace_dist(dt, var_names=_scalar_vars(dt, var_names), backend="matplotlib")
    return _arviz_figure(pc)


def rank(dt: xr.DataTree, var_names: Sequence[str] | None = None, ax=None) -> Figure:
    """Fractional-rank Delta-ECDF plot per chain with simultaneous envelope
    (``arviz_plots.plot_rank``); chains that mix well stay inside the envelope.

    ``ax`` is accepted for a uniform signature but ignored: ArviZ lays out its own grid.
    """
    import arviz_plots as azp

    pc = azp.plot_rank(dt, var_names=_scalar_vars(dt, var_names), backend="matplotlib")
    return _arviz_figure(pc)


def rank_histograms(ranks_df: pd.DataFrame, ax=None, *, n_draws: int | None = None,
                    bins: int = 20) -> Figure:
    """Simulation-based calibration: histogram of the rank of the true value among ``L``
    posterior draws, one panel per parameter, with the 99% band of a uniform histogram
    (binomial counts with ``p = 1/bins``).

    ``ranks_df``: one column per parameter, one row per simulation; ranks in ``0..L``
    (``L = n_draws``, ``ranks_df.attrs["n_draws"]`` or the largest rank seen).
    """
    cols = [c for c in ranks_df.columns if pd.api.types.is_numeric_dtype(ranks_df[c])]
    L = n_draws or ranks_df.attrs.get("n_draws") or int(ranks_df[cols].to_numpy().max())
    n = len(ranks_df)
    if ax is None:
        fig, axs = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3), squeeze=False,
                                layout="constrained")
        axs = axs[0]
    else:
        fig = ax.get_figure()
        axs = [ax] if len(cols) == 1 else None
        if axs is None:
            raise ValueError("rank_histograms draws one panel per parameter; pass ax only for one column.")
    edges = np.linspace(0, L + 1, bins + 1)
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / bins)
    for a, c in zip(axs, cols, strict=True):
        a.axhspan(lo, hi, color="0.85", zorder=0)
        a.axhline(n / bins, color="0.5", lw=0.8)
        a.hist(ranks_df[c].to_numpy(float), bins=edges, color=_COLORS[0], alpha=0.8)
        a.set_title(str(c), fontsize=9)
        a.set_xlabel(f"rank (0..{L})")
    axs[0].set_ylabel("simulations")
    fig.suptitle(f"SBC rank histograms ({n} simulations; grey: 99% band under uniformity)",
                 fontsize=9)
    return fig


def savefig(fig: Figure, path, *, dpi: int = 110) -> Any:
    """Save a figure as PNG (tight bounding box) and close it."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
