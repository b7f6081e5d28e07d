"""CoxModel: Bayesian proportional-hazards regression for a patient cohort.

Model
-----
Linear predictor ``eta_i = x_i' beta (+ log-frailty of i's cluster) (+ z_i s_i' delta)`` with
``beta = log_hr`` (dim ``covariate``, treatment included), ``z`` the 0/1 treatment, ``s_i`` the
pre-specified subgroup indicators and ``delta_k ~ N(0, subgroup_sd)`` the partially pooled
treatment-by-subgroup deviations.

``baseline="partial"``
    Cox partial likelihood (Breslow or Efron ties, strata = separate risk sets, case weights,
    left truncation), a custom PyTensor Op with an analytic O(n) gradient
    (:class:`bayes_osteo.components.CoxPartialLogLik`). The baseline hazard is not modelled, so
    survival curves need ``baseline="piecewise"``.
``baseline="piecewise"``
    Full likelihood with a piecewise-constant baseline hazard ``h0_j`` on intervals
    ``(0, c_1], ..., (c_{J-1}, inf)``; ``log h0`` follows a Gaussian random walk with SD
    ``smoothing_sd`` from a level ``log_baseline_level`` (one walk per stratum). The likelihood is
    computed from per-subject interval exposures ``E_ij`` (never by replicating rows)::

        loglik = sum_i w_i [ d_i (log h0_{j(i)} + eta_i) - exp(eta_i) sum_j h0_j E_ij ]

    Covariates are centred internally (``log_baseline_hazard`` is reported at covariates = 0).
    ``time_varying=True`` replaces the treatment log-HR in interval ``j`` by
    ``treatment_log_hr + g_j`` with ``g`` a mean-zero random walk (SD ``time_varying_sd``,
    default HalfNormal(0.5)): the proportional-hazards check, reported by :meth:`hr_over_time`.

Weighted fits (``sd.weights``) are pseudo-posteriors and flagged so in the result's ``attrs``.

Examples
--------
>>> import numpy as np, pandas as pd, bayes_osteo as bo
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"x": rng.integers(0, 2, 60)})
>>> df["t"] = rng.exponential(np.exp(-0.7 * df.x)); df["d"] = 1
>>> sd = bo.SurvivalData.from_frame(df, duration="t", event="d", treatment="x")
>>> cox = bo.CoxModel(sd, priors={"treatment_log_hr": bo.Prior("Normal", mu=0, sigma=100)})
>>> bool(abs(float(cox.find_map()["log_hr"][0]) - 0.7) < 0.6)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from .base import CI_PROB, BayesModel
from .components import (
    RISK_KEYS,
    CoxPartialLogLik,
    CoxPartialLogLikX,
    cox_loglik_terms,
    cox_risk_structure,
    default_cut_points,
    log_hr_block,
    piecewise_exposure,
    random_effects,
    random_walk,
)
from .data import SurvivalData
from .km import kaplan_meier, logrank
from .priors import Prior, _as_prior, create

__all__ = ["CoxModel", "kaplan_meier", "logrank"]

#: Size from which nutpie is the default sampler. Measured (benchmarks/bench_cox.py, 2 cores, 4 x
#: 1000 draws): PyMC 11 s vs nutpie 17 s at n = 125, 18 s vs 22 s at n = 10^4 (nutpie compiles
#: for ~10 s); at 10^5 only nutpie was benchmarked (threaded chains, no per-step Python).
NUTPIE_MIN_N = 20_000
_TV_DEFAULT = Prior("HalfNormal", sigma=0.5)


class CoxModel(BayesModel):
    """Bayesian Cox model (partial likelihood or piecewise-exponential baseline).

    Parameters
    ----------
    sd : SurvivalData
        The cohort. Strata come from ``sd.strata``, case weights from ``sd.weights``, a shared
        log-normal frailty from ``sd.cluster``, left truncation from ``sd.entry``.
    baseline : {"partial", "piecewise"}
    ties : {"efron", "breslow"}
        Tie handling of the partial likelihood (ignored by the piecewise model).
    priors : mapping, optional
        Overrides for ``log_hr`` (adjustment covariates), ``treatment_log_hr`` (a Prior or a
        :class:`~bayes_osteo.priors.NormalMixture`, used exactly), ``frailty_sd``,
        ``subgroup_sd``, ``smoothing_sd``, ``log_baseline_level`` and ``time_varying_sd``.
    cut_points : sequence of float, optional
        Interior cut points of the piecewise baseline (strictly increasing, inside
        ``(0, max follow-up)``). Default: ``n_intervals`` event-time quantiles.
    n_intervals : int, optional
        Number of baseline intervals when ``cut_points`` is not given (default
        ``clip(events // 10, 2, 10)``).
    subgroups : sequence of str, optional
        Covariates (0/1 columns, or dummy-coded categoricals) defining pre-specified subgroups;
        each gets a partially pooled treatment-by-subgroup deviation. Their main effects must be
        among the covariates.
    time_varying : bool
        Treatment x interval effect with a random-walk prior (piecewise only).
    """

    kind = "cox"
    prior_names = ("log_hr", "treatment_log_hr", "frailty_sd", "subgroup_sd", "smoothing_sd",
                   "log_baseline_level")
    patient_level = True
    default_sampler = "pymc"

    def __init__(self, sd: SurvivalData, *, baseline: str = "partial", ties: str = "efron",
                 priors: Mapping[str, Any] | None = None, cut_points: Sequence[float] | None = None,
                 n_intervals: int | None = None, subgroups: Sequence[str] | None = None,
                 time_varying: bool = False):
        if not isinstance(sd, SurvivalData):
            raise TypeError(f"CoxModel needs a SurvivalData (SurvivalData.from_frame(...)); got {type(sd).__name__}.")
        if baseline not in ("partial", "piecewise"):
            raise ValueError(f"baseline must be 'partial' or 'piecewise'; got {baseline!r}.")
        if ties not in ("efron", "breslow"):
            raise ValueError(f"ties must be 'efron' or 'breslow'; got {ties!r}.")
        if sd.p == 0:
            raise ValueError("CoxModel needs at least one covariate or a treatment column in the SurvivalData.")
        priors = dict(priors or {})
        tv_prior = priors.pop("time_varying_sd", None)
        super().__init__(priors=priors)
        self.sd = sd
        self.baseline = baseline
        self.ties = ties
        self.time_varying = bool(time_varying)
        if self.time_varying:
            if baseline != "piecewise":
                raise ValueError("time_varying=True needs baseline='piecewise' (the treatment x interval "
                                 "effect is defined on the baseline intervals).")
            if sd.treatment is None:
                raise ValueError("time_varying=True needs a treatment column (SurvivalData.from_frame(..., treatment=...)).")
            self.priors["time_varying_sd"] = _as_prior(tv_prior, "time_varying_sd") if tv_prior else _TV_DEFAULT.deepcopy()
        elif tv_prior is not None:
            raise ValueError("A 'time_varying_sd' prior was given but time_varying=False.")
        # subgroups
        self.subgroups = list(subgroups) if subgroups else []
        self._subgroup_cols = self._resolve_subgroups(self.subgroups)
        # piecewise intervals
        if baseline == "piecewise":
            self.cut_points = self._resolve_cuts(cut_points, n_intervals)
        else:
            if cut_points is not None or n_intervals is not None:
                raise ValueError("cut_points / n_intervals apply to baseline='piecewise' only.")
            self.cut_points = None
        if baseline == "piecewise" and sd.strata is not None:
            ev = np.bincount(sd.strata, weights=sd.event, minlength=len(sd.strata_levels))
            empty = [sd.strata_levels[i] for i in np.flatnonzero(ev == 0)]
            if empty:
                warnings.warn(f"Strata {empty} of {sd.strata_col!r} have no events: their baseline hazard is "
                              "informed by its prior only.", UserWarning, stacklevel=2)
        if sd.n >= NUTPIE_MIN_N:
            self.default_sampler = "nutpie"
        self._risk = cox_risk_structure(sd.time, sd.event, sd.weights, sd.strata, sd.entry) \
            if baseline == "partial" else None

    # -- option resolution ----------------------------------------------------------------------
    def _resolve_subgroups(self, subgroups: list[str]) -> list[tuple[str, int]]:
        if not subgroups:
            return []
        sd = self.sd
        if sd.treatment is None:
            raise ValueError("subgroups need a treatment column (SurvivalData.from_frame(..., treatment=...)).")
        out = []
        for col in subgroups:
            idx = [k for k, nm in enumerate(sd.covariate_names)
                   if nm != sd.treatment and (nm == col or nm.startswith(f"{col}["))]
            if not idx:
                raise ValueError(
                    f"Subgroup column {col!r} is not among the covariates {sd.covariate_names}: add it to "
                    "covariates=[...] so its main (prognostic) effect is adjusted for.")
            for k in idx:
                x = sd.X[:, k]
                if not np.all(np.isin(x, (0.0, 1.0))):
                    raise ValueError(f"Subgroup column {sd.covariate_names[k]!r} must be 0/1 (a subgroup "
                                     "indicator); dichotomise it first.")
                out.append((sd.covariate_names[k], k))
        return out

    def _resolve_cuts(self, cut_points, n_intervals) -> np.ndarray:
        sd = self.sd
        tmax = float(np.max(sd.time))
        if cut_points is not None:
            c = np.asarray(cut_points, float).ravel()
            if n_intervals is not None:
                raise ValueError("Give cut_points or n_intervals, not both.")
            if not np.all(np.isfinite(c)):
                raise ValueError(f"cut_points must be finite numbers; got {c.tolist()}.")
            if np.any(np.diff(c) <= 0):
                raise ValueError(f"cut_points must be strictly increasing; got {c.tolist()}.")
            bad = c[(c <= 0) | (c >= tmax)]
            if bad.size:
                raise ValueError(
                    f"cut_points {bad.tolist()} lie outside the follow-up range (0, {tmax:g}) of "
                    f"{sd.duration_col!r}: an interval beyond the last exit time has no exposure. "
                    "Use interior cut points only (the last interval runs to infinity).")
            return c
        if n_intervals is None:
            n_intervals = int(np.clip(sd.n_events // 10, 2, 10))
        if int(n_intervals) != n_intervals or n_intervals < 1:
            raise ValueError(f"n_intervals must be a positive integer; got {n_intervals!r}.")
        return default_cut_points(sd.time, sd.event, int(n_intervals))

    # -- BayesModel interface -----------------------------------------------------------------------
    def options(self) -> dict:
        return {"baseline": self.baseline, "ties": self.ties,
                "cut_points": None if self.cut_points is None else self.cut_points.tolist(),
                "subgroups": self.subgroups, "time_varying": self.time_varying,
                "covariates": list(self.sd.covariate_names), "treatment": self.sd.treatment,
                "strata": self.sd.strata_col, "cluster": self.sd.cluster_col,
                "weights": self.sd.weights_col, "entry": self.sd.entry_col}

    def data_fingerprint(self) -> str:
        return self.sd.fingerprint()

    @property
    def pseudo_posterior(self) -> bool:
        return self.sd.weights is not None

    @property
    def intervals(self) -> pd.DataFrame:
        """The baseline intervals (piecewise): columns ``interval``, ``start``, ``end``."""
        if self.cut_points is None:
            raise ValueError("Intervals exist for baseline='piecewise' only.")
        lo = np.concatenate([[0.0], self.cut_points])
        hi = np.concatenate([self.cut_points, [np.inf]])
        return pd.DataFrame({"interval": self._interval_labels(), "start": lo, "end": hi})

    def _interval_labels(self) -> list[str]:
        lo = np.concatenate([[0.0], self.cut_points])
        hi = np.concatenate([self.cut_points, [np.inf]])
        return [f"({a:g}, {b:g}]" if np.isfinite(b) else f"({a:g}, inf)" for a, b in zip(lo, hi, strict=True)]

    def data_arrays(self, sd: SurvivalData | None = None) -> dict[str, np.ndarray]:
        """The arrays held in the model's ``pm.Data`` containers, for this or another data set.

        Another ``SurvivalData`` with the same number of rows and covariates (and the same
        strata/cluster/subgroup levels) gives arrays that a compiled model takes unchanged:
        ``nutpie.compile_pymc_model(cox.model).with_data(**cox.data_arrays(new_sd))``. The
        piecewise model keeps this model's cut points.
        """
        sd = self.sd if sd is None else sd
        if sd.n != self.sd.n or sd.p != self.sd.p:
            raise ValueError(f"data_arrays: the new data must have n={self.sd.n} rows and p={self.sd.p} "
                             f"covariates like the model's; got n={sd.n}, p={sd.p}.")
        for role, a, b in (("strata", sd.strata_levels, self.sd.strata_levels),
                           ("cluster", sd.cluster_levels, self.sd.cluster_levels)):
            if (a is None) != (b is None) or (a is not None and len(a) != len(b)):
                raise ValueError(f"data_arrays: the new data's {role} levels differ from the model's.")
        out: dict[str, np.ndarray] = {}
        if self.baseline == "partial":
            # rows sorted ONCE by (stratum, time): the Op then streams through them with no
            # gathers (its ``order`` is the identity); per-patient outputs are mapped back
            # through ``_row_order`` so the user-facing order is unchanged.
            row = _row_order(sd)
            out["X"] = np.ascontiguousarray(sd.X[row], dtype=float)
            risk = cox_risk_structure(*(None if a is None else np.asarray(a)[row]
                                        for a in (sd.time, sd.event, sd.weights, sd.strata, sd.entry)))
            out.update(risk)
        else:
            xbar = sd.X.mean(axis=0)
            out["X"] = sd.X - xbar
            out["X_mean"] = xbar
            expo, interval = piecewise_exposure(sd.time, self.cut_points, sd.entry)
            out["exposure"] = expo
            out["event"] = sd.event.astype(float)
            out["weights"] = np.ones(sd.n) if sd.weights is None else np.asarray(sd.weights, float)
            wd = out["weights"] * out["event"]
            J = expo.shape[1]
            # sufficient statistics of the event term: weighted events per (stratum,) interval
            if sd.strata is not None:
                out["stratum_index"] = sd.strata.astype(np.int64)
                S = len(sd.strata_levels)
                out["events_per_interval"] = np.bincount(sd.strata * J + interval, weights=wd,
                                                         minlength=S * J).reshape(S, J)
            else:
                out["events_per_interval"] = np.bincount(interval, weights=wd, minlength=J)
            if self.time_varying:
                z = sd.column(sd.treatment)
                out["treated_events_per_interval"] = np.bincount(interval, weights=wd * z, minlength=J)
        row = _row_order(sd) if self.baseline == "partial" else slice(None)
        if sd.cluster is not None:
            out["cluster_index"] = sd.cluster.astype(np.int64)[row]
        if self._subgroup_cols or self.time_varying:
            out["treatment_indicator"] = sd.column(sd.treatment).astype(float)[row]
        if self._subgroup_cols:
            out["subgroup_matrix"] = np.ascontiguousarray(
                np.column_stack([sd.X[:, k] for _, k in self._subgroup_cols]).astype(float)[row])
        return out

    def build(self) -> pm.Model:
        sd = self.sd
        arrays = self.data_arrays()
        coords: dict[str, list] = {"covariate": list(sd.covariate_names)}
        if sd.cluster is not None:
            coords["cluster"] = [str(c) for c in sd.cluster_levels]
        if self._subgroup_cols:
            coords["subgroup"] = [nm for nm, _ in self._subgroup_cols]
        if self.baseline == "piecewise":
            coords["interval"] = self._interval_labels()
            if sd.strata is not None:
                coords["stratum"] = [str(s) for s in sd.strata_levels]
        with pm.Model(coords=coords) as model:
            data = {k: pm.Data(k, v) for k, v in arrays.items()}
            log_hr = log_hr_block(self.priors, sd.covariate_names, sd.treatment)
            eta = pt.dot(data["X"], log_hr)
            if sd.cluster is not None:
                fsd = create(self.priors["frailty_sd"], "frailty_sd")
                fr = random_effects("frailty", fsd, "cluster")
                eta = eta + fr[data["cluster_index"]]
            if self._subgroup_cols:
                ssd = create(self.priors["subgroup_sd"], "subgroup_sd")
                delta = random_effects("subgroup_delta", ssd, "subgroup")
                eta = eta + data["treatment_indicator"] * pt.dot(data["subgroup_matrix"], delta)
                trt = model["treatment_log_hr"]
                slh = pm.Deterministic("subgroup_log_hr", trt + delta, dims="subgroup")
                pm.Deterministic("subgroup_hr", pt.exp(slh), dims="subgroup")
            if self.baseline == "partial":
                use_entry = sd.entry is not None and bool(np.any(sd.entry > 0))
                risk = [data[k] for k in RISK_KEYS]
                if sd.cluster is None and not self._subgroup_cols:
                    # eta = X beta only: one fused Op (X beta, likelihood, X' grad in numba)
                    ll = CoxPartialLogLikX(self.ties, use_entry)(log_hr, data["X"], *risk)[0]
                else:
                    ll = CoxPartialLogLik(self.ties, use_entry, presorted=True)(eta, *risk)[0]
                pm.Potential("partial_loglik", ll)
            else:
                self._build_piecewise(model, data, eta, log_hr)
        return model

    def _build_piecewise(self, model, data, eta, log_hr):
        sd = self.sd
        strat = sd.strata is not None
        dims = ("stratum", "interval") if strat else ("interval",)
        level = create(self.priors["log_baseline_level"], "log_baseline_level",
                       dims="stratum" if strat else None)
        smooth = create(self.priors["smoothing_sd"], "smoothing_sd")
        log_h0c = random_walk("log_baseline_hazard_centered", smooth, dims, level=level)
        # reported baseline at covariates = 0 (the model centres X internally)
        shift = pt.dot(data["X_mean"], log_hr)
        pm.Deterministic("log_baseline_hazard", log_h0c - shift, dims=dims)
        h0 = pt.exp(log_h0c)
        expo = data["exposure"]
        w = data["weights"]
        # event term from sufficient statistics: sum_i w_i d_i (log h0_j(i) + eta_i)
        #   = sum_j D_j log h0_j + (w d)' eta           (no per-subject gathers)
        event_term = pt.sum(data["events_per_interval"] * log_h0c) + pt.dot(w * data["event"], eta)
        if strat:
            h0_i = h0[data["stratum_index"]]          # (n, J)
        if self.time_varying:
            tv_sd = create(self.priors["time_varying_sd"], "time_varying_sd")
            g = random_walk("time_varying_deviation", tv_sd, "interval", center=True)
            lht = pm.Deterministic("log_hr_time", model["treatment_log_hr"] + g, dims="interval")
            pm.Deterministic("hr_time", pt.exp(lht), dims="interval")
            z = data["treatment_indicator"]
            # eta holds the constant treatment effect; the treated get g_j on top in interval j
            event_term = event_term + pt.dot(data["treated_events_per_interval"], g)
            if strat:
                H = pt.sum(expo * h0_i * pt.exp(z[:, None] * g[None, :]), axis=1)
            else:
                H = (1 - z) * pt.dot(expo, h0) + z * pt.dot(expo, h0 * pt.exp(g))
        else:
            H = pt.sum(expo * h0_i, axis=1) if strat else pt.dot(expo, h0)
        ll = event_term - pt.dot(w * pt.exp(eta), H)
        pm.Potential("piecewise_loglik", ll)

    # -- fitting ------------------------------------------------------------------------------------
    def find_map(self, *, method: str = "L-BFGS-B", maxeval: int = 50_000, **kwargs: Any) -> dict[str, xr.DataArray]:
        """Posterior mode (see :meth:`BayesModel.find_map`); under vague priors the MLE.

        Tight optimiser tolerances by default (``ftol=1e-14, gtol=1e-9``), so the mode matches
        maximum-likelihood software to ~1e-5 on the log-HR scale.
        """
        if method == "L-BFGS-B":
            opts = dict(kwargs.pop("options", {}) or {})
            opts.setdefault("ftol", 1e-14)
            opts.setdefault("gtol", 1e-9)
            opts.setdefault("maxiter", 10_000)
            kwargs["options"] = opts
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Pp]otential.*")
            return super().find_map(method=method, maxeval=maxeval, **kwargs)

    def fit(self, draws: int = 1000, tune: int = 1000, chains: int = 4, random_seed: Any = None,
            progressbar: bool = True, *, nuts_sampler: str | None = None, check: bool = True,
            **sampler_kwargs: Any) -> xr.DataTree:
        """Sample the posterior with NUTS (see :meth:`BayesModel.fit`).

        The sampler defaults by size: PyMC's NUTS below ``NUTPIE_MIN_N`` subjects (where
        nutpie's numba compilation would dominate), nutpie from there on (see ``NUTPIE_MIN_N`` for the measurements).
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Pp]otential.*")
            return super().fit(draws, tune, chains, random_seed, progressbar,
                               nuts_sampler=nuts_sampler, check=check, **sampler_kwargs)

    def postprocess(self, dt: xr.DataTree) -> xr.DataTree:
        post = dt["posterior"].to_dataset()
        drop = [v for v in post.data_vars if v.endswith("_z")]
        if drop:
            dt["posterior"] = xr.DataTree(post.drop_vars(drop))
        return dt

    # -- posterior draws helpers -------------------------------------------------------------------
    @staticmethod
    def _draws(dt: xr.DataTree, name: str, max_draws: int | None = None) -> np.ndarray:
        post = dt["posterior"]
        if name not in post.data_vars:
            raise ValueError(f"The result has no posterior variable {name!r}; was it fitted by this model?")
        da = post[name]
        arr = da.stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()
        if max_draws is not None and arr.shape[0] > max_draws:
            keep = np.linspace(0, arr.shape[0] - 1, max_draws).round().astype(int)
            arr = arr[keep]
        return arr

    def _eta_draws(self, dt: xr.DataTree, sd: SurvivalData | None = None, max_draws=None,
                   X: np.ndarray | None = None) -> np.ndarray:
        """Linear predictor per draw (draws x n) as in the model (piecewise: centred X).

        Columns in the data's own row order (the partial model's sorted rows are mapped back).
        """
        sd = self.sd if sd is None else sd
        arr = self.data_arrays(sd)
        partial = self.baseline == "partial"
        row = _row_order(sd) if partial else None
        if X is None:
            Xm = arr["X"]
        else:               # a caller's X is in the data's row order
            Xm = np.asarray(X, float)[row] if partial else X
        beta = self._draws(dt, "log_hr", max_draws)
        eta = beta @ Xm.T
        if sd.cluster is not None:
            eta = eta + self._draws(dt, "frailty", max_draws)[:, arr["cluster_index"]]
        if self._subgroup_cols:
            delta = self._draws(dt, "subgroup_delta", max_draws)
            eta = eta + arr["treatment_indicator"][None, :] * (delta @ arr["subgroup_matrix"].T)
        if partial:
            out = np.empty_like(eta)
            out[:, row] = eta
            return out
        return eta

    def _require_piecewise(self, what: str) -> None:
        if self.baseline != "piecewise":
            raise ValueError(f"{what} needs a baseline hazard: use CoxModel(..., baseline='piecewise'). "
                             "The partial likelihood leaves the baseline unmodelled.")

    def _cumhaz_parts(self, dt, max_draws):
        """h0 per draw (draws x [strata x] J) and time-varying multipliers (draws x J) or None."""
        h0 = np.exp(self._draws(dt, "log_baseline_hazard_centered", max_draws))
        g = self._draws(dt, "time_varying_deviation", max_draws) if self.time_varying else None
        return h0, g

    def _patient_rates(self, dt, max_draws):
        """Per-draw, per-patient interval hazards lam (draws x n x J)."""
        sd = self.sd
        eta = self._eta_draws(dt, max_draws=max_draws)
        h0, g = self._cumhaz_parts(dt, max_draws)
        h0_i = h0[:, sd.strata, :] if sd.strata is not None else h0[:, None, :]
        lam = h0_i * np.exp(eta)[:, :, None]
        if g is not None:
            z = sd.column(sd.treatment)
            lam = lam * np.exp(z[None, :, None] * g[:, None, :])
        return lam

    def _groups(self, by: str | None) -> tuple[list, list[np.ndarray]]:
        if by is None:
            return [None], [np.ones(self.sd.n, bool)]
        frame = self.sd.frame
        if frame is None or by not in frame.columns:
            raise ValueError(f"by={by!r} is not a column of the data frame; columns: "
                             f"{[] if frame is None else list(frame.columns)}.")
        vals = frame[by].to_numpy()
        levels = sorted(pd.unique(vals), key=lambda v: (str(type(v)), v))
        return levels, [vals == lev for lev in levels]

    # -- survival -----------------------------------------------------------------------------------
    def survival_draws(self, dt: xr.DataTree, times: Sequence[float], *, by: str | None = None,
                       max_draws: int | None = 2000) -> xr.DataArray:
        """Posterior draws of the marginal survival curve ``S_g(t)`` (dims sample, group, time).

        ``S_g(t)`` is the average of the patient-level curves ``exp(-H_i(t))`` over the patients
        of group ``g`` with their own covariates (and cluster frailties): the standardised
        (marginal) survival of that group as observed, the quantity a Kaplan-Meier curve of the
        group estimates. ``by=None``: one group, the whole cohort.
        """
        self._require_piecewise("survival")
        times = np.atleast_1d(np.asarray(times, float))
        if np.any(times < 0) or not np.all(np.isfinite(times)):
            raise ValueError(f"times must be finite and >= 0; got {times.tolist()}.")
        levels, masks = self._groups(by)
        lam = self._patient_rates(dt, max_draws)               # (S, n, J)
        E, _ = piecewise_exposure(times, self.cut_points)      # (T, J)
        out = np.empty((lam.shape[0], len(levels), times.size))
        for gi, m in enumerate(masks):
            lam_g = lam[:, m, :]
            step = max(1, int(4e6 // max(1, lam_g.shape[1] * times.size)))  # bound memory
            for a in range(0, lam_g.shape[0], step):
                Hi = np.einsum("snj,tj->snt", lam_g[a:a + step], E)
                out[a:a + step, gi, :] = np.exp(-Hi).mean(axis=1)
        return xr.DataArray(out, dims=("sample", "group", "time"),
                            coords={"group": list(levels) if by else ["all"], "time": times},
                            name="survival", attrs={"by": by or "", "standardisation": "group's own patients"})

    def survival(self, dt: xr.DataTree, times: Sequence[float], *, by: str | None = None,
                 ci_prob: float = CI_PROB) -> pd.DataFrame:
        """Posterior S(t) per group: columns ``[<by>, "time", "median", "mean", "ci_low", "ci_high"]``.

        See :meth:`survival_draws` for how covariates are averaged (each group's own patients).
        """
        da = self.survival_draws(dt, times, by=by)
        return _band_frame(da, by, ci_prob, value="time")

    def median_survival(self, dt: xr.DataTree, *, by: str | None = None, ci_prob: float = CI_PROB,
                        horizon: float | None = None, n_grid: int = 400,
                        max_draws: int | None = 1000) -> pd.DataFrame:
        """Posterior of the median survival time of the marginal curve of each group.

        Found on a grid of ``n_grid`` points up to ``horizon`` (default: the last follow-up time)
        with linear interpolation. Draws whose curve stays above 0.5 up to the horizon count as
        "not reached" (``p_reached`` < 1; the interval then uses +inf for them).
        """
        self._require_piecewise("median_survival")
        horizon = float(np.max(self.sd.time)) if horizon is None else float(horizon)
        grid = np.linspace(0, horizon, n_grid)
        da = self.survival_draws(dt, grid, by=by, max_draws=max_draws)
        S = da.to_numpy()
        rows = []
        for gi, g in enumerate(da["group"].to_numpy()):
            med = np.array([_crossing(grid, s) for s in S[:, gi, :]])
            reached = np.isfinite(med)
            lo, hi = np.quantile(med, [(1 - ci_prob) / 2, (1 + ci_prob) / 2]) if reached.mean() > 0 else (np.inf, np.inf)
            rows.append({**({by: g} if by else {}), "median": float(np.median(med)),
                         "ci_low": float(lo), "ci_high": float(hi), "p_reached": float(reached.mean())})
        out = pd.DataFrame(rows)
        out.attrs.update({"ci_prob": ci_prob, "ci_kind": "eti", "horizon": horizon})
        return out

    def rmst(self, dt: xr.DataTree, horizon: float, *, by: str | None = None,
             ci_prob: float = CI_PROB, max_draws: int | None = 2000) -> pd.DataFrame:
        """Restricted mean survival time up to ``horizon`` per group (exact piecewise integral).

        ``RMST_g = mean_{i in g} int_0^horizon S_i(t) dt``, integrated exactly within each
        interval (``S_i`` is exponential there). Columns ``[<by>, "rmst", "mean", "ci_low",
        "ci_high", "horizon"]`` where ``rmst`` is the posterior median.
        """
        self._require_piecewise("rmst")
        horizon = float(horizon)
        if not horizon > 0:
            raise ValueError(f"horizon must be > 0; got {horizon}.")
        levels, masks = self._groups(by)
        lam = self._patient_rates(dt, max_draws)                 # (S, n, J)
        lo = np.concatenate([[0.0], self.cut_points])
        hi = np.concatenate([self.cut_points, [np.inf]])
        L = np.clip(np.minimum(hi, horizon) - lo, 0, None)       # (J,)
        H_start = np.concatenate([np.zeros(lam.shape[:2] + (1,)), np.cumsum(lam * L, axis=2)[:, :, :-1]], axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            piece = np.where(lam * L > 1e-12, -np.expm1(-lam * L) / lam, L)
        rm = np.sum(np.exp(-H_start) * piece, axis=2)            # (S, n)
        rows = []
        for lev, m in zip(levels, masks, strict=True):
            r = rm[:, m].mean(axis=1)
            q = np.quantile(r, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2])
            rows.append({**({by: lev} if by else {}), "rmst": q[1], "mean": r.mean(), "ci_low": q[0],
                         "ci_high": q[2], "horizon": horizon})
        out = pd.DataFrame(rows)
        out.attrs.update({"ci_prob": ci_prob, "ci_kind": "eti"})
        return out

    def hr_over_time(self, dt: xr.DataTree, *, ci_prob: float = CI_PROB) -> pd.DataFrame:
        """Plot-ready treatment HR per baseline interval (``time_varying=True``).

        Columns ``interval, start, end, time`` (interval midpoint; the last, open interval uses
        its start + half the previous width), ``median, mean, ci_low, ci_high`` (HR scale) and
        ``p_hr_lt_1``.
        """
        if not self.time_varying:
            raise ValueError("hr_over_time needs CoxModel(..., baseline='piecewise', time_varying=True).")
        hr = np.exp(self._draws(dt, "log_hr_time"))
        iv = self.intervals
        start, end = iv["start"].to_numpy(), iv["end"].to_numpy()
        width = np.diff(np.concatenate([[0.0], self.cut_points]))
        last_w = width[-1] if width.size else 1.0
        mid = np.where(np.isfinite(end), (start + end) / 2, start + last_w / 2)
        q = np.quantile(hr, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2], axis=0)
        out = pd.DataFrame({"interval": iv["interval"], "start": start, "end": end, "time": mid,
                            "median": q[1], "mean": hr.mean(0), "ci_low": q[0], "ci_high": q[2],
                            "p_hr_lt_1": (hr < 1).mean(0)})
        out.attrs.update({"ci_prob": ci_prob, "ci_kind": "eti", "scale": "hazard ratio"})
        return out

    def subgroup_effects(self, dt: xr.DataTree, *, ci_prob: float = CI_PROB) -> pd.DataFrame:
        """Treatment HR per pre-specified subgroup (partially pooled), plus the reference group.

        Row ``reference`` is the treatment HR for patients in none of the subgroups
        (``treatment_log_hr``); row ``k`` is ``exp(treatment_log_hr + delta_k)``, the HR in
        subgroup ``k`` (for patients outside the other subgroups). Columns ``hr_median, hr_mean,
        ci_low, ci_high, p_hr_lt_1``; also ``subgroup_sd``.
        """
        if not self._subgroup_cols:
            raise ValueError("subgroup_effects needs CoxModel(..., subgroups=[...]).")
        trt = self._draws(dt, "treatment_log_hr")[:, None]
        slh = self._draws(dt, "subgroup_log_hr")
        allv = np.concatenate([trt, slh], axis=1)
        hr = np.exp(allv)
        q = np.quantile(hr, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2], axis=0)
        names = ["reference"] + [nm for nm, _ in self._subgroup_cols]
        out = pd.DataFrame({"hr_median": q[1], "hr_mean": hr.mean(0), "ci_low": q[0], "ci_high": q[2],
                            "p_hr_lt_1": (hr < 1).mean(0)}, index=pd.Index(names, name="subgroup"))
        out.attrs.update({"ci_prob": ci_prob, "ci_kind": "eti"})
        return out

    # -- checks -----------------------------------------------------------------------------------------
    def log_likelihood(self, dt: xr.DataTree, *, max_draws: int | None = None) -> xr.DataTree:
        """Add the pointwise log-likelihood group (variable ``loglik``) to ``dt`` and return it.

        Piecewise: one term per patient (its full-likelihood contribution). Partial: the
        partial likelihood does not factorise over patients; the per-event-contribution form is
        used - one term per event ``w_i [eta_i - log R(t_i)]`` (Efron: the tie group's
        denominator shared equally among its events) - dim ``event``; censored patients enter
        only through the risk sets. LOO then leaves out one event's term, not one patient.
        """
        post = dt["posterior"]
        nc, nd = post.sizes["chain"], post.sizes["draw"]
        if self.baseline == "piecewise":
            terms = self._piecewise_terms(dt)
            dim, coord = "patient", np.arange(self.sd.n)
        else:
            eta = self._eta_draws(dt)
            st = self._risk
            use_entry = self.sd.entry is not None and bool(np.any(self.sd.entry > 0))
            contrib = cox_loglik_terms(eta, st, ties=self.ties, use_entry=use_entry)
            ev = np.flatnonzero(self.sd.event > 0)
            terms = contrib[:, ev]
            dim, coord = "event", ev
        arr = terms.reshape(nc, nd, -1)
        ds = xr.Dataset({"loglik": (("chain", "draw", dim), arr)},
                        coords={"chain": post["chain"].to_numpy(), "draw": post["draw"].to_numpy(), dim: coord})
        dt["log_likelihood"] = xr.DataTree(ds)
        return dt

    def _piecewise_terms(self, dt) -> np.ndarray:
        sd = self.sd
        arr = self.data_arrays()
        lam = self._patient_rates(dt, None)                      # (S, n, J)
        H = np.einsum("snj,nj->sn", lam, arr["exposure"])
        _, interval = piecewise_exposure(sd.time, self.cut_points, sd.entry)
        lam_exit = np.take_along_axis(lam, interval[None, :, None], axis=2)[:, :, 0]
        w = arr["weights"]
        return w * (sd.event * np.log(lam_exit) - H)

    def loo(self, dt: xr.DataTree, **kwargs: Any):
        """PSIS-LOO (``arviz_stats.loo``) from :meth:`log_likelihood` (added if missing)."""
        from arviz_stats import loo

        if "log_likelihood" not in dt.children:
            self.log_likelihood(dt)
        return loo(dt, var_name="loglik", **kwargs)

    def ppc_km(self, dt: xr.DataTree, *, by: str | None = None, times: Sequence[float] | None = None,
               n_draws: int = 200, random_seed: Any = None, ci_prob: float = CI_PROB) -> pd.DataFrame:
        """Posterior predictive Kaplan-Meier check (piecewise).

        For ``n_draws`` posterior draws, new event times are simulated for every patient from
        the fitted piecewise hazard and the observed censoring is applied: a censored patient
        keeps its censoring time; a patient who died gets a censoring time drawn from the
        reverse Kaplan-Meier (censoring) distribution conditional on exceeding the observed
        death time (and administrative censoring at the last follow-up). The Kaplan-Meier curve
        of each replicate is compared with the observed one.

        Returns columns ``[<by>, "time", "observed", "median", "ci_low", "ci_high"]``.
        """
        self._require_piecewise("ppc_km")
        sd = self.sd
        rng = np.random.default_rng(random_seed)
        tmax = float(np.max(sd.time))
        times = np.linspace(0, tmax, 50) if times is None else np.asarray(times, float)
        lam = self._patient_rates(dt, n_draws)                   # (S, n, J)
        S = lam.shape[0]
        cuts = np.concatenate([[0.0], self.cut_points])
        widths = np.diff(self.cut_points, prepend=0.0)
        # censoring times
        cens_t, cens_p = _reverse_km(sd.time, sd.event)
        levels, masks = self._groups(by)
        reps = np.empty((S, len(levels), times.size))
        for s in range(S):
            # event times by inversion of the piecewise cumulative hazard
            Hc = np.concatenate([np.zeros((sd.n, 1)), np.cumsum(lam[s, :, :-1] * widths, axis=1)], axis=1)
            e = rng.exponential(size=sd.n)
            j = np.sum(Hc <= e[:, None], axis=1) - 1
            ii = np.arange(sd.n)
            T = cuts[j] + (e - Hc[ii, j]) / lam[s, ii, j]
            C = np.where(sd.event > 0, _draw_censoring(rng, sd.time, cens_t, cens_p, tmax), sd.time)
            obs = np.minimum(T, C)
            d = (T <= C).astype(int)
            for gi, m in enumerate(masks):
                reps[s, gi] = _km_at(obs[m], d[m], times)
        rows = []
        for gi, (lev, m) in enumerate(zip(levels, masks, strict=True)):
            observed = _km_at(sd.time[m], sd.event[m], times)
            q = np.quantile(reps[:, gi], [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2], axis=0)
            rows.append(pd.DataFrame({**({by: lev} if by else {}), "time": times, "observed": observed,
                                      "median": q[1], "ci_low": q[0], "ci_high": q[2]}))
        out = pd.concat(rows, ignore_index=True)
        out.attrs.update({"ci_prob": ci_prob, "ci_kind": "eti", "n_draws": S})
        return out


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _row_order(sd: SurvivalData) -> np.ndarray:
    """Stable permutation sorting the rows by (stratum, time): the partial model's row order."""
    strata = np.zeros(sd.n, np.int64) if sd.strata is None else np.asarray(sd.strata, np.int64)
    return np.lexsort((np.asarray(sd.time, float), strata))


def _band_frame(da: xr.DataArray, by: str | None, ci_prob: float, value: str) -> pd.DataFrame:
    S = da.to_numpy()
    q = np.quantile(S, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2], axis=0)
    mean = S.mean(axis=0)
    rows = []
    for gi, g in enumerate(da["group"].to_numpy()):
        part = pd.DataFrame({value: da[value].to_numpy(), "median": q[1, gi], "mean": mean[gi],
                             "ci_low": q[0, gi], "ci_high": q[2, gi]})
        if by:
            part.insert(0, by, g)
        rows.append(part)
    out = pd.concat(rows, ignore_index=True)
    out.attrs.update({"ci_prob": ci_prob, "ci_kind": "eti", "standardisation": "group's own patients"})
    return out


