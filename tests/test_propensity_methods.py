"""Propensity-score outcome analyses on the bundled SIMULATED cohort and on simulated confounding.

Estimands (see ``bayes_osteo.propensity_methods``): matching -> marginal HR among matched treated
(ATT); stratification -> HR conditional on score stratum; covariate -> HR conditional on the score;
IPTW -> marginal HR (ATE, or ATT). The Cox HR is non-collapsible and the simulated cohort's surgery
effect is heterogeneous (weaker with >= 3 lobes, high ALP, incomplete resection), so these targets
differ; each method is checked against its own large-sample value, computed on a large cohort from
the same generator.
"""

import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import optimize
from scipy.special import expit

import bayes_osteo as bo
from bayes_osteo.components import cox_partial_loglik, cox_risk_structure
from bayes_osteo.cox import CoxModel
from bayes_osteo.priors import Prior
from bayes_osteo.propensity import (
    PropensityScore,
    iptw_weights,
    match_nearest,
    ps_strata,
    standardized_differences,
)
from bayes_osteo.propensity_methods import (
    propensity_analysis,
    propensity_design,
    treatment_effect_table,
)

pytestmark = pytest.mark.slow
TRT = "metastasectomy"
FIT = {"draws": 250, "tune": 250, "chains": 2, "progressbar": False, "check": False}


def _cox_mle(time, event, X, w=None, strata=None):
    """Cox (Breslow) MLE, optionally weighted / stratified: scipy BFGS on the O(n) numpy
    partial likelihood of ``bayes_osteo.components`` (value and analytic gradient). Returns the
    first coefficient."""
    X = np.asarray(X, float).reshape(len(time), -1)
    st = cox_risk_structure(time, event, w, strata, None)

    def f(b):
        ll, g = cox_partial_loglik(X @ b, st, ties="breslow")
        return -ll, -(X.T @ g)

    res = optimize.minimize(f, np.zeros(X.shape[1]), jac=True, method="BFGS",
                            options={"gtol": 1e-8})
    return float(res.x[0])


def _weighted_breslow(time, event, x, w):
    return _cox_mle(time, event, x, w)


