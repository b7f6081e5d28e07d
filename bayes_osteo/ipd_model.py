"""One-stage Bayesian meta-analysis of individual patient data (IPD).

Pools patient rows from several studies (real IPD, or IPD rebuilt from published Kaplan-Meier
curves by :func:`bayes_osteo.reconstruct_ipd`) in one hierarchical proportional-hazards model.

Model
-----
Subject ``i`` of study ``s`` with treatment ``x_i`` (0/1) has the piecewise-constant hazard
``h_i(t) = exp(alpha_{s,j} + theta_s x_i)`` for ``t`` in interval ``j`` (cut points shared by
all studies, by default at quantiles of the pooled event times)::

    theta_s       = log_hr + tau * z_s,          z_s ~ N(0, 1)       (random effects)
    log_hr        ~ prior "log_hr"               (default Normal(0, 2.5))
    tau           ~ prior "tau"                  (default HalfNormal(0.5))
    alpha_{s,0}   = log(D_s / E_s) + b_s,        b_s ~ prior "log_baseline_level"
    alpha_{s,j}   = alpha_{s,j-1} + smoothing_sd * u_{s,j}, u ~ N(0, 1)   (random walk)
    smoothing_sd  ~ prior "smoothing_sd"

so the baseline hazard is stratified by study (each study its own curve, smoothed over time)
and the treatment effect varies between studies around ``log_hr`` with SD ``tau``, exactly the
structure of the two-stage normal-normal model of :class:`bayes_osteo.MetaAnalysis`.
``log_hr_new = log_hr + tau z_new`` is the effect in a new study. ``D_s / E_s`` (events over
follow-up time) only centres the level prior of each study.

The likelihood is the piecewise-exponential (Poisson) likelihood
``sum_i sum_j [d_ij eta_ij - E_ij exp(eta_ij)]`` computed from each subject's exposure ``E_ij``
(time at risk in interval ``j``; an ``n x J`` matrix, rows never replicated). Because
``eta_ij`` depends on a subject only through (study, arm, interval), the sums of events and
exposure per study x arm x interval are sufficient statistics and the model evaluates exactly
the same likelihood from those ``K x 2 x J`` totals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from .base import BayesModel
from .components import default_cut_points, piecewise_exposure, random_walk
from .data import DataValidationError, StudyEstimates, SurvivalData, fingerprint
from .priors import create

__all__ = ["IPDMetaAnalysis", "ipd_meta", "stack_studies"]


def stack_studies(studies: Mapping[str, pd.DataFrame] | Sequence[pd.DataFrame] | pd.DataFrame, *,
                  study: str = "study") -> pd.DataFrame:
    """One long frame with a ``study`` column from a dict/list of per-study frames.

    A dict's keys name the studies; a list's studies are named ``study_1``, ``study_2``, ...
    A single frame is returned as is (it must already hold the ``study`` column).
    """
    if isinstance(studies, pd.DataFrame):
        if study not in studies.columns:
            raise DataValidationError(
                f"The long frame has no {study!r} column; name the study column with study=, or "
                f"pass a dict {{name: frame}} of per-study frames.")
        return studies
    if isinstance(studies, Mapping):
        items = list(studies.items())
    elif isinstance(studies, Sequence) and not isinstance(studies, str):
        items = [(f"study_{i + 1}", f) for i, f in enumerate(studies)]
    else:
        raise TypeError("studies must be a dict {name: DataFrame}, a list of DataFrames or one "
                        f"long DataFrame with a study column; got {type(studies).__name__}.")
    if not items:
        raise DataValidationError("No studies given.")
    frames = []
    for name, f in items:
        if not isinstance(f, pd.DataFrame):
            raise TypeError(f"Study {name!r}: expected a DataFrame, got {type(f).__name__}.")
        frames.append(f.assign(**{study: str(name)}))
    return pd.concat(frames, ignore_index=True)


class IPDMetaAnalysis(BayesModel):
    """One-stage Bayesian IPD meta-analysis (see the module docstring for the model).

    Parameters
    ----------
    studies : dict of DataFrame, list of DataFrame, or DataFrame
        Per-study frames with columns ``duration``, ``event`` and ``treatment`` (0/1), or one
        long frame with a ``study`` column as well.
    effects : {"random", "fixed"}
        Random: study-specific ``theta`` around ``log_hr`` with SD ``tau``; fixed: one log-HR.
    duration, event, treatment, study : str
        Column names.
    cut_points : sequence of float, optional
        Interior cut points of the piecewise baseline (shared by all studies).
    n_intervals : int
        Number of intervals when ``cut_points`` is not given (event-time quantiles).
    smoothing : bool
        Random-walk smoothing prior on each study's log baseline (default). ``False`` gives
        independent ``log_baseline_level`` priors per interval (for likelihood checks).
    priors : dict, optional
        Over the defaults for ``log_hr``, ``tau``, ``smoothing_sd``, ``log_baseline_level``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> def trial(n, hr):
    ...     x = np.repeat([0, 1], n)
    ...     t = rng.exponential(12 / hr ** x)
    ...     c = rng.uniform(6, 30, 2 * n)
    ...     return pd.DataFrame({"time": np.minimum(t, c), "event": (t <= c).astype(int),
    ...                          "treatment": x})
    >>> ma = IPDMetaAnalysis({"A": trial(60, 0.6), "B": trial(80, 0.7)}, n_intervals=3)
    >>> ma.data_arrays()["events"].shape   # study x arm x interval
    (2, 2, 3)
    """

    kind = "ipd_meta"
    prior_names = ("log_hr", "tau", "smoothing_sd", "log_baseline_level")
    patient_level = True
    default_sampler = None

    def __init__(self, studies, *, effects: str = "random", duration: str = "time",
                 event: str = "event", treatment: str = "treatment", study: str = "study",
                 cut_points: Sequence[float] | None = None, n_intervals: int = 6,
                 smoothing: bool = True, priors: Mapping[str, Any] | None = None):
        super().__init__(priors=priors)
        if effects not in ("random", "fixed"):
            raise ValueError(f"effects must be 'random' or 'fixed'; got {effects!r}.")
        self.effects = effects
        self.smoothing = bool(smoothing)
        self.columns = {"duration": duration, "event": event, "treatment": treatment,
                        "study": study}
        long = stack_studies(studies, study=study)
        for col in (duration, event, treatment):
            if col not in long.columns:
                raise DataValidationError(
                    f"Column {col!r} is missing from the study data (columns: "
                    f"{list(long.columns)}); name yours with duration=/event=/treatment=.")
        self.sd = SurvivalData.from_frame(long, duration=duration, event=event,
                                          treatment=treatment,
                                          strata=study)
        x = self.sd.column(treatment)
        if not np.isin(x, (0, 1)).all():
            raise DataValidationError(f"Column {treatment!r} must be 0/1 (control/treated).")
        self.study_names = [str(s) for s in self.sd.strata_levels]
        k = len(self.study_names)
        for s in range(k):
            m = self.sd.strata == s
            name = self.study_names[s]
            if len(np.unique(x[m])) < 2:
                raise DataValidationError(f"Study {name!r} has only one arm; each study needs "
                                          f"treated (1) and control (0) patients.")
            if self.sd.event[m].sum() == 0:
                raise DataValidationError(f"Study {name!r} has no events; it carries no "
                                          f"information on the hazard ratio.")
        if effects == "random" and k < 2:
            raise DataValidationError("A random-effects meta-analysis needs at least 2 studies.")
        if cut_points is None:
            cuts = default_cut_points(self.sd.time, self.sd.event, int(n_intervals))
        else:
            cuts = np.unique(np.asarray(cut_points, float))
            if cuts.size and (cuts[0] <= 0 or not np.all(np.isfinite(cuts))):
                raise ValueError(f"cut_points must be finite and > 0; got {list(cut_points)}.")
        self.cut_points = cuts
        self.n_intervals = int(cuts.size + 1)
        self.x = x.astype(np.int64)
        self._arrays = self._sufficient_statistics()

    # -- data -------------------------------------------------------------------------------
    def exposure(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-subject exposure matrix ``(n, J)`` and the interval index of each exit time."""
        return piecewise_exposure(self.sd.time, self.cut_points)

    def _sufficient_statistics(self) -> dict[str, np.ndarray]:
        E_sub, interval = self.exposure()
        k, J = len(self.study_names), self.n_intervals
        s = self.sd.strata.astype(np.int64)
        E = np.zeros((k, 2, J))
        D = np.zeros((k, 2, J))
        np.add.at(E, (s, self.x), E_sub)
        np.add.at(D, (s, self.x, interval), self.sd.event.astype(float))
        crude = np.log(D.sum(axis=(1, 2)) / E.sum(axis=(1, 2)))
        return {"events": D, "exposure": E, "log_rate_offset": crude}

    def data_arrays(self) -> dict[str, np.ndarray]:
        """Arrays behind the ``pm.Data`` containers (study x arm x interval totals)."""
        return {k: v.copy() for k, v in self._arrays.items()}

    def data_fingerprint(self) -> str:
        return fingerprint(self.sd.time, self.sd.event, self.x, self.sd.strata,
                           np.asarray(self.study_names, dtype=object))

    def options(self) -> dict:
        return {"effects": self.effects, "smoothing": self.smoothing,
                "cut_points": self.cut_points.tolist(), "n_intervals": self.n_intervals,
                "studies": self.study_names, **self.columns}

    # -- model ------------------------------------------------------------------------------
    def build(self) -> pm.Model:
        lo = np.concatenate([[0.0], self.cut_points])
        labels = [f"[{a:g}, {b:g})" for a, b in zip(lo, np.append(self.cut_points, np.inf),
                                                     strict=True)]
        coords = {"study": self.study_names, "arm": ["control", "treated"], "interval": labels}
        arr = self._arrays
        with pm.Model(coords=coords) as model:
            D = pm.Data("events", arr["events"], dims=("study", "arm", "interval"))
            E = pm.Data("exposure", arr["exposure"], dims=("study", "arm", "interval"))
            off = pm.Data("log_rate_offset", arr["log_rate_offset"], dims="study")
            log_hr = create(self.priors["log_hr"], "log_hr")
            pm.Deterministic("hr", pt.exp(log_hr))
            if self.effects == "random":
                tau = create(self.priors["tau"], "tau")
                z = pm.Normal("theta_z", 0.0, 1.0, dims="study")
                theta = pm.Deterministic("theta", log_hr + tau * z, dims="study")
                z_new = pm.Normal("z_new", 0.0, 1.0)
                new = pm.Deterministic("log_hr_new", log_hr + tau * z_new)
                pm.Deterministic("hr_new", pt.exp(new))
            else:
                theta = pt.ones(len(self.study_names)) * log_hr
            if self.smoothing:
                level = off + create(self.priors["log_baseline_level"], "baseline_level",
                                     dims="study")
                sm = create(self.priors["smoothing_sd"], "smoothing_sd")
                alpha = random_walk("log_baseline_hazard", sm, ("study", "interval"), level=level)
            else:
                dev = create(self.priors["log_baseline_level"], "baseline_level",
                             dims=("study", "interval"))
                alpha = pm.Deterministic("log_baseline_hazard", off[:, None] + dev,
                                         dims=("study", "interval"))
            arm = pt.as_tensor_variable(np.array([0.0, 1.0]))
            eta = alpha[:, None, :] + theta[:, None, None] * arm[None, :, None]
            pm.Potential("loglik", pt.sum(D * eta - E * pt.exp(eta)))
        return model

    def loglik(self, log_hr_by_study, log_baseline_hazard) -> float:
        """Piecewise-exponential log-likelihood summed over subjects (numpy, per-subject form).

        ``log_hr_by_study`` (K,) and ``log_baseline_hazard`` (K, J); the model evaluates the
        same value from the sufficient statistics.
        """
        E_sub, interval = self.exposure()
        s = self.sd.strata.astype(np.int64)
        eta = (np.asarray(log_baseline_hazard, float)[s]
               + (np.asarray(log_hr_by_study, float)[s] * self.x)[:, None])
        d = np.zeros_like(E_sub)
        d[np.arange(d.shape[0]), interval] = self.sd.event
        return float(np.sum(d * eta - E_sub * np.exp(eta)))

    def postprocess(self, dt: xr.DataTree) -> xr.DataTree:
        """Add ``I2`` (Higgins-Thompson, within-study variances ``1/D_control + 1/D_treated``)."""
        if self.effects != "random" or "posterior" not in dt.children:
            return dt
        D = self._arrays["events"].sum(axis=2)
        v = 1.0 / np.maximum(D[:, 0], 0.5) + 1.0 / np.maximum(D[:, 1], 0.5)
        w = 1.0 / v
        k = w.size
        s2 = (k - 1) * w.sum() / (w.sum() ** 2 - (w ** 2).sum())
        post = dt["posterior"].to_dataset()
        tau2 = post["tau"] ** 2
        post["I2"] = tau2 / (tau2 + s2)
        post["I2"].attrs["within_study_variance"] = float(s2)
        dt["posterior"] = xr.DataTree(post)
        return dt

    def fit(self, draws: int = 1000, tune: int = 1000, chains: int = 4, random_seed: Any = None,
            progressbar: bool = True, **kwargs: Any) -> xr.DataTree:
        """NUTS (see :meth:`BayesModel.fit`); ``target_accept`` defaults to 0.95 because with few
        studies ``tau`` near zero makes a funnel that smaller steps traverse without divergences."""
        kwargs.setdefault("target_accept", 0.95)
        return super().fit(draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                           progressbar=progressbar, **kwargs)

    # -- two-stage counterpart ----------------------------------------------------------------
    def study_estimates(self, *, ties: str = "efron") -> StudyEstimates:
        """Per-study Cox log-HR and SE (statsmodels ``PHReg``): the two-stage route's input.

        Feed the result to :class:`bayes_osteo.MetaAnalysis` to compare the one-stage and
        two-stage answers.
        """
        from statsmodels.duration.hazard_regression import PHReg

        y, se = [], []
        for s in range(len(self.study_names)):
            m = self.sd.strata == s
            fit = PHReg(self.sd.time[m], self.x[m, None].astype(float),
                        status=self.sd.event[m].astype(float), ties=ties).fit()
            y.append(float(fit.params[0]))
            se.append(float(fit.bse[0]))
        return StudyEstimates(log_hr=np.array(y), se=np.array(se), study=self.study_names)


def ipd_meta(studies, *, effects: str = "random", priors: Mapping[str, Any] | None = None,
             cut_points: Sequence[float] | None = None, n_intervals: int = 6,
             duration: str = "time", event: str = "event", treatment: str = "treatment",
             study: str = "study", draws: int = 1000, tune: int = 1000, chains: int = 4,
             random_seed: Any = None, progressbar: bool = False,
             **fit_kwargs: Any) -> xr.DataTree:
    """Fit a one-stage IPD meta-analysis and return the posterior (see :class:`IPDMetaAnalysis`).

    Result variables: ``log_hr``, ``hr``, ``tau``, ``theta`` (dim ``study``), ``log_hr_new``,
    ``hr_new``, ``I2`` (as in :class:`bayes_osteo.MetaAnalysis`) and ``log_baseline_hazard``
    (dims ``study``, ``interval``), with provenance in ``attrs``.
    """
    model = IPDMetaAnalysis(studies, effects=effects, priors=priors, cut_points=cut_points,
                            n_intervals=n_intervals, duration=duration, event=event,
                            treatment=treatment, study=study)
    return model.fit(draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                     progressbar=progressbar, **fit_kwargs)
