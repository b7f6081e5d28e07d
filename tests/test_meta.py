"""MetaAnalysis: exact posterior, frequentist cross-check, groups, sensitivity, bad input.

References: REFERENCES.md (metafor's BCG numbers; bayesmeta's eight-schools posterior) and
independent brute-force quadrature written here.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

import bayes_osteo as bo
from bayes_osteo.meta_exact import ExactPosterior

P = bo.Prior


@pytest.fixture(scope="module")
def bcg_st():
    d = bo.datasets.bcg()
    return bo.StudyEstimates(d.yi, d.sei, study=d.study)


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*a, **k)


# -- frequentist: metafor's BCG numbers (REFERENCES.md) ------------------------------------------
def test_bcg_frequentist_reproduces_metafor(bcg_st):
    tab = bo.MetaAnalysis(bcg_st).frequentist()
    fe, dl, reml = tab.loc["fixed"], tab.loc["DL"], tab.loc["REML"]
    # published to 4 decimals: agreement to 1e-4 (rounding) is well inside the 1e-3 target
    assert fe.estimate == pytest.approx(-0.4303, abs=1e-4)
    assert fe.se == pytest.approx(0.0405, abs=1e-4)
    assert fe.Q == pytest.approx(152.2330, abs=1e-4)
    assert fe.Q_df == 12
    assert fe.I2 == pytest.approx(0.9212, abs=1e-4)
    assert dl.estimate == pytest.approx(-0.7141, abs=1e-4)
    assert dl.se == pytest.approx(0.1787, abs=1e-4)
    assert dl.tau2 == pytest.approx(0.3088, abs=1e-4)
    assert (dl.ci_low, dl.ci_high) == pytest.approx((-1.0644, -0.3638), abs=1e-4)
    assert reml.estimate == pytest.approx(-0.7145, abs=1e-4)
    assert reml.se == pytest.approx(0.1798, abs=1e-4)
    assert reml.tau2 == pytest.approx(0.3132, abs=1e-4)
    assert (reml.ci_low, reml.ci_high) == pytest.approx((-1.0669, -0.3622), abs=1e-4)
    # prediction interval published to 2 decimals
    assert (reml.pi_low, reml.pi_high) == pytest.approx((-1.87, 0.44), abs=5e-3)


def test_frequentist_matches_statsmodels_and_kh(bcg_st):
    from statsmodels.stats.meta_analysis import combine_effects

    tab = bo.MetaAnalysis(bcg_st).frequentist()
    res = combine_effects(bcg_st.log_hr, bcg_st.se**2, method_re="chi2").summary_frame()
    assert tab.loc["fixed", "estimate"] == pytest.approx(res.loc["fixed effect", "eff"], abs=1e-10)
    assert tab.loc["DL", "estimate"] == pytest.approx(res.loc["random effect", "eff"], abs=1e-10)
    assert tab.loc["DL", "se"] == pytest.approx(res.loc["random effect", "sd_eff"], abs=1e-10)
    # statsmodels' "wls" rows are the Knapp-Hartung-type scaled SEs
    assert tab.loc["DL", "kh_se"] == pytest.approx(res.loc["random effect wls", "sd_eff"], abs=1e-10)
    assert tab.loc["fixed", "kh_se"] == pytest.approx(res.loc["fixed effect wls", "sd_eff"], abs=1e-10)


def test_egger_matches_ols(bcg_st):
    import statsmodels.api as sm

    eg = bo.MetaAnalysis(bcg_st).egger().iloc[0]
    ols = sm.OLS(bcg_st.log_hr / bcg_st.se, sm.add_constant(1 / bcg_st.se)).fit()
    assert eg.intercept == pytest.approx(ols.params[0], rel=1e-10)
    assert eg.p == pytest.approx(ols.pvalues[0], rel=1e-8)


# -- exact posterior vs published bayesmeta numbers ------------------------------------------------
# bayesmeta's numbers in REFERENCES.md are for its `Rubin1981` data: the unrounded effects and
# standard errors below (the rounded eight-schools values give tau mean 5.8829, mu mean 7.8274).
RUBIN_Y = [28.39, 7.94, -2.75, 6.82, -0.64, 0.63, 18.01, 12.16]
RUBIN_SE = [14.9, 10.2, 16.3, 11.0, 9.4, 11.4, 10.4, 17.6]
SCHOOL_PRIORS = {"log_hr": P("Normal", mu=0, sigma=50), "tau": P("HalfCauchy", beta=25)}


def test_eight_schools_exact_matches_bayesmeta():
    st = bo.StudyEstimates(RUBIN_Y, RUBIN_SE, study=list("ABCDEFGH"))
    ex = bo.MetaAnalysis(st, priors=SCHOOL_PRIORS).exact_posterior()
    assert ex.mean("tau") == pytest.approx(5.884511, abs=1e-3)
    assert ex.quantile("tau", 0.5) == pytest.approx(4.758539, abs=1e-3)
    assert ex.mean("log_hr") == pytest.approx(7.985729, abs=1e-3)
    assert ex.sd("log_hr") == pytest.approx(4.995762, abs=1e-3)
    # bayesmeta reports the *shortest* 95% interval, from its discretised (DIRECT) mixture
    # approximation of the mu marginal; ours (which agrees with brute-force quadrature below to
    # 1e-6) differs from its limits by 2.5e-3, the size of bayesmeta's approximation error.
    lo = _shortest(ex, "log_hr")
    assert lo == pytest.approx((-1.823353, 17.824562), abs=3e-3)


def _shortest(ex, var, prob=0.95):
    from scipy import optimize

    width = lambda a: ex.quantile(var, a + prob) - ex.quantile(var, a)  # noqa: E731
    a = optimize.minimize_scalar(width, bounds=(1e-9, 1 - prob - 1e-9), method="bounded",
                                 options={"xatol": 1e-10}).x
    return ex.quantile(var, a), ex.quantile(var, a + prob)


# -- exact posterior vs an independent brute-force 2-D quadrature -------------------------------------
Y5 = np.array([-0.9, -0.3, -1.4, -0.6, 0.1])
S5 = np.array([0.30, 0.25, 0.45, 0.20, 0.50])


def _brute_force(y, s, tau_pdf, tau_max, m0=0.0, s0=2.5):
    """Posterior moments on a (tau, mu) trapezoid grid, theta integrated analytically per point
    (y_i | mu, tau ~ N(mu, s_i^2 + tau^2)); no code shared with meta_exact. The tau grid is
    tau = tau_max v^3 on a uniform v grid (dense near 0, where the posterior mass is)."""
    v = np.linspace(0.0, 1.0, 2501)
    tau, jac = tau_max * v**3, 3 * tau_max * v**2
    mu = np.linspace(-6.0, 6.0, 1601)
    var = s[None, :, None] ** 2 + tau[:, None, None] ** 2                     # (tau, k, 1)
    logp = (-0.5 * (np.log(2 * np.pi * var) + (y[None, :, None] - mu[None, None, :]) ** 2 / var)).sum(1)
    with np.errstate(divide="ignore"):
        logp += np.log(tau_pdf(tau))[:, None] + stats.norm.logpdf(mu, m0, s0)[None, :]
    top = logp.max()
    p = np.exp(logp - top)
    pt_v = integrate.trapezoid(p, mu, axis=1) * jac       # density of v (unnormalised)
    z = integrate.trapezoid(pt_v, v)
    p_mu = integrate.trapezoid(p * jac[:, None], v, axis=0) / z
    out = {"log_ml": top + math.log(z)}
    out["tau_mean"] = integrate.trapezoid(tau * pt_v, v) / z
    out["tau2_mean"] = integrate.trapezoid(tau**2 * pt_v, v) / z
    out["tau_cdf_0.2"] = np.interp(0.2, tau, integrate.cumulative_trapezoid(pt_v, v, initial=0) / z)
    out["mu_mean"] = integrate.trapezoid(mu * p_mu, mu)
    out["mu_sd"] = math.sqrt(integrate.trapezoid(mu**2 * p_mu, mu) - out["mu_mean"] ** 2)
    out["mu_cdf_-0.5"] = np.interp(-0.5, mu, integrate.cumulative_trapezoid(p_mu, mu, initial=0))
    return out


@pytest.mark.parametrize("prior, pdf, tau_max", [
    (P("HalfNormal", sigma=0.5), lambda t: stats.halfnorm.pdf(t, 0, 0.5), 3.0),
    (P("HalfCauchy", beta=0.5), lambda t: stats.halfcauchy.pdf(t, 0, 0.5), 60.0),
    (P("Uniform", lower=0, upper=1.5), lambda t: stats.uniform.pdf(t, 0, 1.5), 1.5),
    (P("Exponential", lam=2.0), lambda t: stats.expon.pdf(t, 0, 0.5), 6.0),
])
def test_exact_matches_brute_force_quadrature(prior, pdf, tau_max):
    ex = ExactPosterior(Y5, S5, mu_prior=P("Normal", mu=0, sigma=2.5), tau_prior=prior)
    bf = _brute_force(Y5, S5, pdf, tau_max)
    # trapezoid grids of 2501 x 1601 points: error ~1e-5 (HalfCauchy: + tail mass beyond tau=60)
    tol = 2e-4
    assert ex.mean("tau") == pytest.approx(bf["tau_mean"], abs=tol)
    assert ex.cdf("tau", 0.2) == pytest.approx(bf["tau_cdf_0.2"], abs=tol)
    assert ex.mean("log_hr") == pytest.approx(bf["mu_mean"], abs=tol)
    assert ex.sd("log_hr") == pytest.approx(bf["mu_sd"], abs=tol)
    assert ex.cdf("log_hr", -0.5) == pytest.approx(bf["mu_cdf_-0.5"], abs=tol)
    assert ex.log_marginal_likelihood == pytest.approx(bf["log_ml"], abs=1e-3)
    # new study: E = E[mu], Var = Var(mu) + E[tau^2]
    assert ex.var("log_hr_new") == pytest.approx(bf["mu_sd"] ** 2 + bf["tau2_mean"], abs=tol)


_MU = np.linspace(-8, 8, 3201)


def _lik(t):
    """p(y | tau) with mu integrated on a fine grid (Simpson), independent of meta_exact."""
    dens = np.exp(stats.norm.logpdf(Y5[:, None], _MU, np.sqrt(S5**2 + t**2)[:, None]).sum(0)
                  + stats.norm.logpdf(_MU, 0, 2.5))
    return integrate.simpson(dens, x=_MU)


@pytest.mark.parametrize("prior", [P("LogNormal", mu=-1.5, sigma=1.0), P("HalfStudentT", nu=3, sigma=0.5),
                                   P("Gamma", alpha=2.0, beta=4.0)], ids=["lognormal", "halft", "gamma"])
def test_exact_other_tau_priors_match_1d_quadrature(prior):
    ex = ExactPosterior(Y5, S5, mu_prior=P("Normal", mu=0, sigma=2.5), tau_prior=prior)
    dist = bo.priors.to_scipy(prior)
    z = integrate.quad(lambda t: dist.pdf(t) * _lik(t), 0, 20, limit=200)[0]
    m = integrate.quad(lambda t: t * dist.pdf(t) * _lik(t), 0, 20, limit=200)[0] / z
    assert ex.mean("tau") == pytest.approx(m, rel=1e-5)
    assert ex.log_marginal_likelihood == pytest.approx(math.log(z), abs=1e-5)


def test_exact_theta_and_quantiles_consistent():
    ex = ExactPosterior(Y5, S5, mu_prior=P("Normal", mu=0, sigma=2.5), tau_prior=P("HalfNormal", sigma=0.5))
    q = np.array([0.025, 0.3, 0.5, 0.9, 0.975])
    for v in ("log_hr", "tau", "log_hr_new", "I2", "hr"):
        assert ex.cdf(v, ex.quantile(v, q)) == pytest.approx(q, abs=1e-8)
    # the pdf integrates to the cdf
    x = np.linspace(-3, -0.5, 2001)
    assert integrate.trapezoid(ex.pdf("log_hr", x), x) == pytest.approx(
        ex.cdf("log_hr", -0.5) - ex.cdf("log_hr", -3), abs=1e-6)
    t = np.linspace(1e-9, 0.4, 4001)
    assert integrate.trapezoid(ex.pdf("tau", t), t) == pytest.approx(ex.cdf("tau", 0.4), abs=1e-5)
    # theta: shrinkage between y_i and the pooled mean; quantiles per study
    th = ex.mean("theta")
    assert th.shape == (5,)
    assert np.all(np.minimum(Y5, ex.mean("log_hr")) - 1e-12 <= th)
    assert np.all(th <= np.maximum(Y5, ex.mean("log_hr")) + 1e-12)
    qth = ex.quantile("theta", [0.1, 0.9])
    assert qth.shape == (2, 5)
    assert ex.cdf("theta", 0.0).shape == (5,)


def test_fixed_effect_exact_is_conjugate_normal():
    ex = ExactPosterior(Y5, S5, mu_prior=P("Normal", mu=0.2, sigma=2.0), tau_prior=None)
    prec = 1 / 2.0**2 + np.sum(1 / S5**2)
    mean = (0.2 / 4.0 + np.sum(Y5 / S5**2)) / prec
    assert ex.mean("log_hr") == pytest.approx(mean, rel=1e-12)
    assert ex.sd("log_hr") == pytest.approx(prec**-0.5, rel=1e-12)
    cov = np.diag(S5**2) + 4.0
    assert ex.log_marginal_likelihood == pytest.approx(
        stats.multivariate_normal(np.full(5, 0.2), cov).logpdf(Y5), rel=1e-12)
    with pytest.raises(ValueError, match="fixed-effect"):
        ex.mean("tau")


# -- exact draws ------------------------------------------------------------------------------------------
def test_fit_exact_datatree_and_mc_agreement():
    st = bo.StudyEstimates(Y5, S5, study=list("abcde"))
    ma = bo.MetaAnalysis(st)
    dt = ma.fit(method="exact", draws=2000, chains=4, random_seed=3)
    post = dt["posterior"]
    assert dt.attrs["inference"] == "exact"
    assert set(post.data_vars) == {"log_hr", "hr", "tau", "I2", "log_hr_new", "hr_new", "theta"}
    assert post["theta"].dims == ("chain", "draw", "study")
    assert list(post["theta"].study.values) == list("abcde")
    assert post["log_hr"].shape == (4, 2000)
    ex = ma.exact_posterior()
    n = 8000  # i.i.d. draws: MCSE = sd / sqrt(n); 4.5 MCSE bounds a false failure at ~1e-5 per check
    for v in ("log_hr", "tau", "log_hr_new"):
        x = post[v].values.ravel()
        assert abs(x.mean() - ex.mean(v)) < 4.5 * ex.sd(v) / math.sqrt(n), v
    th = post["theta"].values.reshape(n, -1)
    assert np.all(np.abs(th.mean(0) - ex.mean("theta")) < 4.5 * ex.sd("theta") / math.sqrt(n))
    # tau draws follow the exact cdf (Kolmogorov-Smirnov)
    assert stats.kstest(post["tau"].values.ravel(), lambda t: ex.cdf("tau", t)).pvalue > 1e-4
    diag = bo.summarize.diagnostics(dt)
    assert diag["r_hat"].max() < 1.01 and diag["ess_bulk"].min() > 6000
    # reproducible bit for bit
    dt2 = ma.fit(method="exact", draws=2000, chains=4, random_seed=3)
    assert np.array_equal(dt2["posterior"]["theta"].values, post["theta"].values)
    het = bo.summarize.heterogeneity(dt)
    assert het["tau_median"].iloc[0] == pytest.approx(ex.quantile("tau", 0.5), abs=0.02)


def test_summaries_work_on_exact_results(bcg_st):
    dt = bo.MetaAnalysis(bcg_st).fit(method="exact", draws=500, random_seed=1)
    hr = bo.summarize.hazard_ratios(dt, include_new=True)
    assert list(hr.index) == ["hr", "new study"]
    assert hr.attrs["inference"] == "exact"


# -- model structure ---------------------------------------------------------------------------------------
def test_model_uses_data_containers_and_map_is_fixed_effect_mle(bcg_st):
    ma = bo.MetaAnalysis(bcg_st, effects="fixed", priors={"log_hr": P("Normal", mu=0, sigma=100)})
    arrays = ma.data_arrays()
    assert set(arrays) == {"y", "se"}
    names = {v.name for v in ma.model.data_vars}
    assert {"y", "se"} <= names
    mp = ma.find_map()
    assert float(mp["log_hr"]) == pytest.approx(-0.4303, abs=1e-3)  # fixed-effect MLE (metafor)
    with pytest.raises(ValueError, match="same k"):
        ma.data_arrays(bo.StudyEstimates([0.1, 0.2], [0.1, 0.1]))


def test_random_model_variables_and_dims():
    d = bo.datasets.ning2026_simulated_studies()
    st = bo.StudyEstimates(d.log_hr, d.se, study=d.study, group=d.factor + " | " + d.endpoint)
    ma = bo.MetaAnalysis(st, share_tau=True)
    m = ma.model
    assert m.named_vars_to_dims["tau"] == ("group",)
    assert m.named_vars_to_dims["theta"] == ("study",)
    assert len(m.coords["study"]) == 43  # repeated study labels are made unique with their group
    assert {"log_hr", "tau_pop", "tau_spread", "tau_z", "z", "z_new"} <= {v.name for v in m.free_RVs}
    with pytest.raises(ValueError, match="share_tau"):
        ma.exact_posterior()


# -- groups --------------------------------------------------------------------------------------------------
def test_grouped_osteosarcoma_table():
    """Bundled real study table, grouped by factor. Rows: one per cohort (the IPTW row of Smolle
    2023, not its unadjusted twin; the full Lautz 2021 OS cohort, not its subset, and not the
    pulmonary-recurrence endpoint; the derived bilateral row, not its printed inverse). Only
    metastasectomy has 2 studies: it is random effects; the 1-study factors are fixed effect
    (a single study cannot estimate heterogeneity), and every group warns (k < 4)."""
    df = bo.datasets.osteosarcoma_studies()
    rows = ["liu2022_pm", "smolle2023_pm_iptw", "lautz2021_vats_os", "choi2014_dfi",
            "choi2014_bilateral_derived"]
    sub = df.set_index("row_id").loc[rows].reset_index()
    st = bo.StudyEstimates.from_hr_ci(sub, study="row_id", group="factor")
    with pytest.raises(ValueError, match="VATS"):
        quiet(bo.MetaAnalysis, st)  # random effects for 1-study groups: an error naming them
    effects = {"VATS": "fixed", "DFI": "fixed", "bilateral": "fixed"}
    with pytest.warns(UserWarning, match=r"'metastasectomy' \(k=2\)"):
        ma = bo.MetaAnalysis(st, effects=effects)
    ex = ma.exact_posterior()
    assert set(ex.groups) == {"metastasectomy", "VATS", "DFI", "bilateral"}
    # one-study fixed-effect groups: the study's own HR, shrunk negligibly by the N(0, 2.5) prior
    vats = ex.quantile("hr", 0.5, group="VATS")
    y, s = st.log_hr[2], st.se[2]
    assert vats == pytest.approx(math.exp(y * 2.5**2 / (2.5**2 + s**2)), rel=1e-10)  # conjugate normal
    pm_hr = ex.quantile("hr", [0.025, 0.5, 0.975], group="metastasectomy")
    assert 0.15 < pm_hr[1] < 0.3 and pm_hr[2] < 1
    dt = ma.fit(method="exact", draws=500, random_seed=2)
    assert dt["posterior"]["hr"].dims == ("chain", "draw", "group")
    het = bo.summarize.heterogeneity(dt)
    assert het.loc["VATS", "tau_median"] == 0.0
    tab = bo.summarize.hazard_ratios(dt)
    assert list(tab.index) == ["metastasectomy", "VATS", "DFI", "bilateral"]


def test_ning2026_simulated_table_reproduces_published_pooled_hrs():
    df = bo.datasets.ning2026_simulated_studies()
    assert df.attrs["simulated"] is True and "SIMULATED" in bo.datasets.ning2026_simulated_studies.__doc__
    assert df.study.nunique() == 21
    assert df.equals(bo.datasets.ning2026_simulated_studies())  # deterministic
    st = bo.StudyEstimates.from_hr_ci(df, group=["factor", "endpoint"])
    pub = bo.datasets.published_pooled().query("first_author == 'Ning'")
    pub_key = {("metastasectomy", "PRS"): "metastasectomy | PRS",
               ("complete resection", "PRS"): "complete resection | PRS",
               ("complete resection", "PMOS"): "complete resection | PMOS",
               ("bilateral", "PMOS"): "bilateral | PMOS", ("bilateral", "PRS"): "bilateral | PRS",
               ("VATS", "mortality (as in abstract)"): "VATS | mortality"}
    effects = {g: ("random" if m.startswith("random") else "fixed") for g, m in df.attrs["pooling"].items()}
    ma = bo.MetaAnalysis(st, effects=effects)
    freq = ma.frequentist()
    ex = ma.exact_posterior()
    for _, row in pub.iterrows():
        g = pub_key[(row.factor, row.endpoint)]
        # 1) the generator's calibration: the published pooling method reproduces the numbers
        f = freq[freq.group == g].loc["DL" if effects[g] == "random" else "fixed"]
        assert f.hr == pytest.approx(row.hr, abs=1e-9)
        # the published HR is rounded to 2 decimals, so compare the CI's log-width (the SE)
        assert math.log(f.hr_ci_high / f.hr_ci_low) == pytest.approx(math.log(row.ci_high / row.ci_low),
                                                                     rel=1e-9)
        # 2) the Bayesian grouped analysis recovers them: exact posterior median within a quarter
        #    of the published SE on the log scale, and a 95% CrI whose log-width lies between 0.9x
        #    the published width and the Knapp-Hartung width (Bayes integrates over tau, which DL
        #    plugs in, so its interval may be wider than DL's; it is not a t-based KH interval)
        se = (math.log(row.ci_high) - math.log(row.ci_low)) / (2 * 1.959964)
        lo, med, hi = ex.quantile("hr", [0.025, 0.5, 0.975], group=g)
        assert abs(math.log(med) - math.log(row.hr)) < 0.25 * se, g
        width, pub_width = math.log(hi / lo), math.log(row.ci_high / row.ci_low)
        assert 0.9 * pub_width < width < f.kh_ci_high - f.kh_ci_low, g
        assert lo < row.hr < hi


# -- fixed vs random, sensitivity ------------------------------------------------------------------------------
def test_model_comparison(bcg_st):
    tab = bo.MetaAnalysis(bcg_st).model_comparison()
    row = tab.iloc[0]
    # BCG is very heterogeneous (I^2 = 92%): random effects overwhelmingly preferred
    assert row.p_random > 0.999 and row.rule_model == "random"
    assert row.rule_hr == pytest.approx(math.exp(-0.7141), abs=1e-4)
    assert row.avg_hr == pytest.approx(row.random_hr, rel=1e-6)
    # marginal likelihoods: fixed-effect closed form, independent of the module
    cov = np.diag(bcg_st.se**2) + 2.5**2
    lml = stats.multivariate_normal(np.zeros(13), cov).logpdf(bcg_st.log_hr)
    assert row.log_ml_fixed == pytest.approx(lml, rel=1e-10)
    # a homogeneous data set: posterior probabilities between the two, averaged effect between
    st = bo.StudyEstimates([-0.5, -0.45, -0.6, -0.52], [0.2, 0.25, 0.3, 0.22])
    r = quiet(bo.MetaAnalysis, st).model_comparison().iloc[0]
    assert 0.05 < r.p_random < 0.6 and r.rule_model == "fixed"
    assert min(r.fixed_hr, r.random_hr) <= r.avg_hr <= max(r.fixed_hr, r.random_hr)


def test_leave_one_out_tau_sensitivity_funnel(bcg_st):
    ma = bo.MetaAnalysis(bcg_st)
    loo = ma.leave_one_out()
    assert len(loo) == 14 and loo.omitted.iloc[0] == "(none)"
    # dropping study j equals an exact analysis of the other 12
    j = 7
    ex = ExactPosterior(np.delete(bcg_st.log_hr, j), np.delete(bcg_st.se, j), mu_prior=ma.priors["log_hr"],
                        tau_prior=ma.priors["tau"])
    assert loo.iloc[j + 1].log_hr_mean == pytest.approx(ex.mean("log_hr"), rel=1e-12)
    sens = ma.tau_sensitivity({"HN(0.25)": P("HalfNormal", sigma=0.25), "HN(1)": P("HalfNormal", sigma=1.0),
                               "HC(0.5)": P("HalfCauchy", beta=0.5)})
    assert list(sens.tau_prior) == ["HN(0.25)", "HN(1)", "HC(0.5)"]
    assert sens.tau_median.iloc[0] < sens.tau_median.iloc[1]  # a tighter prior pulls tau down
    fd = ma.funnel_data()
    assert len(fd) == 13 and np.allclose(fd.limit_high - fd.limit_low, 2 * 1.959964 * fd.se)
    with pytest.raises(ValueError, match="tau"):
        ma.tau_sensitivity([P("Normal", mu=0, sigma=1)])


# -- bad input ---------------------------------------------------------------------------------------------------
def test_bad_input_errors():
    with pytest.raises(ValueError, match="at least 2 studies"):
        bo.MetaAnalysis(bo.StudyEstimates([-0.5], [0.2]))
    quiet(bo.MetaAnalysis, bo.StudyEstimates([-0.5], [0.2]), effects="fixed")  # fine
    with pytest.raises(bo.DataValidationError, match="se must be finite and > 0"):
        bo.MetaAnalysis(bo.StudyEstimates([-0.5, -0.2, 0.1], [0.0, 0.0, 0.0]))
    with pytest.raises(bo.DataValidationError, match="different lengths"):
        bo.MetaAnalysis(bo.StudyEstimates([-0.5, -0.2, 0.1], [0.2, 0.2, 0.2], group=["a", "b"]))
    st = bo.StudyEstimates(Y5, S5)
    with pytest.raises(TypeError, match="StudyEstimates"):
        bo.MetaAnalysis(pd.DataFrame({"y": Y5}))
    with pytest.raises(ValueError, match="effects must be"):
        bo.MetaAnalysis(st, effects="mixed")
    with pytest.raises(ValueError, match="mapping needs grouped"):
        bo.MetaAnalysis(st, effects={"a": "fixed"})
    stg = bo.StudyEstimates(np.r_[Y5, Y5], np.r_[S5, S5], group=["a"] * 5 + ["b"] * 5)
    with pytest.raises(ValueError, match=r"\['c'\]"):
        bo.MetaAnalysis(stg, effects={"c": "fixed"})
    with pytest.raises(ValueError, match="Unknown prior"):
        bo.MetaAnalysis(st, priors={"sigma": P("HalfNormal", sigma=1)})
    for bad in (P("Normal", mu=0, sigma=1), P("Cauchy", alpha=0, beta=1),
                P("HalfNormal", sigma=P("HalfNormal", sigma=1))):
        with pytest.raises(ValueError, match="tau"):
            bo.MetaAnalysis(st, priors={"tau": bad}).exact_posterior()
    with pytest.raises(ValueError, match="Normal prior for 'log_hr'"):
        bo.MetaAnalysis(st, priors={"log_hr": P("StudentT", nu=3, mu=0, sigma=1)}).exact_posterior()
    assert not bo.MetaAnalysis(st, priors={"tau": P("Normal", mu=0, sigma=1)}).exact_available
    with pytest.raises(ValueError, match="share_tau"):
        bo.MetaAnalysis(st, share_tau=True)
    with pytest.raises(ValueError, match="covariates"):
        bo.MetaAnalysis(st, moderators=["year"])
    cov = pd.DataFrame({"year": [2001, 2005, 2010, 2012, 2020], "design": list("aabba")})
    stc = bo.StudyEstimates(Y5, S5, covariates=cov)
    with pytest.raises(ValueError, match="numeric"):
        bo.MetaAnalysis(stc, moderators=["design"])
    with pytest.raises(ValueError, match="not in the study covariates"):
        bo.MetaAnalysis(stc, moderators=["latitude"])
    with pytest.raises(ValueError, match="meta-regression"):
        bo.MetaAnalysis(stc, moderators=["year"]).fit(method="exact")
    with pytest.raises(ValueError, match="method"):
        bo.MetaAnalysis(st).fit(method="laplace")


def test_few_studies_warning_names_group():
    stg = bo.StudyEstimates(np.r_[Y5, Y5[:3]], np.r_[S5, S5[:3]], group=["big"] * 5 + ["small"] * 3)
    with pytest.warns(UserWarning, match=r"'small' \(k=3\)") as rec:
        bo.MetaAnalysis(stg)
    assert "'big'" not in str(rec[0].message)