@pytest.fixture(scope="module")
def cohort():
    df = bo.datasets.liu2022_cohort()
    sd = bo.SurvivalData.from_frame(df, duration="months", event="death", treatment=TRT,
                                    covariates=df.attrs["confounders"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ps = PropensityScore(sd).fit(draws=300, tune=300, chains=2, random_seed=11, check=False)
    return df, sd, ps


@pytest.fixture(scope="module")
def analyses(cohort):
    _, sd, ps = cohort
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, method in enumerate(("matching", "stratification", "covariate", "iptw")):
            out[method] = propensity_analysis(sd, method, ps=ps, n_ps_draws=2, random_seed=20 + i,
                                              **FIT)
    return out


@pytest.fixture(scope="module")
def targets(cohort):
    """Large-sample values of each method's estimator in the simulated population (n = 8000 from
    the same generator; MLE score and Cox MLE, :func:`_cox_mle`). Their sampling SD
    (~0.03 on the log scale) is a tenth of the n = 125 posterior SD."""
    df0, _, _ = cohort
    n = 8000
    df = bo.datasets.simulate_liu2022_cohort(n=n, n_operated=round(59 / 125 * n), seed=99)
    ps = PropensityScore(df, treatment=TRT, covariates=df0.attrs["confounders"])
    Z = np.column_stack([np.ones(n), ps.design.Z])
    lg = Z @ sm.Logit(ps.t, Z).fit(disp=0).params
    tm, ev, t = df.months.to_numpy(), df.death.to_numpy(), ps.t.astype(float)
    k = match_nearest(lg, ps.t).mask
    return {"matching": _cox_mle(tm[k], ev[k], t[k]),
            "stratification": _cox_mle(tm, ev, t, strata=ps_strata(lg, 5)),
            "covariate": _cox_mle(tm, ev, np.column_stack([t, lg])),
            "iptw": _cox_mle(tm, ev, t, iptw_weights(expit(lg), ps.t))}


# -- balance -------------------------------------------------------------------------------------
def test_balance_table_on_the_bundled_cohort(cohort):
    """The SIMULATED cohort (n = 125) is confounded (|SMD| up to ~0.4 before adjustment).

    After IPTW (ATE) every |SMD| <= 0.1 (the score model is correctly specified: the generator's
    selection is logistic). After 1:1 matching (0.2-SD caliper, ~49 pairs) every |SMD| <= 0.1 does
    NOT hold: age stays at ~0.25. With ~49 pairs the chance imbalance per covariate has SD
    ~ sqrt(2/49) = 0.2, as in a randomised trial of that size; tighter calipers, replacement and
    Mahalanobis matching within the caliper were tried and do not remove it (they drop more pairs).
    Cardinality matching meets it (next test); so does greedy matching in a large cohort from the
    same generator (the test after).
    """
    _, _, ps = cohort
    bal = ps.balance()
    assert list(bal.columns) == ["smd_before", "smd_after_matching", "smd_after_stratification",
                                 "smd_after_iptw"]
    assert list(bal.index) == ["age", "sex[male]", "dfi_gt_12", "n_nodules", "bilateral",
                               "lobes_ge3", "alp_high"]
    X, t = ps.design.balance_X, ps.t
    np.testing.assert_allclose(bal["smd_before"], standardized_differences(X, t))
    np.testing.assert_allclose(bal["smd_after_iptw"], standardized_differences(X, t, ps.weights()))
    assert bal["smd_after_iptw"].abs().max() <= 0.1
    strong = bal["smd_before"].abs() > 0.25
    assert strong.sum() >= 3
    for col in ("smd_after_matching", "smd_after_stratification", "smd_after_iptw"):
        assert (bal.loc[strong, col].abs() < bal.loc[strong, "smd_before"].abs()).all(), col
    m = bal.attrs["matching"]
    assert m["n_pairs"] + m["n_treated_dropped"] == 59 and m["n_control"] == 66
    assert 0 < bal.attrs["ess"]["total"] < 125
    ess = ps.ess()
    assert ess["treated"] <= 59 and ess["control"] <= 66


def test_cardinality_matching_meets_the_criterion_on_the_bundled_cohort(cohort, targets):
    """Cardinality matching (the most pairs within the 0.2-SD caliper with every |SMD| <= 0.1)
    meets the balance criterion that greedy matching misses on the SIMULATED n = 125 cohort, at
    the posterior-mean score and at every score draw the outcome analysis uses, without giving
    up more than a few pairs; its outcome analysis covers the matching target (the greedy and
    the cardinality matched-treated populations coincide in large samples)."""
    _, sd, ps = cohort
    greedy = ps.balance(["matching"])
    card = ps.balance(["matching"], matching="cardinality")
    assert card["smd_after_matching"].abs().max() <= 0.1
    assert card.attrs["balanced"]["matching"] and card.attrs["matching"]["algorithm"] == "cardinality"
    np.testing.assert_allclose(card["smd_before"], greedy["smd_before"])
    assert card.attrs["matching"]["n_pairs"] >= greedy.attrs["matching"]["n_pairs"] - 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = propensity_analysis(sd, "matching", matching="cardinality", ps=ps, n_ps_draws=2,
                                 random_seed=31, **FIT)
    design = bo.propensity_methods.design_info(dt)
    assert design["algorithm"] == "cardinality" and design["n_analysed"] == 2 * design["n_pairs"]
    for i in dt["propensity"]["posterior_index"].values:       # the score draws actually used
        lg = ps.logit_draws()[int(i)]
        m = ps.match(matching="cardinality", logit=lg)
        assert np.all(np.abs(standardized_differences(ps.design.balance_X, ps.t, m.weights,
                                                      binary=ps.design.balance_binary)) <= 0.1)
    row = bo.summarize.hazard_ratios(dt).loc[TRT]
    target, slack = float(np.exp(targets["matching"])), np.exp(2 * 0.03)
    assert row["ci_low"] / slack < target < row["ci_high"] * slack, (target, row.to_dict())
    assert dt.attrs["pseudo_posterior"] == "false"


def test_balance_criterion_met_in_a_large_cohort_from_the_generator():
    """n = 2000 from the same generator (chance imbalance ~0.05): every |SMD| <= 0.1 after IPTW
    (ATE and ATT) and after matching with a 0.05-SD caliper or with replacement. The default
    0.2-SD greedy match without replacement leaves ~0.12 on ``n_nodules``: with controls barely
    outnumbering the treated, the control in most pairs sits below its treated partner's score."""
    n = 2000
    df = bo.datasets.simulate_liu2022_cohort(n=n, n_operated=round(59 / 125 * n), seed=0)
    ps = PropensityScore(df, treatment=TRT, covariates=df.attrs["confounders"])
    lg = ps.map_logit()
    for kw in ({"estimand": "ATE"}, {"estimand": "ATT"}):
        bal = ps.balance(["iptw"], logit=lg, **kw)
        assert bal.attrs["balanced"]["iptw"], (kw, bal["smd_after_iptw"].abs().max())
    for kw in ({"caliper": 0.05}, {"replace": True}):
        bal = ps.balance(["matching"], logit=lg, **kw)
        assert bal.attrs["balanced"]["matching"], (kw, bal["smd_after_matching"].abs().max())
    tight = ps.balance(["matching"], logit=lg, caliper=0.05)["smd_after_matching"].abs().max()
    default = ps.balance(["matching"], logit=lg)["smd_after_matching"].abs().max()
    assert tight < default


# -- the four analyses ---------------------------------------------------------------------------
def test_all_four_methods_run_and_cover_their_targets(cohort, analyses, targets):
    df, sd, _ = cohort
    for method, dt in analyses.items():
        tab = bo.summarize.hazard_ratios(dt)
        row = tab.loc[TRT]
        target = float(np.exp(targets[method]))
        # the target is itself an n = 8000 estimate with sampling SD ~0.03 on the log scale
        # (fixture docstring): allow 2 of those SDs beyond the 95% credible interval
        slack = np.exp(2 * 0.03)
        assert row["ci_low"] / slack < target < row["ci_high"] * slack, (method, target, row.to_dict())
        assert dt["posterior"].sizes["draw"] == 2 * FIT["draws"]
        assert dt["propensity"].sizes["ps_draw"] == 2
        assert dt.attrs["method"] == method and dt.attrs["n_ps_draws"] == 2
        assert "estimand" in dt.attrs
    # the conditional-on-covariates target agrees with the cohort's stated truth up to the
    # generator's calibration; report it alongside
    assert np.isfinite(df.attrs["true_adjusted_hr"])
    iptw = analyses["iptw"]
    assert iptw.attrs["pseudo_posterior"] == "true"
    assert "pseudo-posterior" in bo.summarize.hazard_ratios(iptw)["note"].iloc[0]
    assert analyses["matching"].attrs["pseudo_posterior"] == "false"
    design = bo.propensity_methods.design_info(analyses["matching"])
    assert design["n_pairs"] + design["n_treated_dropped"] == 59
    assert design["n_analysed"] == 2 * design["n_pairs"]
    assert 0 < bo.propensity_methods.design_info(iptw)["ess"] < sd.n


def test_mean_score_switch_and_reproducibility(cohort):
    _, sd, ps = cohort
    kw = {**FIT, "draws": 150, "tune": 150}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = propensity_analysis(sd, "covariate", ps=ps, ps_draws="mean", random_seed=5, **kw)
        b = propensity_analysis(sd, "covariate", ps=ps, ps_draws="mean", random_seed=5, **kw)
    assert a.attrs["n_ps_draws"] == 1 and a["posterior"].sizes["draw"] == 150
    np.testing.assert_array_equal(a["posterior"]["log_hr"].values, b["posterior"]["log_hr"].values)
    osd, info = propensity_design(sd, ps.logit_score(), "covariate")
    assert osd.covariate_names == [TRT, "logit_ps"]
    np.testing.assert_allclose(osd.column("logit_ps"), ps.logit_score())


def test_iptw_mode_agrees_with_statsmodels_phreg(cohort):
    """statsmodels PHReg has no case weights, so the comparison uses integer weights
    (round(20 w)): a weighted Breslow likelihood with integer weights is exactly the likelihood of
    the rows repeated that many times. The Cox mode under N(0, 100) priors differs from the MLE by
    ~1e-5 here; the tolerance is the optimisers'."""
    _, sd, ps = cohort
    vague = {"treatment_log_hr": Prior("Normal", mu=0, sigma=100)}
    # ATE: integer weights, the same on both sides (zero-weight rows dropped on both sides)
    osd, _ = propensity_design(sd, ps.logit_score(), "iptw", estimand="ATE")
    np.testing.assert_allclose(osd.weights, ps.weights("ATE"))
    wi = np.round(20 * osd.weights).astype(int)
    frame = osd.frame.assign(_w_int=wi / 20).loc[wi > 0]
    isd = bo.SurvivalData.from_frame(frame, duration="months", event="death", treatment=TRT,
                                     weights="_w_int")
    mode = float(CoxModel(isd, ties="breslow", priors=vague).find_map()["log_hr"][0])
    rep = np.repeat(np.arange(isd.n), np.round(20 * isd.weights).astype(int))
    ref = sm.PHReg(isd.time[rep], isd.X[rep], status=isd.event[rep], ties="breslow").fit()
    assert mode == pytest.approx(ref.params[0], abs=2e-3)
    # ATT with the exact (unrounded) weights against an independent scipy fit
    osd, _ = propensity_design(sd, ps.logit_score(), "iptw", estimand="ATT")
    np.testing.assert_allclose(osd.weights, ps.weights("ATT"))
    exact = float(CoxModel(osd, ties="breslow", priors=vague).find_map()["log_hr"][0])
    assert exact == pytest.approx(_weighted_breslow(osd.time, osd.event, osd.X[:, 0], osd.weights),
                                  abs=2e-3)


def test_treatment_effect_table(cohort, analyses):
    df, sd, _ = cohort
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = treatment_effect_table(sd, results=analyses, random_seed=3, **FIT)
    assert list(tab.index) == ["unadjusted", "multivariable", "matching", "stratification",
                               "covariate", "iptw"]
    assert {"estimand", "hr_median", "ci_low", "ci_high", "pseudo_posterior"} <= set(tab.columns)
    assert tab.loc["iptw", "pseudo_posterior"] and not tab.loc["multivariable", "pseudo_posterior"]
    assert tab.loc["unadjusted", "n_analysed"] == 125
    assert tab.loc["matching", "n_analysed"] < 125
    # confounding: the crude HR overstates the benefit of surgery relative to the adjusted one
    assert tab.loc["unadjusted", "hr_median"] < tab.loc["multivariable", "hr_median"]
    assert (tab["ci_low"] < tab["hr_median"]).all() and (tab["hr_median"] < tab["ci_high"]).all()


# -- simulation: known confounding ---------------------------------------------------------------
def _sim(rng, n, beta=-0.7):
    """x, z confound treatment and death; the prognostic score is proportional to the true logit
    score, so adjusting for the score removes confounding exactly (conditional HR = exp(beta))."""
    x = rng.normal(size=n)
    z = rng.binomial(1, 0.5, n)
    s = x + 0.8 * z
    t = rng.binomial(1, expit(-0.4 + s))
    time = rng.exponential(10 * np.exp(-(beta * t + 0.8 * s)))
    cens = rng.uniform(5, 30, n)
    return x, z, t, np.minimum(time, cens), (time <= cens).astype(int)


def _marginal_truth(beta=-0.7, n=40_000, seed=123):
    """Marginal ATE and ATT log-HRs from potential outcomes (Cox on the stacked counterfactual
    arms, same censoring). Monte-Carlo SD ~0.01."""
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=n), rng.binomial(1, 0.5, n)
    s = x + 0.8 * z
    t = rng.binomial(1, expit(-0.4 + s))
    out = {}
    cens = rng.uniform(5, 30, n)
    t1 = rng.exponential(10 * np.exp(-(beta + 0.8 * s)))
    t0 = rng.exponential(10 * np.exp(-(0.8 * s)))
    for name, mask in (("ATE", np.ones(n, bool)), ("ATT", t == 1)):
        tt = np.concatenate([np.minimum(t1, cens)[mask], np.minimum(t0, cens)[mask]])
        dd = np.concatenate([(t1 <= cens)[mask], (t0 <= cens)[mask]]).astype(int)
        arm = np.concatenate([np.ones(mask.sum()), np.zeros(mask.sum())])
        out[name] = _cox_mle(tt, dd, arm)
    return out


def test_simulation_unadjusted_is_biased_propensity_analyses_are_not():
    """40 replicates of n = 400 with known confounding. Each replicate uses the posterior mode /
    MLE (statsmodels Logit for the score; the Cox MLE, by scipy on the package's numpy partial
    likelihood, which statsmodels PHReg matches - see the IPTW test - for the outcome) and
    this package's designs (match_nearest, ps_strata, iptw_weights). Bias is a property of the
    design (which subjects, weights and adjustment terms enter the likelihood), identical for the
    Bayesian fit, whose mode equals the MLE under vague priors (test above); repeating NUTS in
    every replicate would add cost, not information. Monte-Carlo SE of a mean over 40 replicates
    ~0.02; the crude bias is ~+0.5."""
    beta = -0.7
    truth = _marginal_truth(beta)
    rng = np.random.default_rng(2024)
    est = {k: [] for k in ("unadjusted", "matching", "stratification", "covariate", "iptw")}
    for _ in range(40):
        x, z, t, time, d = _sim(rng, 400, beta)
        Z = np.column_stack([np.ones(t.size), x, z])
        lg = Z @ sm.Logit(t, Z).fit(disp=0).params
        tf = t.astype(float)
        est["unadjusted"].append(_cox_mle(time, d, tf))
        k = match_nearest(lg, t).mask
        est["matching"].append(_cox_mle(time[k], d[k], tf[k]))
        est["stratification"].append(_cox_mle(time, d, tf, strata=ps_strata(lg, 5)))
        est["covariate"].append(_cox_mle(time, d, np.column_stack([tf, lg])))
        est["iptw"].append(_cox_mle(time, d, tf, iptw_weights(expit(lg), t)))
    mean = {k: float(np.mean(v)) for k, v in est.items()}
    se = {k: float(np.std(v, ddof=1) / np.sqrt(len(v))) for k, v in est.items()}
    target = {"unadjusted": truth["ATE"], "matching": truth["ATT"], "stratification": beta,
              "covariate": beta, "iptw": truth["ATE"]}
    bias = {k: mean[k] - target[k] for k in mean}
    # the crude estimate is far off every target (> 10 Monte-Carlo SEs)
    assert min(abs(mean["unadjusted"] - v) for v in (beta, truth["ATE"], truth["ATT"])) > 10 * se["unadjusted"]
    # matching, covariate adjustment and IPTW are unbiased for their estimands: within 3.5 MC SEs
    # of the replicate mean plus 2 MC SDs (0.02) of the potential-outcome truth itself
    for k in ("matching", "covariate", "iptw"):
        assert abs(bias[k]) < 3.5 * se[k] + 0.02, (k, bias[k], se[k])
    # quintile strata remove most but not all confounding (Cochran 1968: ~90%)
    assert abs(bias["stratification"]) < 0.2 * abs(mean["unadjusted"] - beta)
