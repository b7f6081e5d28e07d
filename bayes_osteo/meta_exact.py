"""Exact posterior of the normal-normal hierarchical model, by 1-D integration over tau.

Model (one group of ``k`` studies, known standard errors ``s_i``)::

    y_i | theta_i   ~ N(theta_i, s_i^2)
    theta_i | mu, tau ~ N(mu, tau^2)          (fixed effect: tau = 0)
    mu  ~ N(m0, s0^2),   tau ~ p(tau)         (any scalar prior with a scipy density on [0, inf))

Given tau, ``mu`` is conjugate: ``y_i | mu, tau ~ N(mu, s_i^2 + tau^2)`` gives a normal conditional
posterior ``mu | tau, y ~ N(M(tau), V(tau))`` and a closed-form marginal likelihood ``p(y | tau)``.
So the joint posterior is a continuous mixture over tau of normals, and only ``p(tau | y)`` needs
numerical integration (as in R's bayesmeta, Roever 2020). Here it is integrated in ``x = log tau``
with composite 8-point Gauss-Legendre panels on the region where the log density is within 40 of
its maximum; the number of panels is doubled until the normalising constant and ``E[tau]`` agree
to a relative 1e-10. Every quantity below is then a finite mixture over the quadrature nodes:

- ``log_hr`` (= mu): mixture of ``N(M_j, V_j)``;
- ``log_hr_new`` (a new study's effect): mixture of ``N(M_j, V_j + tau_j^2)``;
- ``theta_i``: mixture of ``N((1-B_i) y_i + B_i M_j, s_i^2 (1-B_i) + B_i^2 V_j)``,
  ``B_i = s_i^2 / (s_i^2 + tau_j^2)``;
- ``tau``: the quadrature itself; within a panel the density is the degree-7 interpolating
  polynomial through the nodes (whose integral is the Gauss-Legendre sum), so ``cdf``/``quantile``
  and i.i.d. draws are consistent with the moments;
- ``I2 = tau^2 / (tau^2 + s^2)`` (Higgins & Thompson typical within-study variance ``s^2``),
  monotone in tau.

Examples
--------
>>> import numpy as np
>>> from bayes_osteo import Prior
>>> from bayes_osteo.meta_exact import ExactPosterior
>>> y = [28.39, 7.94, -2.75, 6.82, -0.64, 0.63, 18.01, 12.16]   # bayesmeta's Rubin1981 data
>>> se = [14.9, 10.2, 16.3, 11.0, 9.4, 11.4, 10.4, 17.6]
>>> ex = ExactPosterior(y, se,
...                     mu_prior=Prior("Normal", mu=0, sigma=50),
...                     tau_prior=Prior("HalfCauchy", beta=25))
>>> round(ex.mean("log_hr"), 3), round(ex.quantile("tau", 0.5), 3)
(7.986, 4.759)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.polynomial import legendre
from scipy import optimize, special, stats

from .priors import NormalMixture, Prior, to_scipy

__all__ = ["ExactPosterior", "normal_prior_params", "tau_prior_dist"]

_GL_N = 8
_GL_X, _GL_W = legendre.leggauss(_GL_N)
# Legendre coefficients of the interpolating polynomial through the GL nodes: c = _INTERP @ f.
_INTERP = np.linalg.inv(legendre.legvander(_GL_X, _GL_N - 1))
_LOG_DROP = 40.0  # log-density range kept: mass outside is < e^-40 relative per unit of log tau
_VARS = ("log_hr", "hr", "tau", "I2", "log_hr_new", "hr_new", "theta")


def normal_prior_params(prior) -> tuple[float, float]:
    """(mean, sd) of a Normal ``Prior`` for the pooled log-HR; ValueError otherwise."""
    if isinstance(prior, NormalMixture):
        if prior.n_components == 1:
            return float(prior.means[0]), float(prior.sds[0])
        raise ValueError("The exact posterior needs a Normal prior for 'log_hr' (conjugate given tau); "
                         "got a NormalMixture. Use method='nuts' for mixture priors.")
    if not isinstance(prior, Prior) or prior.distribution != "Normal":
        raise ValueError(f"The exact posterior needs a Normal prior for 'log_hr' (conjugate given tau); got "
                         f"{prior!r}. Use Prior('Normal', mu=..., sigma=...) or method='nuts'.")
    kw = prior.parameters
    if any(isinstance(v, Prior) for v in kw.values()) or np.ndim(kw.get("mu", 0.0)) or np.ndim(kw["sigma"]):
        raise ValueError(f"The exact posterior needs a scalar Normal prior for 'log_hr'; got {prior!r}.")
    m0, s0 = float(kw.get("mu", 0.0)), float(kw["sigma"])
    if not (np.isfinite(m0) and np.isfinite(s0) and s0 > 0):
        raise ValueError(f"Prior for 'log_hr' needs a finite mu and sigma > 0; got {prior!r}.")
    return m0, s0


def tau_prior_dist(prior):
    """scipy distribution of a scalar tau prior on [0, inf); ValueError naming what is unsupported."""
    if isinstance(prior, NormalMixture):
        raise ValueError("A NormalMixture is a prior for a log-HR, not for tau (which must be >= 0).")
    if np.ndim(prior.parameters.get("sigma", 0.0)) or any(np.ndim(v) for v in prior.parameters.values()
                                                          if not isinstance(v, Prior)):
        raise ValueError(f"The exact posterior needs a scalar tau prior; got {prior!r}.")
    try:
        dist = to_scipy(prior)
    except ValueError as e:
        raise ValueError(f"Unsupported tau prior for the exact posterior: {e} Use method='nuts' or a "
                         "HalfNormal/HalfCauchy/HalfStudentT/Exponential/Uniform/LogNormal/Gamma prior.") from None
    if float(dist.cdf(0.0)) > 1e-12:
        raise ValueError(f"The tau prior {prior!r} puts {float(dist.cdf(0.0)):.3g} of its mass below 0; tau "
                         "is a standard deviation: use a prior on [0, inf), e.g. HalfNormal.")
    return dist


def _support(dist) -> tuple[float, float]:
    try:
        lo, hi = dist.support()
        return max(float(lo), 0.0), float(hi)
    except AttributeError:  # the package's half-t
        return 0.0, math.inf


class ExactPosterior:
    """Exact posterior of a normal-normal meta-analysis (one group), see the module docstring.

    Parameters
    ----------
    y, se : array-like
        Study log-HRs and standard errors.
    mu_prior : Prior
        Normal prior of the pooled log-HR ``mu``.
    tau_prior : Prior or None
        Prior of the heterogeneity SD ``tau``; ``None`` gives the fixed-effect model (tau = 0).
    study : sequence of str, optional
        Study labels (used by :meth:`summary` and the draws).
    rtol : float
        Relative tolerance of the adaptive quadrature.

    Methods ``mean``, ``sd``, ``var``, ``quantile``, ``cdf``, ``pdf``, ``interval`` take a variable
    name: ``log_hr``, ``hr``, ``tau``, ``I2``, ``log_hr_new``, ``hr_new`` or ``theta`` (per study:
    arrays of length k).
    """

    def __init__(self, y, se, *, mu_prior, tau_prior=None, study: Sequence[str] | None = None,
                 rtol: float = 1e-10):
        self.y = np.atleast_1d(np.asarray(y, float))
        self.se = np.atleast_1d(np.asarray(se, float))
        if self.y.shape != self.se.shape or self.y.ndim != 1 or self.y.size == 0:
            raise ValueError("y and se need one value per study.")
        if not (np.all(np.isfinite(self.y)) and np.all(np.isfinite(self.se)) and np.all(self.se > 0)):
            raise ValueError("y must be finite and se finite and > 0.")
        self.k = int(self.y.size)
        self.study = (np.array([f"study_{i + 1}" for i in range(self.k)], dtype=object) if study is None
                      else np.asarray(study, dtype=object))
        self.mu_prior, self.tau_prior = mu_prior, tau_prior
        self.m0, self.s0 = normal_prior_params(mu_prior)
        self.random = tau_prior is not None
        self.s2_typical = _typical(self.se)
        if self.random:
            self._dist = tau_prior_dist(tau_prior)
            self._integrate(rtol)
        else:
            self._x = np.array([-np.inf])
            self.tau_nodes = np.zeros(1)
            self.weights = np.ones(1)
            self.log_marginal_likelihood = float(self._loglik(np.zeros(1))[0])
        self.M, self.V = self._conditional_mu(self.tau_nodes)

    # -- closed forms given tau ------------------------------------------------------------------
    def _conditional_mu(self, tau: np.ndarray):
        w = 1.0 / (self.se**2 + tau[:, None] ** 2)
        P = 1.0 / self.s0**2 + w.sum(1)
        M = (self.m0 / self.s0**2 + (w * self.y).sum(1)) / P
        return M, 1.0 / P

    def _loglik(self, tau: np.ndarray) -> np.ndarray:
        """log p(y | tau) with mu integrated out under its normal prior."""
        v = self.se**2 + tau[:, None] ** 2
        w = 1.0 / v
        P = 1.0 / self.s0**2 + w.sum(1)
        M = (self.m0 / self.s0**2 + (w * self.y).sum(1)) / P
        quad = (w * (self.y - M[:, None]) ** 2).sum(1) + (M - self.m0) ** 2 / self.s0**2
        return (-0.5 * self.k * np.log(2 * np.pi) - 0.5 * np.log(v).sum(1) - np.log(self.s0)
                - 0.5 * np.log(P) - 0.5 * quad)

    def _logdens_x(self, x: np.ndarray) -> np.ndarray:
        """Unnormalised log posterior density of x = log tau."""
        tau = np.exp(x)
        with np.errstate(divide="ignore"):
            lp = np.asarray(self._dist.logpdf(tau), float)
        return lp + x + self._loglik(tau)

    # -- adaptive quadrature over log tau ---------------------------------------------------------
    def _range(self) -> tuple[float, float]:
        lo_s, hi_s = _support(self._dist)
        scale = float(max(np.std(self.y), self.se.max(), 1e-8))
        xlo = math.log(lo_s) if lo_s > 0 else math.log(scale) - 30.0
        xhi = math.log(hi_s) if np.isfinite(hi_s) else math.log(scale) + 15.0
        grid = np.linspace(xlo, xhi, int(math.ceil((xhi - xlo) / 0.05)) + 1)  # ends = support bounds
        ld = self._logdens_x(grid)
        # extend the scan while the density at an open end is not negligible
        for _ in range(60):
            top = np.nanmax(ld)
            grew = False
            if lo_s == 0 and ld[0] > top - _LOG_DROP and grid[0] > -700:
                ext = np.arange(grid[0] - 10, grid[0], 0.05)
                grid, ld, grew = np.concatenate([ext, grid]), np.concatenate([self._logdens_x(ext), ld]), True
            if not np.isfinite(hi_s) and ld[-1] > top - _LOG_DROP:
                if grid[-1] > 700:
                    raise ValueError("The posterior of tau has too heavy a right tail to integrate; use a "
                                     "proper, lighter-tailed tau prior.")
                ext = np.arange(grid[-1] + 0.05, grid[-1] + 10, 0.05)
                grid, ld, grew = np.concatenate([grid, ext]), np.concatenate([ld, self._logdens_x(ext)]), True
            if not grew:
                break
        if not np.any(np.isfinite(ld)):
            raise ValueError("The posterior density of tau is zero everywhere on the search grid; check the "
                             "tau prior.")
        keep = np.flatnonzero(ld > np.nanmax(ld) - _LOG_DROP)
        a = grid[max(keep[0] - 1, 0)]
        b = grid[min(keep[-1] + 1, grid.size - 1)]
        return float(a), float(b)

    def _panels(self, a: float, b: float, n: int):
        edges = np.linspace(a, b, n + 1)
        h = (b - a) / n
        x = (edges[:-1, None] + h / 2 * (_GL_X + 1)).ravel()
        ld = self._logdens_x(x)
        return edges, h, x, ld

    def _integrate(self, rtol: float) -> None:
        a, b = self._range()
        prev = None
        n = 16
        while True:
            edges, h, x, ld = self._panels(a, b, n)
            top = np.nanmax(ld)
            f = np.exp(ld - top)
            f[~np.isfinite(f)] = 0.0
            wq = np.tile(_GL_W, n) * h / 2
            z = float(np.sum(wq * f))
            logz = top + math.log(z)
            m = float(np.sum(wq * f * np.exp(x))) / z
            if prev is not None and abs(logz - prev[0]) <= rtol and abs(m - prev[1]) <= rtol * abs(m) + 1e-300:
                break
            if n >= 4096:
                break
            prev = (logz, m)
            n *= 2
        self._a, self._b, self._h, self._edges, self._x = a, b, h, edges, x
        self.log_marginal_likelihood = float(top + math.log(z))
        fn = f / z  # normalised density in x at the nodes
        self.weights = wq * fn
        self.tau_nodes = np.exp(x)
        # per-panel Legendre coefficients of the density and of its antiderivative
        coef = fn.reshape(n, _GL_N) @ _INTERP.T  # (n_panels, 8)
        self._icoef = legendre.legint(coef, lbnd=-1, axis=1) * h / 2  # (n_panels, 9)
        mass = self.weights.reshape(n, _GL_N).sum(1)
        self._cum = np.concatenate([[0.0], np.cumsum(mass)])
        self.n_nodes = x.size

    # -- tau cdf / quantile from the panel polynomials -------------------------------------------
    def _cdf_x(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, float)
        out = np.where(x <= self._a, 0.0, 1.0)
        inside = (x > self._a) & (x < self._b)
        if inside.any():
            xi = x[inside]
            p = np.clip(((xi - self._a) // self._h).astype(int), 0, self._icoef.shape[0] - 1)
            t = 2 * (xi - self._edges[p]) / self._h - 1
            within = legendre.legval(t, self._icoef[p].T, tensor=False)
            out[inside] = self._cum[p] + within
        return np.clip(out / self._cum[-1], 0.0, 1.0)

    def _quantile_x(self, u: np.ndarray) -> np.ndarray:
        """x = log tau with F(x) = u, vectorised (safeguarded Newton inside the panel)."""
        u = np.clip(np.asarray(u, float), 1e-300, 1 - 1e-16) * self._cum[-1]
        p = np.clip(np.searchsorted(self._cum, u, side="right") - 1, 0, self._icoef.shape[0] - 1)
        target = u - self._cum[p]
        ic = self._icoef[p]
        dc = legendre.legder(ic, axis=1)
        lo, hi = -np.ones_like(u), np.ones_like(u)
        mass = self._cum[p + 1] - self._cum[p]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.clip(np.nan_to_num(2 * target / mass - 1), -1, 1)  # linear start
        icT, dcT = ic.T, dc.T
        for _ in range(60):
            g = legendre.legval(t, icT, tensor=False) - target
            lo = np.where(g < 0, t, lo)
            hi = np.where(g >= 0, t, hi)
            d = legendre.legval(t, dcT, tensor=False)
            with np.errstate(divide="ignore", invalid="ignore"):
                tn = t - g / d
            bad = ~np.isfinite(tn) | (tn <= lo) | (tn >= hi) | (d <= 0)
            tn = np.where(bad, (lo + hi) / 2, tn)
            done = np.all((np.abs(tn - t) < 1e-12) | (hi - lo < 1e-12))
            t = tn
            if done:
                break
        return self._edges[p] + (t + 1) * self._h / 2

    # -- public distribution functions ------------------------------------------------------------
    def _check(self, var: str) -> None:
        if var not in _VARS:
            raise ValueError(f"Unknown variable {var!r}; choose from {list(_VARS)}.")
        if var in ("tau", "I2") and not self.random:
            raise ValueError(f"The fixed-effect model has no {var!r} (tau = 0).")

    def _components(self, var: str):
        """(means, variances) of the normal mixture components of a log-scale variable."""
        if var in ("log_hr", "hr"):
            return self.M, self.V
        if var in ("log_hr_new", "hr_new"):
            return self.M, self.V + self.tau_nodes**2
        if var == "theta":
            t2 = self.tau_nodes[:, None] ** 2
            B = self.se**2 / (self.se**2 + t2) if self.random else np.ones((1, self.k))
            mean = (1 - B) * self.y + B * self.M[:, None]
            var_ = self.se**2 * (1 - B) + B**2 * self.V[:, None]
            return mean, var_
        raise AssertionError(var)

    def _i2(self, tau):
        return tau**2 / (tau**2 + self.s2_typical)

    def mean(self, var: str = "log_hr"):
        """Posterior mean (array over studies for ``theta``)."""
        self._check(var)
        w = self.weights
        if var == "tau":
            return float(w @ self.tau_nodes)
        if var == "I2":
            return float(w @ self._i2(self.tau_nodes))
        m, v = self._components(var)
        if var in ("hr", "hr_new"):
            return float(w @ np.exp(m + v / 2))
        return float(w @ m) if m.ndim == 1 else w @ m

    def var(self, var: str = "log_hr"):
        """Posterior variance."""
        self._check(var)
        w = self.weights
        if var in ("tau", "I2"):
            g = self.tau_nodes if var == "tau" else self._i2(self.tau_nodes)
            return float(w @ g**2 - (w @ g) ** 2)
        m, v = self._components(var)
        if var in ("hr", "hr_new"):
            return float(w @ np.exp(2 * m + 2 * v) - (w @ np.exp(m + v / 2)) ** 2)
        second = w @ (v + m**2)
        out = second - (w @ m) ** 2
        return float(out) if np.ndim(out) == 0 else out

    def sd(self, var: str = "log_hr"):
        """Posterior standard deviation."""
        return np.sqrt(self.var(var)) if var == "theta" else math.sqrt(self.var(var))

    def cdf(self, var: str, x):
        """Posterior cdf at ``x`` (for ``theta``: shape ``x.shape + (k,)``)."""
        self._check(var)
        x = np.asarray(x, float)
        if var == "tau":
            with np.errstate(divide="ignore"):
                return self._scalar(np.where(x <= 0, 0.0, self._cdf_x(np.log(np.maximum(x, 1e-300)))))
        if var == "I2":
            xc = np.clip(x, 0, 1 - 1e-16)
            return self.cdf("tau", np.sqrt(self.s2_typical * xc / (1 - xc)))
        if var in ("hr", "hr_new"):
            with np.errstate(divide="ignore"):
                return self.cdf("log_hr" if var == "hr" else "log_hr_new", np.log(np.maximum(x, 0)))
        m, v = self._components(var)
        z = (x[..., None] - m) / np.sqrt(v) if m.ndim == 1 else (x[..., None, None] - m) / np.sqrt(v)
        out = np.tensordot(special.ndtr(z), self.weights, axes=([-1] if m.ndim == 1 else [-2], [0]))
        return self._scalar(out)

    def pdf(self, var: str, x):
        """Posterior density at ``x``."""
        self._check(var)
        x = np.asarray(x, float)
        if var == "tau":
            if not self.random:
                raise ValueError("No tau in the fixed-effect model.")
            return self._scalar(self._pdf_tau(x))
        if var == "I2":
            xc = np.clip(x, 1e-300, 1 - 1e-16)
            t = np.sqrt(self.s2_typical * xc / (1 - xc))
            dt = 0.5 * np.sqrt(self.s2_typical) * xc**-0.5 * (1 - xc) ** -1.5
            return self._scalar(self._pdf_tau(t) * dt)
        if var in ("hr", "hr_new"):
            xp = np.maximum(x, 1e-300)
            return self._scalar(self.pdf("log_hr" if var == "hr" else "log_hr_new", np.log(xp)) / xp)
        m, v = self._components(var)
        if m.ndim == 1:
            dens = stats.norm.pdf(x[..., None], m, np.sqrt(v)) @ self.weights
        else:
            dens = np.tensordot(stats.norm.pdf(x[..., None, None], m, np.sqrt(v)), self.weights,
                                axes=([-2], [0]))
        return self._scalar(dens)

    def _pdf_tau(self, t):
        t = np.asarray(t, float)
        out = np.zeros_like(t)
        pos = t > 0
        x = np.log(t[pos])
        inside = (x > self._a) & (x < self._b)
        vals = np.zeros_like(x)
        if inside.any():
            vals[inside] = np.exp(self._logdens_x(x[inside]) - self.log_marginal_likelihood) / t[pos][inside]
        out[pos] = vals
        return out

    def quantile(self, var: str, q):
        """Posterior quantile(s) (for ``theta``: one column per study)."""
        self._check(var)
        q = np.asarray(q, float)
        if np.any((q <= 0) | (q >= 1)):
            raise ValueError(f"quantile needs 0 < q < 1; got {q}")
        if var == "tau":
            return self._scalar(np.exp(self._quantile_x(q.ravel())).reshape(q.shape))
        if var == "I2":
            return self._i2(self.quantile("tau", q))
        if var in ("hr", "hr_new"):
            return np.exp(self.quantile("log_hr" if var == "hr" else "log_hr_new", q))
        m, v = self._components(var)
        if m.ndim == 2:
            cols = [self._mix_quantile(m[:, i], v[:, i], q) for i in range(self.k)]
            return np.stack(cols, axis=-1)
        return self._mix_quantile(m, v, q)

    def _mix_quantile(self, m, v, q):
        s = np.sqrt(v)
        lo, hi = float(np.min(m - 40 * s)), float(np.max(m + 40 * s))
        w = self.weights

        def one(p):
            return optimize.brentq(lambda x: float(w @ special.ndtr((x - m) / s)) - p, lo, hi, xtol=1e-13,
                                   rtol=1e-14)

        out = np.vectorize(one, otypes=[float])(q)
        return self._scalar(out)

    def interval(self, var: str = "log_hr", prob: float = 0.95):
        """Equal-tailed credible interval ``(low, high)``."""
        lo, hi = self.quantile(var, [(1 - prob) / 2, (1 + prob) / 2])
        return lo, hi

    @staticmethod
    def _scalar(a):
        a = np.asarray(a)
        return float(a) if a.ndim == 0 else a

    # -- draws and summaries -----------------------------------------------------------------------
    def sample(self, n: int, random_seed=None) -> dict[str, np.ndarray]:
        """``n`` i.i.d. posterior draws: dict of arrays (``theta`` has shape ``(n, k)``).

        tau by inverse cdf (panel polynomials), then ``mu | tau`` and ``theta | mu, tau`` and a new
        study's effect from their exact normal conditionals.
        """
        rng = np.random.default_rng(random_seed)
        if self.random:
            tau = np.exp(self._quantile_x(rng.uniform(size=n)))
        else:
            tau = np.zeros(n)
        M, V = self._conditional_mu(tau)
        mu = M + np.sqrt(V) * rng.standard_normal(n)
        if self.random:
            t2 = tau[:, None] ** 2
            B = self.se**2 / (self.se**2 + t2)
            theta = (1 - B) * self.y + B * mu[:, None] + np.sqrt(self.se**2 * (1 - B)) * rng.standard_normal((n, self.k))
        else:
            theta = np.repeat(mu[:, None], self.k, axis=1)
        new = mu + tau * rng.standard_normal(n)
        out = {"log_hr": mu, "hr": np.exp(mu), "log_hr_new": new, "hr_new": np.exp(new), "theta": theta}
        if self.random:
            out["tau"] = tau
            out["I2"] = self._i2(tau)
        return out

    def summary(self, prob: float = 0.95) -> pd.DataFrame:
        """Mean, SD, median and equal-tailed interval of the scalar variables."""
        names = ["log_hr", "hr", "log_hr_new", "hr_new"] + (["tau", "I2"] if self.random else [])
        rows = {}
        for v in names:
            lo, med, hi = self.quantile(v, [(1 - prob) / 2, 0.5, (1 + prob) / 2])
            rows[v] = {"mean": self.mean(v), "sd": self.sd(v), "median": med, "ci_low": lo, "ci_high": hi}
        tab = pd.DataFrame.from_dict(rows, orient="index")
        tab.attrs.update({"ci_prob": prob, "ci_kind": "eti", "inference": "exact"})
        return tab

    def __repr__(self) -> str:
        kind = "random" if self.random else "fixed"
        return f"ExactPosterior(k={self.k}, effects={kind!r}, nodes={self.tau_nodes.size})"


def _typical(se: np.ndarray) -> float:
    from .meta_frequentist import typical_within_variance

    return typical_within_variance(se)
