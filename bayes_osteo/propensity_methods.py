"""Propensity-score outcome analyses: matching, stratification, covariate adjustment, IPTW.

:func:`propensity_analysis` fits the score model (:class:`~bayes_osteo.PropensityScore`, or takes a
fitted one), turns score draws into an outcome design (:func:`propensity_design`) and fits a
:class:`~bayes_osteo.cox.CoxModel` to each, mixing the posteriors. :func:`treatment_effect_table`
sets the treatment HR of the unadjusted, multivariable and the four propensity analyses side by side
(the table a cohort study such as Liu et al. 2022 reports).

Propagating the score's uncertainty (two-step, "cut" posterior)
---------------------------------------------------------------
The score model is fitted to ``(T, X)`` alone; the outcome never feeds back into it (Kaplan &
Chen 2012; Plummer 2015 call this a cut of the feedback). With ``ps_draws="posterior"`` (default),
``n_ps_draws`` score vectors ``e^(1..M)`` are taken at evenly spaced posterior draws; for each the
design (matched set, strata, score covariate, weights) is rebuilt and the outcome model fitted by
NUTS. The outcome posteriors are then mixed with equal weights::

    p_cut(beta | data) = integral p(beta | T, X, y, e) p(e | T, X) de
                       ~ (1/M) sum_m p(beta | T, X, y, e^(m))

(in the result the draws of the M fits are interleaved along ``draw`` so that every chain holds
all of them and split-R-hat compares like with like; each fit's own convergence is checked and
tabulated in the ``propensity`` group). The mixture's variance is the mean within-fit variance
plus the between-score-draw variance (reported as ``ps_variance_share`` in ``attrs``).
``ps_draws="mean"`` uses the posterior-mean logit score only (one fit; the usual plug-in).

Estimands (what each method's HR is an estimate of)
---------------------------------------------------
- ``matching``: marginal HR among the treated who found a match (ATT; a population HR, not
  conditional on covariates; Austin 2013);
- ``stratification``: the common within-stratum HR across score strata (a conditional HR given
  the score stratum, usually between the marginal and the fully covariate-conditional HR);
- ``covariate``: HR conditional on the score (score as a Cox covariate, linear in its logit or a
  restricted cubic spline);
- ``iptw``: marginal HR in the whole cohort (``estimand="ATE"``) or among the treated (``"ATT"``).
  The weighted likelihood makes the result a pseudo-posterior (flagged in ``attrs`` and in
  :func:`bayes_osteo.summarize.hazard_ratios`); its width does not account for the weights as a
  robust sandwich variance would.
The Cox HR is non-collapsible: marginal and conditional HRs differ even without confounding.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import expit

from .base import annotate
from .data import DataValidationError, SurvivalData
from .propensity import (
    PropensityScore,
    effective_sample_size,
    iptw_weights,
    match_design,
    ps_strata,
    rcs_knots,
    restricted_cubic_spline,
)

__all__ = ["propensity_analysis", "propensity_design", "treatment_effect_table", "METHODS",
           "ESTIMANDS"]

METHODS = ("matching", "stratification", "covariate", "iptw")

#: What each analysis estimates (used in attrs and in the comparison table).
ESTIMANDS = {
    "unadjusted": "crude HR (confounded)",
    "multivariable": "HR conditional on the adjustment covariates",
    "matching": "ATT: marginal HR among matched treated",
    "stratification": "HR conditional on score stratum",
    "covariate": "HR conditional on the propensity score",
    "iptw_ATE": "ATE: marginal HR (whole cohort)",
    "iptw_ATT": "ATT: marginal HR among the treated",
}

_STRATUM = "_ps_stratum"
_WEIGHT = "_ps_weight"
_SCORE = "logit_ps"


def _outcome_frame(sd: SurvivalData) -> pd.DataFrame:
    if sd.frame is None:
        raise ValueError("Propensity analyses need the SurvivalData's source frame (sd.frame).")
    clash = [c for c in (_STRATUM, _WEIGHT, _SCORE) if c in sd.frame.columns]
    if clash:
        raise DataValidationError(f"Column(s) {clash} are reserved for the propensity design; rename them.")
    return sd.frame.copy()


def propensity_design(sd: SurvivalData, logit_score: np.ndarray, method: str, *,
                      treatment: str | None = None, adjust: Sequence[str] = (),
                      caliper: float | None = 0.2, replace: bool = False, order: str = "largest",
                      match_covariates: np.ndarray | None = None, matching: str = "nearest",
                      balance_X: np.ndarray | None = None, balance_binary: np.ndarray | None = None,
                      k: int = 5, score_form: str = "logit", n_knots: int = 4,
                      estimand: str = "ATE", stabilize: bool = True, trim: float | None = None,
                      truncate: float | None = None) -> tuple[SurvivalData, dict]:
    """The outcome data of one propensity analysis, for one score vector.

    Parameters
    ----------
    sd : SurvivalData
        The cohort (its frame supplies the rows; duration, event, cluster and entry are kept; its
        own strata are crossed with the score strata; its weights multiply IPT weights).
    logit_score : ndarray
        Logit of the propensity score per subject (a posterior draw or the posterior mean).
    method : {"matching", "stratification", "covariate", "iptw"}
    treatment : str, optional
        0/1 treatment column (default ``sd.treatment``).
    adjust : sequence of str
        Extra outcome covariates (regression adjustment on top of the score design).
    caliper, replace, order :
        Matching options (:func:`~bayes_osteo.propensity.match_nearest`).
    match_covariates : ndarray, optional
        Covariates for Mahalanobis matching within the caliper (default: nearest logit score).
    matching : {"nearest", "cardinality"}
        Greedy nearest-neighbour matching, or cardinality matching: the most pairs within the
        caliper with every column of ``balance_X`` at ``|SMD| <= 0.1``
        (:func:`~bayes_osteo.cardinality.match_cardinality`).
    balance_X, balance_binary : ndarray, optional
        Covariates (and which are binary) whose balance cardinality matching constrains.
    k : int
        Number of score strata.
    score_form : {"logit", "spline"}, n_knots : int
        Covariate adjustment: the logit score linearly, or a restricted cubic spline of it.
    estimand, stabilize, trim, truncate :
        IPTW options (:func:`~bayes_osteo.propensity.iptw_weights`).

    Returns
    -------
    (SurvivalData, dict)
        The outcome data (treatment first, then the score terms, then ``adjust``) and a dict of
        design facts: ``n_analysed``, matching counts, ``ess`` of the weights, strata sizes.
    """
    treatment = treatment or sd.treatment
    if treatment is None:
        raise ValueError("Name the treatment column (treatment=...) or build sd with treatment=.")
    df = _outcome_frame(sd)
    lg = np.asarray(logit_score, float)
    if lg.shape != (len(df),):
        raise ValueError(f"logit_score has shape {lg.shape}; the cohort has {len(df)} rows.")
    t = df[treatment].to_numpy()
    if not np.isin(t, (0, 1)).all():
        raise DataValidationError(f"Treatment column {treatment!r} must be 0/1.")
    t = t.astype(np.int64)
    spec = sd.spec()
    base = {"duration": spec["duration"], "event": spec["event"], "treatment": treatment,
            "cluster": spec["cluster"], "entry": spec["entry"]}
    covs = list(adjust)
    strata = spec["strata"]
    weights = spec["weights"]
    info: dict[str, Any] = {"method": method}
    if method == "matching":
        m = match_design(lg, t, matching=matching, caliper=caliper, replace=replace, order=order,
                         mahalanobis=match_covariates, balance_X=balance_X,
                         balance_binary=balance_binary)
        if m.n_pairs == 0:
            raise ValueError(f"No treated subject found a control within the caliper ({caliper} SD "
                             "of the logit score); widen it or check overlap.")
        info.update({**m.counts(), "algorithm": matching})
        keep = m.mask
        if replace or sd.weights is not None:
            w = m.weights * (1.0 if sd.weights is None else sd.weights)
            df[_WEIGHT] = w
            weights = _WEIGHT
        df = df.loc[keep]
    elif method == "stratification":
        s = ps_strata(lg, k)
        if strata is not None:
            df[_STRATUM] = df[strata].astype(str) + "|q" + pd.Series(s, index=df.index).astype(str)
        else:
            df[_STRATUM] = s
        strata = _STRATUM
        lone = [int(q) for q in range(k) if np.unique(t[s == q]).size < 2]
        if lone:
            warnings.warn(f"Score strata {lone} (of {k}) hold one treatment arm only and carry no "
                          "information on the treatment effect; consider a smaller k.", UserWarning,
                          stacklevel=3)
        info.update({"k": int(k), "stratum_sizes": np.bincount(s, minlength=k).tolist(),
                     "strata_one_arm": lone})
    elif method == "covariate":
        if score_form == "logit":
            df[_SCORE] = lg
            covs = [_SCORE, *covs]
        elif score_form == "spline":
            B = restricted_cubic_spline(lg, rcs_knots(lg, n_knots))
            names = [_SCORE] + [f"{_SCORE}_rcs{j}" for j in range(1, B.shape[1])]
            for j, nm in enumerate(names):
                df[nm] = B[:, j]
            covs = [*names, *covs]
        else:
            raise ValueError(f"score_form must be 'logit' or 'spline'; got {score_form!r}.")
        info["score_form"] = score_form
    elif method == "iptw":
        w = iptw_weights(expit(lg), t, estimand=estimand, stabilize=stabilize, trim=trim,
                         truncate=truncate)
        if sd.weights is not None:
            w = w * sd.weights
        keep = w > 0
        info.update({"estimand": estimand.upper(), "n_trimmed": int((~keep).sum()),
                     "ess": effective_sample_size(w[keep]),
                     "ess_treated": effective_sample_size(w[keep & (t == 1)]),
                     "ess_control": effective_sample_size(w[keep & (t == 0)]),
                     "max_weight": float(w.max())})
        df[_WEIGHT] = w
        weights = _WEIGHT
        df = df.loc[keep]
    else:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    out = SurvivalData.from_frame(df, covariates=covs, strata=strata, weights=weights, **base)
    info["n_analysed"] = out.n
    info["n_events"] = out.n_events
    return out, info


def _seeds(random_seed: Any, n: int) -> list:
    if random_seed is None:
        return [None] * n
    ss = np.random.SeedSequence(random_seed)
    return [int(c.generate_state(1)[0]) for c in ss.spawn(n)]


def _interleave(datasets: list[xr.Dataset]) -> xr.Dataset:
    """Mix the draws of M fits: draw ``d`` of fit ``m`` becomes draw ``d * M + m``."""
    M = len(datasets)
    if M == 1:
        return datasets[0]
    D = min(ds.sizes["draw"] for ds in datasets)
    parts = [ds.isel(draw=slice(0, D)).assign_coords(draw=np.arange(D) * M + m)
             for m, ds in enumerate(datasets)]
    out = xr.concat(parts, dim="draw", coords="minimal", compat="override", join="override")
    return out.sortby("draw")


def propensity_analysis(sd: SurvivalData, method: str, *, covariates: Sequence[str] | None = None,
                        treatment: str | None = None, ps: PropensityScore | None = None,
                        splines: Mapping[str, int] | Sequence[str] | None = None,
                        ps_priors: Mapping[str, Any] | None = None,
                        ps_draws: str = "posterior", n_ps_draws: int = 10,
                        caliper: float | None = 0.2, replace: bool = False, order: str = "largest",
                        distance: str = "logit", matching: str = "nearest", k: int = 5,
                        score_form: str = "logit", n_knots: int = 4,
                        estimand: str = "ATE", stabilize: bool = True, trim: float | None = None,
                        truncate: float | None = None, adjust: Sequence[str] = (),
                        baseline: str = "partial", ties: str = "efron",
                        priors: Mapping[str, Any] | None = None,
                        draws: int = 1000, tune: int = 1000, chains: int = 4,
                        random_seed: Any = None, progressbar: bool = False,
                        nuts_sampler: str | None = None, check: bool = True,
                        ps_fit: Mapping[str, Any] | None = None,
                        **sampler_kwargs: Any) -> xr.DataTree:
    """A propensity-score analysis of the treatment's hazard ratio, with the score's uncertainty.

    Two steps: (1) the Bayesian logistic score model
    ``logit P(T=1 | x) = alpha + x' beta`` (:class:`~bayes_osteo.PropensityScore`; outcome not
    used); (2) a Cox model (:class:`~bayes_osteo.cox.CoxModel`) of the outcome on the treatment
    within the design the score defines - see the module docstring for the designs, the estimands
    and how the score draws are propagated (mixture over ``n_ps_draws`` score draws).

    Parameters
    ----------
    sd : SurvivalData
        The cohort with its treatment column.
    method : {"matching", "stratification", "covariate", "iptw"}
    covariates : sequence of str, optional
        Score-model covariates (columns of ``sd.frame``); default: ``sd``'s covariates.
    treatment : str, optional
        Default ``sd.treatment``.
    ps : PropensityScore, optional
        A fitted score model to reuse (then ``covariates``, ``splines``, ``ps_priors`` and
        ``ps_fit`` are not used).
    splines, ps_priors :
        Score-model options (see :class:`~bayes_osteo.PropensityScore`).
    ps_draws : {"posterior", "mean"}
        Propagate ``n_ps_draws`` posterior score draws (default) or use the posterior-mean score.
    n_ps_draws : int
        Number of score draws (outcome fits) to mix.
    caliper, replace, order, distance :
        Matching: caliper in SD of the logit score (default 0.2), with/without replacement, order
        of the greedy pass; ``distance="mahalanobis"`` picks, within the caliper, the control
        nearest in the score covariates (Rubin & Thomas 2000).
    matching : {"nearest", "cardinality"}
        ``"cardinality"``: instead of the greedy pass, the largest 1:1 sample within the caliper
        whose every score covariate has ``|SMD| <= 0.1`` (Zubizarreta et al. 2014), re-paired to
        the closest scores; without replacement.
    k : int
        Stratification: number of score quantile strata (default 5).
    score_form, n_knots :
        Covariate adjustment: ``"logit"`` (linear) or ``"spline"`` (restricted cubic spline).
    estimand, stabilize, trim, truncate :
        IPTW: ``"ATE"`` or ``"ATT"``, stabilised weights, trimming of scores outside
        ``[trim, 1-trim]``, truncation of the largest weights.
    adjust : sequence of str
        Extra outcome covariates (doubly robust flavour); default none.
    baseline, ties, priors :
        Outcome CoxModel options.
    draws, tune, chains, random_seed, progressbar, nuts_sampler, check, **sampler_kwargs :
        NUTS options of each outcome fit (``draws`` per fit: the mixture holds
        ``n_ps_draws * draws`` draws per chain) and of the score model unless ``ps_fit`` overrides.

    Returns
    -------
    xarray.DataTree
        ``posterior`` (``log_hr``, ``hr`` with dim ``covariate``, treatment first),
        ``sample_stats``, ``propensity`` (per score draw: treatment log-HR mean/SD, R-hat, ESS,
        analysed n and design facts) and ``ps_coefficients`` (score-model posterior). ``attrs``:
        provenance, ``method``, ``estimand``, ``treatment``, ``ps_draws``, ``n_ps_draws``,
        ``design`` (JSON of the design at the posterior-mean score: matched/dropped counts, ESS,
        strata sizes), ``pseudo_posterior`` ("true" for IPTW and matching with replacement).
        :func:`bayes_osteo.summarize.hazard_ratios` summarises it.

    Examples
    --------
    >>> import bayes_osteo as bo
    >>> df = bo.datasets.liu2022_cohort()  # SIMULATED cohort
    >>> sd = bo.SurvivalData.from_frame(df, duration="months", event="death",
    ...                                 treatment="metastasectomy", covariates=df.attrs["confounders"])
    >>> dt = bo.propensity_analysis(sd, method="iptw", n_ps_draws=4, random_seed=1)  # doctest: +SKIP
    >>> bo.summarize.hazard_ratios(dt).loc["metastasectomy"]  # doctest: +SKIP
    """
    from .cox import CoxModel
    from .summarize import ConvergenceWarning, diagnostics

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    if ps_draws not in ("posterior", "mean"):
        raise ValueError(f"ps_draws must be 'posterior' or 'mean'; got {ps_draws!r}.")
    treatment = treatment or sd.treatment
    if treatment is None:
        raise ValueError("Name the treatment column: SurvivalData.from_frame(..., treatment=...).")
    seeds = _seeds(random_seed, n_ps_draws + 1)
    fit_kw = {"draws": draws, "tune": tune, "chains": chains, "progressbar": progressbar,
              "nuts_sampler": nuts_sampler, **sampler_kwargs}
    if ps is None:
        ps = PropensityScore(sd, treatment=treatment, covariates=covariates, splines=splines,
                             priors=ps_priors)
    elif ps.treatment_col != treatment:
        raise ValueError(f"The score model's treatment {ps.treatment_col!r} is not {treatment!r}.")
    if ps.result is None:
        kw = {**fit_kw, "random_seed": seeds[0], "check": check, **dict(ps_fit or {})}
        ps.fit(**kw)
    if len(ps.frame) != sd.n or not ps.frame.index.equals(sd.frame.index):
        raise ValueError("The score model was fitted to other rows than sd's; refit it on sd.")

    mean_logit = ps.logit_score()
    if ps_draws == "mean":
        logits = [mean_logit]
        draw_idx = np.array([-1])
    else:
        draw_idx = ps.draw_indices(n_ps_draws)
        all_draws = ps.logit_draws()
        logits = [all_draws[i] for i in draw_idx]
    design_kw = {"treatment": treatment, "adjust": adjust, "caliper": caliper, "replace": replace,
                 "order": order, "match_covariates": ps._mahalanobis(distance), "matching": matching,
                 "balance_X": ps.design.balance_X, "balance_binary": ps.design.balance_binary,
                 "k": k, "score_form": score_form, "n_knots": n_knots,
                 "estimand": estimand, "stabilize": stabilize, "trim": trim, "truncate": truncate}
    fits, infos, rows = [], [], []
    cox = None
    for m, lg in enumerate(logits):
        osd, info = propensity_design(sd, lg, method, **design_kw)
        cox = CoxModel(osd, baseline=baseline, ties=ties, priors=priors)
        dt = cox.fit(random_seed=seeds[m + 1], check=False, **fit_kw)
        post = dt["posterior"].to_dataset()
        tr = post["log_hr"].sel(covariate=treatment)
        rows.append({"log_hr_mean": float(tr.mean()), "log_hr_sd": float(tr.std()),
                     "n_analysed": info["n_analysed"]})
        fits.append(dt)
        infos.append(info)
    # per-fit convergence, reported once
    bad = []
    for m, dt in enumerate(fits):
        tab = diagnostics(dt, ["log_hr"])
        rows[m]["r_hat"] = float(tab["r_hat"].max()) if len(tab) else np.nan
        rows[m]["ess_bulk"] = float(tab["ess_bulk"].min()) if len(tab) else np.nan
        rows[m]["divergences"] = int(tab.attrs["divergences"])
        if len(tab) and not bool(tab["ok"].all()):
            bad.append(m)
    if check and bad:
        warnings.warn(f"Convergence: the outcome fits for score draw(s) {bad} (of {len(fits)}) fall "
                      "short of R-hat <= 1.01 / bulk ESS >= 400 / no divergences (see the "
                      "'propensity' group). Run longer chains.", ConvergenceWarning, stacklevel=2)

    post = _interleave([f["posterior"].to_dataset() for f in fits])
    stats = _interleave([f["sample_stats"].to_dataset() for f in fits])
    per = pd.DataFrame(rows)
    per.index.name = "ps_draw"
    prop = xr.Dataset.from_dataframe(per).assign_coords(
        posterior_index=("ps_draw", draw_idx.astype(int)))
    for key in ("n_pairs", "n_treated_dropped", "n_control_unused", "ess", "n_trimmed"):
        if key in infos[0]:
            prop[key] = ("ps_draw", np.array([inf[key] for inf in infos]))
    within = float((per["log_hr_sd"] ** 2).mean())
    between = float(per["log_hr_mean"].var(ddof=1)) if len(per) > 1 else 0.0
    coefs = ps.result["posterior"].to_dataset()[["intercept", "beta"]]
    result = xr.DataTree.from_dict({"posterior": post, "sample_stats": stats, "propensity": prop,
                                    "ps_coefficients": coefs})
    # the design at the posterior-mean score: what a report states
    _, mean_info = propensity_design(sd, mean_logit, method, **design_kw) if ps_draws == "posterior" \
        else (None, infos[0])
    key = f"iptw_{estimand.upper()}" if method == "iptw" else method
    pseudo = bool(method == "iptw" or (method == "matching" and replace) or sd.weights is not None)
    options = {"method": method, "ps_draws": ps_draws, "n_ps_draws": len(logits), **design_kw,
               "adjust": list(adjust), "distance": distance}
    for arr in ("match_covariates", "balance_X", "balance_binary"):
        del options[arr]
    options["estimand"] = estimand.upper()
    spec = {"model": "propensity", "options": options, "score_model": ps.spec(),
            "outcome_model": cox.spec()}
    annotate(result, model="propensity", spec=spec, random_seed=random_seed,
             fingerprint=sd.fingerprint(), inference="nuts", pseudo_posterior=pseudo,
             patient_level=False, method=method, estimand=ESTIMANDS[key],
             treatment=treatment, ps_draws=ps_draws, n_ps_draws=len(logits),
             design=mean_info, ps_variance_share=between / (within + between) if within + between else 0.0,
             draws=draws, tune=tune, chains=chains)
    if pseudo:
        result.attrs["pseudo_posterior_note"] = (
            "Weighted likelihood: a pseudo-posterior. Its spread treats the weights as known "
            "frequencies; it is not a robust (sandwich) interval.")
    return result


def design_info(dt: xr.DataTree) -> dict:
    """The design facts stored in a propensity result (matched/dropped counts, ESS, strata)."""
    return json.loads(dt.attrs.get("design", "{}"))


_FIT_KEYS = ("draws", "tune", "chains", "progressbar", "nuts_sampler", "check")
_COX_KEYS = ("baseline", "ties", "priors")


def treatment_effect_table(sd: SurvivalData, *, covariates: Sequence[str] | None = None,
                           results: Mapping[str, xr.DataTree] | None = None,
                           analyses: Sequence[str] = ("unadjusted", "multivariable", *METHODS),
                           ps: PropensityScore | None = None, random_seed: Any = None,
                           ci_prob: float = 0.95, **options: Any) -> pd.DataFrame:
    """The treatment's hazard ratio across the unadjusted, multivariable and propensity analyses.

    The table a cohort study reports to show that its adjusted estimate survives every way of
    handling confounding (Liu et al. 2022 report the multivariable HR and four propensity methods).

    Parameters
    ----------
    sd : SurvivalData
        The cohort with its treatment column; its covariates are the adjustment set of the
        multivariable model and (unless ``covariates`` is given) of the score model.
    covariates : sequence of str, optional
        Adjustment / score covariates (columns of ``sd.frame``) if not ``sd``'s.
    results : mapping, optional
        Already fitted results by analysis name (``"unadjusted"``, ``"multivariable"``,
        ``"matching"``, ``"stratification"``, ``"covariate"``, ``"iptw"``); missing ones are fitted.
    analyses : sequence of str
        Rows of the table, in order.
    ps : PropensityScore, optional
        A fitted score model shared by the propensity analyses (fitted once here otherwise).
    random_seed : int, optional
        Seeds every fit (each analysis gets its own stream).
    **options
        Passed to :func:`propensity_analysis` (and ``draws``, ``tune``, ``chains``,
        ``progressbar``, ``nuts_sampler``, ``check``, ``baseline``, ``ties``, ``priors`` to the
        unadjusted and multivariable Cox fits as well).

    Returns
    -------
    DataFrame
        Index ``analysis``; columns ``estimand``, ``hr_median``, ``ci_low``, ``ci_high``,
        ``p_hr_lt_1``, ``n_analysed``, ``pseudo_posterior``, ``ps_draws``, ``r_hat``, ``ess_bulk``.
    """
    from .cox import CoxModel
    from .summarize import hazard_ratios

    treatment = sd.treatment
    if treatment is None:
        raise ValueError("treatment_effect_table needs sd with a treatment column.")
    results = dict(results or {})
    unknown = sorted(set(analyses) - {"unadjusted", "multivariable", *METHODS})
    if unknown:
        raise ValueError(f"Unknown analyses {unknown}; choose from unadjusted, multivariable, {METHODS}.")
    spec = sd.spec()
    adj = list(covariates) if covariates is not None else spec["covariates"]
    seeds = dict(zip(analyses, _seeds(random_seed, len(analyses)), strict=True))
    fit_kw = {k: options[k] for k in _FIT_KEYS if k in options}
    cox_kw = {k: options[k] for k in _COX_KEYS if k in options}
    rows = {}
    for name in analyses:
        dt = results.get(name)
        if dt is None:
            if name in ("unadjusted", "multivariable"):
                base = {k: spec[k] for k in ("duration", "event", "cluster", "entry", "weights")}
                osd = SurvivalData.from_frame(sd.frame, treatment=treatment,
                                              covariates=[] if name == "unadjusted" else adj, **base)
                dt = CoxModel(osd, **cox_kw).fit(random_seed=seeds[name], **fit_kw)
            else:
                if ps is None:
                    ps = PropensityScore(sd, covariates=adj, splines=options.get("splines"),
                                         priors=options.get("ps_priors"))
                dt = propensity_analysis(sd, name, ps=ps, random_seed=seeds[name], **options)
            results[name] = dt
        hr = hazard_ratios(dt, ci_prob=ci_prob).loc[treatment]
        if name == "iptw":
            key = f"iptw_{json.loads(dt.attrs['bayes_osteo_spec'])['options']['estimand']}"
        else:
            key = name
        design = json.loads(dt.attrs.get("design", "{}"))
        rows[name] = {"estimand": ESTIMANDS[key], "hr_median": hr["hr_median"],
                      "ci_low": hr["ci_low"], "ci_high": hr["ci_high"], "p_hr_lt_1": hr["p_hr_lt_1"],
                      "n_analysed": int(design.get("n_analysed", sd.n)),
                      "pseudo_posterior": dt.attrs.get("pseudo_posterior") == "true",
                      "ps_draws": dt.attrs.get("ps_draws", ""),
                      "r_hat": hr["r_hat"], "ess_bulk": hr["ess_bulk"]}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "analysis"
    out.attrs.update({"ci_prob": ci_prob, "ci_kind": "eti", "treatment": treatment,
                      "results": list(results)})
    return out
