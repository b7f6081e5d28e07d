"""Bayesian meta-analysis of (log) hazard ratios: the normal-normal hierarchical model.

Model, per group ``g`` (factor x endpoint) of studies ``i`` with known standard errors ``s_i``::

    y_i ~ N(theta_i, s_i^2)
    theta_i = mu_g + x_i' beta_g + tau_g z_i,   z_i ~ N(0, 1)     (non-centred random effects)
    mu_g ~ prior "log_hr"  (Normal),  tau_g ~ prior "tau"  (fixed effect: tau_g = 0)
    beta_g ~ prior "beta"  (meta-regression on centred study-level moderators x_i, optional)

``share_tau=True`` replaces the independent ``tau_g`` by a hierarchical prior,
``tau_g = tau_pop * exp(tau_spread * u_g)``, ``u_g ~ N(0, 1)``, ``tau_pop ~`` prior "tau",
``tau_spread ~ HalfNormal(0.5)`` (prior "tau_spread"), so groups with few studies borrow
heterogeneity information from the others. Derived: ``hr = exp(log_hr)``, a new study's
``log_hr_new = mu_g + tau_g z_new`` (``hr_new``), and ``I2 = tau^2 / (tau^2 + s^2)`` with the
Higgins-Thompson typical within-study variance ``s^2`` of the group (a residual I^2 under
meta-regression). With moderators, ``log_hr`` is the pooled effect at the group's mean moderator
values.

Without moderators and ``share_tau`` the posterior is computed exactly
(:mod:`bayes_osteo.meta_exact`: 1-D quadrature over tau, mu conjugate given tau); ``fit(method=
"exact")`` returns i.i.d. draws from it in the same DataTree layout NUTS gives. The frequentist
cross-check (fixed, DerSimonian-Laird, REML, Knapp-Hartung) is :mod:`bayes_osteo.meta_frequentist`.

One-study groups: a random-effects analysis of a single study cannot separate tau from the
study's own error, so it is an error unless the group is fixed-effect (``effects={group:
"fixed"}``) or ``share_tau=True`` lends it the other groups' heterogeneity (NUTS). Groups with
fewer than 4 studies get a warning naming them (tau is then informed mostly by its prior).

Examples
--------
>>> import bayes_osteo as bo
>>> st = bo.StudyEstimates([-1.2, -0.9, -1.5, -1.1], [0.3, 0.4, 0.5, 0.35], study=list("abcd"))
>>> ma = bo.MetaAnalysis(st, priors={"tau": bo.Prior("HalfNormal", sigma=0.5)})
>>> round(ma.exact_posterior().mean("log_hr"), 2)
-1.14
>>> dt = ma.fit(method="exact", draws=500, random_seed=1)
>>> sorted(v for v in dt["posterior"].data_vars)
['I2', 'hr', 'hr_new', 'log_hr', 'log_hr_new', 'tau', 'theta']
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy import optimize, special

from .base import BayesModel, annotate
from .data import StudyEstimates
from .meta_exact import ExactPosterior, normal_prior_params, tau_prior_dist
from .meta_frequentist import egger_test, frequentist_table, typical_within_variance
from .priors import Prior, _as_prior, create

__all__ = ["MetaAnalysis", "GroupedExactPosterior", "FEW_STUDIES"]

#: Groups with fewer studies than this get a warning (tau weakly identified).
FEW_STUDIES = 4
_TAU_SPREAD_DEFAULT = Prior("HalfNormal", sigma=0.5)


class GroupedExactPosterior:
    """Exact posteriors of several groups; methods take ``group=`` (``None``: dict over groups).

    ``ex[group]`` is that group's :class:`~bayes_osteo.meta_exact.ExactPosterior`.
    """

    def __init__(self, posteriors: Mapping[Any, ExactPosterior]):
        self.posteriors = dict(posteriors)
        self.groups = list(self.posteriors)

    def __getitem__(self, group) -> ExactPosterior:
        try:
            return self.posteriors[group]
        except KeyError:
            raise KeyError(f"No group {group!r}; groups are {self.groups}.") from None

    def _call(self, name: str, *args, group=None):
        if group is None:
            return {g: getattr(ex, name)(*args) for g, ex in self.posteriors.items()}
        return getattr(self[group], name)(*args)

    def mean(self, var: str = "log_hr", *, group=None):
        return self._call("mean", var, group=group)

    def sd(self, var: str = "log_hr", *, group=None):
        return self._call("sd", var, group=group)

    def var(self, var: str = "log_hr", *, group=None):
        return self._call("var", var, group=group)

    def quantile(self, var: str, q, *, group=None):
        return self._call("quantile", var, q, group=group)

    def cdf(self, var: str, x, *, group=None):
        return self._call("cdf", var, x, group=group)

    def pdf(self, var: str, x, *, group=None):
        return self._call("pdf", var, x, group=group)

    def interval(self, var: str = "log_hr", prob: float = 0.95, *, group=None):
        return self._call("interval", var, prob, group=group)

    def summary(self, prob: float = 0.95) -> pd.DataFrame:
        frames = []
        for g, ex in self.posteriors.items():
            t = ex.summary(prob)
            t.insert(0, "group", g)
            frames.append(t)
        out = pd.concat(frames)
        out.index.name = "variable"
        return out

    @property
    def log_marginal_likelihood(self) -> dict:
        return {g: ex.log_marginal_likelihood for g, ex in self.posteriors.items()}

    def __repr__(self) -> str:
        return f"GroupedExactPosterior(groups={self.groups})"


class MetaAnalysis(BayesModel):
    """Bayesian random- or fixed-effects meta-analysis of log hazard ratios (see module docstring).

    Parameters
    ----------
    st : StudyEstimates
        Study log-HRs and SEs; ``st.group`` gives one analysis per group (dim ``group``).
    effects : {"random", "fixed"} or mapping group -> "random"/"fixed"
        Model per group (groups missing from a mapping are random-effects).
    priors : mapping, optional
        ``log_hr`` (Normal; default Normal(0, 2.5)), ``tau`` (default HalfNormal(0.5)), ``beta``
        (moderator slopes; default Normal(0, 2.5)), ``tau_spread`` (``share_tau`` only; default
        HalfNormal(0.5)).
    share_tau : bool
        Hierarchical prior on the group taus (NUTS only).
    moderators : sequence of str, optional
        Study-level covariates (columns of ``st.covariates``, else of ``st.meta``) for
        meta-regression (NUTS only); centred within each group.

    Examples
    --------
    >>> import bayes_osteo as bo
    >>> d = bo.datasets.bcg()
    >>> ma = bo.MetaAnalysis(bo.StudyEstimates(d.yi, d.sei, study=d.study))
    >>> round(float(ma.frequentist().loc["REML", "tau2"]), 4)
    0.3132
    """

    kind = "meta"
    prior_names = ("log_hr", "tau", "beta")
    patient_level = False
    #: nutpie: measured (benchmarks/bench_meta.py, 4 x 2000 iterations) at about half the wall
    #: time of PyMC's own NUTS for k = 5 and 21 even with its numba compile, and more ESS/s.
    default_sampler = "nutpie"

    def __init__(self, st: StudyEstimates, *, effects: str | Mapping[Any, str] = "random",
                 priors: Mapping[str, Any] | None = None, share_tau: bool = False,
                 moderators: Sequence[str] | None = None):
        if not isinstance(st, StudyEstimates):
            raise TypeError(f"MetaAnalysis needs a StudyEstimates object; got {type(st).__name__}. "
                            "Build one with bo.StudyEstimates(log_hr, se) or StudyEstimates.from_hr_ci(df).")
        priors = dict(priors or {})
        spread = priors.pop("tau_spread", None)
        super().__init__(priors=priors)
        if spread is not None or share_tau:
            self.priors["tau_spread"] = _as_prior(spread, "tau_spread") if spread is not None else _TAU_SPREAD_DEFAULT
        self.st = st
        self.grouped = st.group is not None
        self.groups = st.groups
        self._gidx = (np.zeros(st.k, int) if not self.grouped
                      else np.array([self.groups.index(g) for g in st.group]))
        self.share_tau = bool(share_tau)
        self._effects_arg = effects
        self.effects = self._resolve_effects(effects)
        self.moderators = list(moderators) if moderators is not None else None
        if isinstance(moderators, str):
            self.moderators = [moderators]
        self._X = self._moderator_matrix() if self.moderators else None
        self._check_sizes()
        self.study_labels = self._labels()
        self._exact: dict | None = None

    # -- validation --------------------------------------------------------------------------
    def _resolve_effects(self, effects) -> dict:
        allowed = ("random", "fixed")
        if isinstance(effects, str):
            if effects not in allowed:
                raise ValueError(f"effects must be 'random' or 'fixed' (or a mapping group -> one of them); "
                                 f"got {effects!r}.")
            return dict.fromkeys(self.groups, effects)
        if isinstance(effects, Mapping):
            if not self.grouped:
                raise ValueError("effects as a mapping needs grouped StudyEstimates (group=...); pass "
                                 "'random' or 'fixed'.")
            unknown = [g for g in effects if g not in self.groups]
            if unknown:
                raise ValueError(f"effects names group(s) {unknown} that are not in the data; groups are "
                                 f"{self.groups}.")
            bad = {g: e for g, e in effects.items() if e not in allowed}
            if bad:
                raise ValueError(f"effects values must be 'random' or 'fixed'; got {bad}.")
            return {g: effects.get(g, "random") for g in self.groups}
        raise TypeError(f"effects must be a string or a mapping; got {type(effects).__name__}.")

    def _k(self, g) -> int:
        return int(np.sum(self._gidx == self.groups.index(g)))

    def _check_sizes(self) -> None:
        rand = [g for g in self.groups if self.effects[g] == "random"]
        single = [g for g in rand if self._k(g) < 2]
        def name(g):
            return ("all studies" if g is None else repr(g))
        if single and not self.share_tau:
            where = ", ".join(name(g) for g in single)
            raise ValueError(
                f"Random-effects meta-analysis needs at least 2 studies per group; {where} has 1. "
                "A single study cannot separate between-study heterogeneity from its own error. Use "
                "effects='fixed' (or effects={group: 'fixed'} for that group), drop the group, or "
                "share_tau=True to borrow heterogeneity from other groups (method='nuts').")
        if self.share_tau and len(rand) < 2:
            raise ValueError("share_tau=True needs at least 2 random-effects groups (StudyEstimates with "
                             "group=...); with one group there is nothing to share.")
        few = [g for g in self.groups if self._k(g) < FEW_STUDIES]
        if few:
            txt = ", ".join(f"{name(g)} (k={self._k(g)})" for g in few)
            warnings.warn(f"Meta-analysis group(s) with fewer than {FEW_STUDIES} studies: {txt}. The "
                          "heterogeneity tau is then informed mostly by its prior; report the tau "
                          "prior and its sensitivity (tau_sensitivity()).", UserWarning, stacklevel=3)

    def _moderator_matrix(self) -> np.ndarray:
        src = self.st.covariates if self.st.covariates is not None else self.st.meta
        if src is None:
            raise ValueError(f"moderators={self.moderators} but the StudyEstimates carry no study-level "
                             "covariates; pass covariates=DataFrame (one row per study).")
        miss = [m for m in self.moderators if m not in src.columns]
        if miss:
            raise ValueError(f"Moderator column(s) {miss} not in the study covariates; available: "
                             f"{list(src.columns)}.")
        cols = []
        for m in self.moderators:
            x = pd.to_numeric(src[m], errors="coerce").to_numpy(float)
            if not np.all(np.isfinite(x)):
                bad = list(self.st.study[~np.isfinite(x)])
                raise ValueError(f"Moderator {m!r} must be numeric and finite (dummy-code categories); "
                                 f"studies {bad} are not.")
            cols.append(x)
        X = np.column_stack(cols)
        Xc = X.copy()
        for gi, g in enumerate(self.groups):
            m = self._gidx == gi
            Xc[m] -= X[m].mean(0)
            const = [self.moderators[j] for j in range(X.shape[1]) if np.ptp(X[m, j]) == 0]
            if const:
                raise ValueError(f"Moderator(s) {const} are constant within group "
                                 f"{'(all studies)' if g is None else repr(g)}: their slope is not "
                                 "identified; drop them or the group.")
        return Xc

    def _labels(self) -> list[str]:
        s = [str(x) for x in self.st.study]
        if not self.grouped or len(set(s)) == len(s):
            return s
        return [f"{x} [{g}]" for x, g in zip(s, self.st.group, strict=True)]

    # -- BayesModel interface ----------------------------------------------------------------
    def options(self) -> dict:
        eff = self._effects_arg if isinstance(self._effects_arg, str) else dict(self.effects)
        return {"effects": eff, "share_tau": self.share_tau, "moderators": self.moderators}

    def data_fingerprint(self) -> str:
        return self.st.fingerprint()

    def data_arrays(self, st: StudyEstimates | None = None) -> dict[str, np.ndarray]:
        """The arrays in the model's ``pm.Data`` containers (``y``, ``se``, ``moderators``).

        With ``st`` (same number of studies and the same groups, in order) the arrays for new
        estimates, so a compiled model can be reused: ``nutpie.compile_pymc_model(ma.model)
        .with_data(**ma.data_arrays(st2))``.
        """
        if st is None:
            st = self.st
        elif st.k != self.st.k or list(map(str, st.group if st.group is not None else [])) != \
                list(map(str, self.st.group if self.st.group is not None else [])):
            raise ValueError(f"data_arrays: the new StudyEstimates must have the same k ({self.st.k}) and "
                             f"groups as the model's; got k={st.k}.")
        out = {"y": np.asarray(st.log_hr, float), "se": np.asarray(st.se, float)}
        if self._X is not None:
            out["moderators"] = self._X
        return out

    def _s2_typical(self) -> np.ndarray:
        return np.array([typical_within_variance(self.st.se[self._gidx == gi]) for gi in range(len(self.groups))])

    def build(self) -> pm.Model:
        G = len(self.groups)
        coords: dict[str, Any] = {"study": self.study_labels}
        gd = "group" if self.grouped else None
        if self.grouped:
            coords["group"] = [str(g) for g in self.groups]
        if self._X is not None:
            coords["moderator"] = self.moderators
        rand = np.array([self.effects[g] == "random" for g in self.groups])
        onehot = np.eye(G)[self._gidx]  # (k, G) constant structure
        kg = onehot.sum(0)
        with pm.Model(coords=coords) as model:
            y = pm.Data("y", self.st.log_hr, dims="study")
            se = pm.Data("se", self.st.se, dims="study")
            mu = create(self.priors["log_hr"], "log_hr", dims=gd)
            loc = mu[self._gidx] if self.grouped else mu
            if self._X is not None:
                X = pm.Data("moderators", self._X, dims=("study", "moderator"))
                if self.grouped:
                    beta = create(self.priors["beta"], "beta", dims=("group", "moderator"))
                    loc = loc + (X * beta[self._gidx]).sum(-1)
                else:
                    beta = create(self.priors["beta"], "beta", dims="moderator")
                    loc = loc + pt.dot(X, beta)
            if rand.any():
                if self.share_tau:
                    tau_pop = create(self.priors["tau"], "tau_pop")
                    spread = create(self.priors["tau_spread"], "tau_spread")
                    u = pm.Normal("tau_z", 0.0, 1.0, dims="group")
                    tau = pm.Deterministic("tau", tau_pop * pt.exp(spread * u) * rand.astype(float), dims="group")
                elif rand.all():
                    tau = create(self.priors["tau"], "tau", dims=gd)
                else:
                    ridx = np.flatnonzero(rand)
                    model.add_coord("random_group", [str(self.groups[i]) for i in ridx])
                    tau_r = create(self.priors["tau"], "tau_random", dims="random_group")
                    tau = pm.Deterministic("tau", pt.set_subtensor(pt.zeros(G)[ridx], tau_r), dims="group")
                tau_i = tau[self._gidx] if self.grouped else tau
                z = pm.Normal("z", 0.0, 1.0, dims="study")
                theta = pm.Deterministic("theta", loc + tau_i * z, dims="study")
                z_new = pm.Normal("z_new", 0.0, 1.0, dims=gd)
                new = pm.Deterministic("log_hr_new", mu + tau * z_new, dims=gd)
                w = 1.0 / se**2
                sw, sw2 = pt.dot(w, onehot), pt.dot(w**2, onehot)
                s2 = pt.switch(kg > 1, (kg - 1) * sw / (sw**2 - sw2), 1.0 / sw)
                if not self.grouped:
                    s2 = s2[0]
                pm.Deterministic("I2", tau**2 / (tau**2 + s2), dims=gd)
            else:
                theta = pm.Deterministic("theta", loc + pt.zeros(self.st.k), dims="study")
                new = pm.Deterministic("log_hr_new", mu, dims=gd)
            pm.Deterministic("hr", pt.exp(mu), dims=gd)
            pm.Deterministic("hr_new", pt.exp(new), dims=gd)
            pm.Normal("y_like", mu=theta, sigma=se, observed=y, dims="study")
        return model

    # -- exact posterior -----------------------------------------------------------------------
    def _exact_check(self) -> None:
        if self._X is not None:
            raise ValueError("The exact posterior covers the model without moderators; use "
                             "fit(method='nuts') for meta-regression.")
        if self.share_tau:
            raise ValueError("share_tau=True couples the groups' taus: use fit(method='nuts').")
        normal_prior_params(self.priors["log_hr"])
        if any(e == "random" for e in self.effects.values()):
            tau_prior_dist(self.priors["tau"])

    @property
    def exact_available(self) -> bool:
        """Whether :meth:`exact_posterior` applies (no moderators, no ``share_tau``, normal log_hr
        prior, tau prior with a scipy density)."""
        try:
            self._exact_check()
        except ValueError:
            return False
        return True

    def _exact_group(self, gi: int, *, tau_prior=None, drop: int | None = None) -> ExactPosterior:
        g = self.groups[gi]
        m = self._gidx == gi
        y, s, lab = self.st.log_hr[m], self.st.se[m], np.asarray(self.study_labels, dtype=object)[m]
        if drop is not None:
            keep = np.arange(y.size) != drop
            y, s, lab = y[keep], s[keep], lab[keep]
        tp = None if (self.effects[g] == "fixed" and tau_prior is None) else (tau_prior or self.priors["tau"])
        return ExactPosterior(y, s, mu_prior=self.priors["log_hr"], tau_prior=tp, study=lab)

    def exact_posterior(self, group=None) -> ExactPosterior | GroupedExactPosterior:
        """The exact posterior (1-D quadrature over tau; see :mod:`bayes_osteo.meta_exact`).

        Ungrouped: an :class:`~bayes_osteo.meta_exact.ExactPosterior` with ``.mean/.sd/.quantile/
        .cdf/.pdf`` for ``log_hr``, ``hr``, ``tau``, ``I2``, ``log_hr_new``, ``hr_new``, ``theta``.
        Grouped: a :class:`GroupedExactPosterior` (methods take ``group=``), or one group's
        posterior when ``group`` is given. Raises ``ValueError`` when the model has no exact form
        (moderators, ``share_tau``, non-normal ``log_hr`` prior, tau prior without a density).
        """
        self._exact_check()
        if self._exact is None:
            self._exact = {g: self._exact_group(i) for i, g in enumerate(self.groups)}
        if not self.grouped:
            return self._exact[None]
        if group is not None:
            return GroupedExactPosterior(self._exact)[group]
        return GroupedExactPosterior(self._exact)

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, draws: int = 1000, tune: int = 1000, chains: int = 4, random_seed: Any = None,
            progressbar: bool = False, *, method: str = "auto", nuts_sampler: str | None = None,
            check: bool = True, **sampler_kwargs: Any) -> xr.DataTree:
        """Posterior draws as a DataTree: exact i.i.d. draws or NUTS.

        Parameters
        ----------
        draws, chains : int
            Draws per chain and chains. Exact draws are i.i.d. and split into ``chains`` chains so
            R-hat and ESS are defined (and near 1 and ``draws * chains``).
        tune : int
            NUTS tuning steps (ignored by the exact method).
        random_seed : int, optional
            Reproducible draws.
        method : {"auto", "exact", "nuts"}
            ``auto``: exact when available (:attr:`exact_available`), else NUTS.
        nuts_sampler, check, **sampler_kwargs
            As :meth:`BayesModel.fit`; ``target_accept`` defaults to 0.95.
        """
        if method not in ("auto", "exact", "nuts"):
            raise ValueError(f"method must be 'auto', 'exact' or 'nuts'; got {method!r}.")
        if method == "auto":
            method = "exact" if self.exact_available else "nuts"
        if method == "exact":
            return self._fit_exact(draws, chains, random_seed)
        sampler_kwargs.setdefault("target_accept", 0.95)
        return super().fit(draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                           progressbar=progressbar, nuts_sampler=nuts_sampler, check=check,
                           **sampler_kwargs)

    def _fit_exact(self, draws: int, chains: int, random_seed: Any) -> xr.DataTree:
        if draws < 1 or chains < 1:
            raise ValueError(f"draws and chains must be >= 1; got {draws}, {chains}.")
        exs = self.exact_posterior()
        exs = {None: exs} if not self.grouped else exs.posteriors
        seeds = np.random.SeedSequence(random_seed).spawn(len(self.groups))
        n = draws * chains
        G = len(self.groups)
        scal = {v: np.zeros((n, G)) for v in ("log_hr", "hr", "log_hr_new", "hr_new", "tau", "I2")}
        theta = np.zeros((n, self.st.k))
        for gi, g in enumerate(self.groups):
            d = exs[g].sample(n, random_seed=seeds[gi])
            for v in scal:
                if v in d:
                    scal[v][:, gi] = d[v]
            theta[:, self._gidx == gi] = d["theta"]
        any_random = any(e == "random" for e in self.effects.values())
        gdims = ("group",) if self.grouped else ()
        data = {}
        for v, arr in scal.items():
            if v in ("tau", "I2") and not any_random:
                continue
            a = arr.reshape(chains, draws, G)
            data[v] = (("chain", "draw") + gdims, a if self.grouped else a[..., 0])
        data["theta"] = (("chain", "draw", "study"), theta.reshape(chains, draws, self.st.k))
        coords = {"chain": np.arange(chains), "draw": np.arange(draws), "study": self.study_labels}
        if self.grouped:
            coords["group"] = [str(g) for g in self.groups]
        post = xr.Dataset(data, coords=coords)
        const = xr.Dataset({"y": ("study", self.st.log_hr), "se": ("study", self.st.se)},
                           coords={"study": self.study_labels})
        dt = xr.DataTree.from_dict({"posterior": post, "constant_data": const})
        return annotate(dt, model=self.kind, spec=self.spec(), random_seed=random_seed,
                        fingerprint=self.data_fingerprint(), inference="exact", draws=draws,
                        chains=chains, sampler="exact (1-D quadrature over tau, i.i.d. draws)")

    # -- frequentist cross-check and sensitivity ---------------------------------------------------
    def _per_group(self):
        for gi, g in enumerate(self.groups):
            m = self._gidx == gi
            yield gi, g, self.st.log_hr[m], self.st.se[m], np.asarray(self.study_labels, dtype=object)[m]

    def _stack(self, frames: list[tuple[Any, pd.DataFrame]]) -> pd.DataFrame:
        if not self.grouped:
            return frames[0][1]
        out = []
        for g, f in frames:
            f = f.copy()
            f.insert(0, "group", g)
            out.append(f)
        return pd.concat(out)

    def frequentist(self) -> pd.DataFrame:
        """Fixed-effect, DerSimonian-Laird and REML estimates with Knapp-Hartung CIs and prediction
        intervals (log scale, plus HR columns); grouped: a ``group`` column. See
        :func:`bayes_osteo.meta_frequentist.frequentist_table`."""
        return self._stack([(g, frequentist_table(y, s)) for _, g, y, s, _ in self._per_group()])

    def egger(self) -> pd.DataFrame:
        """Egger's regression test per group (groups with k < 3 get NaN; k < 10 has little power)."""
        rows = {}
        for _, g, y, s, _ in self._per_group():
            if y.size >= 3:
                r = egger_test(y, s)
            else:
                r = {"k": y.size, "intercept": np.nan, "intercept_se": np.nan, "t": np.nan, "df": np.nan,
                     "p": np.nan, "slope": np.nan}
            r["note"] = ("needs k >= 3" if y.size < 3 else "low power (k < 10)" if y.size < 10 else "")
            rows[g if self.grouped else "all"] = r
        tab = pd.DataFrame.from_dict(rows, orient="index")
        tab.index.name = "group"
        return tab

    def funnel_data(self) -> pd.DataFrame:
        """Funnel-plot data: one row per study with ``log_hr``, ``se``, ``precision``, the group's
        pooled log-HR (exact posterior mean when available, else the fixed-effect estimate) and
        the pseudo 95% limits ``pooled +- 1.96 se`` at the study's SE."""
        rows = []
        exact = self.exact_available
        for gi, g, y, s, lab in self._per_group():
            pooled = (self._exact_group(gi).mean("log_hr") if exact
                      else frequentist_table(y, s).loc["fixed", "estimate"])
            for yi, si, li in zip(y, s, lab, strict=True):
                rows.append({"group": g, "study": li, "log_hr": yi, "se": si, "precision": 1 / si,
                             "pooled": pooled, "limit_low": pooled - 1.959964 * si,
                             "limit_high": pooled + 1.959964 * si})
        out = pd.DataFrame(rows)
        if not self.grouped:
            out = out.drop(columns="group")
        out.attrs["pooled"] = "exact posterior mean" if exact else "fixed-effect estimate"
        return out

    @staticmethod
    def _exact_row(ex: ExactPosterior, prob: float = 0.95) -> dict:
        lo, med, hi = ex.quantile("hr", [(1 - prob) / 2, 0.5, (1 + prob) / 2])
        row = {"k": ex.k, "log_hr_mean": ex.mean("log_hr"), "log_hr_sd": ex.sd("log_hr"), "hr_median": med,
               "hr_ci_low": lo, "hr_ci_high": hi, "p_hr_lt_1": float(ex.cdf("hr", 1.0))}
        if ex.random:
            tl, tm, th = ex.quantile("tau", [(1 - prob) / 2, 0.5, (1 + prob) / 2])
            pl, ph = ex.quantile("hr_new", [(1 - prob) / 2, (1 + prob) / 2])
            row.update({"tau_median": tm, "tau_ci_low": tl, "tau_ci_high": th,
                        "I2_median": float(ex.quantile("I2", 0.5)), "pi_low": pl, "pi_high": ph})
        else:
            row.update(dict.fromkeys(["tau_median", "tau_ci_low", "tau_ci_high", "I2_median"], 0.0))
            row.update({"pi_low": lo, "pi_high": hi})
        return row

    def leave_one_out(self) -> pd.DataFrame:
        """Exact posterior with each study left out in turn (first row per group: all studies).

        A random-effects group left with one study keeps its tau prior (the row's ``note`` says
        so). Needs the exact posterior (no moderators / ``share_tau``).
        """
        self._exact_check()
        rows = []
        for gi, g, y, _, lab in self._per_group():
            full = self._exact_row(self._exact_group(gi))
            rows.append({"group": g, "omitted": "(none)", **full, "note": ""})
            for j in range(y.size):
                if y.size == 1:
                    continue
                ex = self._exact_group(gi, drop=j)
                note = "k=1: tau from its prior" if ex.random and ex.k == 1 else ""
                rows.append({"group": g, "omitted": lab[j], **self._exact_row(ex), "note": note})
        out = pd.DataFrame(rows)
        if not self.grouped:
            out = out.drop(columns="group")
        out.attrs.update({"ci_prob": 0.95, "ci_kind": "eti", "inference": "exact"})
        return out

    def tau_sensitivity(self, priors: Sequence[Prior] | Mapping[str, Prior]) -> pd.DataFrame:
        """Pooled HR, tau and I^2 under each tau prior (exact, random effects in every group).

        ``priors``: a list of tau priors (labelled by their repr) or a mapping label -> prior.
        ``log_ml`` is each prior's log marginal likelihood (comparable across rows of a group).
        """
        items = list(priors.items()) if isinstance(priors, Mapping) else [(repr(p), p) for p in priors]
        if not items:
            raise ValueError("tau_sensitivity needs at least one tau prior.")
        normal_prior_params(self.priors["log_hr"])
        rows = []
        for label, p in items:
            p = _as_prior(p, "tau")
            tau_prior_dist(p)
            for gi, g, *_ in self._per_group():
                ex = self._exact_group(gi, tau_prior=p)
                rows.append({"tau_prior": label, "group": g, **self._exact_row(ex),
                             "log_ml": ex.log_marginal_likelihood})
        out = pd.DataFrame(rows)
        if not self.grouped:
            out = out.drop(columns="group")
        return out

    def model_comparison(self, prior_random: float = 0.5, prob: float = 0.95) -> pd.DataFrame:
        """Fixed vs random effects per group, from exact marginal likelihoods.

        Columns: ``log_ml_fixed``, ``log_ml_random``, ``log_bf_random`` (log Bayes factor random vs
        fixed; depends on the tau prior), ``p_random`` (posterior model probability with prior
        probability ``prior_random``), pooled HR (median and equal-tailed interval) under each
        model and model-averaged (``avg_*``), and as a reported sensitivity only the published
        rule "random effects if I^2 > 50%": ``I2_freq`` (from Cochran's Q), ``rule_model`` and its
        frequentist estimate (fixed effect or DerSimonian-Laird) ``rule_hr``/``rule_ci_low``/
        ``rule_ci_high``.
        """
        if not 0 < prior_random < 1:
            raise ValueError(f"prior_random must lie in (0, 1); got {prior_random}.")
        normal_prior_params(self.priors["log_hr"])
        tau_prior_dist(self.priors["tau"])
        if self._X is not None or self.share_tau:
            raise ValueError("model_comparison uses exact marginal likelihoods: no moderators/share_tau.")
        qs = [(1 - prob) / 2, 0.5, (1 + prob) / 2]
        rows = {}
        for _gi, g, y, s, lab in self._per_group():
            fx = ExactPosterior(y, s, mu_prior=self.priors["log_hr"], tau_prior=None, study=lab)
            if y.size < 2:
                rows[g] = {"k": 1, "note": "one study: random effects not identified"}
                continue
            rx = ExactPosterior(y, s, mu_prior=self.priors["log_hr"], tau_prior=self.priors["tau"], study=lab)
            lbf = rx.log_marginal_likelihood - fx.log_marginal_likelihood
            p_r = float(special.expit(lbf + math.log(prior_random / (1 - prior_random))))
            avg = _mixture_quantiles([fx, rx], [1 - p_r, p_r], qs)
            ft = frequentist_table(y, s)
            rule = "random" if ft.loc["fixed", "I2"] > 0.5 else "fixed"
            rr = ft.loc["DL" if rule == "random" else "fixed"]
            fq, rq = fx.quantile("hr", qs), rx.quantile("hr", qs)
            rows[g] = {"k": y.size, "log_ml_fixed": fx.log_marginal_likelihood,
                       "log_ml_random": rx.log_marginal_likelihood, "log_bf_random": lbf,
                       "p_random": p_r, "fixed_hr": fq[1], "fixed_ci_low": fq[0], "fixed_ci_high": fq[2],
                       "random_hr": rq[1], "random_ci_low": rq[0], "random_ci_high": rq[2],
                       "avg_hr": avg[1], "avg_ci_low": avg[0], "avg_ci_high": avg[2],
                       "I2_freq": ft.loc["fixed", "I2"], "rule_model": rule, "rule_hr": rr["hr"],
                       "rule_ci_low": rr["hr_ci_low"], "rule_ci_high": rr["hr_ci_high"], "note": ""}
        tab = pd.DataFrame.from_dict(rows, orient="index")
        tab.index.name = "group"
        tab.attrs.update({"prior_random": prior_random, "ci_prob": prob, "ci_kind": "eti",
                          "tau_prior": repr(self.priors["tau"])})
        return tab


def _mixture_quantiles(posts: list[ExactPosterior], weights: list[float], qs) -> np.ndarray:
    """HR quantiles of a two-model mixture of exact posteriors of log_hr."""
    lo = min(p.quantile("log_hr", 1e-9) for p in posts)
    hi = max(p.quantile("log_hr", 1 - 1e-9) for p in posts)

    def cdf(x):
        return sum(w * p.cdf("log_hr", x) for p, w in zip(posts, weights, strict=True))

    out = [optimize.brentq(lambda x, q=q: cdf(x) - q, lo, hi, xtol=1e-12) for q in qs]
    return np.exp(np.array(out))

