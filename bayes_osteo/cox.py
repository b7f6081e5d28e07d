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
    (:class:`bayes_osteo.components.CoxPartialLogLik`). The baseline hazard is not modelled;
    survival curves (:meth:`CoxModel.survival`, ``median_survival``, ``rmst``) use the
    Breslow (or Efron) estimator of the cumulative baseline hazard per posterior draw of
    ``beta`` - the posterior mode of the baseline under a vague gamma-process prior given
    ``beta`` (Kalbfleisch 1978) - so their bands carry the uncertainty in ``beta`` only.
    ``time_varying=True`` uses the counting-process (episode-split) form of the partial
    likelihood: each subject is split at the cut points into episodes ``(start, stop]`` (entry =
    start), the treatment log-HR in interval ``j`` is ``treatment_log_hr + g_j`` with the same
    random-walk prior on ``g`` as below (rows replicated: at most ``n x J`` episodes).
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
    cox_op_keys,
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

__all__ = ["CoxModel", "breslow_cumulative_hazard", "kaplan_meier", "logrank"]

#: Size from which nutpie is the default sampler. Measured (benchmarks/bench_cox.py, 2 cores, 4 x
#: 1000 draws, fit wall time): PyMC 7.4 s vs nutpie 12.3 s at n = 125 (nutpie's compile is 6-12 s
#: of that), 9.9 s vs 9.1 s at n = 10^4; at 10^5 PyMC's NUTS sampled for 90 s where nutpie took
#: 53 s with the previous kernel (measured once, fresh processes, 2026-11-26): nutpie's threads
#: run the numba log-density with no per-step Python. The crossover lies near 10^4.
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
        Interior cut points of the piecewise baseline, or (``baseline="partial"`` with
        ``time_varying=True``, and only then) of the intervals of the time-varying treatment
        effect (strictly increasing, inside ``(0, max follow-up)``). Default: ``n_intervals``
        event-time quantiles.
    n_intervals : int, optional
        Number of intervals when ``cut_points`` is not given (default
        ``clip(events // 10, 2, 10)``).
    subgroups : sequence of str, optional
        Covariates (0/1 columns, or dummy-coded categoricals) defining pre-specified subgroups;
        each gets a partially pooled treatment-by-subgroup deviation. Their main effects must be
        among the covariates.
    time_varying : bool
        Treatment x interval effect with a random-walk prior. Piecewise: on the baseline
        intervals; partial: through the episode-split (counting-process) partial likelihood.
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
            if sd.treatment is None:
                raise ValueError("time_varying=True needs a treatment column (SurvivalData.from_frame(..., treatment=...)).")
            self.priors["time_varying_sd"] = _as_prior(tv_prior, "time_varying_sd") if tv_prior else _TV_DEFAULT.deepcopy()
        elif tv_prior is not None:
            raise ValueError("A 'time_varying_sd' prior was given but time_varying=False.")
        # subgroups
        self.subgroups = list(subgroups) if subgroups else []
        self._subgroup_cols = self._resolve_subgroups(self.subgroups)
        # intervals: the piecewise baseline's, or those of the partial model's time-varying effect
        if baseline == "piecewise" or self.time_varying:
            self.cut_points = self._resolve_cuts(cut_points, n_intervals)
        else:
            if cut_points is not None or n_intervals is not None:
                raise ValueError("cut_points / n_intervals apply to baseline='piecewise', or to "
                                 "baseline='partial' with time_varying=True, only.")
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
            if baseline == "partial" and not self.time_varying else None
        self._baseline_steps: _BreslowBaseline | None = None

    @property
    def _fused(self) -> bool:
        """Whether the partial likelihood is the fused Op of ``X beta`` (no frailty, subgroups
        or time-varying effect): its data then holds ``XT`` (p x n) instead of ``X``."""
        return (self.baseline == "partial" and not self.time_varying and self.sd.cluster is None
                and not self._subgroup_cols)

    @property
    def _use_entry(self) -> bool:
        """Whether the partial-likelihood Op applies left truncation (always for episodes)."""
        if self.baseline == "partial" and self.time_varying:
            return True
        return self.sd.entry is not None and bool(np.any(self.sd.entry > 0))

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
        """The intervals (piecewise baseline, or time-varying effect): ``interval``, ``start``, ``end``."""
        if self.cut_points is None:
            raise ValueError("Intervals exist for baseline='piecewise' or time_varying=True only.")
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
        piecewise model keeps this model's cut points. The time-varying partial model holds
        episodes (rows split at this model's cut points), so their number follows the new data;
        the arrays keep their rank, which is all a compiled model needs. The partial model
        without frailty, subgroups or a time-varying effect holds the design as ``XT``
        (covariates x rows, sorted by stratum and time), what its fused likelihood Op reads.
        """
        sd = self.sd if sd is None else sd
        if self.baseline == "partial" and not self._use_entry and sd.entry is not None \
                and bool(np.any(sd.entry > 0)):
            raise ValueError(
                f"data_arrays: the new data has entry times > 0 ({sd.entry_col!r}) but this model was "
                "built without left truncation (its data has none), so its compiled likelihood would "
                "ignore them. Build CoxModel on data with entry times instead.")
        if self.baseline == "partial" and self.time_varying:
            self._check_like_model(sd)
            arrays = self._episode_arrays(sd)
        else:
            arrays = self._subject_arrays(sd)
        if self.baseline == "partial":
            # only the risk arrays the Op reads: each pm.Data costs nutpie compile time
            keep = set(cox_op_keys(use_entry=self._use_entry))
            arrays = {k: v for k, v in arrays.items() if k not in RISK_KEYS or k in keep}
        if self._fused:
            # the fused Op reads the design as covariates x rows (contiguous per covariate)
            arrays["XT"] = np.ascontiguousarray(arrays.pop("X").T)
        return arrays

    def _check_like_model(self, sd: SurvivalData) -> None:
        if sd.n != self.sd.n or sd.p != self.sd.p:
            raise ValueError(f"data_arrays: the new data must have n={self.sd.n} rows and p={self.sd.p} "
                             f"covariates like the model's; got n={sd.n}, p={sd.p}.")
        for role, a, b in (("strata", sd.strata_levels, self.sd.strata_levels),
                           ("cluster", sd.cluster_levels, self.sd.cluster_levels)):
            if (a is None) != (b is None) or (a is not None and len(a) != len(b)):
                raise ValueError(f"data_arrays: the new data's {role} levels differ from the model's.")

    def _subject_arrays(self, sd: SurvivalData, *, risk: bool = True) -> dict[str, np.ndarray]:
        """One row per subject (partial: sorted by stratum, time); see :meth:`data_arrays`."""
        self._check_like_model(sd)
        out: dict[str, np.ndarray] = {}
        if self.baseline == "partial":
            # rows sorted ONCE by (stratum, time): the Op then streams through them with no
            # gathers (its ``order`` is the identity); per-patient outputs are mapped back
            # through ``_row_order`` so the user-facing order is unchanged.
            row = _row_order(sd)
            out["X"] = np.ascontiguousarray(sd.X[row], dtype=float)
            if risk:
                out.update(cox_risk_structure(*(None if a is None else np.asarray(a)[row]
                                                for a in (sd.time, sd.event, sd.weights, sd.strata,
                                                          sd.entry))))
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

    def _episodes(self, sd: SurvivalData) -> dict[str, np.ndarray]:
        """Counting-process split of ``sd`` at the cut points, episodes sorted by (stratum, stop).

        Subject ``i`` at risk on ``(entry_i, time_i]`` gets one episode ``(max(entry_i, c_{j-1}),
        min(time_i, c_j)]`` per interval ``j`` it spends time in; only the episode holding
        ``time_i`` carries the event. Keys ``subject`` (row of ``sd``), ``interval``, ``start``,
        ``stop``, ``event``.
        """
        cuts = np.asarray(self.cut_points, float)
        expo, interval = piecewise_exposure(sd.time, cuts, sd.entry)
        subj, j = np.nonzero(expo > 0)
        lo = np.concatenate([[0.0], cuts])
        hi = np.concatenate([cuts, [np.inf]])
        entry = np.zeros(sd.n) if sd.entry is None else np.asarray(sd.entry, float)
        start = np.maximum(entry[subj], lo[j])
        stop = np.minimum(np.asarray(sd.time, float)[subj], hi[j])
        event = ((sd.event[subj] > 0) & (j == interval[subj])).astype(float)
        strata = np.zeros(subj.size, np.int64) if sd.strata is None else np.asarray(sd.strata, np.int64)[subj]
        order = np.lexsort((stop, strata))
        return {"subject": subj[order], "interval": j[order].astype(np.int64), "start": start[order],
                "stop": stop[order], "event": event[order]}

    def _episode_arrays(self, sd: SurvivalData) -> dict[str, np.ndarray]:
        """The time-varying partial model's arrays: one row per episode (see :meth:`_episodes`)."""
        ep = self._episodes(sd)
        s = ep["subject"]
        out: dict[str, np.ndarray] = {"X": np.ascontiguousarray(sd.X[s], dtype=float)}
        out.update(cox_risk_structure(ep["stop"], ep["event"],
                                      None if sd.weights is None else np.asarray(sd.weights, float)[s],
                                      None if sd.strata is None else np.asarray(sd.strata)[s],
                                      ep["start"]))
        out["episode_interval"] = ep["interval"]
        if sd.cluster is not None:
            out["cluster_index"] = sd.cluster.astype(np.int64)[s]
        out["treatment_indicator"] = sd.column(sd.treatment).astype(float)[s]
        if self._subgroup_cols:
            out["subgroup_matrix"] = np.ascontiguousarray(
                np.column_stack([sd.X[:, k] for _, k in self._subgroup_cols]).astype(float)[s])
        return out

    def build(self) -> pm.Model:
        sd = self.sd
        arrays = self.data_arrays()
        coords: dict[str, list] = {"covariate": list(sd.covariate_names)}
        if sd.cluster is not None:
            coords["cluster"] = [str(c) for c in sd.cluster_levels]
        if self._subgroup_cols:
            coords["subgroup"] = [nm for nm, _ in self._subgroup_cols]
        if self.baseline == "piecewise" or self.time_varying:
            coords["interval"] = self._interval_labels()
        if self.baseline == "piecewise":
            if sd.strata is not None:
                coords["stratum"] = [str(s) for s in sd.strata_levels]
        with pm.Model(coords=coords) as model:
            data = {k: pm.Data(k, v) for k, v in arrays.items()}
            log_hr = log_hr_block(self.priors, sd.covariate_names, sd.treatment)
            eta = None if self._fused else pt.dot(data["X"], log_hr)
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
                use_entry = self._use_entry
                risk = [data[k] for k in cox_op_keys(use_entry=use_entry)]
                if self.time_varying:
                    # episode rows: the treated get g_j on top of the constant effect in interval j
                    g = self._time_varying_block(model)
                    eta = eta + data["treatment_indicator"] * g[data["episode_interval"]]
                    ll = CoxPartialLogLik(self.ties, use_entry, presorted=True)(eta, *risk)[0]
                elif self._fused:
                    # eta = X beta only: one fused Op (X beta, likelihood, X' grad in numba)
                    ll = CoxPartialLogLikX(self.ties, use_entry)(log_hr, data["XT"], *risk)[0]
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
            g = self._time_varying_block(model)
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

    def _time_varying_block(self, model):
        """``g`` (dim ``interval``): a mean-zero random walk with SD ``time_varying_sd``; adds
        ``log_hr_time = treatment_log_hr + g`` and ``hr_time``."""
        tv_sd = create(self.priors["time_varying_sd"], "time_varying_sd")
        g = random_walk("time_varying_deviation", tv_sd, "interval", center=True)
        lht = pm.Deterministic("log_hr_time", model["treatment_log_hr"] + g, dims="interval")
        pm.Deterministic("hr_time", pt.exp(lht), dims="interval")
        return g

    # -- fitting ------------------------------------------------------------------------------------
    def find_map(self, *, method: str = "L-BFGS-B", maxeval: int = 50_000, **kwargs: Any) -> dict[str, xr.DataArray]:
        """Posterior mode (see :meth:`BayesModel.find_map`); under vague priors the MLE.

        Tight optimiser tolerances by default (``ftol=1e-14, gtol=1e-9``), so the mode matches
        maximum-likelihood software to ~1e-5 on the log-HR scale. The time-varying partial
        model starts ``time_varying_sd`` at 0.5 unless ``start`` says otherwise.
        """
        if self.baseline == "partial" and self.time_varying:
            # start the random-walk SD at a moderate value: from a wide prior's initial point
            # (its scale) the first L-BFGS step moves g by thousands, to linear predictors whose
            # range (~7000) the partial-likelihood kernel evaluates as +inf with left truncation
            start = dict(kwargs.pop("start", None) or {})
            if not {"time_varying_sd", "time_varying_sd_log__"} & set(start):
                start["time_varying_sd"] = 0.5
            kwargs["start"] = start
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
    def _draws(dt: xr.DataTree, name: str, max_draws: int | None = None, *,
               index: np.ndarray | None = None) -> np.ndarray:
        """Posterior draws of ``name`` stacked to (sample, ...): thinned evenly to ``max_draws``,
        or the samples ``index`` (positions in the stacked chain x draw order)."""
        post = dt["posterior"]
        if name not in post.data_vars:
            raise ValueError(f"The result has no posterior variable {name!r}; was it fitted by this model?")
        da = post[name]
        arr = da.stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()
        if index is not None:
            return arr[index]
        if max_draws is not None and arr.shape[0] > max_draws:
            arr = arr[_thin(arr.shape[0], max_draws)]
        return arr

    def _eta_draws(self, dt: xr.DataTree, sd: SurvivalData | None = None, max_draws=None,
                   X: np.ndarray | None = None, *, index: np.ndarray | None = None) -> np.ndarray:
        """Linear predictor per draw (draws x n) as in the model (piecewise: centred X).

        Columns in the data's own row order (the partial model's sorted rows are mapped back).
        One row per subject also for the time-varying partial model (its ``g`` is not included).
        ``index`` selects samples as in :meth:`_draws`.
        """
        sd = self.sd if sd is None else sd
        arr = self._subject_arrays(sd, risk=False)
        partial = self.baseline == "partial"
        row = _row_order(sd) if partial else None
        if X is None:
            Xm = arr["X"]
        else:               # a caller's X is in the data's row order
            Xm = np.asarray(X, float)[row] if partial else X
        beta = self._draws(dt, "log_hr", max_draws, index=index)
        eta = beta @ Xm.T
        if sd.cluster is not None:
            eta = eta + self._draws(dt, "frailty", max_draws, index=index)[:, arr["cluster_index"]]
        if self._subgroup_cols:
            delta = self._draws(dt, "subgroup_delta", max_draws, index=index)
            eta = eta + arr["treatment_indicator"][None, :] * (delta @ arr["subgroup_matrix"].T)
        if partial:
            out = np.empty_like(eta)
            out[:, row] = eta
            return out
        return eta

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

        Piecewise: ``H_i(t) = exp(eta_i) int_0^t h0(u) du`` with the sampled baseline.
        Partial: ``H_i(t) = exp(eta_i) H0_s(t)`` with ``H0_s`` the Breslow estimator of the
        cumulative baseline hazard given draw ``s``'s ``beta`` (Efron's form with
        ``ties="efron"``, as R's ``survfit.coxph``), per stratum, from the risk sets
        ``entry_i < t_k <= time_i``::

            H0_s(t) = sum_{t_k <= t} sum_{l<m_k} (W_k / m_k) / (R_k - (l / m_k) D_k)   (Efron)
            H0_s(t) = sum_{t_k <= t} W_k / R_k                                          (Breslow)

        over the distinct event times ``t_k`` (``m_k`` events, weights summing to ``W_k``),
        ``R_k = sum_{risk set} w_i exp(eta_i)``, ``D_k`` the same over the events at ``t_k``.
        Given ``beta`` this is the posterior mode of the baseline under a vague gamma-process
        prior (Kalbfleisch 1978), the standard Bayesian companion of the partial likelihood;
        the band therefore carries the uncertainty in ``beta`` (and frailties, subgroup and
        time-varying effects) only, not in the baseline: it understates the total uncertainty
        (the piecewise model samples the baseline). ``S_i`` is a step function, constant after
        the last event time of the stratum. With ``time_varying=True`` the treated carry
        ``exp(g_j)`` on the increments of interval ``j``.
        """
        times = np.atleast_1d(np.asarray(times, float))
        if np.any(times < 0) or not np.all(np.isfinite(times)):
            raise ValueError(f"times must be finite and >= 0; got {times.tolist()}.")
        levels, masks = self._groups(by)
        if self.baseline == "partial":
            out = self._partial_group_curves(dt, times, masks, max_draws)
        else:
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
                            name="survival", attrs={"by": by or "", "standardisation": "group's own patients",
                                                    "baseline": self._baseline_label()})

    def survival(self, dt: xr.DataTree, times: Sequence[float], *, by: str | None = None,
                 ci_prob: float = CI_PROB) -> pd.DataFrame:
        """Posterior S(t) per group: columns ``[<by>, "time", "median", "mean", "ci_low", "ci_high"]``.

        See :meth:`survival_draws` for how covariates are averaged (each group's own patients)
        and, for ``baseline="partial"``, how the baseline is estimated (Breslow/Efron per draw;
        the band reflects the uncertainty in ``beta`` only).
        """
        da = self.survival_draws(dt, times, by=by)
        out = _band_frame(da, by, ci_prob, value="time")
        out.attrs["baseline"] = da.attrs["baseline"]
        return out

    def median_survival(self, dt: xr.DataTree, *, by: str | None = None, ci_prob: float = CI_PROB,
                        horizon: float | None = None, n_grid: int = 400,
                        max_draws: int | None = 1000) -> pd.DataFrame:
        """Posterior of the median survival time of the marginal curve of each group.

        Piecewise: found on a grid of ``n_grid`` points up to ``horizon`` (default: the last
        follow-up time) with linear interpolation. Partial: the marginal curve is a step function
        (see :meth:`survival_draws`), so its median is exact, ``inf{t <= horizon: S_g(t) <=
        0.5}`` - an event time - found by bisection over the distinct event times (``n_grid`` is
        not used). Draws whose curve stays above 0.5 up to the horizon count as "not reached"
        (``p_reached`` < 1; the interval then uses +inf for them). Columns ``[<by>, "median",
        "ci_low", "ci_high", "p_reached"]``.
        """
        horizon = float(np.max(self.sd.time)) if horizon is None else float(horizon)
        if not horizon > 0:
            raise ValueError(f"horizon must be > 0; got {horizon}.")
        if self.baseline == "partial":
            levels, masks = self._groups(by)
            groups = list(levels) if by else ["all"]
            meds = self._partial_medians(dt, masks, horizon, max_draws).T
        else:
            grid = np.linspace(0, horizon, n_grid)
            da = self.survival_draws(dt, grid, by=by, max_draws=max_draws)
            S = da.to_numpy()
            groups = list(da["group"].to_numpy())
            meds = [np.array([_crossing(grid, s) for s in S[:, gi, :]]) for gi in range(len(groups))]
        rows = []
        for g, med in zip(groups, meds, strict=True):
            reached = np.isfinite(med)
            lo, hi = np.quantile(med, [(1 - ci_prob) / 2, (1 + ci_prob) / 2]) if reached.mean() > 0 else (np.inf, np.inf)
            rows.append({**({by: g} if by else {}), "median": float(np.median(med)),
                         "ci_low": float(lo), "ci_high": float(hi), "p_reached": float(reached.mean())})
        out = pd.DataFrame(rows)
        out.attrs.update({"ci_prob": ci_prob, "ci_kind": "eti", "horizon": horizon,
                          "baseline": self._baseline_label()})
        return out

    def rmst(self, dt: xr.DataTree, horizon: float, *, by: str | None = None,
             ci_prob: float = CI_PROB, max_draws: int | None = 2000) -> pd.DataFrame:
        """Restricted mean survival time up to ``horizon`` per group (exact integral).

        ``RMST_g = mean_{i in g} int_0^horizon S_i(t) dt``. Piecewise: integrated exactly within
        each interval (``S_i`` is exponential there). Partial: ``S_i`` is the step function of
        :meth:`survival_draws`, integrated over its steps; the per-patient integral, a smooth
        function of ``eta_i``, is interpolated from Chebyshev nodes (absolute error below
        ``6e-12 * horizon``; see ``_BreslowBaseline.mean_rmst``), so the cost grows with
        patients + event times, not their product. Columns ``[<by>, "rmst", "mean", "ci_low",
        "ci_high", "horizon"]`` where ``rmst`` is the posterior median.
        """
        horizon = float(horizon)
        if not horizon > 0:
            raise ValueError(f"horizon must be > 0; got {horizon}.")
        levels, masks = self._groups(by)
        if self.baseline == "partial":
            rms = list(self._partial_rmst(dt, masks, horizon, max_draws).T)
        else:
            lam = self._patient_rates(dt, max_draws)                 # (S, n, J)
            lo = np.concatenate([[0.0], self.cut_points])
            hi = np.concatenate([self.cut_points, [np.inf]])
            L = np.clip(np.minimum(hi, horizon) - lo, 0, None)       # (J,)
            H_start = np.concatenate([np.zeros(lam.shape[:2] + (1,)), np.cumsum(lam * L, axis=2)[:, :, :-1]], axis=2)
            with np.errstate(divide="ignore", invalid="ignore"):
                piece = np.where(lam * L > 1e-12, -np.expm1(-lam * L) / lam, L)
            rm = np.sum(np.exp(-H_start) * piece, axis=2)            # (S, n)
            rms = [rm[:, m].mean(axis=1) for m in masks]
        rows = []
        for lev, r in zip(levels, rms, strict=True):
            q = np.quantile(r, [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2])
            rows.append({**({by: lev} if by else {}), "rmst": q[1], "mean": r.mean(), "ci_low": q[0],
                         "ci_high": q[2], "horizon": horizon})
        out = pd.DataFrame(rows)
        out.attrs.update({"ci_prob": ci_prob, "ci_kind": "eti", "baseline": self._baseline_label()})
        return out

    # -- partial model: Breslow / Efron baseline per posterior draw ------------------------------
    def _baseline_label(self) -> str:
        if self.baseline == "piecewise":
            return "piecewise (sampled)"
        return f"{'Efron' if self.ties == 'efron' else 'Breslow'} estimator per draw (beta uncertainty only)"

    def _steps(self) -> _BreslowBaseline:
        """The risk-set bookkeeping of the partial model's baseline estimator (built once)."""
        if self._baseline_steps is None:
            sd = self.sd
            tv = self.time_varying
            self._baseline_steps = _BreslowBaseline(
                sd.time, sd.event, weights=sd.weights, strata=sd.strata, entry=sd.entry,
                n_strata=1 if sd.strata is None else len(sd.strata_levels), ties=self.ties,
                treated=sd.column(sd.treatment) if tv else None, cut_points=self.cut_points if tv else None)
        return self._baseline_steps

    def _breslow_chunks(self, dt: xr.DataTree, max_draws: int | None, width: int = 0):
        """Yield ``(positions, a, cumhaz)`` per chunk of (evenly thinned) posterior draws.

        ``a = exp(eta - shift)`` (chunk x n, data order) and ``cumhaz`` the matching shifted
        cumulative baseline hazards (:meth:`_BreslowBaseline.cumhaz`), so that
        ``H_i(t) = a_i * cumhaz(t)``. Chunks keep each (draws x n) work array, and the caller's
        (draws x ``width``) ones, near 24 MB.
        """
        steps = self._steps()
        post = dt["posterior"]
        n_all = post.sizes["chain"] * post.sizes["draw"]
        index = _thin(n_all, max_draws) if max_draws is not None and n_all > max_draws else np.arange(n_all)
        size = _chunk_rows(max(self.sd.n + steps.n_times, width))
        for a0 in range(0, index.size, size):
            ix = index[a0:a0 + size]
            eta = self._eta_draws(dt, index=ix)
            g = self._draws(dt, "time_varying_deviation", index=ix) if self.time_varying else None
            a, M = steps.cumhaz(eta, g)
            yield slice(a0, a0 + ix.size), a, M

    def _n_kept(self, dt: xr.DataTree, max_draws: int | None) -> int:
        post = dt["posterior"]
        n_all = post.sizes["chain"] * post.sizes["draw"]
        return n_all if max_draws is None else min(n_all, max_draws)

    def _partial_group_curves(self, dt, times, masks, max_draws) -> np.ndarray:
        steps = self._steps()
        out = np.empty((self._n_kept(dt, max_draws), len(masks), times.size))
        for sl, a, M in self._breslow_chunks(dt, max_draws, width=steps.n_combo * times.size):
            Mt = steps.at(M, times)
            for gi, m in enumerate(masks):
                out[sl, gi] = steps.mean_survival(a, Mt, m)
        return out

    def _partial_medians(self, dt, masks, horizon, max_draws) -> np.ndarray:
        steps = self._steps()
        U = steps.union_times(horizon)
        out = np.empty((self._n_kept(dt, max_draws), len(masks)))
        for sl, a, M in self._breslow_chunks(dt, max_draws, width=steps.n_combo * U.size):
            MU = steps.at(M, U)
            for gi, m in enumerate(masks):
                if U.size == 0:                                  # no event before the horizon
                    out[sl, gi] = np.inf
                    continue
                k = steps.first_below(a, MU, m, 0.5)
                out[sl, gi] = np.where(k < U.size, U[np.minimum(k, U.size - 1)], np.inf)
        return out

    def _partial_rmst(self, dt, masks, horizon, max_draws) -> np.ndarray:
        steps = self._steps()
        out = np.empty((self._n_kept(dt, max_draws), len(masks)))
        for sl, a, M in self._breslow_chunks(dt, max_draws):
            out[sl] = steps.mean_rmst(a, M, masks, horizon)
        return out

    def hr_over_time(self, dt: xr.DataTree, *, ci_prob: float = CI_PROB) -> pd.DataFrame:
        """Plot-ready treatment HR per interval (``time_varying=True``, either baseline).

        Columns ``interval, start, end, time`` (interval midpoint; the last, open interval uses
        its start + half the previous width), ``median, mean, ci_low, ci_high`` (HR scale) and
        ``p_hr_lt_1``.
        """
        if not self.time_varying:
            raise ValueError("hr_over_time needs CoxModel(..., time_varying=True).")
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
    def log_likelihood(self, dt: xr.DataTree) -> xr.DataTree:
        """Add the pointwise log-likelihood group (variable ``loglik``) to ``dt`` and return it.

        Piecewise: one term per patient (its full-likelihood contribution). Partial: the
        partial likelihood does not factorise over patients; the per-event-contribution form is
        used - one term per event ``w_i [eta_i - log R(t_i)]`` (Efron: the tie group's
        denominator shared equally among its events) - dim ``event``; censored patients enter
        only through the risk sets. LOO then leaves out one event's term, not one patient.
        Time-varying partial model: the same terms from the episode-split likelihood (``eta_i``
        and the risk set at ``t_i`` carry the treatment effect of ``t_i``'s interval); the
        coordinate is still the patient row of the event. Every posterior draw gets its terms
        (LOO needs the log-likelihood draw for draw with the posterior), so there is no
        ``max_draws`` here.
        """
        post = dt["posterior"]
        nc, nd = post.sizes["chain"], post.sizes["draw"]
        if self.baseline == "piecewise":
            terms = self._piecewise_terms(dt)
            dim, coord = "patient", np.arange(self.sd.n)
        elif self.time_varying:
            terms, coord = self._episode_terms(dt)
            dim = "event"
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

    def _episode_terms(self, dt) -> tuple[np.ndarray, np.ndarray]:
        """Per-event partial-likelihood terms of the time-varying partial model (draws x events),
        and the events' patient rows (ascending)."""
        sd = self.sd
        ep = self._episodes(sd)
        arr = self._episode_arrays(sd)
        risk = {k: arr[k] for k in RISK_KEYS}
        subj, iv = ep["subject"], ep["interval"]
        z = sd.column(sd.treatment)[subj]
        evp = np.flatnonzero(ep["event"] > 0)
        order = np.argsort(subj[evp], kind="stable")
        evp = evp[order]
        eta = self._eta_draws(dt)                                # (S, n) patients, no g
        g = self._draws(dt, "time_varying_deviation")            # (S, J)
        out = np.empty((eta.shape[0], evp.size))
        size = _chunk_rows(subj.size)
        for a0 in range(0, eta.shape[0], size):
            eta_ep = eta[a0:a0 + size, subj] + z * g[a0:a0 + size, iv]
            out[a0:a0 + size] = cox_loglik_terms(eta_ep, risk, ties=self.ties, use_entry=True)[:, evp]
        return out, subj[evp]

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
        """Posterior predictive Kaplan-Meier check.

        For ``n_draws`` posterior draws, new event times are simulated for every patient from
        the fitted hazard and the observed censoring is applied: a censored patient
        keeps its censoring time; a patient who died gets a censoring time drawn from the
        reverse Kaplan-Meier (censoring) distribution conditional on exceeding the observed
        death time (and administrative censoring at the last follow-up). The Kaplan-Meier curve
        of each replicate is compared with the observed one. Piecewise: inversion of the
        sampled piecewise cumulative hazard. Partial: inversion of the step function
        ``a_i H0_s(t)`` of :meth:`survival_draws`, so replicate events fall on observed event
        times of the patient's stratum (none after its last one: such patients are censored).

        Returns columns ``[<by>, "time", "observed", "median", "ci_low", "ci_high"]``.
        """
        sd = self.sd
        rng = np.random.default_rng(random_seed)
        tmax = float(np.max(sd.time))
        times = np.linspace(0, tmax, 50) if times is None else np.asarray(times, float)
        if self.baseline == "partial":
            steps = self._steps()
            chunks = list(self._breslow_chunks(dt, n_draws))
            a_all = np.concatenate([a for _, a, _ in chunks])
            M_all = [tuple(np.concatenate([M[st][k] for _, _, M in chunks]) for k in (0, 1))
                     for st in range(steps.n_strata)]
            S = a_all.shape[0]

            def event_times(s, e):
                return steps.event_times(a_all[s], [(M0[s], M1[s]) for M0, M1 in M_all], e)
        else:
            lam = self._patient_rates(dt, n_draws)               # (S, n, J)
            S = lam.shape[0]
            cuts = np.concatenate([[0.0], self.cut_points])
            widths = np.diff(self.cut_points, prepend=0.0)
            ii = np.arange(sd.n)

            def event_times(s, e):
                # inversion of the piecewise cumulative hazard
                Hc = np.concatenate([np.zeros((sd.n, 1)), np.cumsum(lam[s, :, :-1] * widths, axis=1)], axis=1)
                j = np.sum(Hc <= e[:, None], axis=1) - 1
                return cuts[j] + (e - Hc[ii, j]) / lam[s, ii, j]
        # censoring times
        cens_t, cens_p = _reverse_km(sd.time, sd.event)
        levels, masks = self._groups(by)
        reps = np.empty((S, len(levels), times.size))
        for s in range(S):
            e = rng.exponential(size=sd.n)
            T = event_times(s, e)
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


def _thin(n_all: int, max_draws: int) -> np.ndarray:
    """Positions of ``max_draws`` evenly spaced samples out of ``n_all`` (the one thinning rule)."""
    return np.linspace(0, n_all - 1, max_draws).round().astype(int)


#: Elements (float64) per draws x subjects work array of the partial model's survival code (~24 MB).
_WORK_ELEMS = 3_000_000


def _chunk_rows(width: int) -> int:
    """Draws per chunk so that a (draws x width) float array stays near ``_WORK_ELEMS``."""
    return max(1, _WORK_ELEMS // max(1, int(width)))


class _BreslowBaseline:
    """Risk-set bookkeeping for the Breslow / Efron baseline of the partial model (sorted once).

    Per stratum: the distinct event times ``u_k``; subject ``i`` is at risk at ``u_k`` iff
    ``entry_i < u_k <= time_i``, i.e. ``q_i <= k < p_i`` with ``p_i = #{u <= time_i}`` and
    ``q_i = #{u <= entry_i}``. Risk-set totals for a chunk of draws are then reverse cumulative
    sums over subjects sorted by ``p`` (minus the same over ``q``), accumulated from the last
    event time backwards as in the likelihood kernel (small late risk sets stay accurate).
    Everything is O(draws x n) per chunk after the one-off sort.

    ``treated`` and ``cut_points`` (time-varying model): the treated carry ``exp(g_j)`` at the
    event times of interval ``j``; curves are then kept per (stratum, treated) "combo".
    """

    def __init__(self, time, event, *, weights=None, strata=None, entry=None, n_strata=None,
                 ties: str = "efron", treated=None, cut_points=None):
        if ties not in ("efron", "breslow"):
            raise ValueError(f"ties must be 'efron' or 'breslow'; got {ties!r}.")
        time = np.asarray(time, float)
        n = time.size
        event = np.asarray(event) > 0
        self.w = np.ones(n) if weights is None else np.asarray(weights, float)
        strata = np.zeros(n, np.int64) if strata is None else np.asarray(strata, np.int64)
        entry = np.zeros(n) if entry is None else np.asarray(entry, float)
        self.n = n
        self.efron = ties == "efron"
        self.n_strata = int(strata.max()) + 1 if n_strata is None else int(n_strata)
        self.tv = treated is not None
        self.z = None if treated is None else np.asarray(treated, float)
        cuts = None if cut_points is None else np.asarray(cut_points, float)
        self.combo = strata * 2 + (self.z > 0) if self.tv else strata.copy()
        self.n_combo = self.n_strata * (2 if self.tv else 1)
        self.parts = []
        for s in range(self.n_strata):
            idx = np.flatnonzero(strata == s)
            t, d, e, w = time[idx], event[idx], entry[idx], self.w[idx]
            u = np.unique(t[d])
            K = u.size
            p = np.searchsorted(u, t, side="right")
            q = np.searchsorted(u, e, side="right")
            part = {"idx": idx, "u": u, "K": K,
                    "order_p": np.argsort(-p, kind="stable"),
                    "cnt_p": idx.size - np.searchsorted(np.sort(p), np.arange(K), side="right")}
            if np.any(q > 0):
                part["order_q"] = np.argsort(-q, kind="stable")
                part["cnt_q"] = idx.size - np.searchsorted(np.sort(q), np.arange(K), side="right")
            ev = np.flatnonzero(d)
            kev = p[ev] - 1                                      # u[kev] == t[ev]
            o = np.argsort(kev, kind="stable")
            ev, kev = ev[o], kev[o]
            starts = np.flatnonzero(np.r_[True, kev[1:] != kev[:-1]]) if ev.size else np.zeros(0, np.int64)
            part["ev"], part["starts"] = ev, starts
            part["m"] = np.diff(np.r_[starts, ev.size]).astype(float)
            part["W"] = np.add.reduceat(w[ev], starts) if ev.size else np.zeros(0)
            if self.tv:
                part["interval"] = np.searchsorted(cuts, u, side="left")
            self.parts.append(part)
        self.n_times = sum(pt_["K"] for pt_ in self.parts)

    # -- risk-set sums --------------------------------------------------------------------------
    @staticmethod
    def _reverse_sums(x, order, cnt):
        """``out[:, k] = sum_{i: key_i > k} x[:, i]`` from the subjects sorted by key, descending."""
        cs = np.zeros((x.shape[0], x.shape[1] + 1))
        np.cumsum(x[:, order], axis=1, out=cs[:, 1:])
        return cs[:, cnt]

    def _risk(self, x, part):
        R = self._reverse_sums(x, part["order_p"], part["cnt_p"])
        if "order_q" in part:
            R -= self._reverse_sums(x, part["order_q"], part["cnt_q"])
        return R

    def _events(self, x, part):
        if part["K"] == 0:
            return np.zeros((x.shape[0], 0))
        return np.add.reduceat(x[:, part["ev"]], part["starts"], axis=1)

    def _increments(self, R, D, part):
        W, m = part["W"], part["m"]
        if not self.efron or not np.any(m > 1):
            return W / R
        dH = np.zeros_like(R)
        for j in range(int(m.max())):                         # total work: draws x events
            ks = np.flatnonzero(m > j)
            dH[:, ks] += (W[ks] / m[ks]) / (R[:, ks] - (j / m[ks]) * D[:, ks])
        return dH

    def cumhaz(self, eta, g=None):
        """Shifted cumulative baseline hazards for a chunk of draws.

        Parameters
        ----------
        eta : array (draws, n)
            Linear predictors (data row order; no time-varying part).
        g : array (draws, J), optional
            Time-varying treatment deviations (``treated`` model only).

        Returns
        -------
        a : array (draws, n)
            ``exp(eta - shift)`` with ``shift = max_i eta_i`` per draw: ``H_i(t) = a_i M(t)``.
        M : list over strata of ``(M0, M1)``, arrays (draws, K_s)
            ``M0(u_k)`` the cumulative baseline hazard at linear predictor ``shift``; ``M1`` the
            treated's (increments times ``exp(g_j)``), ``M0`` itself without ``g``.
        """
        eta = np.atleast_2d(np.asarray(eta, float))
        a = np.exp(eta - eta.max(axis=1)[:, None])
        r = a * self.w
        out = []
        for part in self.parts:
            rs = r[:, part["idx"]]
            if not self.tv:
                R = self._risk(rs, part)
                D = self._events(rs, part) if self.efron else None
                dH = self._increments(R, D, part)
                M0 = np.cumsum(dH, axis=1)
                out.append((M0, M0))
                continue
            z = self.z[part["idx"]]
            r1, r0 = rs * z, rs * (1.0 - z)
            eg = np.exp(g[:, part["interval"]])
            R = self._risk(r0, part) + eg * self._risk(r1, part)
            D = self._events(r0, part) + eg * self._events(r1, part) if self.efron else None
            dH = self._increments(R, D, part)
            out.append((np.cumsum(dH, axis=1), np.cumsum(dH * eg, axis=1)))
        return a, out

    # -- evaluation -----------------------------------------------------------------------------
    def union_times(self, horizon: float) -> np.ndarray:
        """Distinct event times of all strata up to ``horizon`` (inclusive)."""
        u = np.unique(np.concatenate([p["u"] for p in self.parts]))
        return u[u <= horizon]

    def at(self, M, times) -> np.ndarray:
        """Cumulative hazards (draws, n_combo, T) at ``times`` (right-continuous steps)."""
        times = np.asarray(times, float)
        c = M[0][0].shape[0]
        out = np.zeros((c, self.n_combo, times.size))
        for s, part in enumerate(self.parts):
            if part["K"] == 0:
                continue
            k = np.searchsorted(part["u"], times, side="right") - 1
            ok = k >= 0
            if self.tv:
                out[:, 2 * s, ok] = M[s][0][:, k[ok]]
                out[:, 2 * s + 1, ok] = M[s][1][:, k[ok]]
            else:
                out[:, s, ok] = M[s][0][:, k[ok]]
        return out

    def _members(self, mask):
        return [(v, np.flatnonzero(mask & (self.combo == v))) for v in np.unique(self.combo[mask])]

    def mean_survival(self, a, Mt, mask) -> np.ndarray:
        """``mean_{i in mask} exp(-a_i Mt[combo_i, t])`` per draw: (draws, T)."""
        c, _, T = Mt.shape
        total = np.zeros((c, T))
        for v, sel in self._members(mask):
            av = a[:, sel]
            step = max(1, _WORK_ELEMS // max(1, av.size))
            for t0 in range(0, T, step):                      # (draws, times, patients)
                buf = Mt[:, v, t0:t0 + step, None] * av[:, None, :]
                np.negative(buf, out=buf)
                np.exp(buf, out=buf)
                total[:, t0:t0 + step] += buf.sum(axis=2)
        return total / np.count_nonzero(mask)

    def first_below(self, a, MU, mask, level: float) -> np.ndarray:
        """Per draw, the first index ``k`` with ``mean_i exp(-a_i MU[combo_i, k]) <= level``
        (``MU.shape[2]`` when none): bisection, the marginal curve being non-increasing."""
        c, _, K = MU.shape
        lo = np.zeros(c, np.int64)
        hi = np.full(c, K, np.int64)
        rows = np.arange(c)
        members = self._members(mask)
        nm = np.count_nonzero(mask)
        while np.any(lo < hi):
            act = lo < hi
            mid = (lo + hi) // 2
            Mmid = MU[rows, :, np.minimum(mid, K - 1)]          # (draws, n_combo)
            surv = sum(np.exp(-a[:, sel] * Mmid[:, v, None]).sum(axis=1) for v, sel in members) / nm
            below = surv <= level
            hi = np.where(act & below, mid, hi)
            lo = np.where(act & ~below, mid + 1, lo)
        return lo

    #: Piecewise Chebyshev interpolation in x = log a used by :meth:`mean_rmst`: unit-length
    #: segments with 14 nodes interpolate y -> exp(-e^y), under any shift, to < 2e-12
    #: (measured: max over shifts in [-40, 10] of the sup-norm error, 1.5e-12).
    _CHEB_LEN = 1.0
    _CHEB_N = 14

    def mean_rmst(self, a, M, masks, horizon: float) -> np.ndarray:
        """``mean_{i in mask} int_0^horizon exp(-a_i M_i(t)) dt`` per draw and mask: (draws, G).

        For each (stratum, treated) curve ``F(x) = int_0^horizon exp(-e^x M(t)) dt =
        min(u_0, horizon) + sum_{u_k < horizon} (min(u_{k+1}, horizon) - u_k) exp(-e^x M_k)``
        is a positive combination of shifted copies of ``y -> exp(-e^y)`` with weights summing to
        at most ``horizon``. It is evaluated at Chebyshev nodes (14 per unit of ``x = log a``
        over the patients' range) and interpolated (barycentric formula) at each patient's
        ``x``: absolute error below ``1e-11 * horizon`` whatever the data (the bound for one
        shifted term), at O(draws x (n + nodes x K)) exponentials instead of O(draws x n x K).
        """
        c = a.shape[0]
        N, ell = self._CHEB_N, self._CHEB_LEN
        j = np.arange(N)
        tnode = ell * (1 + np.cos(np.pi * (j + 0.5) / N)) / 2   # nodes in (0, ell)
        wb = (-1.0) ** j * np.sin(np.pi * (j + 0.5) / N)         # barycentric weights, 1st kind
        with np.errstate(divide="ignore"):
            x_all = np.maximum(np.log(a), -745.0)                 # <= 0 (a = exp(eta - max eta))
        rows = np.arange(c)[:, None]
        per_patient = np.zeros((c, self.n))                      # int_0^horizon S_i(t) dt
        for v in range(self.n_combo):
            sel = np.flatnonzero(self.combo == v)
            if sel.size == 0:
                continue
            s, z = divmod(v, 2) if self.tv else (v, 0)
            u = self.parts[s]["u"]
            keep = u < horizon
            if not keep.any():                                    # S = 1 up to the horizon
                per_patient[:, sel] = horizon
                continue
            widths = np.diff(np.append(u[keep], horizon))
            Mk = M[s][z][:, keep]                                 # (draws, K)
            x = x_all[:, sel]
            x0 = ell * np.floor(x.min() / ell)                   # segments [x0 + m ell, x0 + (m+1) ell]
            n_seg = max(1, int(round(-x0 / ell)))
            en = np.exp(x0 + ell * np.arange(n_seg)[:, None] + tnode).ravel()
            F = np.full((c, en.size), u[0])                       # S = 1 on [0, u_0)
            kc = max(1, _WORK_ELEMS // max(1, c * en.size))
            for k0 in range(0, widths.size, kc):
                buf = en[None, :, None] * Mk[:, None, k0:k0 + kc]
                np.negative(buf, out=buf)
                np.exp(buf, out=buf)
                F += buf @ widths[k0:k0 + kc]
            F = F.reshape(c, n_seg, N)
            seg = np.clip(np.floor((x - x0) / ell).astype(np.int64), 0, n_seg - 1)
            pc = max(1, _WORK_ELEMS // max(1, c * N))
            for p0 in range(0, sel.size, pc):
                sg = seg[:, p0:p0 + pc]
                xl = x[:, p0:p0 + pc] - (x0 + ell * sg)           # position in the segment
                Fs = F[rows, sg]                                  # (draws, patients, N)
                with np.errstate(divide="ignore", invalid="ignore"):
                    q = np.subtract(xl[:, :, None], tnode)
                    np.divide(wb, q, out=q)
                    val = np.einsum("cpj,cpj->cp", q, Fs) / q.sum(axis=2)
                hit = ~np.isfinite(val)                           # exactly on a node: its value
                if hit.any():
                    jj = np.argmin(np.abs(xl[hit][:, None] - tnode), axis=1)
                    val[hit] = Fs[hit, jj]
                per_patient[:, sel[p0:p0 + pc]] = val
        return np.stack([per_patient[:, m].mean(axis=1) for m in masks], axis=1)

    def event_times(self, a, M, e) -> np.ndarray:
        """Event times by inversion of ``a_i M(t)`` for one draw (``a`` (n,), ``M`` per stratum
        ``(M0, M1)`` of shape (K,), ``e`` unit exponentials): ``inf`` beyond the last step."""
        T = np.full(self.n, np.inf)
        for v in range(self.n_combo):
            sel = np.flatnonzero(self.combo == v)
            s, z = divmod(v, 2) if self.tv else (v, 0)
            part = self.parts[s]
            if sel.size == 0 or part["K"] == 0:
                continue
            k = np.searchsorted(M[s][z], e[sel] / a[sel], side="left")
            T[sel] = np.where(k < part["K"], part["u"][np.minimum(k, part["K"] - 1)], np.inf)
        return T


def breslow_cumulative_hazard(eta, time, event, *, weights=None, strata=None, entry=None,
                              ties: str = "efron") -> list[tuple[np.ndarray, np.ndarray]]:
    """Breslow (or Efron) estimator of the cumulative baseline hazard at linear predictor 0.

    ``H0(t) = sum_{t_k <= t} dH0(t_k)`` over the distinct event times of each stratum, with
    ``dH0 = W_k / R_k`` (Breslow) or ``sum_{l<m_k} (W_k/m_k) / (R_k - (l/m_k) D_k)`` (Efron, as
    R's ``survfit.coxph``); ``R_k = sum w_i exp(eta_i)`` over the risk set ``entry_i < t_k <=
    time_i`` of the stratum, ``D_k`` the same over the ``m_k`` events at ``t_k`` whose weights
    sum to ``W_k``. This is what :meth:`CoxModel.survival` uses per posterior draw.

    Parameters
    ----------
    eta : array (n,) or (draws, n)
        Linear predictor(s).
    time, event, weights, strata, entry : arrays (n,)
        As in :class:`~bayes_osteo.data.SurvivalData` (``strata`` as integer codes).
    ties : {"efron", "breslow"}

    Returns
    -------
    list of (times, H0), one per stratum code ``0, 1, ...``
        ``H0`` has shape (K,) for a 1-D ``eta``, else (draws, K).

    Examples
    --------
    >>> import numpy as np
    >>> [(t, H)] = breslow_cumulative_hazard(np.zeros(4), [1, 2, 2, 3], [1, 1, 1, 0], ties="breslow")
    >>> t.tolist(), H.round(4).tolist()
    ([1.0, 2.0], [0.25, 0.9167])
    """
    eta = np.asarray(eta, float)
    one = eta.ndim == 1
    steps = _BreslowBaseline(time, event, weights=weights, strata=strata, entry=entry, ties=ties)
    eta2 = np.atleast_2d(eta)
    _, M = steps.cumhaz(eta2)
    scale = np.exp(-eta2.max(axis=1))[:, None]                 # back to linear predictor 0
    out = []
    for part, (M0, _) in zip(steps.parts, M, strict=True):
        H = M0 * scale
        out.append((part["u"], H[0] if one else H))
    return out


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
