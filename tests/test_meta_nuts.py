"""MetaAnalysis by NUTS: agreement with the exact posterior and with weighted least squares.

Tolerances come from Monte-Carlo error: |NUTS mean - exact mean| < 4 MCSE, with the MCSE from
the chains' own effective sample size (``arviz.mcse``, i.e. sd / sqrt(ESS)). With a handful of
such checks, 4 MCSE keeps the false-failure rate below ~1e-3 in all.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest

import bayes_osteo as bo

P = bo.Prior
pytestmark = pytest.mark.slow
K_MCSE = 4.0


def _mcse(dt, var):
    ds = dt["posterior"].to_dataset()[[var]]
    return az.mcse(ds, method="mean")[var].values


def test_nuts_matches_exact_eight_schools():
    d = bo.datasets.eight_schools()
    st = bo.StudyEstimates(d.y, d.se, study=d.study)
    ma = bo.MetaAnalysis(st, priors={"log_hr": P("Normal", mu=0, sigma=50), "tau": P("HalfCauchy", beta=25)})
    dt = ma.fit(method="nuts", draws=1000, tune=1000, chains=4, random_seed=11)
    assert dt.attrs["inference"] == "nuts"
    post = dt["posterior"]
    assert post["theta"].dims == ("chain", "draw", "study")
    assert int(dt["sample_stats"]["diverging"].sum()) <= 4  # HalfCauchy eight schools: rare at 0.95
    ex = ma.exact_posterior()
    for v in ("log_hr", "tau", "log_hr_new"):
        got = float(post[v].mean())
        assert abs(got - ex.mean(v)) < K_MCSE * float(_mcse(dt, v)), v
    th = post["theta"].mean(("chain", "draw")).values
    assert np.all(np.abs(th - ex.mean("theta")) < K_MCSE * _mcse(dt, "theta"))
    # same layout as exact draws: summaries work unchanged
    assert set(bo.summarize.heterogeneity(dt).columns) >= {"tau_median", "I2_median", "pi_low"}


def test_nuts_meta_regression_matches_wls():
    """Fixed-effect meta-regression of BCG on latitude under vague priors: the posterior is
    normal with mean = weighted least squares (inverse-variance weights) and covariance
    (X'WX)^-1, so the NUTS means must agree within Monte-Carlo error."""
    d = bo.datasets.bcg()
    st = bo.StudyEstimates(d.yi, d.sei, study=d.study, covariates=d[["ablat"]])
    vague = P("Normal", mu=0, sigma=100)
    ma = bo.MetaAnalysis(st, effects="fixed", moderators=["ablat"], priors={"log_hr": vague, "beta": vague})
    assert not ma.exact_available
    dt = ma.fit(draws=1000, tune=500, chains=2, random_seed=5)  # method="auto" -> NUTS
    x = d.ablat.to_numpy(float) - d.ablat.mean()
    X = np.column_stack([np.ones(13), x])
    W = np.diag(1 / d.vi.to_numpy())
    cov = np.linalg.inv(X.T @ W @ X)
    wls = cov @ X.T @ W @ d.yi.to_numpy()
    post = dt["posterior"]
    assert abs(float(post["log_hr"].mean()) - wls[0]) < K_MCSE * float(_mcse(dt, "log_hr"))
    b = post["beta"].sel(moderator="ablat")
    assert abs(float(b.mean()) - wls[1]) < K_MCSE * float(_mcse(dt, "beta")[0])
    assert float(b.std()) == pytest.approx(np.sqrt(cov[1, 1]), rel=0.15)  # sd within ~MC error


def test_nuts_grouped_share_tau_ning2026():
    """Six groups of the SIMULATED Ning 2026 table with a shared heterogeneity prior: every group
    keeps its own pooled HR, close to the published one (within half its SE on the log scale)."""
    df = bo.datasets.ning2026_simulated_studies()
    st = bo.StudyEstimates.from_hr_ci(df, group=["factor", "endpoint"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ma = bo.MetaAnalysis(st, share_tau=True)
        dt = ma.fit(draws=500, tune=500, chains=2, random_seed=3, check=False)
    hr = dt["posterior"]["hr"]
    assert hr.dims == ("chain", "draw", "group") and hr.sizes["group"] == 6
    assert dt["posterior"]["tau"].dims == ("chain", "draw", "group")
    for g, (h, lo, hi) in df.attrs["targets"].items():
        se = (np.log(hi) - np.log(lo)) / 3.92
        med = float(hr.sel(group=g).median())
        assert abs(np.log(med) - np.log(h)) < 0.5 * se, g