def _crossing(grid: np.ndarray, s: np.ndarray, level: float = 0.5) -> float:
    below = np.flatnonzero(s <= level)
    if below.size == 0:
        return np.inf
    k = below[0]
    if k == 0:
        return float(grid[0])
    s0, s1 = s[k - 1], s[k]
    return float(grid[k - 1] + (s0 - level) / (s0 - s1) * (grid[k] - grid[k - 1]))


def _km_at(time: np.ndarray, event: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Kaplan-Meier estimate evaluated at ``times`` (right-continuous step function)."""
    ut, inv = np.unique(time, return_inverse=True)
    d = np.bincount(inv, weights=event, minlength=ut.size)
    c = np.bincount(inv, minlength=ut.size)
    at_risk = c[::-1].cumsum()[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(np.where(at_risk > 0, 1 - d / at_risk, 1.0))
    k = np.searchsorted(ut, times, side="right") - 1
    return np.where(k >= 0, surv[np.maximum(k, 0)], 1.0)


def _reverse_km(time, event):
    """Censoring distribution (KM with censorings as events): support points and masses."""
    ut = np.unique(time)
    G = _km_at(time, 1 - np.asarray(event), ut)
    mass = -np.diff(np.concatenate([[1.0], G]))
    return ut, mass


def _draw_censoring(rng, t_obs, cens_t, cens_p, tmax):
    """Draw C_i > t_obs_i from the censoring distribution; inf mass beyond -> tmax (administrative)."""
    out = np.empty(t_obs.size)
    tail = max(0.0, 1.0 - cens_p.sum())
    for i, t in enumerate(t_obs):
        m = cens_t > t
        p = np.append(cens_p[m], tail)
        tot = p.sum()
        if tot <= 0:
            out[i] = tmax
            continue
        k = rng.choice(p.size, p=p / tot)
        out[i] = cens_t[m][k] if k < m.sum() else tmax
    return out
