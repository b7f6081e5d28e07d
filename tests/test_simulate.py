"""Tests of bayes_osteo.simulate: simulators, SBC, operating characteristics, execution.

Every tolerance below is a Monte-Carlo error bound derived in the comment next to it.
Runs that compile a model share one compilation per process: the Cox SBC, the wrong-prior Cox
SBC and the NUTS operating characteristics all use a partial-likelihood CoxModel with n = 40,
covariates (treatment, x1) and priors N(0, 1) / N(0, 0.5), so nutpie compiles it once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytest

import bayes_osteo as bo
from bayes_osteo import sim_engine
from bayes_osteo.simulate import Covariate, Piecewise, Weibull

S = bo.simulate
N_COX = 40
OC_PRIOR = bo.Prior("Normal", mu=0, sigma=1.0)
OC_ADJ = bo.Prior("Normal", mu=0, sigma=0.5)


def normal_model(n):
    """A user factory: y_i ~ N(mu, sigma), mu ~ N(0, 1), sigma ~ HalfNormal(1)."""
    with pm.Model() as m:
        y = pm.Data("y", np.zeros(n))
        mu = pm.Normal("mu", 0, 1)
        sigma = pm.HalfNormal("sigma", 1)
        pm.Normal("obs", mu, sigma, observed=y)
    return m


def constant_observed_model(n):
    with pm.Model() as m:
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("obs", mu, 1, observed=np.zeros(n))
    return m


# -- simulators ---------------------------------------------------------------------------------

def test_cohort_format_and_truth():
    df = S.cohort(300, 0.5, baseline=Weibull(1.2, 36), covariates={"age": 0.3, "ecog": Covariate(0.7, "binary", 0.3)},
                  confounding=1.0, censoring=0.01, accrual=24, follow_up=12, seed=3)
    assert list(df.columns) == ["time", "event", "treatment", "age", "ecog"]
    a = df.attrs
    assert a["simulated"] is True and a["true_hr"] == 0.5
    assert a["true_coefficients"] == {"treatment": np.log(0.5), "age": 0.3, "ecog": 0.7}
    assert (df["time"] > 0).all() and df["time"].max() <= 24 + 12
    assert set(df["ecog"].unique()) <= {0.0, 1.0}
    sd = S.cohort_data(df)
    assert sd.covariate_names == ["treatment", "age", "ecog"] and sd.n == 300
    # confounding > 0: the treated have the better prognosis (lower prognostic index)
    lp = 0.3 * df["age"] + 0.7 * df["ecog"]
    assert lp[df.treatment == 1].mean() < lp[df.treatment == 0].mean()
    # reproducible
    pd.testing.assert_frame_equal(df, S.cohort(300, 0.5, baseline=Weibull(1.2, 36),
                                               covariates={"age": 0.3, "ecog": Covariate(0.7, "binary", 0.3)},
                                               confounding=1.0, censoring=0.01, accrual=24,
                                               follow_up=12, seed=3))


def test_cohort_recovers_hr_and_baseline():
    from statsmodels.duration.hazard_regression import PHReg

    df = S.cohort(4000, 0.6, baseline=Weibull(1.5, 10.0), covariates={"x": -0.4}, censoring=0.02, seed=11)
    res = PHReg(df["time"], df[["treatment", "x"]], status=df["event"]).fit()
    # large-sample Cox MLE: within 4 SE of the generating coefficients
    z = (res.params - np.array([np.log(0.6), -0.4])) / res.bse
    assert np.all(np.abs(z) < 4), z
    # Weibull baseline without censoring: P(T > median) = 1/2; binomial SE sqrt(.25/n)
    d0 = S.cohort(4000, 1.0, baseline=Weibull(1.5, 10.0), seed=12)
    med = 10.0 * np.log(2) ** (1 / 1.5)
    assert d0["event"].all()
    assert abs((d0["time"] > med).mean() - 0.5) < 4 * np.sqrt(0.25 / 4000)


def test_piecewise_baseline():
    pw = Piecewise([1.0, 3.0], [0.2, 0.5, 1.0])
    h = np.array([0.0, 0.1, 0.2, 0.5, 1.2, 5.0])
    assert np.allclose(pw.cumhaz(pw.inverse_cumhaz(h)), h)
    assert np.isclose(pw.cumhaz(2.0), 0.2 + 0.5)
    df = S.cohort(20000, 1.0, baseline=pw, seed=5)
    # S(t) = exp(-H0(t)); binomial SE of the empirical survival at t
    for t in (0.5, 2.0, 4.0):
        p = np.exp(-pw.cumhaz(t))
        assert abs((df["time"] > t).mean() - p) < 4 * np.sqrt(p * (1 - p) / 20000)
    with pytest.raises(ValueError, match="len\\(hazards\\)"):
        Piecewise([1.0], [0.1])


def test_studies():
    df = S.studies(4000, mu=-0.5, tau=0.3, se_range=(0.1, 0.4), seed=2)
    assert df.attrs["simulated"] and df.attrs["mu"] == -0.5
    assert df["se"].between(0.1, 0.4).all()
    # y - theta ~ N(0, se): standardised residuals have SD 1 (SE of an SD estimate ~ 1/sqrt(2n))
    zres = (df["log_hr"] - df["theta"]) / df["se"]
    assert abs(zres.std() - 1) < 4 / np.sqrt(2 * 4000)
    # theta ~ N(mu, tau): mean within 4 SE
    assert abs(df["theta"].mean() + 0.5) < 4 * 0.3 / np.sqrt(4000)
    st = S.studies(5, mu=0.0, tau=0.0, seed=1, estimates=True)
    assert isinstance(st, bo.StudyEstimates) and st.k == 5
    ci = S.studies(3, mu=0.2, tau=0.1, seed=4)
    assert np.allclose(np.log(ci["ci_high"]) - np.log(ci["ci_low"]), 2 * 1.959964 * ci["se"])


@pytest.mark.parametrize("call, match", [
    (lambda: S.cohort(1, 0.5), "n >= 2"),
    (lambda: S.cohort(10, -1.0), "hr must be"),
    (lambda: S.cohort(10, 0.5, confounding=1.0), "confounding needs covariates"),
    (lambda: S.cohort(10, 0.5, accrual=12), "follow_up"),
    (lambda: S.cohort(10, 0.5, censoring=0.0), "censoring"),
    (lambda: S.cohort(10, 0.5, covariates={"time": 1.0}), "reserved"),
    (lambda: S.studies(0, 0.0, 0.1), "k >= 1"),
    (lambda: S.studies(3, 0.0, -0.1), "tau must be"),
    (lambda: S.studies(3, 0.0, 0.1, se_range=(0.5, 0.1)), "se_range"),
    (lambda: S.sbc("weibull", n_sims=2), "model must be one of"),
    (lambda: S.sbc("cox", n_sims=2, method="exact"), "exact"),
    (lambda: S.operating_characteristics([50], [0.5], decision="HR<1"), "decision must look like"),
    (lambda: S.operating_characteristics([50], [0.5], method="vb"), "method must be"),
    (lambda: S.operating_characteristics([50], [0.5], prior="flat"), "prior must be"),
    (lambda: sim_engine.run(None, 0), "n_sims must be"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_parse_decision():
    assert S.parse_decision("P(HR<1)>0.95") == ("<", 1.0, 0.95)
    assert S.parse_decision(" P( HR > 0.8 ) > .9 ") == (">", 0.8, 0.9)


def test_rank_uniformity_and_seeds():
    rng = np.random.default_rng(0)
    ranks = pd.DataFrame({"ok": rng.integers(0, 100, 400), "narrow": np.clip(rng.normal(50, 12, 400), 0, 99).astype(int)})
    t = S.rank_uniformity(ranks, 99)
    assert t.attrs["bins"] == 20
    assert t.loc["ok", "p_value"] > 0.01 and t.loc["narrow", "p_value"] < 1e-10
    # sd_rank < 0.289: ranks piled in the middle = an over-dispersed posterior
    assert t.loc["narrow", "sd_rank"] < 0.2
    with pytest.raises(ValueError, match="divide"):
        S.rank_uniformity(ranks, 99, bins=7)
    # seeds: one SeedSequence per simulation, whatever the chunking
    s = np.random.SeedSequence(5).spawn(3)
    assert sim_engine.seed_int(s[0]) != sim_engine.seed_int(s[1]) and sim_engine.seed_int(s[0]) >= 0


# -- SBC: meta-analysis ------------------------------------------------------------------------------

@pytest.mark.slow
def test_sbc_meta_exact_calibrated_with_coverage():
    res = S.sbc("meta", n_sims=1000, random_seed=1, n_jobs=1, progress=False)
    assert list(res.ranks.columns) == ["log_hr", "tau", "log_hr_new"]
    assert res.ranks.attrs["n_draws"] == 99 and res.ranks.to_numpy().max() <= 99
    # family-wise 1% level over the 3 parameters (Bonferroni)
    assert res.p_value_adjusted > 0.01, res.summary()
    # 95% interval of the pooled HR (exact posterior cdf; HR is monotone in log-HR): expected
    # 0.95 exactly; MC SE sqrt(.95 * .05 / 1000) = 0.0069, so 0.93-0.97 is +-2.9 SE.
    cov = res.coverage.loc["log_hr"]
    assert cov["coverage_expected"] == 0.95
    assert 0.93 <= cov["coverage_95"] <= 0.97, res.coverage
    assert 0.93 <= res.coverage.loc["tau", "coverage_95"] <= 0.97


@pytest.mark.slow
def test_sbc_meta_wrong_prior_flagged():
    # Truth drawn from the default priors (log_hr ~ N(0, 2.5), tau ~ HalfNormal(0.5)); the posterior
    # uses tau ~ HalfNormal(0.2): heterogeneity is under-estimated, so tau ranks pile up at the top
    # and intervals are too narrow. 300 simulations must flag it.
    res = S.sbc("meta", n_sims=300, random_seed=2, n_jobs=1, progress=False,
                fit_priors={"tau": bo.Prior("HalfNormal", sigma=0.2)})
    assert res.p_value_adjusted < 1e-6, res.summary()
    assert res.tests.loc["tau", "mean_rank"] > 0.6
    assert res.coverage.loc["tau", "coverage_95"] < 0.85


@pytest.mark.slow
def test_sbc_meta_nuts_calibrated():
    res = S.sbc("meta", method="nuts", n_sims=100, random_seed=3, n_jobs=1, progress=False)
    assert res.settings["method"] == "nuts" and res.settings["thin"] == 3
    assert res.p_value_adjusted > 0.01, res.summary()
    # Expected coverage of a 297-draw quantile interval: 0.95 * 296/298 = 0.944; MC SE 0.023 at
    # 100 simulations: allow 3.5 SE.
    c = res.coverage.loc["log_hr"]
    assert abs(c["coverage_95"] - c["coverage_expected"]) < 3.5 * np.sqrt(0.95 * 0.05 / 100)
    assert res.stats["divergences"].sum() <= 5  # a rare divergence in the funnel is tolerated


# -- SBC: Cox ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sbc_cox_calibrated():
    res = S.sbc("cox", n_sims=200, n_patients=N_COX, random_seed=4, n_jobs=1, progress=False)
    assert list(res.ranks.columns) == ["log_hr[treatment]", "log_hr[x1]"]
    assert res.p_value_adjusted > 0.01, res.summary()
    assert res.stats["divergences"].sum() == 0
    # Bayesian coverage of the treatment HR's 95% interval: expected 0.95 * 296/298 = 0.944 for
    # 297 draws; MC SE sqrt(.95 * .05 / 200) = 0.0154: the band is expected +- 3.5 SE
    # (0.890-0.998), wider than 93-97% because 200 NUTS fits is what the test budget affords;
    # the 93-97% check of the HR interval is the meta-analysis one (1000 exact fits) and the
    # Cox operating-characteristics one below (1000 fits).
    c = res.coverage.loc["log_hr[treatment]"]
    assert abs(c["coverage_95"] - c["coverage_expected"]) < 3.5 * 0.0154, res.coverage
    fig = res.plot()
    assert len(fig.axes) == 2


@pytest.mark.slow
def test_sbc_cox_wrong_prior_flagged():
    # Truth from treatment log-HR ~ N(0, 3); posterior with the N(0, 1) prior: too much shrinkage,
    # ranks of the treatment log-HR pile at both ends. Same compiled model as the test above.
    res = S.sbc("cox", n_sims=200, n_patients=N_COX, random_seed=4, n_jobs=1, progress=False,
                priors={"treatment_log_hr": bo.Prior("Normal", mu=0, sigma=3.0)}, fit_priors={})
    t = res.tests
    assert t.loc["log_hr[treatment]", "p_value"] * 2 < 1e-6, t
    assert t.loc["log_hr[treatment]", "sd_rank"] > 0.32  # over-confident: ranks at the ends


@pytest.mark.slow
def test_sbc_cox_with_censoring():
    # Exponential drop-out with hazard 0.5 against an event hazard ~1: about a third censored.
    # Censored partial-likelihood posteriors are not exact SBC targets (module docstring), so this
    # checks the censored path runs on the same compiled model and is not grossly off.
    res = S.sbc("cox", n_sims=40, n_patients=N_COX, random_seed=5, n_jobs=1, progress=False,
                censoring=0.5)
    ev = res.stats["events"]
    assert (ev < N_COX).all() and 0.5 * N_COX < ev.mean() < 0.85 * N_COX
    assert res.p_value_adjusted > 0.001


# -- operating characteristics ------------------------------------------------------------------

def test_oc_design_switches():
    oc = S.operating_characteristics(30, 0.5, n_sims=5, random_seed=1, method="laplace",
                                     censoring=False, follow_up=False, n_jobs=1, progress=False)
    assert oc.loc[0, "mean_events"] == 30  # no censoring at all: every patient has the event
    assert oc.attrs["design"]["censoring"] is None and oc.attrs["design"]["accrual"] is None
    oc2 = S.operating_characteristics(30, 0.5, n_sims=5, random_seed=1, method="laplace",
                                      censoring=0.05, n_jobs=1, progress=False)
    assert oc2.attrs["design"]["follow_up"] == 24.0 and oc2.attrs["design"]["censoring"] == 0.05


@pytest.mark.slow
def test_oc_nuts_agrees_with_laplace():
    kw = dict(prior=OC_PRIOR, adjust_prior=OC_ADJ, covariates={"x1": 0.3}, n_sims=100,
              random_seed=7, n_jobs=1, progress=False, return_simulations=True)
    nuts, sn = S.operating_characteristics([N_COX], [1.0, 0.5], method="nuts", **kw)
    lap, sl = S.operating_characteristics([N_COX], [1.0, 0.5], method="laplace", **kw)
    assert list(nuts["quantity"]) == ["type I error", "power"]
    assert nuts.attrs["method"] == "nuts" and lap.attrs["method"] == "laplace"
    # same seeds -> same simulated cohorts for both methods
    assert np.array_equal(sn["events"].to_numpy(), sl["events"].to_numpy())
    # n = 40, ~30 events: the posterior is close to normal, so its mean is close to the mode
    # (NUTS MC error of a mean from 1000 draws ~ 0.35/sqrt(1000) = 0.011)
    diff = (sn["log_hr_mean"] - sl["log_hr_mean"]).abs()
    assert diff.median() < 0.05, diff.describe()
    assert (sn["success"] == sl["success"]).mean() > 0.9
    t1 = nuts.iloc[0]
    # type-I error of P(HR<1)>0.95 at HR = 1: about 5% (<= 5% + 3 MC SE)
    assert t1["success_rate"] <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 100)
    assert nuts.iloc[1]["success_rate"] > t1["success_rate"]
    for row in nuts.itertuples():
        assert row.divergences == 0
        assert np.isclose(row.success_rate_mcse, np.sqrt(row.success_rate * (1 - row.success_rate) / 100))


@pytest.mark.slow
def test_oc_hr_interval_coverage_1000_sims():
    # Frequentist coverage at a fixed HR = 0.7 with a vague prior and n = 150 (~100 events): the
    # posterior is the partial likelihood, whose 95% interval covers ~95%. 1000 simulations:
    # MC SE 0.0069, so 0.93-0.97 is +-2.9 SE. method="laplace" (normal approximation at the mode,
    # the cheapest honest path at this size, checked against NUTS in the test above).
    oc = S.operating_characteristics([150], [0.7], n_sims=1000, random_seed=8, method="laplace",
                                     n_jobs=1, progress=False)
    row = oc.iloc[0]
    assert 0.93 <= row["coverage_95"] <= 0.97, oc.T
    assert np.isclose(row["coverage_95_mcse"], np.sqrt(row["coverage_95"] * (1 - row["coverage_95"]) / 1000))
    # posterior mean of the log-HR is nearly unbiased (Cox MLE bias is O(1/events)): 4 MC SE
    assert abs(row["bias_log_hr"]) < 4 * row["bias_log_hr_mcse"] + 0.02


# -- execution: factory models, process pool, Dask ------------------------------------------------

@pytest.mark.slow
def test_factory_sbc_pool_identical_to_serial():
    sim_engine.clear_cache()
    serial = S.sbc(normal_model, n_sims=24, n_patients=10, random_seed=9, n_jobs=1, progress=False)
    # compile once: the prior sampler and the NUTS model are built on the first simulation (2
    # misses) and found in the cache by the other 23 (2 hits each)
    assert sim_engine.cache_info() == {"hits": 46, "misses": 2, "size": 2}
    pooled = S.sbc(normal_model, n_sims=24, n_patients=10, random_seed=9, n_jobs=2, progress=False)
    assert list(serial.ranks.columns) == ["mu", "sigma"]
    pd.testing.assert_frame_equal(serial.ranks, pooled.ranks)
    pd.testing.assert_frame_equal(serial.truth, pooled.truth)


def test_factory_needs_pm_data():
    with pytest.raises(RuntimeError, match="pm.Data"):
        S.sbc(constant_observed_model, n_sims=1, n_patients=5, random_seed=1, n_jobs=1, progress=False)


@pytest.mark.slow
def test_dask_local_cluster_same_table():
    distributed = pytest.importorskip("distributed")
    kw = dict(n_sims=30, random_seed=10, method="laplace", progress=False)
    local = S.operating_characteristics([60, 100], [1.0, 0.6], n_jobs=1, **kw)
    sbc_local = S.sbc("meta", n_sims=20, random_seed=11, n_jobs=1, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        dask = S.operating_characteristics([60, 100], [1.0, 0.6], client=client, **kw)
        sbc_dask = S.sbc("meta", n_sims=20, random_seed=11, client=client, progress=False)
        ran_on = set(client.run(lambda: __import__("os").getpid()).values())
    assert len(ran_on) == 2
    pd.testing.assert_frame_equal(local, dask)
    pd.testing.assert_frame_equal(sbc_local.ranks, sbc_dask.ranks)


def test_oc_with_map_mixture_prior_borrows():
    # A meta-analytic-predictive prior centred on HR 0.41 (80% weight, SD 0.3): with ~33 events
    # (likelihood SD ~0.35) the posterior at a true HR of 1 is pulled to log-HR ~ -0.5 (SD ~0.23),
    # so P(HR < 1) > 0.95 in most simulations - the type-I error inflation borrowing buys power with.
    m = bo.NormalMixture([0.8, 0.2], [-0.9, 0.0], [0.3, 2.0])
    oc = S.operating_characteristics([60], [1.0], prior=m, n_sims=20, random_seed=1,
                                     method="laplace", n_jobs=1, progress=False)
    assert oc.attrs["prior"]["dist"] == "NormalMixture"
    assert oc.loc[0, "success_rate"] > 0.3 and oc.loc[0, "bias_log_hr"] < -0.1
