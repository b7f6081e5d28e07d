"""Simulation: simulated cohorts and studies, calibration (SBC) and design of the next study.

- :func:`cohort`, :func:`studies`: SIMULATED data with the truth in ``attrs``
  (:mod:`bayes_osteo.simulate_data`).
- :func:`sbc`: simulation-based calibration of "cox", "cox_piecewise", "meta" or any PyMC model
  factory (:mod:`bayes_osteo.sbc`).
- :func:`operating_characteristics`: power / type-I error, bias and interval coverage of a
  Bayesian Cox analysis of a two-arm study, one row per (n_patients, hr) scenario, each with its
  Monte-Carlo SE.

Execution (:mod:`bayes_osteo.sim_engine`): ``client=None`` runs on a local process pool
(``n_jobs`` workers, ``spawn``; ``n_jobs=1`` in this process); a ``dask.distributed.Client`` or a
scheduler address distributes the simulations. Each worker compiles a model once and refits it
on new data of the same shape; simulation ``i`` uses its own spawned seed, so a seed gives the
same table whatever the number of workers. Scripts that use a process pool need the usual
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from . import sim_engine
from .priors import VAGUE, NormalMixture, Prior, prior_to_dict
from .sbc import SBC_COX_PRIORS, SBCResult, compiled_cox, rank_uniformity, sbc
from .simulate_data import Covariate, Piecewise, Weibull, cohort, cohort_data, studies

__all__ = ["cohort", "studies", "cohort_data", "Weibull", "Piecewise", "Covariate", "sbc",
           "SBCResult", "rank_uniformity", "SBC_COX_PRIORS", "operating_characteristics",
           "parse_decision", "DEFAULT_DESIGN"]

#: Default design of :func:`operating_characteristics` (time in months): Weibull baseline with
#: shape 1.2 and scale 36 (median ~26 months untreated), uniform accrual over 36 months,
#: 24 months of follow-up after the last patient, drop-out hazard 0.01/month.
DEFAULT_DESIGN = {"baseline": Weibull(1.2, 36.0), "accrual": 36.0, "follow_up": 24.0,
                  "censoring": 0.01}

_DECISION = re.compile(r"^\s*P\(\s*HR\s*([<>])\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\)\s*>\s*"
                       r"(0?\.[0-9]+|1(?:\.0*)?)\s*$")


def parse_decision(decision: str) -> tuple[str, float, float]:
    """``"P(HR<1)>0.95"`` -> ``("<", 1.0, 0.95)``: success when ``P(HR <op> threshold) > prob``."""
    m = _DECISION.match(decision) if isinstance(decision, str) else None
    if m is None:
        raise ValueError(f"decision must look like 'P(HR<1)>0.95' or 'P(HR>0.8)>0.9'; got {decision!r}.")
    op, thr, prob = m.group(1), float(m.group(2)), float(m.group(3))
    if thr <= 0 or not 0 < prob < 1:
        raise ValueError(f"decision needs a hazard-ratio threshold > 0 and a probability in (0, 1); got {decision!r}.")
    return op, thr, prob


def _prior_dict(prior: Any) -> dict:
    if isinstance(prior, str):
        if prior != "vague":
            raise ValueError(f"prior must be 'vague', a Prior or a NormalMixture; got {prior!r}.")
        return prior_to_dict(VAGUE)
    if isinstance(prior, Prior | NormalMixture):
        return prior_to_dict(prior)
    if isinstance(prior, Mapping):
        return dict(prior)
    raise ValueError(f"prior must be 'vague', a Prior or a NormalMixture; got {type(prior).__name__}.")


@dataclass
class _OCProblem:
    n_patients: int
    hr: float
    prior: dict
    adjust_prior: dict
    op: str
    threshold: float
    prob: float
    method: str
    design: dict
    covariates: dict
    adjust: bool
    confounding: float
    treatment_prob: float
    draws: int
    tune: int
    reuse: bool = True

    def _fitter(self, sd):
        priors = {"treatment_log_hr": self.prior}
        if len(sd.covariate_names) > 1:
            priors["log_hr"] = self.adjust_prior
        return compiled_cox(sd, priors, method=self.method, reuse=self.reuse)

    def run_one(self, seed: np.random.SeedSequence) -> dict[str, float]:
        s_data, s_fit = seed.spawn(2)
        df = cohort(self.n_patients, self.hr, covariates=self.covariates or None,
                    confounding=self.confounding, treatment_prob=self.treatment_prob,
                    seed=s_data, **self.design)
        events = int(df["event"].sum())
        if events == 0:  # no events, no evidence: the study cannot succeed; no estimate exists
            return {"events": 0, "success": 0.0, "p_claim": np.nan, "log_hr_mean": np.nan,
                    "ci_low": np.nan, "ci_high": np.nan, "covered": np.nan, "divergences": 0}
        if not self.adjust:
            df.attrs["covariates"] = []
        sd = cohort_data(df)
        cox, fitter = self._fitter(sd)
        arrays = cox.data_arrays(sd)
        log_thr = np.log(self.threshold)
        n_div = 0
        if self.method == "nuts":
            draws, n_div = fitter.sample(arrays, seed=sim_engine.seed_int(s_fit), draws=self.draws,
                                         tune=self.tune)
            b = draws["treatment_log_hr"].ravel()
            mean = float(b.mean())
            lo, hi = (float(v) for v in np.quantile(b, [0.025, 0.975]))
            p = float(np.mean(b < log_thr) if self.op == "<" else np.mean(b > log_thr))
        else:
            x, cov = fitter.fit(arrays)
            sl, _ = fitter.slices["treatment_log_hr"]
            mean = float(x[sl][0])
            s = float(np.sqrt(cov[sl, sl][0, 0]))
            z = stats.norm.ppf(0.975)
            lo, hi = mean - z * s, mean + z * s
            cdf = float(stats.norm.cdf((log_thr - mean) / s))
            p = cdf if self.op == "<" else 1 - cdf
        truth = float(np.log(self.hr))
        return {"events": events, "success": float(p > self.prob), "p_claim": p,
                "log_hr_mean": mean, "ci_low": lo, "ci_high": hi,
                "covered": float(lo <= truth <= hi), "divergences": n_div}


def _mean_se(x: pd.Series) -> tuple[float, float]:
    x = x.dropna()
    n = len(x)
    if n == 0:
        return np.nan, np.nan
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan


def _prop_se(x: pd.Series) -> tuple[float, float]:
    x = x.dropna()
    n = len(x)
    if n == 0:
        return np.nan, np.nan
    p = float(x.mean())
    return p, float(np.sqrt(p * (1 - p) / n))


def operating_characteristics(n_patients: Sequence[int] | int, hr: Sequence[float] | float, *,
                              prior: str | Prior | NormalMixture = "vague",
                              decision: str = "P(HR<1)>0.95", n_sims: int = 500,
                              random_seed: Any = None, client: Any = None, method: str = "nuts",
                              baseline: Weibull | Piecewise | None = None,
                              censoring: float | bool | None = None,
                              accrual: float | bool | None = None,
                              follow_up: float | bool | None = None,
                              covariates: Mapping[str, float | Covariate] | None = None,
                              adjust: bool = True, adjust_prior: Prior | None = None,
                              confounding: float = 0.0, treatment_prob: float = 0.5,
                              draws: int = 1000, tune: int = 500, n_jobs: int | None = None,
                              reuse_compiled: bool = True, progress: bool = True,
                              return_simulations: bool = False) -> pd.DataFrame:
    """Operating characteristics of a Bayesian Cox analysis of a planned two-arm study.

    For every ``(n_patients, hr)`` scenario, ``n_sims`` cohorts are simulated with
    :func:`cohort` (true treatment HR ``hr``) and analysed with a partial-likelihood
    ``CoxModel`` whose treatment log-HR prior is ``prior``; the study "succeeds" when the
    ``decision`` holds (default: posterior ``P(HR < 1) > 0.95``).

    Parameters
    ----------
    n_patients, hr : int / float or sequences
        Scenario grid (every pair is a row).
    prior : "vague", Prior or NormalMixture
        Prior of the treatment log-HR ("vague": Normal(0, 100)). A meta-analytic-predictive
        prior (``bo.map_prior(...)``) shows what borrowing does to power and type-I error.
    decision : str
        ``"P(HR<c)>q"`` or ``"P(HR>c)>q"``.
    n_sims : int
        Simulations per scenario (Monte-Carlo SE of a rate ``p`` is ``sqrt(p(1-p)/n_sims)``:
        about 1% at 500 simulations and p = 0.95).
    random_seed : int
        Scenario ``k`` uses ``SeedSequence(random_seed).spawn(K)[k]``: identical results on any
        number of workers or on Dask.
    client : dask.distributed.Client or str, optional
        Distribute on Dask (default: local process pool of ``n_jobs`` workers).
    method : {"nuts", "laplace"}
        "nuts" (default): the posterior by NUTS (nutpie, one chain of ``draws`` after ``tune``,
        compiled once per worker). "laplace": a normal approximation at the posterior mode
        (BFGS + finite-difference Hessian) - fast, and equal to the Wald analysis under a vague
        prior, but an approximation; the table says which was used.
    baseline, censoring, accrual, follow_up
        Design; each left at None takes its value from :data:`DEFAULT_DESIGN` (months:
        Weibull(1.2, 36), accrual 36, follow-up 24, drop-out 0.01/month). ``False`` switches
        drop-out (``censoring``) or administrative censoring (``follow_up``) off. A simulated
        study without any event counts as a failure and has no estimate (left out of bias and
        coverage).
    covariates, adjust, adjust_prior, confounding, treatment_prob
        Prognostic covariates of the simulated cohort (see :func:`cohort`), whether the analysis
        adjusts for them (prior ``adjust_prior``, default Normal(0, 2.5)), confounding strength and
        the treatment probability.
    draws, tune : int
        NUTS draws and warm-up per fit.
    n_jobs, reuse_compiled, progress
        Local workers; compile once per worker (False: compile every fit, benchmark only);
        progress bar.
    return_simulations : bool
        Also return the per-simulation table (as ``(table, sims)``).

    Returns
    -------
    DataFrame
        One row per scenario: ``n_patients``, ``hr``, ``quantity`` ("power" when the decision's
        claim is true at ``hr``, else "type I error"), ``success_rate`` (+ ``_mcse``),
        ``bias_log_hr`` (posterior mean minus truth, + ``_mcse``), ``rmse_log_hr``,
        ``coverage_95`` (95% equal-tailed interval holds the true log-HR, + ``_mcse``),
        ``ci_width_log_hr``, ``mean_events``, ``divergences``, ``n_sims``; ``attrs`` record the
        method, prior, decision and seed.

    Examples
    --------
    >>> import bayes_osteo as bo
    >>> oc = bo.simulate.operating_characteristics([60], [1.0, 0.5], n_sims=50, random_seed=1,
    ...                                             method="laplace", n_jobs=1, progress=False)
    >>> list(oc["quantity"])
    ['type I error', 'power']
    """
    ns = [int(v) for v in np.atleast_1d(n_patients)]
    hrs = [float(v) for v in np.atleast_1d(hr)]
    if not ns or any(v < 2 for v in ns):
        raise ValueError(f"n_patients must be integers >= 2; got {n_patients}.")
    if not hrs or any(not (np.isfinite(v) and v > 0) for v in hrs):
        raise ValueError(f"hr must be positive hazard ratios; got {hr}.")
    if method not in ("nuts", "laplace"):
        raise ValueError(f"method must be 'nuts' or 'laplace'; got {method!r}.")
    op, thr, prob = parse_decision(decision)
    pri = _prior_dict(prior)
    apri = prior_to_dict(adjust_prior if adjust_prior is not None else Prior("Normal", mu=0, sigma=2.5))
    given = {"baseline": baseline, "censoring": censoring, "accrual": accrual, "follow_up": follow_up}
    design = {k: (DEFAULT_DESIGN[k] if v is None else (None if v is False else v))
              for k, v in given.items()}
    if design["baseline"] is None:
        raise ValueError("baseline cannot be switched off; pass Weibull(...) or Piecewise(...).")
    if design["follow_up"] is None and design["accrual"] is not None:
        design["accrual"] = None  # no administrative censoring at all
    covs = dict(covariates or {})
    scen = [(n, h) for n in ns for h in hrs]
    problems = [_OCProblem(n, h, pri, apri, op, thr, prob, method, design, covs, bool(adjust),
                           float(confounding), float(treatment_prob), int(draws), int(tune),
                           bool(reuse_compiled)) for n, h in scen]
    sims = sim_engine.run(problems, n_sims, random_seed, client=client, n_jobs=n_jobs,
                          progress=progress, desc="operating characteristics")
    rows = []
    for k, (n, h) in enumerate(scen):
        d = sims.xs(k, level="scenario")
        claim = (h < thr) if op == "<" else (h > thr)
        sr, sr_se = _prop_se(d["success"])
        err = d["log_hr_mean"] - np.log(h)
        bias, bias_se = _mean_se(err)
        cov, cov_se = _prop_se(d["covered"])
        rows.append({"n_patients": n, "hr": h, "quantity": "power" if claim else "type I error",
                     "success_rate": sr, "success_rate_mcse": sr_se,
                     "bias_log_hr": bias, "bias_log_hr_mcse": bias_se,
                     "rmse_log_hr": float(np.sqrt(np.nanmean(err**2))),
                     "coverage_95": cov, "coverage_95_mcse": cov_se,
                     "ci_width_log_hr": float(np.nanmean(d["ci_high"] - d["ci_low"])),
                     "mean_p_claim": float(np.nanmean(d["p_claim"])),
                     "mean_events": float(d["events"].mean()),
                     "divergences": int(d["divergences"].sum()), "n_sims": int(len(d))})
    table = pd.DataFrame(rows)
    table.attrs.update({"method": method, "decision": decision, "prior": pri,
                        "random_seed": sims.attrs["random_seed"], "n_sims": int(n_sims),
                        "design": {k: (v.describe() if hasattr(v, "describe") else v)
                                   for k, v in design.items()},
                        "simulated": True,
                        "note": ("Rates and biases are Monte-Carlo estimates; *_mcse are their "
                                 "Monte-Carlo standard errors. method='laplace' is a normal "
                                 "approximation at the posterior mode, not NUTS.")})
    return (table, sims) if return_simulations else table
