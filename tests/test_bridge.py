"""Tests of the evidence bridge (bayes_osteo.bridge) and NormalMixture.ess.

Fast checks against closed forms, quadrature and simulated draws. Monte-Carlo tolerances are
stated next to each assertion (k standard errors of the Monte-Carlo estimate).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import integrate, stats

from bayes_osteo import bridge
from bayes_osteo.bridge import (
    ROBUST_SD,
    component_posterior_weights,
    conjugate_update,
    fit_mixture,
    map_prior,
    prior_data_conflict,
    robust_weight_posterior,
)
from bayes_osteo.meta_exact import ExactPosterior
from bayes_osteo.priors import NormalMixture, Prior


def _dt(draws: np.ndarray, name: str = "log_hr_new", **dims) -> xr.DataTree:
    """A minimal result DataTree with posterior draws of one variable."""
    arr = np.asarray(draws)
    names = ("chain", "draw", *dims.keys())
    coords = {k: v for k, v in dims.items()}
    return xr.DataTree.from_dict({"posterior": xr.Dataset({name: (names, arr)}, coords=coords)})


def _elir_quad(m: NormalMixture, sigma_unit: float = 2.0) -> float:
    """Independent ELIR: sigma^2 * int p'(x)^2 / p(x) dx by adaptive quadrature (scipy.quad)."""

    def f(x):
        c = m.weights * stats.norm.pdf(x, m.means, m.sds)
        p = c.sum()
        d1 = (c * (-(x - m.means) / m.sds**2)).sum()
        return d1 * d1 / p if p > 0 else 0.0

    lo, hi = np.min(m.means - 15 * m.sds), np.max(m.means + 15 * m.sds)
    knots = np.unique(np.r_[m.means, m.means - m.sds, m.means + m.sds, m.means - 5 * m.sds, m.means + 5 * m.sds])
    edges = np.r_[lo, knots[(knots > lo) & (knots < hi)], hi]
    total = sum(integrate.quad(f, a, b, epsabs=0, epsrel=1e-12, limit=200)[0]
                for a, b in zip(edges[:-1], edges[1:], strict=True))
    return sigma_unit**2 * total


# ---------------------------------------------------------------------------------------------
# ESS
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sd", [0.1, 0.3, 1.0])
def test_ess_single_normal_is_unit_variance_ratio(sd):
    m = NormalMixture([1.0], [-1.0], [sd])
    # closed form: 4 / sd^2 events for both methods
    assert m.ess() == pytest.approx(4 / sd**2, rel=1e-9)
    assert m.ess(method="moment") == pytest.approx(4 / sd**2, rel=1e-12)


@pytest.mark.parametrize("mix", [
    NormalMixture([0.8, 0.2], [-1.2, 0.0], [0.3, 2.0]),
    NormalMixture([0.6, 0.4], [-1.0, 1.0], [0.2, 0.2]),
    NormalMixture([0.5, 0.3, 0.2], [-1.0, -0.8, 0.0], [0.15, 0.5, 2.0]),
    NormalMixture([0.9, 0.1], [0.0, 0.0], [0.005, 2.0]),   # narrow next to wide
])
def test_elir_matches_adaptive_quadrature(mix):
    assert mix.ess() == pytest.approx(_elir_quad(mix), rel=1e-6)


def test_elir_is_predictively_consistent():
    """Neuenschwander et al. (2020): E_y[ESS(posterior after n events)] = ESS(prior) + n.

    With a normal likelihood of n unit-information observations (y ~ N(theta, 4/n)) the posterior
    of a normal-mixture prior is a normal mixture (conjugate_update), so the expectation over the
    prior predictive of y is computed by adaptive quadrature.
    """
    prior = NormalMixture([0.7, 0.3], [-1.2, 0.0], [0.25, 2.0])
    n = 30.0
    se = ROBUST_SD / np.sqrt(n)
    pred = NormalMixture(prior.weights, prior.means, np.sqrt(prior.sds**2 + se**2))

    def f(y):
        return pred.pdf(y) * conjugate_update(prior, y, se).ess()

    # Gauss-Legendre panels over +-12 predictive SDs (the mass outside is < 1e-30)
    edges = [-26.0, -4.0, -2.0, -1.2, -0.4, 1.0, 4.0, 26.0]
    gx, gw = np.polynomial.legendre.leggauss(40)
    expected = 0.0
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        ys = (a + b) / 2 + (b - a) / 2 * gx
        expected += (b - a) / 2 * sum(wi * f(yi) for wi, yi in zip(gw, ys, strict=True))
    assert expected == pytest.approx(prior.ess() + n, rel=1e-7)


