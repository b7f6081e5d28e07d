"""Propensity-score building blocks: splines, matching, strata, weights, SMDs, bad input.

Fast, exact checks (closed forms and hand-computed cases). The outcome analyses are tested in
``test_propensity_methods.py``.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.special import expit

import bayes_osteo as bo
from bayes_osteo.data import DataValidationError
from bayes_osteo.priors import Prior
from bayes_osteo.propensity import (
    OverlapWarning,
    PropensityScore,
    effective_sample_size,
    iptw_weights,
    match_nearest,
    ps_strata,
    rcs_knots,
    restricted_cubic_spline,
    standardized_differences,
    stratification_weights,
)


def _confounded(n=200, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.normal(50, 10, n), "sex": rng.choice(["f", "m"], n),
                       "nodes": rng.poisson(2, n)})
    eta = -0.05 * (df.age - 50) + 0.8 * (df.sex == "m") - 0.4 * (df.nodes - 2)
    df["trt"] = rng.binomial(1, expit(eta))
    df["months"] = rng.exponential(20, n) + 0.1
    df["death"] = rng.binomial(1, 0.7, n)
    return df


# -- splines ---------------------------------------------------------------------------------
def test_rcs_is_linear_beyond_the_outer_knots_and_cubic_inside():
    knots = np.array([1.0, 3.0, 6.0, 9.0])
    x = np.linspace(-5, 20, 501)
    B = restricted_cubic_spline(x, knots)
    assert B.shape == (501, 3)
    np.testing.assert_array_equal(B[:, 0], x)
    h = x[1] - x[0]
    d2 = (B[2:] - 2 * B[1:-1] + B[:-2]) / h**2
    mid = x[1:-1]
    outside = (mid < knots[0] - h) | (mid > knots[-1] + h)
    assert np.abs(d2[outside]).max() < 1e-8          # linear tails (natural spline)
    assert np.abs(d2[~outside]).max() > 1e-3         # curvature between the knots
    np.testing.assert_allclose(B[x <= knots[0], 1:], 0.0)
    assert rcs_knots(np.arange(100.0), 4).size == 4


def test_rcs_rejects_bad_knots():
    with pytest.raises(ValueError, match="knots"):
        restricted_cubic_spline(np.arange(5.0), [1.0, 1.0, 2.0])


# -- matching --------------------------------------------------------------------------------
def test_matching_greedy_without_replacement_by_hand():
    lg = np.array([0.0, 0.05, 0.10, 0.11, 3.0, 0.5])
    t = np.array([1, 0, 1, 0, 1, 0])
    m = match_nearest(lg, t, caliper=None, order="data")
    # treated 0 takes control 1 (0.05); treated 2 takes 3 (0.01); treated 4 takes what is left (5)
    assert m.pairs[["treated", "control"]].to_numpy().tolist() == [[0, 1], [2, 3], [4, 5]]
    sd_lg = np.std(lg, ddof=1)
    m = match_nearest(lg, t, caliper=0.2, order="data")
    assert m.caliper == pytest.approx(0.2 * sd_lg)
    assert m.n_pairs == 2 and m.n_treated_dropped == 1 and m.n_control_unused == 1
    assert (m.pairs["distance"] <= m.caliper).all()
    np.testing.assert_array_equal(m.weights, [1, 1, 1, 1, 0, 0])


def test_matching_with_replacement_reuses_controls_and_counts_them():
    lg = np.array([0.0, 0.01, 0.02, 0.015, 2.0])
    t = np.array([1, 1, 1, 0, 0])
    m = match_nearest(lg, t, caliper=None, replace=True)
    assert m.n_pairs == 3 and m.n_control_matched == 1
    np.testing.assert_array_equal(m.weights, [1, 1, 1, 3, 0])
    no = match_nearest(lg, t, caliper=None, replace=False)
    assert no.pairs["control"].is_unique


def test_matching_order_largest_first():
    lg = np.array([1.0, 0.9, 0.95, -3.0])
    t = np.array([1, 1, 0, 0])
    m = match_nearest(lg, t, caliper=None, order="largest")
    assert m.pairs.iloc[0].tolist()[:2] == [0, 2]


def test_mahalanobis_within_caliper_prefers_similar_covariates():
    lg = np.array([0.0, 0.01, 0.02, 5.0])
    t = np.array([1, 0, 0, 0])
    x = np.array([[1.0], [5.0], [1.1], [1.0]])
    # caliper 0.2 SD (= 0.5 here) excludes control 3 (same covariate, distant score); of the
    # controls within it, 2 is nearest in covariates although 1 is nearest in score
    m = match_nearest(lg, t, caliper=0.2, mahalanobis=x)
    assert m.pairs["control"].tolist() == [2]
    assert match_nearest(lg, t, caliper=0.2).pairs["control"].tolist() == [1]
    assert match_nearest(lg, t, caliper=None, mahalanobis=x).pairs["control"].tolist() == [3]


# -- strata and weights ----------------------------------------------------------------------
def test_ps_strata_quintiles_and_weights():
    s = ps_strata(np.linspace(0.01, 0.99, 100), k=5)
    assert np.bincount(s).tolist() == [20] * 5
    t = np.array([1, 0, 0, 1, 1, 0])
    st = np.array([0, 0, 0, 1, 1, 1])
    w = stratification_weights(st, t)
    np.testing.assert_allclose(w, [3, 1.5, 1.5, 1.5, 1.5, 3])
    # the weighted mean difference equals the average within-stratum difference
    x = np.array([2.0, 1, 0, 5, 7, 4])
    diff = np.average([2 - 0.5, 6 - 4], weights=[3, 3])
    got = (np.average(x[t == 1], weights=w[t == 1]) - np.average(x[t == 0], weights=w[t == 0]))
    assert got == pytest.approx(diff)


def test_iptw_weights_closed_forms():
    e = np.array([0.2, 0.5, 0.8, 0.4])
    t = np.array([1, 0, 1, 0])
    np.testing.assert_allclose(iptw_weights(e, t, stabilize=False), [5, 2, 1.25, 1 / 0.6])
    np.testing.assert_allclose(iptw_weights(e, t), 0.5 * np.array([5, 2, 1.25, 1 / 0.6]))
    att = iptw_weights(e, t, estimand="ATT", stabilize=False)
    np.testing.assert_allclose(att, [1, 1, 1, 0.4 / 0.6])
    att_s = iptw_weights(e, t, estimand="ATT")
    assert att_s[t == 0].sum() == pytest.approx(2.0)
    # trimming drops subject 0 (e < 0.15); stabilisation uses P(T=1) among the kept (2/4)
    tr = iptw_weights(np.array([0.1, 0.5, 0.8, 0.4, 0.6]), np.array([1, 0, 1, 0, 1]), trim=0.15)
    np.testing.assert_allclose(tr, [0, 0.5 / 0.5, 0.5 / 0.8, 0.5 / 0.6, 0.5 / 0.6])
    with pytest.raises(ValueError, match="leaves an arm"):
        iptw_weights(e, t, trim=0.25)
    with pytest.raises(ValueError, match="estimand"):
        iptw_weights(e, t, estimand="ATC")
    with pytest.raises(ValueError, match="strictly inside"):
        iptw_weights(np.array([0.0, 0.5]), np.array([1, 0]))


def test_stabilised_ate_weights_sum_to_about_the_arm_sizes():
    rng = np.random.default_rng(3)
    x = rng.normal(size=20000)
    e = expit(0.3 + 0.8 * x)
    t = rng.binomial(1, e)
    w = iptw_weights(e, t)
    # E[sum_treated p1/e] = n p1; Monte-Carlo SD of the ratio ~ 0.01 at n = 20000
    assert w[t == 1].sum() / (t == 1).sum() == pytest.approx(1.0, abs=0.04)
    assert w[t == 0].sum() / (t == 0).sum() == pytest.approx(1.0, abs=0.04)


def test_smd_and_ess_by_hand():
    X = np.array([[1.0, 0], [2, 1], [3, 1], [4, 0], [6, 1], [8, 0]])
    t = np.array([1, 1, 1, 0, 0, 0])
    smd = standardized_differences(X, t)
    v_cont = (np.var([1, 2, 3], ddof=1) + np.var([4, 6, 8], ddof=1)) / 2
    p1, p0 = 2 / 3, 1 / 3
    v_bin = (p1 * (1 - p1) + p0 * (1 - p0)) / 2
    np.testing.assert_allclose(smd, [(2 - 6) / np.sqrt(v_cont), (p1 - p0) / np.sqrt(v_bin)])
    w = np.array([1, 1, 2, 1, 1, 1.0])
    m1 = (1 + 2 + 6) / 4
    assert standardized_differences(X, t, w)[0] == pytest.approx((m1 - 6) / np.sqrt(v_cont))
    assert effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert effective_sample_size(np.array([1, 1, 2.0])) == pytest.approx(16 / 6)


# -- the score model -------------------------------------------------------------------------
def test_score_model_mode_matches_logistic_mle_under_vague_priors():
    df = _confounded()
    vague = {"intercept": Prior("Normal", mu=0, sigma=100), "beta": Prior("Normal", mu=0, sigma=100)}
    ps = PropensityScore(df, treatment="trt", covariates=["age", "sex", "nodes"], priors=vague)
    assert ps.design.columns == ["age", "sex[m]", "nodes"]
    X = sm.add_constant(pd.get_dummies(df[["age", "sex", "nodes"]], drop_first=True, dtype=float))
    mle = sm.Logit(df["trt"], X).fit(disp=0)
    lg = ps.map_logit()
    # optimiser tolerance only: the N(0, 100) prior moves the mode by < 1e-4 here
    np.testing.assert_allclose(lg, X.to_numpy() @ mle.params.to_numpy(), atol=2e-3)
    assert ps.spec()["priors"]["intercept"]["kwargs"]["sigma"] == 100


def test_score_model_accepts_survival_data_and_splines():
    df = _confounded()
    sd = bo.SurvivalData.from_frame(df, duration="months", event="death", treatment="trt",
                                    covariates=["age", "sex", "nodes"])
    ps = PropensityScore(sd, splines={"age": 4})
    assert ps.covariates == ["age", "sex", "nodes"]
    assert ps.design.columns[:3] == ["age", "age_rcs1", "age_rcs2"]
    assert ps.design.balance_names == ["age", "sex[m]", "nodes"]
    assert ps.options()["knots"]["age"] == pytest.approx(list(rcs_knots(df.age.to_numpy(), 4)))


# -- bad input -------------------------------------------------------------------------------
def test_non_binary_treatment_is_rejected_naming_the_column():
    df = _confounded()
    df["trt"] = df["trt"] * 2
    with pytest.raises(DataValidationError, match="'trt'.*0/1"):
        PropensityScore(df, treatment="trt", covariates=["age"])
    df["trt"] = "yes"
    with pytest.raises(DataValidationError, match="trt"):
        PropensityScore(df, treatment="trt", covariates=["age"])


def test_single_arm_is_rejected():
    df = _confounded()
    df["trt"] = 1
    with pytest.raises(DataValidationError, match="both arms"):
        PropensityScore(df, treatment="trt", covariates=["age"])


def test_perfect_predictor_gives_an_error_naming_it():
    df = _confounded()
    df["stage"] = np.where(df.trt == 1, 3.0, 1.0) + np.random.default_rng(1).uniform(0, 0.5, len(df))
    with pytest.raises(DataValidationError, match=r"No overlap: covariate 'stage' perfectly predicts"):
        PropensityScore(df, treatment="trt", covariates=["age", "stage"])
    df["flag"] = df.trt.map({1: "b", 0: "a"})
    with pytest.raises(DataValidationError, match=r"'flag\[b\]'"):
        PropensityScore(df, treatment="trt", covariates=["age", "flag"])


def test_separation_by_a_combination_names_the_covariates():
    rng = np.random.default_rng(2)
    n = 80
    a, b = rng.normal(size=n), rng.normal(size=n)
    df = pd.DataFrame({"a": a, "b": b, "c": rng.normal(size=n), "trt": (a + b > 0).astype(int)})
    with pytest.raises(DataValidationError, match=r"linear combination.*'a'.*'b'"):
        PropensityScore(df, treatment="trt", covariates=["a", "b", "c"])


def test_level_in_one_arm_only_warns_naming_the_covariate():
    df = _confounded()
    df["rare"] = 0
    df.loc[df.index[df.trt == 1][:3], "rare"] = 1
    with pytest.warns(OverlapWarning, match="'rare'"):
        PropensityScore(df, treatment="trt", covariates=["age", "rare"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", OverlapWarning)
        PropensityScore(df, treatment="trt", covariates=["age", "sex"])


def test_unknown_or_missing_columns():
    df = _confounded()
    with pytest.raises(DataValidationError, match="'nope'"):
        PropensityScore(df, treatment="trt", covariates=["nope"])
    df.loc[df.index[4], "age"] = np.nan
    with pytest.raises(DataValidationError, match="'age'.*missing"):
        PropensityScore(df, treatment="trt", covariates=["age"])
    with pytest.raises(RuntimeError, match="Fit the propensity model first"):
        PropensityScore(_confounded(), treatment="trt", covariates=["age"]).balance()
