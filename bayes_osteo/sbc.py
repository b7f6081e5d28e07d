"""Simulation-based calibration (Talts et al. 2018, arXiv:1804.06788) for every model.

For each simulation: draw parameters ``theta*`` from the prior, simulate a data set from
``theta*``, fit the model, and record the rank of ``theta*`` among ``L`` (thinned) posterior
draws. If the posterior computation is correct, every rank is uniform on ``0..L``. A posterior
that is too wide piles ranks in the middle, one too narrow at both ends, a biased one at one end.

Models
------
``"cox"``
    Partial-likelihood ``CoxModel``: a 0/1 treatment (probability 1/2) and ``covariates``
    standard-normal covariates; event times from an exponential baseline (the partial likelihood
    is invariant to the baseline). Without censoring (the default) and with continuous times, the
    partial likelihood is exactly the marginal likelihood of the rank vector (Kalbfleisch &
    Prentice 1973, Biometrika 60:267), so the partial-likelihood posterior is an exact Bayesian
    posterior and SBC must pass. With censoring it is the limit of a gamma-process posterior
    (Kalbfleisch 1978; Sinha, Ibrahim & Chen 2003, Biometrika 90:629), so small deviations are
    possible in principle.
``"cox_piecewise"``
    Piecewise-exponential ``CoxModel`` with fixed cut points; the baseline's random-walk prior
    is drawn too and ``log_baseline_hazard_centered`` and ``smoothing_sd`` are ranked.
``"meta"``
    Random-effects ``MetaAnalysis`` of ``n_studies`` studies with standard errors uniform on
    ``se_range``: ``log_hr``, ``tau`` and ``log_hr_new`` are ranked. ``method="exact"`` uses
    i.i.d. draws from the exact posterior (quadrature over tau), ``method="nuts"`` the PyMC model.
a factory ``f(n) -> pm.Model``
    Any PyMC model whose observed variables take ``observed=pm.Data(...)``: a joint draw from its
    prior predictive is the truth and the data; the model is compiled once and refitted with NUTS.
    ``fit_model`` (another factory with the same data names) fits instead, to show SBC catches
    a wrong posterior.

The default Cox priors in SBC are ``SBC_COX_PRIORS`` (treatment log-HR N(0, 1), other log-HRs
N(0, 0.5), baseline level N(0, 1), smoothing SD HalfNormal(0.5)); the package defaults (SD 2.5)
put mass on hazard ratios beyond 100, where small simulated cohorts have monotone likelihoods.
Pass ``priors=`` to calibrate any other prior.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from . import sim_engine
from .priors import Prior, prior_from_dict, prior_to_dict

__all__ = ["sbc", "SBCResult", "rank_uniformity", "compiled_cox", "SBC_COX_PRIORS", "MODELS"]

MODELS = ("cox", "cox_piecewise", "meta")

SBC_COX_PRIORS: dict[str, Prior] = {
    "treatment_log_hr": Prior("Normal", mu=0, sigma=1.0),
    "log_hr": Prior("Normal", mu=0, sigma=0.5),
    "log_baseline_level": Prior("Normal", mu=0, sigma=1.0),
    "smoothing_sd": Prior("HalfNormal", sigma=0.5),
}

#: Cut points of the piecewise baseline in SBC (time unit: the mean event time at hazard 1).
SBC_CUTS = (0.25, 0.6, 1.2)


# -- the uniformity test --------------------------------------------------------------------------

def _n_bins(n_sims: int, n_values: int) -> int:
    """Largest bin count in (20, 10, 5) dividing ``n_values`` with >= 10 expected per bin."""
    for b in (20, 10, 5, 4, 2):
        if n_values % b == 0 and n_sims / b >= 10:
            return b
    return 2 if n_values % 2 == 0 else 1


def rank_uniformity(ranks: pd.DataFrame, n_draws: int, *, bins: int | None = None) -> pd.DataFrame:
    """Chi-square test of uniform ranks per column: ranks in ``0..n_draws`` binned in ``bins``.

    ``bins`` must divide ``n_draws + 1`` so every bin holds the same number of rank values
    (default: 20, 10 or 5 keeping >= 10 expected simulations per bin). Returns one row per
    parameter: ``chi2``, ``df``, ``p_value``, ``mean_rank`` (scaled to [0, 1]; 0.5 expected) and
    ``sd_rank`` (scaled; ``sqrt(1/12) = 0.289`` expected: smaller means an over-dispersed
    posterior, larger an over-confident one).
    """
    n_values = n_draws + 1
    bins = bins or _n_bins(len(ranks), n_values)
    if n_values % bins:
        raise ValueError(f"bins={bins} must divide n_draws + 1 = {n_values}.")
    rows = {}
    for c in ranks.columns:
        r = ranks[c].to_numpy(float)
        counts = np.bincount((r // (n_values // bins)).astype(int), minlength=bins)
        exp = len(r) / bins
        chi2 = float(((counts - exp) ** 2 / exp).sum())
        rows[c] = {"chi2": chi2, "df": bins - 1, "p_value": float(stats.chi2.sf(chi2, bins - 1)),
                   "mean_rank": float(r.mean() / n_draws), "sd_rank": float(r.std(ddof=1) / n_draws)}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "parameter"
    out.attrs["bins"] = bins
    return out


@dataclass
class SBCResult:
    """Result of :func:`sbc`.

    Attributes
    ----------
    ranks : DataFrame
        One row per simulation, one column per parameter; ranks in ``0..n_draws``
        (``ranks.attrs["n_draws"]``).
    truth : DataFrame
        The prior draws (true values), same shape as ``ranks``.
    stats : DataFrame
        Per simulation: divergences, events or other diagnostics of the fit.
    coverage : DataFrame
        Per parameter: share of simulations whose 95% equal-tailed interval holds the true value
        (``coverage_95``), its Monte-Carlo SE ``sqrt(p(1-p)/n)`` and ``coverage_expected``, its
        value under perfect calibration: 0.95 for exact posteriors (interval from the posterior
        cdf); ``0.95 (m-1)/(m+1)`` for an interval from the sample quantiles of ``m``
        independent draws (the expected mass between the interpolated order statistics), e.g.
        0.944 for ``m = 297``.
    n_draws : int
        ``L``, posterior draws each rank is taken among.
    """

    ranks: pd.DataFrame
    truth: pd.DataFrame
    stats: pd.DataFrame
    coverage: pd.DataFrame
    n_draws: int
    model: str
    settings: dict = field(default_factory=dict)

    @property
    def tests(self) -> pd.DataFrame:
        """Per-parameter chi-square uniformity test (see :func:`rank_uniformity`)."""
        return rank_uniformity(self.ranks, self.n_draws)

    @property
    def p_values(self) -> pd.Series:
        return self.tests["p_value"]

    @property
    def p_value(self) -> float:
        """Smallest per-parameter uniformity p-value.

        Multiplicity: with ``m`` parameters, the smallest of ``m`` p-values is below ``a`` with
        probability up to ``m * a`` under perfect calibration; compare it with ``a / m``
        (Bonferroni), or use :attr:`p_value_adjusted`. Parameters of one model are correlated, so
        this is conservative.
        """
        return float(self.p_values.min())

    @property
    def p_value_adjusted(self) -> float:
        """Bonferroni-adjusted smallest p-value: ``min(1, m * p_value)``."""
        return float(min(1.0, len(self.ranks.columns) * self.p_value))

    def summary(self) -> pd.DataFrame:
        """Uniformity tests joined with interval coverage, one row per parameter."""
        return self.tests.join(self.coverage)

    def plot(self, ax=None):
        """Rank histograms with the 99% band of uniform counts (``plots.rank_histograms``)."""
        from .plots import rank_histograms

        return rank_histograms(self.ranks, ax=ax)

    def __repr__(self) -> str:
        return (f"SBCResult(model={self.model!r}, n_sims={len(self.ranks)}, n_draws={self.n_draws}, "
                f"parameters={list(self.ranks.columns)}, p_value={self.p_value:.3g} "
                f"(smallest of {self.ranks.shape[1]}; Bonferroni {self.p_value_adjusted:.3g}))")


# -- helpers shared by the problems ---------------------------------------------------------------

def _flat_names(name: str, shape: tuple[int, ...], labels: list[str] | None = None) -> list[str]:
    if not shape:
        return [name]
    if labels is not None and len(labels) == int(np.prod(shape)):
        return [f"{name}[{lab}]" for lab in labels]
    return [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def _rank_record(truth: Mapping[str, np.ndarray], draws: Mapping[str, np.ndarray], thin: int,
                 n_draws: int, labels: Mapping[str, list[str]] | None = None,
                 cdf: Callable[[str, np.ndarray], np.ndarray] | None = None) -> dict[str, float]:
    """Ranks of the truth among ``n_draws`` draws thinned by ``thin``.

    Coverage of the 95% equal-tailed interval: from the posterior cdf when ``cdf(name, value)``
    is given (exact), else from the sample quantiles of all draws.
    """
    rec: dict[str, float] = {}
    labels = labels or {}
    for name, t in truth.items():
        d = np.asarray(draws[name], float)
        t = np.asarray(t, float)
        d2 = d.reshape(d.shape[0], -1)
        t2 = t.reshape(-1)
        sub = d2[::thin][:n_draws]
        if sub.shape[0] < n_draws:
            raise RuntimeError(f"Only {sub.shape[0]} thinned draws of {name!r}; need n_draws={n_draws}.")
        if cdf is not None:
            u = np.atleast_1d(np.asarray(cdf(name, t), float)).reshape(-1)
            inside = (u >= 0.025) & (u <= 0.975)
        else:
            lo, hi = np.quantile(d2, [0.025, 0.975], axis=0)
            inside = (lo <= t2) & (t2 <= hi)
        for j, nm in enumerate(_flat_names(name, t.shape, labels.get(name))):
            rec[f"rank:{nm}"] = float(np.sum(sub[:, j] < t2[j]))
            rec[f"true:{nm}"] = float(t2[j])
            rec[f"cover:{nm}"] = float(inside[j])
    return rec


def _reseeding_forward(outputs: list, random_seed: int = 0):
    """Compiled forward sampler of ``outputs`` and a function reseeding it from a SeedSequence."""
    from pymc.pytensorf import compile as pm_compile
    from pymc.pytensorf import reseed_rngs
    from pytensor.tensor.random.type import RandomGeneratorType

    fn = pm_compile([], outputs, random_seed=random_seed)
    rngs = [v for v in fn.get_shared() if isinstance(v.type, RandomGeneratorType)]

    def draw(seed: np.random.SeedSequence):
        reseed_rngs(rngs, seed.generate_state(4).tolist())
        return fn()

    return draw


def _priors_key(priors: Mapping[str, Any] | None) -> str:
    import json

    d = {k: (dict(v) if isinstance(v, Mapping) else prior_to_dict(v)) for k, v in (priors or {}).items()}
    return json.dumps(d, sort_keys=True, default=str)


def _priors_obj(d: Mapping[str, Any] | None) -> dict | None:
    if d is None:
        return None
    return {k: (v if not isinstance(v, Mapping) else prior_from_dict(v)) for k, v in d.items()}


# -- Cox ------------------------------------------------------------------------------------------

_COX_RELEVANT = {"partial": ("treatment_log_hr", "log_hr"),
                 "piecewise": ("treatment_log_hr", "log_hr", "log_baseline_level", "smoothing_sd")}


def compiled_cox(sd, priors: Mapping[str, Any], *, baseline: str = "partial", cut_points=None,
                 method: str = "nuts", reuse: bool = True):
    """``(CoxModel, fitter)`` for data shaped like ``sd``, compiled once per process and reused.

    The key is what determines the compiled graph: baseline, n, covariate names, cut points,
    method and the priors the model uses (so SBC and operating characteristics with the same
    settings share one compilation). ``fitter`` is a :class:`~bayes_osteo.sim_engine.NutpieFit`
    (``method="nuts"``) or :class:`~bayes_osteo.sim_engine.LaplaceFit` (``"laplace"``); new data
    go in through ``cox.data_arrays(new_sd)``.
    """
    used = {k: v for k, v in priors.items() if k in _COX_RELEVANT[baseline]}
    if len(sd.covariate_names) == 1:
        used.pop("log_hr", None)
    cuts = None if cut_points is None else tuple(float(c) for c in cut_points)
    key = ("cox", method, baseline, sd.n, tuple(sd.covariate_names), sd.treatment, cuts,
           _priors_key(used))

    def make():
        from .cox import CoxModel

        kw = {"cut_points": list(cuts)} if baseline == "piecewise" else {}
        cox = CoxModel(sd, baseline=baseline, priors=_priors_obj(used), **kw)
        if method == "nuts":
            return cox, sim_engine.NutpieFit(cox.model)
        return cox, sim_engine.LaplaceFit(cox.model)

    return sim_engine.cached(key, make) if reuse else make()


@dataclass
class _CoxSBC:
    baseline: str
    n_patients: int
    n_covariates: int
    priors: dict
    fit_priors: dict
    censoring: float | None
    cut_points: tuple
    n_draws: int
    thin: int
    tune: int
    reuse: bool = True

    @property
    def names(self) -> list[str]:
        return ["treatment"] + [f"x{j + 1}" for j in range(self.n_covariates)]

    def _design(self, rng: np.random.Generator) -> np.ndarray:
        n = self.n_patients
        X = np.column_stack([(rng.random(n) < 0.5).astype(float)]
                            + [rng.standard_normal(n) for _ in range(self.n_covariates)])
        if X[:, 0].min() == X[:, 0].max():  # both arms needed; a data-only condition keeps SBC valid
            X[0, 0] = 1 - X[0, 0]
        return X

    def _dummy_sd(self):
        """A placeholder data set of the right shape: the compiled graph does not depend on values."""
        if "_sd" not in self.__dict__:
            from .data import SurvivalData

            n = self.n_patients
            rng = np.random.default_rng(0)
            tmax = 2.0 * max(self.cut_points, default=1.0) + 1.0
            df = pd.DataFrame({"time": np.linspace(0.1, tmax, n), "event": np.ones(n, int),
                               "treatment": np.arange(n) % 2})
            for j in range(self.n_covariates):
                df[f"x{j + 1}"] = rng.standard_normal(n)
            self.__dict__["_sd"] = SurvivalData.from_frame(
                df, duration="time", event="event", treatment="treatment", covariates=self.names[1:])
        return self.__dict__["_sd"]

    def _model(self, priors):
        from .cox import CoxModel

        kw = {"cut_points": list(self.cut_points)} if self.baseline == "piecewise" else {}
        return CoxModel(self._dummy_sd(), baseline=self.baseline, priors=priors, **kw)

    def _cuts(self):
        return self.cut_points if self.baseline == "piecewise" else None

    @property
    def _gen_vars(self) -> list[str]:
        return ["log_hr"] + (["log_baseline_hazard_centered", "smoothing_sd"]
                             if self.baseline == "piecewise" else [])

    def _state(self):
        key = ("sbc-cox", self.baseline, self.n_patients, self.n_covariates, self.cut_points)
        gen = sim_engine.cached(key + ("gen", _priors_key(self.priors)), lambda: self._make_gen())
        fit = compiled_cox(self._dummy_sd(), self.fit_priors, baseline=self.baseline,
                           cut_points=self._cuts(), reuse=self.reuse)
        return gen, fit

    def _make_gen(self):
        m = self._model(_priors_obj(self.priors))
        return m, _reseeding_forward([m.model[v] for v in self._gen_vars])

    def _event_times(self, rng: np.random.Generator, lp: np.ndarray, truth: dict) -> np.ndarray:
        """Event times with hazard ``h0(t) exp(lp)``: exponential(1) baseline (partial) or the
        drawn piecewise baseline at centred covariates."""
        e = rng.standard_exponential(lp.shape[0]) * np.exp(-lp)
        if self.baseline == "partial":
            return e
        from .simulate_data import Piecewise

        return Piecewise(self.cut_points, np.exp(truth["log_baseline_hazard_centered"])).inverse_cumhaz(e)

    def run_one(self, seed: np.random.SeedSequence) -> dict[str, float]:
        from .data import SurvivalData

        (_, draw), (fit_model, fitter) = self._state()
        s_prior, s_data, s_fit = seed.spawn(3)
        truth = dict(zip(self._gen_vars, draw(s_prior), strict=True))
        rng = np.random.default_rng(s_data)
        X = self._design(rng)
        beta = np.asarray(truth["log_hr"], float)
        n = self.n_patients
        lp = X @ beta if self.baseline == "partial" else (X - X.mean(axis=0)) @ beta
        t_event = self._event_times(rng, lp, truth)
        event, time = np.ones(n, int), t_event
        if self.censoring is not None:
            # A data set without events is redrawn: rejection on the data alone leaves the
            # posterior p(theta | y) unchanged, so the ranks stay uniform.
            for _ in range(1000):
                t_cens = rng.exponential(1.0 / self.censoring, n)
                event = (t_event <= t_cens).astype(int)
                if event.any():
                    break
                t_event = self._event_times(rng, lp, truth)
            time = np.minimum(t_event, t_cens)
        time = np.maximum(time, np.finfo(float).tiny)
        df = pd.DataFrame({"time": time, "event": event, "treatment": X[:, 0].astype(int)})
        for j in range(self.n_covariates):
            df[f"x{j + 1}"] = X[:, j + 1]
        sd = SurvivalData.from_frame(df, duration="time", event="event", treatment="treatment",
                                     covariates=self.names[1:])
        # the piecewise model's smoothing SD makes a mild funnel: a smaller step size avoids
        # most divergences there (the partial likelihood needs nothing special)
        extra = {"target_accept": 0.95} if self.baseline == "piecewise" else {}
        draws, n_div = fitter.sample(fit_model.data_arrays(sd), seed=sim_engine.seed_int(s_fit),
                                     draws=self.n_draws * self.thin, tune=self.tune, **extra)
        labels = {"log_hr": self.names}
        rec = _rank_record(truth, draws, self.thin, self.n_draws, labels)
        rec.update({"stat:divergences": n_div, "stat:events": int(event.sum())})
        return rec


# -- meta-analysis --------------------------------------------------------------------------------

@dataclass
class _MetaSBC:
    n_studies: int
    se_range: tuple
    priors: dict
    fit_priors: dict
    method: str
    n_draws: int
    thin: int
    tune: int
    reuse: bool = True

    def _meta(self, y, se, priors):
        from .data import StudyEstimates
        from .meta import MetaAnalysis

        return MetaAnalysis(StudyEstimates(y, se), effects="random", priors=_priors_obj(priors))

    def _gen(self):
        key = ("sbc-meta-gen", self.n_studies, _priors_key(self.priors))

        def make():
            from .priors import resolve_priors, to_scipy

            pri = resolve_priors(_priors_obj(self.priors), ("log_hr", "tau"))
            return to_scipy(pri["log_hr"]), to_scipy(pri["tau"])
        return sim_engine.cached(key, make)

    def _fitter(self):
        key = ("sbc-meta-nuts", self.n_studies, _priors_key(self.fit_priors))

        def make():
            k = self.n_studies
            ma = self._meta(np.zeros(k), np.ones(k), self.fit_priors)
            return ma, sim_engine.NutpieFit(ma.model, var_names=["log_hr", "tau", "log_hr_new"])
        return sim_engine.cached(key, make) if self.reuse else make()

    def run_one(self, seed: np.random.SeedSequence) -> dict[str, float]:
        mu_d, tau_d = self._gen()
        s_prior, s_data, s_fit = seed.spawn(3)
        rp = np.random.default_rng(s_prior)
        mu = float(mu_d.rvs(random_state=rp))
        tau = float(tau_d.rvs(random_state=rp))
        new = mu + tau * rp.standard_normal()
        rng = np.random.default_rng(s_data)
        k = self.n_studies
        theta = mu + tau * rng.standard_normal(k)
        se = rng.uniform(*self.se_range, k)
        y = theta + se * rng.standard_normal(k)
        truth = {"log_hr": mu, "tau": tau, "log_hr_new": new}
        L = self.n_draws * self.thin
        stats_: dict[str, float] = {}
        cdf = None
        if self.method == "exact":
            ex = self._meta(y, se, self.fit_priors).exact_posterior()
            draws = ex.sample(L, random_seed=s_fit)
            cdf = ex.cdf
        else:
            ma, fitter = self._fitter()
            draws, n_div = fitter.sample(_meta_arrays(ma, y, se), seed=sim_engine.seed_int(s_fit),
                                         draws=L, tune=self.tune)
            stats_["stat:divergences"] = n_div
        rec = _rank_record(truth, draws, self.thin, self.n_draws, cdf=cdf)
        rec.update(stats_)
        return rec


def _meta_arrays(ma, y, se) -> dict[str, np.ndarray]:
    """The pm.Data arrays of a MetaAnalysis for new estimates ``y``, ``se`` (same k)."""
    from .data import StudyEstimates

    return ma.data_arrays(StudyEstimates(y, se))


# -- user factory ---------------------------------------------------------------------------------

def _fkey(f: Callable) -> str:
    """Cache key of a factory: a hash of its pickle (code, closure and name), not its id."""
    import hashlib

    import cloudpickle

    return hashlib.sha256(cloudpickle.dumps(f)).hexdigest()


@dataclass
class _FactorySBC:
    factory: Callable
    fit_factory: Callable | None
    n: int
    n_draws: int
    thin: int
    tune: int
    reuse: bool = True

    def _build(self, factory):
        try:
            nparams = len(inspect.signature(factory).parameters)
        except (TypeError, ValueError):
            nparams = 1
        return factory(self.n) if nparams else factory()

    @staticmethod
    def _data_names(model) -> list[str]:
        from pytensor.compile.sharedvalue import SharedVariable

        names = []
        for rv in model.observed_RVs:
            val = model.rvs_to_values[rv]
            if not isinstance(val, SharedVariable):
                raise ValueError(f"Observed variable {rv.name!r} of the model factory holds a constant; "
                                 "SBC refits new data sets, so pass observed=pm.Data('name', values).")
            names.append(val.name)
        return names

    def _key(self, f: Callable) -> str:
        keys = self.__dict__.setdefault("_keys", {})
        if id(f) not in keys:
            keys[id(f)] = _fkey(f)
        return keys[id(f)]

    def _gen(self):
        def make():
            m = self._build(self.factory)
            data_names = self._data_names(m)
            free = [rv.name for rv in m.free_RVs]
            draw = _reseeding_forward([m[v] for v in free] + list(m.observed_RVs))
            return free, data_names, draw
        return sim_engine.cached(("sbc-factory-gen", self._key(self.factory), self.n), make)

    def _fitter(self):
        fac = self.fit_factory or self.factory

        def make():
            m = self._build(fac)
            return self._data_names(m), sim_engine.NutpieFit(m, var_names=[rv.name for rv in m.free_RVs])
        key = ("sbc-factory-fit", self._key(fac), self.n)
        return sim_engine.cached(key, make) if self.reuse else make()

    def run_one(self, seed: np.random.SeedSequence) -> dict[str, float]:
        free, data_names, draw = self._gen()
        fit_names, fitter = self._fitter()
        if sorted(fit_names) != sorted(data_names):
            raise ValueError(f"fit_model observes {fit_names} but the model simulates {data_names}.")
        s_prior, s_fit = seed.spawn(2)
        vals = draw(s_prior)
        truth = dict(zip(free, vals[:len(free)], strict=True))
        data = dict(zip(data_names, vals[len(free):], strict=True))
        draws, n_div = fitter.sample(data, seed=sim_engine.seed_int(s_fit),
                                     draws=self.n_draws * self.thin, tune=self.tune)
        rec = _rank_record(truth, draws, self.thin, self.n_draws)
        rec["stat:divergences"] = n_div
        return rec


# -- public entry ---------------------------------------------------------------------------------

def _as_dicts(priors: Mapping[str, Any] | None) -> dict:
    return {k: prior_to_dict(v) if not isinstance(v, Mapping) else dict(v) for k, v in (priors or {}).items()}


def sbc(model: str | Callable, n_sims: int = 200, n_patients: int = 60, random_seed: Any = None,
        client: Any = None, *, priors: Mapping[str, Any] | None = None,
        fit_priors: Mapping[str, Any] | None = None, fit_model: Callable | None = None,
        method: str | None = None, n_draws: int = 99, thin: int | None = None, tune: int = 300,
        covariates: int = 1, censoring: float | None = None, cut_points=SBC_CUTS,
        n_studies: int = 10, se_range: tuple[float, float] = (0.1, 0.5), n_jobs: int | None = None,
        reuse_compiled: bool = True, progress: bool = True) -> SBCResult:
    """Simulation-based calibration of a model (see the module docstring for each model).

    Parameters
    ----------
    model : {"cox", "cox_piecewise", "meta"} or callable
        Built-in model, or a factory ``f(n) -> pm.Model`` whose observed data are ``pm.Data``.
    n_sims : int
        Simulations. ~200 detect a posterior SD off by a factor 1.5 with 20 bins; more for
        subtler errors.
    n_patients : int
        Patients per simulated cohort (Cox) or the ``n`` passed to a factory.
    random_seed : int
        Root seed; simulation ``i`` uses ``SeedSequence(random_seed).spawn(n_sims)[i]``, so the
        result does not depend on ``client``/``n_jobs``.
    client : dask.distributed.Client or str, optional
        Distribute on Dask; default a local process pool of ``n_jobs`` workers.
    priors : mapping, optional
        Priors to draw the truth from and to fit with (Cox default :data:`SBC_COX_PRIORS`; meta
        the package defaults).
    fit_priors : mapping, optional
        Priors for the fit only (default ``priors``): a mismatch makes a miscalibrated posterior
        on purpose, which SBC must flag.
    fit_model : callable, optional
        For a factory ``model``: fit with this factory instead (same ``pm.Data`` names).
    method : {"nuts", "exact"}, optional
        Meta-analysis: "exact" (default; i.i.d. draws) or "nuts". Others: NUTS (nutpie, compiled
        once per worker and reused).
    n_draws : int
        ``L``: posterior draws each rank is taken among (ranks in ``0..L``).
    thin : int, optional
        Keep every ``thin``-th NUTS draw (default 3 for NUTS, 1 for exact draws), so the ``L``
        ranked draws are close to independent as SBC assumes.
    tune : int
        NUTS warm-up draws per fit (one chain).
    covariates : int
        Cox: standard-normal covariates besides the treatment.
    censoring : float, optional
        Cox: exponential drop-out hazard (the event hazard is 1 at covariates 0).
    cut_points : sequence of float
        Cox piecewise: fixed interior cut points.
    n_studies, se_range
        Meta-analysis: studies per simulated meta-analysis and the uniform SE range.
    n_jobs, reuse_compiled, progress
        Local workers; compile once per worker (False recompiles every fit: benchmark only);
        progress bar.

    Returns
    -------
    SBCResult
        ``.ranks``, ``.p_value``, ``.coverage``, ``.summary()``, ``.plot()``.

    Examples
    --------
    >>> import bayes_osteo as bo
    >>> res = bo.simulate.sbc("meta", n_sims=100, random_seed=1, n_jobs=1, progress=False)
    >>> res.p_value > 0.001
    True
    """
    if method not in (None, "nuts", "exact"):
        raise ValueError(f"method must be 'nuts' or 'exact'; got {method!r}.")
    if int(n_draws) < 1:
        raise ValueError(f"n_draws must be >= 1; got {n_draws}.")
    n_draws = int(n_draws)
    if isinstance(model, str):
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS} or a factory f(n) -> pm.Model; got {model!r}.")
        if fit_model is not None:
            raise ValueError("fit_model applies to a model factory; use fit_priors with a built-in model.")
        if model == "meta":
            method = method or "exact"
            thin = thin or (1 if method == "exact" else 3)
            pri = _as_dicts(priors)
            problem = _MetaSBC(int(n_studies), tuple(float(s) for s in se_range), pri,
                               _as_dicts(fit_priors) if fit_priors is not None else pri, method,
                               n_draws, int(thin), int(tune), reuse_compiled)
        else:
            if method == "exact":
                raise ValueError("method='exact' exists for model='meta' only; the Cox models use NUTS.")
            method = "nuts"
            thin = thin or 3
            pri = _as_dicts({**SBC_COX_PRIORS, **dict(priors or {})})
            fpri = _as_dicts({**SBC_COX_PRIORS, **dict(fit_priors)}) if fit_priors is not None else pri
            baseline = "partial" if model == "cox" else "piecewise"
            problem = _CoxSBC(baseline, int(n_patients), int(covariates), pri, fpri, censoring,
                              tuple(float(c) for c in cut_points), n_draws, int(thin), int(tune),
                              reuse_compiled)
        name = model
    elif callable(model):
        if priors is not None or fit_priors is not None:
            raise ValueError("priors/fit_priors apply to built-in models; a factory carries its own priors.")
        method = "nuts"
        thin = thin or 3
        problem = _FactorySBC(model, fit_model, int(n_patients), n_draws, int(thin), int(tune),
                              reuse_compiled)
        name = getattr(model, "__name__", "factory")
    else:
        raise ValueError(f"model must be one of {MODELS} or a callable factory; got {type(model).__name__}.")

    df = sim_engine.run(problem, n_sims, random_seed, client=client, n_jobs=n_jobs,
                        progress=progress, desc=f"SBC {name}")
    m = n_draws * int(thin)
    expected = 0.95 if method == "exact" else 0.95 * (m - 1) / (m + 1)
    return _result(df, n_draws, name, {"method": method, "thin": thin, "n_sims": int(n_sims),
                                       "random_seed": df.attrs["random_seed"],
                                       "coverage_expected": expected})


def _result(df: pd.DataFrame, n_draws: int, name: str, settings: dict) -> SBCResult:
    def part(prefix):
        cols = [c for c in df.columns if c.startswith(prefix)]
        out = df[cols].copy()
        out.columns = [c[len(prefix):] for c in cols]
        return out

    ranks = part("rank:").astype(int)
    ranks.attrs["n_draws"] = n_draws
    cover = part("cover:")
    p = cover.mean()
    coverage = pd.DataFrame({"coverage_95": p, "coverage_mcse": np.sqrt(p * (1 - p) / len(cover)),
                             "coverage_expected": settings["coverage_expected"]})
    coverage.index.name = "parameter"
    return SBCResult(ranks=ranks, truth=part("true:"), stats=part("stat:"), coverage=coverage,
                     n_draws=n_draws, model=name, settings=settings)