def test_robustification_lowers_ess():
    base = NormalMixture([0.7, 0.3], [-1.2, -1.0], [0.2, 0.45])
    ess = [base.robustify(w, ROBUST_SD).ess() for w in (0.0, 0.1, 0.2, 0.5)]
    mom = [base.robustify(w, ROBUST_SD).ess(method="moment") for w in (0.0, 0.1, 0.2, 0.5)]
    assert np.all(np.diff(ess) < 0) and np.all(np.diff(mom) < 0)
    # the vague component alone is worth one event (unit-information prior)
    assert NormalMixture([1.0], [0.0], [ROBUST_SD]).ess() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Mixture fitting
# ---------------------------------------------------------------------------------------------
def test_fit_mixture_recovers_two_components():
    rng = np.random.default_rng(11)
    n = 20_000
    z = rng.uniform(size=n) < 0.7
    x = np.where(z, rng.normal(-1.0, 0.2, n), rng.normal(0.5, 0.4, n))
    mix = fit_mixture(x)
    assert mix.fit_info["K"] == 2 and mix.n_components == 2
    # MC SEs: weight sqrt(.21/n) = 0.0032; means 0.2/sqrt(14000) = 0.0017, 0.4/sqrt(6000) = 0.0052;
    # sds ~ sd/sqrt(2 n_j): 0.0012, 0.0037. Tolerance ~4-5 SE.
    np.testing.assert_allclose(mix.weights, [0.7, 0.3], atol=0.015)
    assert np.all(np.abs(mix.means - [-1.0, 0.5]) < [0.008, 0.025])
    assert np.all(np.abs(mix.sds - [0.2, 0.4]) < [0.006, 0.018])


def test_fit_mixture_single_normal_chooses_one_component():
    x = np.random.default_rng(3).normal(-0.8, 0.35, 4000)
    mix = fit_mixture(x, n_bins=10_000)  # no binning: the exact MLE
    assert mix.n_components == 1
    assert mix.means[0] == pytest.approx(x.mean(), abs=1e-10)
    assert mix.sds[0] == pytest.approx(x.std(), rel=1e-8)  # the MLE (ddof=0)
    # binned (default): rounding to bin centres moves the MLE by < bin width / 2
    h = np.ptp(x) / 1000
    binned = fit_mixture(x)
    assert binned.n_components == 1
    assert abs(binned.means[0] - x.mean()) < h / 2 and abs(binned.sds[0] - x.std()) < h / 2


def test_fit_mixture_weighted_equals_repeated_points():
    rng = np.random.default_rng(5)
    x = np.r_[rng.normal(-1, 0.3, 300), rng.normal(0.8, 0.5, 200)]
    reps = rng.integers(1, 4, x.size)
    a = fit_mixture(x, weights=reps, max_components=2, n_bins=10_000)
    b = fit_mixture(np.repeat(x, reps), max_components=2, n_bins=10_000)
    np.testing.assert_allclose(a.weights, b.weights, atol=1e-5)
    np.testing.assert_allclose(a.means, b.means, atol=1e-5)
    np.testing.assert_allclose(a.sds, b.sds, atol=1e-5)


