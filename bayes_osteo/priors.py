"""Priors: the one declarative prior type, named defaults, and normal mixtures for log-HRs.

``Prior`` is :class:`pymc_extras.prior.Prior` (re-exported). :class:`NormalMixture` is this
package's own: a finite mixture of normals for a log hazard ratio (the form a meta-analytic
predictive prior takes), usable wherever a ``Prior`` for a log-HR is accepted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pymc as pm
from pymc_extras.prior import Prior
from scipy import optimize, stats

__all__ = [
    "Prior",
    "NormalMixture",
    "DEFAULT_PRIORS",
    "default_prior",
    "prior_from_hr_interval",
    "prior_to_dict",
    "prior_from_dict",
    "to_scipy",
    "resolve_priors",
    "create",
]

#: Named defaults. Log-HR: Normal(0, 2.5) puts 95% of its mass on HR in (0.007, 135) - weakly
#: informative on the log scale; heterogeneity tau: HalfNormal(0.5) (Rover et al. 2021 suggest
#: half-normal scales 0.5-1.0 for log-HR heterogeneity); frailty SD HalfNormal(1); random-walk
#: smoothing SD of the log baseline hazard HalfNormal(1); baseline level Normal(0, 10).
DEFAULT_PRIORS: dict[str, Prior] = {
    "log_hr": Prior("Normal", mu=0, sigma=2.5),
    "treatment_log_hr": Prior("Normal", mu=0, sigma=2.5),
    "tau": Prior("HalfNormal", sigma=0.5),
    "frailty_sd": Prior("HalfNormal", sigma=1.0),
    "subgroup_sd": Prior("HalfNormal", sigma=0.5),
    "smoothing_sd": Prior("HalfNormal", sigma=1.0),
    "log_baseline_level": Prior("Normal", mu=0, sigma=10),
    "beta": Prior("Normal", mu=0, sigma=2.5),
}

#: A vague prior used when checking posterior modes against maximum likelihood.
VAGUE = Prior("Normal", mu=0, sigma=100)


def default_prior(name: str) -> Prior:
    """A copy of the named default prior (see :data:`DEFAULT_PRIORS`)."""
    try:
        return DEFAULT_PRIORS[name].deepcopy()
    except KeyError:
        raise KeyError(f"No default prior named {name!r}; known: {sorted(DEFAULT_PRIORS)}") from None


def prior_from_hr_interval(lower: float, upper: float, mass: float = 0.95) -> Prior:
    """Normal prior on the log-HR putting ``mass`` between HR ``lower`` and ``upper``.

    ``mu = (ln L + ln U)/2``, ``sigma = (ln U - ln L) / (2 z_{(1+mass)/2})``.

    Examples
    --------
    >>> p = prior_from_hr_interval(0.18, 0.46)
    >>> round(p.parameters["sigma"], 4)
    0.2394
    """
    if not (0 < lower < upper):
        raise ValueError(f"Need 0 < lower < upper for a hazard-ratio interval; got ({lower}, {upper}).")
    if not (0 < mass < 1):
        raise ValueError(f"mass must be a probability in (0, 1); got {mass}.")
    z = stats.norm.ppf(0.5 + mass / 2)
    mu = (math.log(lower) + math.log(upper)) / 2
    sigma = (math.log(upper) - math.log(lower)) / (2 * z)
    return Prior("Normal", mu=float(mu), sigma=float(sigma))


class NormalMixture:
    """Finite mixture of normals ``sum_j w_j N(mu_j, sd_j^2)`` for a log hazard ratio.

    Parameters
    ----------
    weights, means, sds : sequence of float
        Component weights (normalised to sum to one), means and standard deviations.

    Examples
    --------
    >>> m = NormalMixture([0.8, 0.2], [-1.2, 0.0], [0.25, 2.0])
    >>> round(m.mean(), 3)
    -0.96
    >>> r = NormalMixture([1.0], [-1.2], [0.25]).robustify(0.2, 2.0)
    >>> r.weights.round(2).tolist()
    [0.8, 0.2]
    """

    def __init__(self, weights: Sequence[float], means: Sequence[float], sds: Sequence[float]):
        w = np.atleast_1d(np.asarray(weights, float))
        m = np.atleast_1d(np.asarray(means, float))
        s = np.atleast_1d(np.asarray(sds, float))
        if not (w.shape == m.shape == s.shape) or w.ndim != 1 or w.size == 0:
            raise ValueError(f"weights, means and sds need one value per component; got {w.size}, {m.size}, {s.size}.")
        if np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"Mixture weights must be >= 0 and sum to a positive number; got {w.tolist()}.")
        if np.any(~np.isfinite(m)):
            raise ValueError(f"Mixture means must be finite; got {m.tolist()}.")
        if np.any(~np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(f"Mixture sds must be finite and > 0; got {s.tolist()}.")
        self.weights = w / w.sum()
        self.means = m
        self.sds = s

    # -- distribution functions ------------------------------------------------------------
    @property
    def n_components(self) -> int:
        return int(self.weights.size)

    def pdf(self, x):
        x = np.asarray(x, float)[..., None]
        return np.sum(self.weights * stats.norm.pdf(x, self.means, self.sds), axis=-1)

    def logpdf(self, x):
        x = np.asarray(x, float)[..., None]
        from scipy.special import logsumexp

        return logsumexp(np.log(self.weights) + stats.norm.logpdf(x, self.means, self.sds), axis=-1)

    def cdf(self, x):
        x = np.asarray(x, float)[..., None]
        return np.sum(self.weights * stats.norm.cdf(x, self.means, self.sds), axis=-1)

    def quantile(self, q):
        """Quantile(s) by root finding on the cdf."""
        q = np.asarray(q, float)
        lo = float(np.min(self.means - 12 * self.sds))
        hi = float(np.max(self.means + 12 * self.sds))

        def one(p):
            if not 0 < p < 1:
                raise ValueError(f"quantile needs 0 < q < 1; got {p}")
            return optimize.brentq(lambda x: float(self.cdf(x)) - p, lo, hi, xtol=1e-12)

        out = np.vectorize(one, otypes=[float])(q)
        return float(out) if out.ndim == 0 else out

    def mean(self) -> float:
        return float(np.sum(self.weights * self.means))

    def var(self) -> float:
        m = self.mean()
        return float(np.sum(self.weights * (self.sds**2 + (self.means - m) ** 2)))

    def sd(self) -> float:
        return math.sqrt(self.var())

    def rvs(self, size: int, random_seed=None) -> np.ndarray:
        rng = np.random.default_rng(random_seed)
        comp = rng.choice(self.n_components, size=size, p=self.weights)
        return rng.normal(self.means[comp], self.sds[comp])

    # -- robustification and ESS -------------------------------------------------------------
    def robustify(self, weight: float = 0.2, sd: float = 2.0, mean: float = 0.0) -> NormalMixture:
        """Add a vague component ``N(mean, sd^2)`` with weight ``weight`` (others scaled by 1 - weight)."""
        if not 0 <= weight <= 1:
            raise ValueError(f"robust weight must lie in [0, 1]; got {weight}.")
        if weight == 0:
            return NormalMixture(self.weights, self.means, self.sds)
        return NormalMixture(np.append(self.weights * (1 - weight), weight),
                             np.append(self.means, mean), np.append(self.sds, sd))

    def ess(self, *, method: str = "elir", sigma_unit: float = 2.0) -> float:
        """Prior effective sample size, in events.

        A log-HR estimated from ``d`` events (1:1 allocation) has variance ``~ 4/d``, so the unit
        information SD is ``sigma_unit = 2`` and a normal prior ``N(m, s^2)`` is worth ``4/s^2``
        events. ``method="moment"``: ``sigma_unit^2 / var``. ``method="elir"``: the expected
        local-information ratio of Neuenschwander et al. (2020), ``E_prior[-d^2 log p / dx^2] *
        sigma_unit^2``, which is predictively consistent and lower for heavy-tailed mixtures.
        """
        if method == "moment":
            return sigma_unit**2 / self.var()
        if method != "elir":
            raise ValueError(f"method must be 'elir' or 'moment'; got {method!r}")
        # E_p[i(x)] with i(x) = -d2/dx2 log p(x). Integrating by parts, E_p[i] = int p (d/dx log p)^2
        # dx (the location Fisher information of p): a non-negative integrand, evaluated with
        # responsibilities (stable in the tails) by the trapezoid rule on the union of a global
        # grid and a grid of +-12 SD around every component (so a narrow component next to a
        # wide one is resolved; relative error < 1e-6 against adaptive quadrature).
        pos = self.weights > 0
        w, mu, sd = self.weights[pos], self.means[pos], self.sds[pos]
        lo = float(np.min(mu - 12 * sd))
        hi = float(np.max(mu + 12 * sd))
        local = (mu[:, None] + sd[:, None] * np.linspace(-12, 12, 1201)).ravel()
        x = np.unique(np.r_[np.linspace(lo, hi, 4001), local])
        z = (x[:, None] - mu) / sd
        logc = np.log(w / sd) - 0.5 * z * z - 0.5 * math.log(2 * math.pi)
        from scipy.special import logsumexp

        logp = logsumexp(logc, axis=1)
        score = (np.exp(logc - logp[:, None]) * (-z / sd)).sum(1)
        return float(np.trapezoid(np.exp(logp) * score**2, x) * sigma_unit**2)

    # -- serialisation and PyMC ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"dist": "NormalMixture", "kwargs": {"weights": self.weights.tolist(),
                                                   "means": self.means.tolist(), "sds": self.sds.tolist()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> NormalMixture:
        kw = d.get("kwargs", d)
        return cls(kw["weights"], kw["means"], kw["sds"])

    def create_variable(self, name: str, dims=None):
        """Create the PyMC random variable ``name`` in the model on the context stack (exact
        mixture density, not a normal approximation)."""
        if self.n_components == 1:
            return pm.Normal(name, mu=self.means[0], sigma=self.sds[0], dims=dims)
        return pm.NormalMixture(name, w=self.weights, mu=self.means, sigma=self.sds, dims=dims)

    def __repr__(self) -> str:
        comps = ", ".join(f"{w:.3f}*N({m:.3f}, {s:.3f})" for w, m, s in zip(self.weights, self.means, self.sds, strict=True))
        return f"NormalMixture({comps})"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{w:.3f}</td><td>{m:.3f}</td><td>{s:.3f}</td></tr>"
                       for w, m, s in zip(self.weights, self.means, self.sds, strict=True))
        return ("<b>NormalMixture</b> (log-HR)<table><tr><th>weight</th><th>mean</th><th>sd</th></tr>"
                f"{rows}</table>ESS (ELIR) = {self.ess():.1f} events")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, NormalMixture) and np.allclose(self.weights, other.weights)
                and np.allclose(self.means, other.means) and np.allclose(self.sds, other.sds))

    __hash__ = None  # type: ignore[assignment]


PriorLike = Prior | NormalMixture


def prior_to_dict(p: PriorLike) -> dict:
    """Serialise a Prior or NormalMixture to plain data (TOML/JSON-able)."""
    return p.to_dict()


def prior_from_dict(d: Mapping) -> PriorLike:
    """Inverse of :func:`prior_to_dict`."""
    if d.get("dist") == "NormalMixture":
        return NormalMixture.from_dict(d)
    return Prior.from_dict(dict(d))


def _as_prior(p: Any, name: str) -> PriorLike:
    if isinstance(p, Prior | NormalMixture):
        return p
    if isinstance(p, Mapping):
        return prior_from_dict(p)
    raise TypeError(f"Prior for {name!r} must be a bayes_osteo.Prior, NormalMixture or a dict; got {type(p).__name__}.")


def resolve_priors(priors: Mapping[str, Any] | None, allowed: Sequence[str]) -> dict[str, PriorLike]:
    """Merge user priors over the defaults for the names in ``allowed``; unknown names are an error."""
    priors = dict(priors or {})
    unknown = sorted(set(priors) - set(allowed))
    if unknown:
        raise ValueError(f"Unknown prior name(s) {unknown}; this model accepts priors for {sorted(allowed)}.")
    out = {}
    for name in allowed:
        out[name] = _as_prior(priors[name], name) if name in priors else default_prior(name)
    return out


def create(prior: PriorLike, name: str, dims=None):
    """Create a PyMC variable from a Prior or NormalMixture with the given dims."""
    if isinstance(prior, NormalMixture):
        return prior.create_variable(name, dims=dims)
    p = prior.deepcopy()
    if dims is not None:
        p.dims = (dims,) if isinstance(dims, str) else tuple(dims)
    return p.create_variable(name)


_SCIPY = {
    "Normal": lambda k: stats.norm(k.get("mu", 0.0), k["sigma"]),
    "HalfNormal": lambda k: stats.halfnorm(0, k["sigma"]),
    "HalfCauchy": lambda k: stats.halfcauchy(0, k["beta"]),
    "HalfStudentT": lambda k: _HalfT(k["nu"], k.get("sigma", 1.0)),
    "Exponential": lambda k: stats.expon(0, 1 / k["lam"]) if "lam" in k else stats.expon(0, k["scale"]),
    "Uniform": lambda k: stats.uniform(k.get("lower", 0.0), k["upper"] - k.get("lower", 0.0)),
    "LogNormal": lambda k: stats.lognorm(k["sigma"], scale=np.exp(k.get("mu", 0.0))),
    "Gamma": lambda k: stats.gamma(k["alpha"], scale=1 / k["beta"]),
    "InverseGamma": lambda k: stats.invgamma(k["alpha"], scale=k["beta"]),
    "StudentT": lambda k: stats.t(k["nu"], k.get("mu", 0.0), k.get("sigma", 1.0)),
    "Cauchy": lambda k: stats.cauchy(k.get("alpha", 0.0), k["beta"]),
    "HalfFlat": None,
}


class _HalfT:
    """Half-Student-t folded at zero (scipy has no frozen half-t)."""

    def __init__(self, nu, sigma):
        self._t = stats.t(nu, 0, sigma)

    def pdf(self, x):
        x = np.asarray(x, float)
        return np.where(x >= 0, 2 * self._t.pdf(x), 0.0)

    def logpdf(self, x):
        x = np.asarray(x, float)
        return np.where(x >= 0, np.log(2) + self._t.logpdf(x), -np.inf)

    def cdf(self, x):
        x = np.asarray(x, float)
        return np.where(x >= 0, 2 * self._t.cdf(x) - 1, 0.0)

    def ppf(self, q):
        return self._t.ppf(0.5 + np.asarray(q, float) / 2)

    def rvs(self, size=None, random_state=None):
        return np.abs(self._t.rvs(size=size, random_state=random_state))


def to_scipy(prior: Prior):
    """A scipy distribution (``pdf``, ``logpdf``, ``cdf``, ``ppf``) matching a scalar Prior.

    Raises ``ValueError`` naming the distribution when it has no scipy counterpart here or a
    parameter is itself a Prior (hierarchical priors have no closed-form density).
    """
    if isinstance(prior, NormalMixture):
        raise ValueError("to_scipy: a NormalMixture is its own distribution object (pdf/cdf/quantile).")
    kw = prior.parameters
    if any(isinstance(v, Prior) for v in kw.values()):
        raise ValueError(f"Prior {prior!r} has a hierarchical parameter; no scipy density exists for it.")
    make = _SCIPY.get(prior.distribution)
    if make is None:
        raise ValueError(
            f"Prior distribution {prior.distribution!r} has no scipy counterpart here; supported: "
            f"{sorted(k for k, v in _SCIPY.items() if v is not None)}."
        )
    return make({k: float(np.asarray(v)) for k, v in kw.items()})
