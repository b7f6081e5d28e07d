"""Priors: defaults, interval priors, NormalMixture, scipy counterparts."""

import numpy as np
import pymc as pm
import pytest
from scipy import integrate, stats

import bayes_osteo as bo
from bayes_osteo.priors import NormalMixture, resolve_priors, to_scipy


def test_prior_from_hr_interval():
    p = bo.prior_from_hr_interval(0.18, 0.46)
    mu, sd = p.parameters["mu"], p.parameters["sigma"]
    assert stats.norm.cdf(np.log(0.46), mu, sd) - stats.norm.cdf(np.log(0.18), mu, sd) == pytest.approx(0.95)
    with pytest.raises(ValueError, match="lower < upper"):
        bo.prior_from_hr_interval(0.5, 0.2)


def test_mixture_moments_and_quantiles():
    m = NormalMixture([0.7, 0.3], [-1.0, 0.5], [0.3, 1.0])
    x = np.linspace(-10, 10, 200001)
    assert np.trapezoid(m.pdf(x), x) == pytest.approx(1, abs=1e-8)
    assert np.trapezoid(x * m.pdf(x), x) == pytest.approx(m.mean(), abs=1e-8)
    assert np.trapezoid((x - m.mean()) ** 2 * m.pdf(x), x) == pytest.approx(m.var(), abs=1e-7)
    for q in (0.025, 0.5, 0.975):
        assert m.cdf(m.quantile(q)) == pytest.approx(q, abs=1e-10)
    draws = m.rvs(200_000, random_seed=1)
    # Monte-Carlo: SE of the mean is sd/sqrt(n) ~ 0.002; 5 SE tolerance
    assert draws.mean() == pytest.approx(m.mean(), abs=5 * m.sd() / np.sqrt(draws.size))


def test_mixture_round_trip_and_robustify():
    m = NormalMixture([1.0], [-1.2], [0.25])
    r = m.robustify(0.2, 2.0)
    assert r.n_components == 2 and r.weights.tolist() == pytest.approx([0.8, 0.2])
    assert NormalMixture.from_dict(r.to_dict()) == r
    assert bo.priors.prior_from_dict(r.to_dict()) == r
    # a normal prior N(m, s^2) is worth 4/s^2 events (unit-information SD 2)
    assert m.ess(method="moment") == pytest.approx(4 / 0.25**2)
    assert m.ess(method="elir") == pytest.approx(4 / 0.25**2, rel=1e-4)
    assert r.ess() < m.ess()


def test_mixture_bad_input():
    with pytest.raises(ValueError, match="sds"):
        NormalMixture([1.0], [0.0], [0.0])
    with pytest.raises(ValueError, match="one value per component"):
        NormalMixture([0.5, 0.5], [0.0], [1.0])


def test_mixture_in_pymc_is_exact():
    m = NormalMixture([0.6, 0.4], [-1.0, 0.3], [0.2, 1.5])
    with pm.Model() as model:
        bo.priors.create(m, "b")
    logp = model.compile_logp()
    for x in (-2.0, -1.0, 0.0, 1.7):
        assert logp({"b": x}) == pytest.approx(float(m.logpdf(x)), abs=1e-10)


def test_resolve_priors_unknown_name():
    with pytest.raises(ValueError, match="Unknown prior name.*'sigma'"):
        resolve_priors({"sigma": bo.Prior("HalfNormal", sigma=1)}, ["log_hr", "tau"])
    out = resolve_priors({"tau": {"dist": "HalfCauchy", "kwargs": {"beta": 0.5}}}, ["log_hr", "tau"])
    assert out["tau"].distribution == "HalfCauchy"


@pytest.mark.parametrize("prior", [
    bo.Prior("HalfNormal", sigma=0.5), bo.Prior("HalfCauchy", beta=0.5),
    bo.Prior("HalfStudentT", nu=3, sigma=0.5), bo.Prior("Exponential", lam=2.0),
    bo.Prior("Uniform", lower=0, upper=2), bo.Prior("LogNormal", mu=-1, sigma=0.7),
])
def test_to_scipy_matches_pymc_density(prior):
    d = to_scipy(prior)
    with pm.Model() as model:
        prior.create_variable("tau")
    rv = model["tau"]
    for x in (0.1, 0.5, 1.3):
        # 1e-6: PyMC's HalfStudentT normalising constant differs from scipy's in the 8th digit
        assert float(pm.logp(rv, x).eval()) == pytest.approx(float(d.logpdf(x)), abs=1e-6)
    assert integrate.quad(d.pdf, 0, np.inf)[0] == pytest.approx(1, abs=1e-6)


def test_to_scipy_unsupported():
    with pytest.raises(ValueError, match="'Weibull'"):
        to_scipy(bo.Prior("Weibull", alpha=1, beta=1))