def test_fit_mixture_bad_input():
    with pytest.raises(ValueError, match="at least 10"):
        fit_mixture([1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        fit_mixture(np.r_[np.zeros(20), np.nan])
    with pytest.raises(ValueError, match="criterion"):
        fit_mixture(np.random.default_rng(0).normal(size=50), criterion="kl")
    with pytest.raises(ValueError, match="spread"):
        fit_mixture(np.ones(50))


# Few small studies: a heavy-tailed predictive distribution (the hard case for a mixture fit).
_Y = np.log([0.279, 0.42, 0.25, 0.36])
_SE = np.array([0.44, 0.30, 0.38, 0.33])


@pytest.fixture(scope="module")
def exact():
    return ExactPosterior(_Y, _SE, mu_prior=Prior("Normal", mu=0, sigma=10),
                          tau_prior=Prior("HalfNormal", sigma=0.5))


_Q = np.array([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.99])


def test_map_prior_from_exact_predictive_matches_quantiles(exact):
    prior = map_prior(exact, robust_weight=0.0)
    target = exact.quantile("log_hr_new", _Q)
    # deterministic fit to the exact density: required 1e-2; achieved well below
    np.testing.assert_allclose(prior.quantile(_Q), target, atol=1e-2)
    assert np.max(np.abs(prior.quantile(_Q) - target)) < 3e-3
    assert prior.fit_info["source"] == "exact"
    assert prior.mean() == pytest.approx(exact.mean("log_hr_new"), abs=2e-3)
    assert prior.sd() == pytest.approx(exact.sd("log_hr_new"), rel=1e-2)


def test_map_prior_from_exact_draws_matches_within_mc_error(exact):
    n = 40_000
    draws = exact.sample(n, random_seed=7)["log_hr_new"].reshape(4, -1)
    prior = map_prior(_dt(draws), robust_weight=0.0)
    target = exact.quantile("log_hr_new", _Q)
    # SE of a sample quantile: sqrt(q(1-q)/n) / f(x_q); allow 4 SE (the smooth fit is not worse)
    se_q = np.sqrt(_Q * (1 - _Q) / n) / exact.pdf("log_hr_new", target)
    assert np.all(np.abs(prior.quantile(_Q) - target) < 4 * se_q)
    assert prior.fit_info["source"] == "draws"


def test_map_prior_robust_component_is_last():
    draws = np.random.default_rng(0).normal(-1.2, 0.3, (2, 3000))
    prior = map_prior(_dt(draws), robust_weight=0.25)
    assert prior.weights[-1] == pytest.approx(0.25)
    assert prior.means[-1] == 0.0 and prior.sds[-1] == ROBUST_SD
    assert map_prior(_dt(draws), robust_weight=0.25, robust_sd=1.5, robust_mean=-0.5).sds[-1] == 1.5
    assert map_prior(_dt(draws), robust_weight=0.0).n_components == 1
    with pytest.raises(ValueError, match="robust_weight"):
        map_prior(_dt(draws), robust_weight=1.5)
    with pytest.raises(ValueError, match="no variable 'log_hr_new'"):
        map_prior(_dt(draws, name="log_hr"))


def test_map_prior_selects_group():
    rng = np.random.default_rng(1)
    draws = np.stack([rng.normal(-1.2, 0.3, (2, 2000)), rng.normal(0.3, 0.2, (2, 2000))], axis=-1)
    dt = _dt(draws, group=["pm | PRS", "bilateral | PMOS"])
    p = map_prior(dt, group="bilateral | PMOS", robust_weight=0.0)
    assert p.mean() == pytest.approx(0.3, abs=0.02)  # 4 SE = 4 * 0.2 / sqrt(4000)
    with pytest.raises(ValueError, match="pass group="):
        map_prior(dt)
    with pytest.raises(ValueError, match="not a level"):
        map_prior(dt, group="nope")


# ---------------------------------------------------------------------------------------------
# Conjugate update, component weights, conflict
# ---------------------------------------------------------------------------------------------
def test_conjugate_update_matches_grid_posterior():
    prior = NormalMixture([0.7, 0.3], [-1.2, 0.0], [0.25, 2.0])
    y, se = 0.2, 0.35
    post = conjugate_update(prior, y, se)
    x = np.linspace(-8, 8, 400_001)
    dens = prior.pdf(x) * stats.norm.pdf(y, x, se)
    dens /= np.trapezoid(dens, x)
    mean = np.trapezoid(x * dens, x)
    sd = np.sqrt(np.trapezoid((x - mean) ** 2 * dens, x))
    assert post.mean() == pytest.approx(mean, abs=1e-8)
    assert post.sd() == pytest.approx(sd, abs=1e-8)
    np.testing.assert_allclose(post.pdf(x[::1000]), dens[::1000], atol=1e-7)


def test_exact_component_weights_from_posterior_draws():
    """E_post[w_j N_j(theta)/p(theta)] on iid posterior draws equals the closed-form weights."""
    prior = NormalMixture([0.8, 0.2], [-1.2, 0.0], [0.25, 2.0])
    y, se = 0.1, 0.3
    post = conjugate_update(prior, y, se)
    theta = post.rvs(100_000, random_seed=3)
    got = component_posterior_weights(prior, theta)
    # per-draw responsibilities are in [0, 1]: SE <= 0.5/sqrt(n) = 0.0016; allow 4 SE
    np.testing.assert_allclose(got, post.weights, atol=0.0065)
    assert robust_weight_posterior(prior, theta) == pytest.approx(got[-1])
    assert robust_weight_posterior(prior, (y, se)) == pytest.approx(post.weights[-1])
    dt = _dt(theta.reshape(2, -1)[..., None], name="log_hr", covariate=["metastasectomy"])
    assert robust_weight_posterior(prior, dt) == pytest.approx(got[-1])


def test_conflicting_data_raise_robust_weight_and_pull_posterior():
    map_ = NormalMixture([1.0], [-1.2], [0.25])
    robust = map_.robustify(0.2, ROBUST_SD)
    se = 0.3
    agree = robust_weight_posterior(robust, (-1.2, se))
    conflict = robust_weight_posterior(robust, (0.6, se))
    assert agree < 0.2 < 0.9 < conflict
    # monotone in the size of the conflict
    w = [robust_weight_posterior(robust, (y, se)) for y in (-1.2, -0.6, 0.0, 0.6, 1.2)]
    assert np.all(np.diff(w) > 0)
    # the robust posterior follows the data, the non-robust one stays with the MAP prior
    post_r, post_n = conjugate_update(robust, 0.6, se), conjugate_update(map_, 0.6, se)
    assert abs(post_r.mean() - 0.6) < 0.25 < abs(post_n.mean() - 0.6)


def test_box_p_value_normal_prior_is_two_sided_z():
    prior = NormalMixture([1.0], [-1.2], [0.3])
    y, se = 0.1, 0.25
    out = prior_data_conflict(prior, (y, se), robust_weight=0)
    z = (y + 1.2) / np.hypot(0.3, se)
    assert out["p_box"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-8)
    assert out["p_tail"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-10)
    assert out["z"] == pytest.approx(z)
    assert "robust_weight_prior" not in out


@pytest.mark.parametrize("y", [-2.5, -0.5, 1.7])
def test_box_p_value_bimodal_matches_grid(y):
    """P(p(Y) <= p(y)) for a bimodal predictive, against brute-force integration on a fine grid."""
    prior = NormalMixture([0.6, 0.4], [-1.5, 0.8], [0.2, 0.3])
    se = 0.1
    out = prior_data_conflict(prior, (y, se))
    pred = NormalMixture(prior.weights, prior.means, np.sqrt(prior.sds**2 + se**2))
    x = np.linspace(-6, 6, 2_000_001)
    dens = pred.pdf(x)
    brute = np.trapezoid(np.where(dens <= pred.pdf(y), dens, 0.0), x)
    assert out["p_box"] == pytest.approx(brute, abs=2e-5)  # grid step 6e-6 at the crossings


def test_prior_data_conflict_reports_robust_update():
    prior = NormalMixture([1.0], [-1.2], [0.25])
    ok = prior_data_conflict(prior, (-1.1, 0.3))
    bad = prior_data_conflict(prior, (0.8, 0.3))
    assert ok["p_box"] > 0.5 and bad["p_box"] < 0.001  # z = 5.1 for the conflicting one
    assert ok["robust_weight_prior"] == pytest.approx(0.2)
    assert ok["robust_weight_posterior_approx"] < 0.2 < bad["robust_weight_posterior_approx"]
    expected = conjugate_update(prior.robustify(0.2, ROBUST_SD), 0.8, 0.3).weights[-1]
    assert bad["robust_weight_posterior_approx"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="without its robust"):
        draws = np.random.default_rng(0).normal(-1.2, 0.3, (2, 500))
        prior_data_conflict(map_prior(_dt(draws), robust_weight=0.2), (0.0, 0.3))


def test_prior_data_conflict_from_cohort_result():
    rng = np.random.default_rng(2)
    theta = rng.normal(-0.5, 0.3, (2, 4000, 1))
    dt = _dt(theta, name="log_hr", covariate=["metastasectomy"])
    out = prior_data_conflict(NormalMixture([1.0], [-1.2], [0.25]), dt)
    assert out["estimate"] == pytest.approx(theta.mean())
    assert out["se"] == pytest.approx(theta.std(ddof=1))
    with pytest.raises(ValueError, match="not a level"):
        prior_data_conflict(NormalMixture([1.0], [-1.2], [0.25]), dt, coord="age")


def test_bad_estimates_are_rejected():
    prior = NormalMixture([1.0], [0.0], [1.0])
    with pytest.raises(ValueError, match="se must be"):
        conjugate_update(prior, 0.0, -1.0)
    with pytest.raises(ValueError, match="single component"):
        robust_weight_posterior(prior, (0.0, 1.0))
    with pytest.raises(TypeError, match="DataTree"):
        bridge.cohort_estimate("nope")
