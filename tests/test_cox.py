"""CoxModel against independent answers.

* Closed-form Breslow/Efron MLEs and the Rossi rows of REFERENCES.md (R coxph) by find_map.
* statsmodels PHReg MLEs on simulated heavy-tie data (Breslow/Efron, strata); weights against
  row replication (Breslow) and a brute-force MLE from the definition (Efron).
* NUTS posterior SDs vs the published Rossi SEs.
* Piecewise posterior S(t) vs Kaplan-Meier on the bundled (SIMULATED) Liu-like cohort.
* Frailty and treatment-by-subgroup recovery on simulated data; time-varying HR.

tests/data/rossi.csv: the Rossi et al. (1980) recidivism data (432 rows, 114 arrests), as shipped
by R's carData and lifelines (lifelines/datasets/rossi.csv); statsmodels PHReg on this file
reproduces every coefficient and SE of REFERENCES.md to the printed digits.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize

import bayes_osteo as bo
from bayes_osteo.data import DataValidationError
from bayes_osteo.priors import VAGUE
from tests.test_components import brute_force

ROSSI_COLS = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
EFRON = [-0.3794222, -0.0574377, 0.3138998, -0.1497957, -0.4337039, -0.0848711, 0.0914971]
BRESLOW = [-0.37902189, -0.05724593, 0.31412977, -0.15111460, -0.43278257, -0.08498284, 0.09111154]
EFRON_SE = [0.19138, 0.02200, 0.30799, 0.21222, 0.38187, 0.19576, 0.02865]
STRATA_RACE = {"fin": -0.3788, "age": -0.0576, "wexp": -0.1427, "mar": -0.4388, "paro": -0.0858,
               "prio": 0.0922}
VAGUE_PRIORS = {"log_hr": VAGUE, "treatment_log_hr": VAGUE}


@pytest.fixture(scope="module")
def rossi() -> pd.DataFrame:
    return pd.read_csv(Path(__file__).parent / "data" / "rossi.csv")


def rossi_sd(df, **kw):
    covs = kw.pop("covariates", ROSSI_COLS)
    return bo.SurvivalData.from_frame(df, duration="week", event="arrest", covariates=covs, **kw)


# ---------------------------------------------------------------------------------------------
# find_map = MLE under vague priors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ties, mle", [("breslow", 1.475285), ("efron", 1.676857)])
def test_closed_form_mle(ties, mle):
    df = pd.DataFrame({"time": [1, 1, 6, 6, 8, 9], "status": [1, 0, 1, 1, 0, 1], "x": [1, 1, 1, 0, 0, 0]})
    sd = bo.SurvivalData.from_frame(df, duration="time", event="status", covariates=["x"])
    est = bo.CoxModel(sd, ties=ties, priors=VAGUE_PRIORS).find_map()
    # Normal(0, 100) prior moves the mode by ~ b * var / 100^2 ~ 1e-4 * 0.6 ~ 6e-5
    assert float(est["log_hr"][0]) == pytest.approx(mle, abs=1e-3)
    assert float(est["hr"][0]) == pytest.approx(np.exp(mle), rel=1e-3)


@pytest.mark.parametrize("ties, ref", [("efron", EFRON), ("breslow", BRESLOW)])
def test_rossi_rows(rossi, ties, ref):
    cox = bo.CoxModel(rossi_sd(rossi), ties=ties, priors=VAGUE_PRIORS)
    est = cox.find_map()
    assert list(est["log_hr"]["covariate"].values) == ROSSI_COLS
    np.testing.assert_allclose(est["log_hr"].values, ref, atol=1e-3)


def test_rossi_strata(rossi):
    sd = rossi_sd(rossi, covariates=list(STRATA_RACE), strata="race")
    est = bo.CoxModel(sd, priors=VAGUE_PRIORS).find_map()
    np.testing.assert_allclose(est["log_hr"].values, list(STRATA_RACE.values()), atol=1e-3)


def heavy_tie_frame(seed, n=400):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.integers(0, 2, n), "s": rng.integers(0, 3, n)})
    lam = 0.1 * np.exp(0.5 * df.x1 - 0.7 * df.x2 + 0.3 * df.s)
    t = np.ceil(rng.exponential(1 / lam))          # integer (weekly) times: heavy ties
    c = rng.integers(3, 25, n)
    df["t"] = np.minimum(t, c).astype(float)
    df["d"] = (t <= c).astype(int)
    df["w"] = rng.integers(1, 4, n).astype(float)
    return df


@pytest.mark.parametrize("seed, ties, strata", [(1, "efron", None), (2, "breslow", None),
                                                 (3, "efron", "s"), (4, "breslow", "s")])
def test_statsmodels_agreement_heavy_ties(seed, ties, strata):
    df = heavy_tie_frame(seed)
    sd = bo.SurvivalData.from_frame(df, duration="t", event="d", covariates=["x1", "x2"], strata=strata)
    est = bo.CoxModel(sd, ties=ties, priors=VAGUE_PRIORS).find_map()["log_hr"].values
    ref = sm.PHReg(df.t, df[["x1", "x2"]], status=df.d, ties=ties,
                   strata=None if strata is None else df[strata]).fit().params
    np.testing.assert_allclose(est, ref, atol=1e-4)


def test_sorted_rows_keep_user_order_in_loglik_terms():
    """CoxModel sorts its rows once by (stratum, time); the pointwise log-likelihood must still
    be in the data's own order: compare with the kernel run on the unsorted rows."""
    import xarray as xr

    from bayes_osteo.components import cox_partial_loglik, cox_risk_structure

    df = heavy_tie_frame(5)
    sd = bo.SurvivalData.from_frame(df, duration="t", event="d", covariates=["x1", "x2"], strata="s")
    assert not np.all(np.diff(sd.time) >= 0)                 # the rows really are unsorted
    cox = bo.CoxModel(sd, ties="efron", priors=VAGUE_PRIORS)
    draws = np.random.default_rng(0).normal(scale=0.3, size=(1, 3, 2))
    dt = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"log_hr": (("chain", "draw", "covariate"), draws)},
        coords={"chain": [0], "draw": [0, 1, 2], "covariate": sd.covariate_names})})
    cox.log_likelihood(dt)
    st = cox_risk_structure(sd.time, sd.event, None, sd.strata)
    ev = np.flatnonzero(sd.event > 0)
    for k in range(3):
        ll, _, c = cox_partial_loglik(sd.X @ draws[0, k], st, ties="efron", contributions=True)
        # terms are O(1); a lone subject in its risk set gives ~1e-17 (rounding of eta - eta)
        np.testing.assert_allclose(dt["log_likelihood"]["loglik"].values[0, k], c[ev], rtol=1e-12, atol=1e-12)
        # and the model's own compiled log-density (sorted rows) gives the same total
        logp = cox.model.compile_logp(jacobian=False, sum=False, vars=[cox.model["partial_loglik"]])
        ip = {"covariate_log_hr": draws[0, k]}
        assert float(np.sum(logp(ip))) == pytest.approx(ll, rel=1e-12)
    np.testing.assert_array_equal(dt["log_likelihood"]["event"].values, ev)


def test_weighted_breslow_equals_replication_and_is_pseudo_posterior():
    df = heavy_tie_frame(5)
    sd = bo.SurvivalData.from_frame(df, duration="t", event="d", covariates=["x1", "x2"], strata="s",
                                    weights="w")
    cox = bo.CoxModel(sd, ties="breslow", priors=VAGUE_PRIORS)
    assert cox.pseudo_posterior
    est = cox.find_map()["log_hr"].values
    rep = df.loc[df.index.repeat(df.w.astype(int))]
    ref = sm.PHReg(rep.t, rep[["x1", "x2"]], status=rep.d, ties="breslow", strata=rep.s).fit().params
    np.testing.assert_allclose(est, ref, atol=1e-4)


def test_weighted_efron_equals_brute_force_mle():
    df = heavy_tie_frame(6)
    sd = bo.SurvivalData.from_frame(df, duration="t", event="d", covariates=["x1", "x2"], strata="s",
                                    weights="w")
    est = bo.CoxModel(sd, ties="efron", priors=VAGUE_PRIORS).find_map()["log_hr"].values
    X = df[["x1", "x2"]].to_numpy()
    args = (df.t.to_numpy(), df.d.to_numpy(), df.w.to_numpy(), df.s.to_numpy(), np.zeros(len(df)), "efron")
    ref = optimize.minimize(lambda b: -brute_force(X @ b, *args), np.zeros(2), method="Nelder-Mead",
                            options={"xatol": 1e-8, "fatol": 1e-10}).x
    np.testing.assert_allclose(est, ref, atol=1e-4)


def test_left_truncation_matches_statsmodels():
    df = heavy_tie_frame(7)
    rng = np.random.default_rng(7)
    df["entry"] = np.where(rng.random(len(df)) < 0.4, np.minimum(rng.integers(0, 6, len(df)) + 0.5, df.t - 0.5), 0.0)
    df = df[df.entry < df.t]
    sd = bo.SurvivalData.from_frame(df, duration="t", event="d", covariates=["x1", "x2"], entry="entry")
    est = bo.CoxModel(sd, priors=VAGUE_PRIORS).find_map()["log_hr"].values
    ref = sm.PHReg(df.t, df[["x1", "x2"]], status=df.d, ties="efron", entry=df.entry).fit().params
    np.testing.assert_allclose(est, ref, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# NUTS
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rossi_fit(rossi):
    cox = bo.CoxModel(rossi_sd(rossi), priors=VAGUE_PRIORS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = cox.fit(draws=1000, tune=700, chains=2, random_seed=11, progressbar=False)
    return cox, dt


def exact_rossi_posterior(rossi, n_draws=40_000):
    """Posterior mean/SD under N(0, 100^2) priors by importance sampling (multivariate-t
    proposal around the statsmodels MLE); importance ESS ~ 28,000 -> relative error ~0.5%."""
    from scipy import stats

    from bayes_osteo.components import cox_partial_loglik, cox_risk_structure

    X = rossi[ROSSI_COLS].to_numpy(float)
    fit = sm.PHReg(rossi.week, X, status=rossi.arrest, ties="efron").fit()
    st = cox_risk_structure(rossi.week.to_numpy(float), rossi.arrest.to_numpy())
    prop = stats.multivariate_t(loc=fit.params, shape=fit.cov_params() * 1.3, df=6, seed=1)
    B = prop.rvs(n_draws)
    lw = np.array([cox_partial_loglik(X @ b, st)[0] for b in B])
    lw += stats.norm(0, 100).logpdf(B).sum(1) - prop.logpdf(B)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    mean = w @ B
    return mean, np.sqrt(w @ (B - mean) ** 2)


@pytest.mark.slow
def test_rossi_posterior_sd_close_to_published_se(rossi, rossi_fit):
    import arviz as az

    cox, dt = rossi_fit
    post = dt["posterior"]["log_hr"]
    sd = post.std(("chain", "draw")).values
    mean = post.mean(("chain", "draw")).values
    mcse_sd = az.mcse(xr_ds(post), method="sd")["v"].values
    mcse_mean = az.mcse(xr_ds(post), method="mean")["v"].values
    ex_mean, ex_sd = exact_rossi_posterior(rossi)
    # the exact posterior SDs are within 5% of coxph's SEs (curvature at the mode; the
    # largest gap, 3.3%, is 'mar': few events among the married make its likelihood skewed)
    assert np.all(np.abs(ex_sd / np.array(EFRON_SE) - 1) < 0.05)
    # NUTS vs exact: 4 Monte-Carlo SEs of the SD estimate + 1% for the importance-sampling error
    assert np.all(np.abs(sd - ex_sd) < 4 * mcse_sd + 0.01 * ex_sd), (sd, ex_sd, mcse_sd)
    assert np.all(np.abs(sd / np.array(EFRON_SE) - 1) < 0.05 + 4 * mcse_sd / ex_sd)
    assert np.all(np.abs(mean - ex_mean) < 4 * mcse_mean + 0.01 * ex_sd)
    assert dt.attrs["pseudo_posterior"] == "false"


def xr_ds(da):
    import xarray as xr

    return xr.Dataset({"v": da.transpose("chain", "draw", ...)})


def test_partial_loo_uses_event_contributions(rossi_fit):
    cox, dt = rossi_fit
    res = cox.loo(dt)
    assert dt["log_likelihood"]["loglik"].sizes["event"] == 114
    assert np.isfinite(res.elpd) and res.elpd < 0


def test_partial_survival_outputs_have_piecewise_shapes(rossi_fit):
    cox, dt = rossi_fit
    surv = cox.survival(dt, [0, 10, 30, 52], by="fin")
    assert list(surv.columns) == ["fin", "time", "median", "mean", "ci_low", "ci_high"]
    assert len(surv) == 8 and np.all(surv.ci_low <= surv["median"]) and np.all(surv["median"] <= surv.ci_high)
    assert np.all(surv.loc[surv.time == 0, "median"] == 1.0)
    assert "Efron" in surv.attrs["baseline"]
    da = cox.survival_draws(dt, [10, 30], by="fin", max_draws=300)
    assert da.dims == ("sample", "group", "time") and da.shape == (300, 2, 2)
    med = cox.median_survival(dt, by="fin")
    assert list(med.columns) == ["fin", "median", "ci_low", "ci_high", "p_reached"]
    assert np.all(med.p_reached == 0) and np.all(np.isinf(med["median"]))   # S(52) ~ 0.7 > 0.5
    r = cox.rmst(dt, 52, by="fin")
    assert list(r.columns) == ["fin", "rmst", "mean", "ci_low", "ci_high", "horizon"]
    assert np.all((r.ci_low > 40) & (r.ci_high < 52)) and r.loc[1, "rmst"] > r.loc[0, "rmst"]


@pytest.mark.slow
def test_compiled_model_reused_for_new_data_with_nutpie(rossi):
    nutpie = pytest.importorskip("nutpie")
    cox = bo.CoxModel(rossi_sd(rossi), priors=VAGUE_PRIORS)
    compiled = nutpie.compile_pymc_model(cox.model)
    other = rossi.copy()
    other["fin"] = np.random.default_rng(3).permutation(other["fin"].to_numpy())
    other["prio"] = other["prio"] * 0 + np.random.default_rng(4).poisson(3, len(other))
    new = bo.CoxModel(rossi_sd(other), priors=VAGUE_PRIORS)
    tr = nutpie.sample(compiled.with_data(**new.data_arrays()), draws=500, tune=400, chains=2,
                       seed=5, progress_bar=False)
    mean = tr["posterior"]["log_hr"].mean(("chain", "draw")).values
    ref = sm.PHReg(other.week, other[ROSSI_COLS], status=other.arrest, ties="efron").fit()
    # the new data's MLE, not the old one's: within 0.35 SE (MC error ~0.05 SE at ESS ~400)
    assert np.all(np.abs(mean - ref.params) < 0.35 * ref.bse)
    assert abs(ref.params[0] - EFRON[0]) > 0.5 * EFRON_SE[0]


# ---------------------------------------------------------------------------------------------
# piecewise on the bundled (SIMULATED) Liu-like cohort
# ---------------------------------------------------------------------------------------------
def _liu_cohort_fit(baseline: str):
    """A CoxModel fit on the bundled SIMULATED Liu-like cohort (2 chains x 800 draws)."""
    df = bo.datasets.liu2022_cohort()
    a = df.attrs
    assert a["simulated"]
    sd = bo.SurvivalData.from_frame(df, duration=a["duration"], event=a["event"], treatment=a["treatment"],
                                    covariates=a["confounders"])
    cox = bo.CoxModel(sd, baseline=baseline)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = cox.fit(draws=800, tune=800, chains=2, random_seed=3, progressbar=False)
    return cox, dt, sd


@pytest.fixture(scope="module")
def liu_fit():
    return _liu_cohort_fit("piecewise")


@pytest.mark.slow
def test_piecewise_survival_agrees_with_kaplan_meier(liu_fit):
    cox, dt, sd = liu_fit
    times = [6, 12, 24, 36, 60]
    post = cox.survival(dt, times, by="metastasectomy")
    assert list(post.columns[:5]) == ["metastasectomy", "time", "median", "mean", "ci_low"]
    km = bo.kaplan_meier(sd, by="metastasectomy")
    for (g, t), row in post.set_index(["metastasectomy", "time"]).iterrows():
        k = km[(km.metastasectomy == g) & (km.time <= t)].iloc[-1]
        # both estimate the same marginal S(t) of the group; KM's sampling error dominates the
        # difference: allow 2.5 Greenwood SEs (+0.01 for the piecewise-constant smoothing)
        if not np.isfinite(k.se):
            # KM reached 0 (the last patient at risk died): Greenwood's SE is undefined there; the
            # smooth model cannot reach 0 but must put its band at the boundary
            assert k.survival == 0 and row["ci_low"] < 0.01 and row["median"] < 0.05, (g, t, row["median"])
            continue
        # Greenwood's SE is 0 before the group's first event (KM = 1 exactly); the binomial SE of
        # S at the model's value with the group's starting size is the smallest honest sampling
        # error there (censoring only widens it), so use the larger of the two
        n0 = int(km.loc[km.metastasectomy == g, "n_risk"].max())
        se = max(k.se, np.sqrt(row["median"] * (1 - row["median"]) / n0))
        assert abs(row["median"] - k.survival) < 2.5 * se + 0.01, (g, t, row["median"], k.survival)
        assert row["ci_low"] < row["median"] < row["ci_high"]


def test_piecewise_rmst_median_consistent_with_curve(liu_fit):
    cox, dt, sd = liu_fit
    grid = np.linspace(0, 36, 361)
    da = cox.survival_draws(dt, grid, by="metastasectomy", max_draws=500)
    trap = np.trapezoid(da.to_numpy(), grid, axis=-1)      # (draws, group)
    r = cox.rmst(dt, 36, by="metastasectomy", max_draws=500)
    # exact piecewise integral vs trapezoid on a 0.1-month grid: error ~ h^2 |S''| T / 12 < 1e-4
    np.testing.assert_allclose(r["mean"].to_numpy(), trap.mean(0), atol=2e-3)
    med = cox.median_survival(dt, by="metastasectomy", n_grid=200, max_draws=500)
    curve = cox.survival(dt, med["median"].to_numpy()[:1], by="metastasectomy")
    assert med.loc[0, "median"] < med.loc[1, "median"]
    # S_0 at its own posterior-median median is ~0.5 (median of a ratio of medians: +-0.05)
    assert abs(curve[curve.metastasectomy == 0]["median"].iloc[0] - 0.5) < 0.05


def test_piecewise_loo_and_ppc(liu_fit):
    cox, dt, sd = liu_fit
    res = cox.loo(dt)
    assert dt["log_likelihood"]["loglik"].sizes["patient"] == sd.n
    assert np.isfinite(res.elpd)
    ppc = cox.ppc_km(dt, by="metastasectomy", n_draws=60, random_seed=2)
    assert {"metastasectomy", "time", "observed", "median", "ci_low", "ci_high"} <= set(ppc.columns)
    inside = (ppc.observed >= ppc.ci_low - 1e-9) & (ppc.observed <= ppc.ci_high + 1e-9)
    assert inside.mean() > 0.85   # a well-fitting model: observed KM inside the 95% band mostly


def test_piecewise_map_matches_poisson_glm():
    """Piecewise-exponential MLE = Poisson GLM on the episode-split data (textbook equivalence)."""
    rng = np.random.default_rng(8)
    n = 300
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.integers(0, 2, n)})
    t = rng.exponential(1 / (0.2 * np.exp(0.4 * df.x - 0.5 * df.z)))
    c = rng.uniform(1, 12, n)
    df["t"], df["d"] = np.minimum(t, c), (t <= c).astype(int)
    sd = bo.SurvivalData.from_frame(df, duration="t", event="d", covariates=["x"], treatment="z")
    cuts = [1.0, 3.0, 6.0]
    pri = {**VAGUE_PRIORS, "smoothing_sd": bo.Prior("HalfNormal", sigma=100),
           "log_baseline_level": VAGUE}
    cox = bo.CoxModel(sd, baseline="piecewise", cut_points=cuts, priors=pri)
    est = cox.find_map()
    E, j = bo.components.piecewise_exposure(df.t.to_numpy(), cuts)
    rows = [(i, k) for i in range(n) for k in range(4) if E[i, k] > 0]
    ii, kk = np.array(rows).T
    y = ((j[ii] == kk) & (df.d.to_numpy()[ii] == 1)).astype(float)
    design = np.column_stack([np.eye(4)[kk], df.z.to_numpy()[ii], df.x.to_numpy()[ii]])
    glm = sm.GLM(y, design, family=sm.families.Poisson(), offset=np.log(E[ii, kk])).fit()
    np.testing.assert_allclose(est["log_hr"].values, glm.params[[4, 5]], atol=2e-3)
    np.testing.assert_allclose(est["log_baseline_hazard"].values, glm.params[:4], atol=5e-3)


# ---------------------------------------------------------------------------------------------
# hierarchy and checks: recovery of known values on simulated data
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_frailty_recovers_known_values():
    rng = np.random.default_rng(21)
    n_c, m = 30, 15
    cl = np.repeat(np.arange(n_c), m)
    u = rng.normal(0, 0.8, n_c)
    x = rng.normal(size=n_c * m)
    z = rng.integers(0, 2, n_c * m)
    t = rng.exponential(1 / (0.1 * np.exp(-0.7 * z + 0.4 * x + u[cl])))
    c = rng.uniform(2, 30, n_c * m)
    df = pd.DataFrame({"z": z, "x": x, "site": cl, "t": np.minimum(t, c), "d": (t <= c).astype(int)})
    sd = bo.SurvivalData.from_frame(df, duration="t", event="d", covariates=["x"], treatment="z", cluster="site")
    cox = bo.CoxModel(sd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = cox.fit(draws=600, tune=600, chains=2, random_seed=4, progressbar=False)
    hr = bo.summarize.hazard_ratios(dt)
    assert hr.loc["z", "ci_low"] < np.exp(-0.7) < hr.loc["z", "ci_high"]
    assert hr.loc["x", "ci_low"] < np.exp(0.4) < hr.loc["x", "ci_high"]
    f = dt["posterior"]["frailty_sd"].values.ravel()
    assert np.quantile(f, 0.025) < 0.8 < np.quantile(f, 0.975)
    # cluster effects: posterior means track the simulated ones
    post_u = dt["posterior"]["frailty"].mean(("chain", "draw")).values
    assert np.corrcoef(post_u, u)[0, 1] > 0.7


@pytest.mark.slow
def test_subgroups_recover_known_treatment_effects():
    rng = np.random.default_rng(31)
    n = 1500
    z = rng.integers(0, 2, n)
    a = rng.integers(0, 2, n)      # the treatment works less in subgroup a
    b = rng.integers(0, 2, n)      # ... and as usual in b
    lp = -1.0 * z + 0.9 * z * a + 0.0 * z * b + 0.5 * a + 0.3 * b
    t = rng.exponential(1 / (0.1 * np.exp(lp)))
    c = rng.uniform(2, 25, n)
    df = pd.DataFrame({"z": z, "a": a, "b": b, "t": np.minimum(t, c), "d": (t <= c).astype(int)})
    sd = bo.SurvivalData.from_frame(df, duration="t", event="d", covariates=["a", "b"], treatment="z")
    cox = bo.CoxModel(sd, subgroups=["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = cox.fit(draws=600, tune=600, chains=2, random_seed=5, progressbar=False)
    tab = cox.subgroup_effects(dt)
    assert list(tab.index) == ["reference", "a", "b"]
    truth = {"reference": -1.0, "a": -0.1, "b": -1.0}
    for k, v in truth.items():
        assert tab.loc[k, "ci_low"] < np.exp(v) < tab.loc[k, "ci_high"], (k, tab.loc[k])
    assert tab.loc["a", "hr_median"] > tab.loc["b", "hr_median"]
    assert set(dt["posterior"]["subgroup_log_hr"].coords["subgroup"].values) == {"a", "b"}


@pytest.mark.slow
def test_time_varying_effect_detected():
    rng = np.random.default_rng(41)
    n = 800
    z = rng.integers(0, 2, n)
    # HR 0.3 before t = 4, 1.0 after: piecewise hazard 0.15 * (0.3 if z and t < 4)
    h_early = 0.15 * np.where(z == 1, 0.3, 1.0)
    e = rng.exponential(size=n)
    t = np.where(e < h_early * 4, e / h_early, 4 + (e - h_early * 4) / 0.15)
    c = rng.uniform(6, 20, n)
    df = pd.DataFrame({"z": z, "t": np.minimum(t, c), "d": (t <= c).astype(int)})
    sd = bo.SurvivalData.from_frame(df, duration="t", event="d", treatment="z")
    cox = bo.CoxModel(sd, baseline="piecewise", cut_points=[2, 4, 7, 10], time_varying=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = cox.fit(draws=600, tune=600, chains=2, random_seed=6, progressbar=False)
    hr_t = cox.hr_over_time(dt)
    assert list(hr_t.columns[:4]) == ["interval", "start", "end", "time"]
    early, late = hr_t.iloc[0], hr_t.iloc[-1]
    assert early["ci_high"] < 0.7 and late["ci_low"] < 1.0 < late["ci_high"]
    assert early["median"] < late["median"]


# ---------------------------------------------------------------------------------------------
# descriptive KM and log-rank
# ---------------------------------------------------------------------------------------------
def test_kaplan_meier_by_group(rossi):
    sd = rossi_sd(rossi)
    km = bo.kaplan_meier(sd, by="fin")
    assert {"fin", "time", "survival", "ci_low", "ci_high", "n_risk"} <= set(km.columns)
    # R: survfit(Surv(week, arrest) ~ 1, rossi) at week 52: S = 0.7361 (= 1 - 114/432 + censoring-free)
    whole = bo.kaplan_meier(sd)
    assert whole.survival.iloc[-1] == pytest.approx(1 - 114 / 432, abs=1e-12)  # no censoring before 52
    assert np.all(km.ci_low <= km.survival + 1e-12) and np.all(km.survival <= km.ci_high + 1e-12)
    lr = bo.logrank(sd, "fin")
    # independent O-E computation of the log-rank statistic
    t, d, g = sd.time, sd.event, rossi["fin"].to_numpy()
    o_e = v = 0.0
    for u in np.unique(t[d == 1]):
        r = t >= u
        n1, n_ = np.sum(r & (g == 1)), r.sum()
        dd = np.sum((t == u) & (d == 1))
        o_e += np.sum((t == u) & (d == 1) & (g == 1)) - dd * n1 / n_
        v += dd * (n1 / n_) * (1 - n1 / n_) * (n_ - dd) / max(n_ - 1, 1)
    assert lr.loc[0, "chisq"] == pytest.approx(o_e**2 / v, rel=1e-8)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_single_subject_stratum_without_events_is_warned_and_harmless(rossi):
    df = rossi.copy()
    df["grp"] = np.where(np.arange(len(df)) < 200, "A", "B")
    lone = df.index[(df.arrest == 0)][0]
    df.loc[lone, "grp"] = "lonely"
    with pytest.warns(UserWarning, match="single subject"):
        sd = rossi_sd(df, strata="grp")
    est = bo.CoxModel(sd, priors=VAGUE_PRIORS).find_map()["log_hr"].values
    keep = df.grp != "lonely"
    ref = sm.PHReg(df.week[keep], df.loc[keep, ROSSI_COLS], status=df.arrest[keep], ties="efron",
                   strata=df.grp[keep]).fit().params
    np.testing.assert_allclose(est, ref, atol=1e-4)


def test_cluster_with_nan_is_an_error(rossi):
    df = rossi.copy()
    df["site"] = np.where(np.arange(len(df)) % 2 == 0, "x", "y").astype(object)
    df.loc[3, "site"] = None
    with pytest.raises(DataValidationError, match="site"):
        rossi_sd(df, cluster="site")


def test_bad_options(rossi):
    sd = rossi_sd(rossi, treatment=None)
    with pytest.raises(ValueError, match="cut_points.*outside the follow-up"):
        bo.CoxModel(sd, baseline="piecewise", cut_points=[10, 60])
    with pytest.raises(ValueError, match="strictly increasing"):
        bo.CoxModel(sd, baseline="piecewise", cut_points=[20, 10])
    with pytest.raises(ValueError, match="treatment column"):
        bo.CoxModel(sd, time_varying=True)
    with pytest.raises(ValueError, match="baseline"):
        bo.CoxModel(sd, baseline="weibull")
    with pytest.raises(ValueError, match="ties"):
        bo.CoxModel(sd, ties="exact")
    with pytest.raises(ValueError, match="Unknown prior"):
        bo.CoxModel(sd, priors={"sigma": VAGUE})
    sdt = rossi_sd(rossi, covariates=["age"], treatment="fin")
    with pytest.raises(ValueError, match="not among the covariates"):
        bo.CoxModel(sdt, subgroups=["race"])
    with pytest.raises(ValueError, match="0/1"):
        bo.CoxModel(sdt, subgroups=["age"])
    with pytest.raises(ValueError, match="n=432"):
        bo.CoxModel(sdt).data_arrays(rossi_sd(rossi.iloc[:100], covariates=["age"], treatment="fin"))


def test_piecewise_default_intervals_and_structure(rossi):
    sd = rossi_sd(rossi, covariates=["age", "prio"], treatment="fin", strata="race")
    cox = bo.CoxModel(sd, baseline="piecewise")
    iv = cox.intervals
    assert len(iv) == 10 and iv.start.iloc[0] == 0 and np.isinf(iv.end.iloc[-1])
    assert cox.model["log_baseline_hazard"].type.ndim == 2     # (stratum, interval)
    arrays = cox.data_arrays()
    np.testing.assert_allclose(arrays["exposure"].sum(1), sd.time)
    assert cox.spec()["options"]["baseline"] == "piecewise"


# ---------------------------------------------------------------------------------------------
# partial model: survival from the Breslow/Efron baseline per draw; time-varying effect
# ---------------------------------------------------------------------------------------------
def brute_cumhaz(eta_at, t, d, w, s, ent, ties):
    """Baseline cumulative-hazard increments from the definition (R's survfit.coxph), one loop
    per event time. ``eta_at(u)``: the linear predictors of all subjects at time ``u``.
    Returns {stratum: (event times, increments)}."""
    out = {}
    for stratum in np.unique(s):
        m = s == stratum
        us = np.unique(t[m & (d == 1)])
        inc = []
        for u in us:
            eta = eta_at(u)
            risk = m & (t >= u) & (ent < u)
            dead = m & (t == u) & (d == 1)
            R = np.sum(w[risk] * np.exp(eta[risk]))
            Rd = np.sum(w[dead] * np.exp(eta[dead]))
            k, W = dead.sum(), w[dead].sum()
            inc.append(W / R if ties == "breslow" else sum(W / k / (R - j / k * Rd) for j in range(k)))
        out[stratum] = (us, np.array(inc))
    return out


def with_entry(df, seed):
    """Delayed entry for ~30% of the rows, at half-integers (never tied with the integer times:
    statsmodels counts entry == t as at risk, R and this package do not)."""
    rng = np.random.default_rng(seed)
    df = df.copy()
    df["entry"] = np.where(rng.random(len(df)) < 0.3, np.minimum(rng.integers(0, 6, len(df)) + 0.5, df.t - 0.5), 0.0)
    return df[df.entry < df.t].reset_index(drop=True)


def one_draw_posterior(sd, **variables):
    """A DataTree holding a single posterior draw (chain 0, draw 0) of the given variables
    (``name: (dims, values)``), ``log_hr`` over the covariates included."""
    import xarray as xr

    data = {k: (("chain", "draw", *dims), np.asarray(v, float)[None, None]) for k, (dims, v) in variables.items()}
    ds = xr.Dataset(data, coords={"chain": [0], "draw": [0], "covariate": sd.covariate_names})
    return xr.DataTree.from_dict({"posterior": ds})


def test_breslow_baseline_matches_statsmodels():
    """Unweighted Breslow baseline (strata, delayed entry, heavy ties) at the PHReg MLE against
    statsmodels' baseline_cumulative_hazard, and integer weights against row replication."""
    from bayes_osteo.cox import breslow_cumulative_hazard

    df = with_entry(heavy_tie_frame(3), 3)
    X = df[["x1", "x2"]].to_numpy()
    fit = sm.PHReg(df.t, X, status=df.d, ties="breslow", strata=df.s, entry=df.entry).fit()
    ref = fit.model.baseline_cumulative_hazard(fit.params)
    mine = breslow_cumulative_hazard(X @ fit.params, df.t, df.d, strata=df.s, entry=df.entry, ties="breslow")
    assert len(mine) == len(ref) == 3
    for (u, H), (u_sm, H_sm, _) in zip(mine, ref, strict=True):
        np.testing.assert_array_equal(u, u_sm)
        # statsmodels reports H(u_k-), the value just before each event time
        assert H_sm[0] == 0
        np.testing.assert_allclose(H[:-1], H_sm[1:], rtol=0, atol=1e-8)
    # integer case weights = replicated rows (Breslow is linear in the weights)
    rep = df.loc[df.index.repeat(df.w.astype(int))]
    Xr = rep[["x1", "x2"]].to_numpy()
    fit_r = sm.PHReg(rep.t, Xr, status=rep.d, ties="breslow", strata=rep.s, entry=rep.entry).fit()
    ref_r = fit_r.model.baseline_cumulative_hazard(fit_r.params)
    mine_w = breslow_cumulative_hazard(X @ fit_r.params, df.t, df.d, weights=df.w, strata=df.s,
                                       entry=df.entry, ties="breslow")
    for (u, H), (u_sm, H_sm, _) in zip(mine_w, ref_r, strict=True):
        np.testing.assert_array_equal(u, u_sm)
        np.testing.assert_allclose(H[:-1], H_sm[1:], rtol=0, atol=1e-8)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_baseline_closed_form_and_definition(ties):
    """Efron/Breslow increments: a hand-computed closed form, and the definition (R's
    survfit.coxph, weighted Efron) on data with ties, strata, weights and delayed entry."""
    from bayes_osteo.cox import breslow_cumulative_hazard

    # t = 1, 1, 6, 6, 8, 9; status 1, 0, 1, 1, 0, 1; x = 1, 1, 1, 0, 0, 0 at the MLE (R coxph)
    b = {"efron": 1.676857, "breslow": 1.475285}[ties]
    r = np.exp(b)
    x = np.array([1, 1, 1, 0, 0, 0.0])
    [(u, H)] = breslow_cumulative_hazard(b * x, [1, 1, 6, 6, 8, 9], [1, 0, 1, 1, 0, 1], ties=ties)
    at6 = 1 / (r + 3) + 2 / (r + 5) if ties == "efron" else 2 / (r + 3)   # two deaths, R_D = r + 1
    np.testing.assert_allclose(u, [1, 6, 9])
    np.testing.assert_allclose(H, np.cumsum([1 / (3 * r + 3), at6, 1.0]), rtol=0, atol=1e-12)
    # weighted, stratified, delayed entry, at the PHReg MLE (statsmodels fits the unweighted data)
    df = with_entry(heavy_tie_frame(4), 4)
    X = df[["x1", "x2"]].to_numpy()
    beta = sm.PHReg(df.t, X, status=df.d, ties=ties, strata=df.s, entry=df.entry).fit().params
    eta = X @ beta
    mine = breslow_cumulative_hazard(eta, df.t, df.d, weights=df.w, strata=df.s, entry=df.entry, ties=ties)
    ref = brute_cumhaz(lambda u: eta, *(df[c].to_numpy() for c in ("t", "d", "w", "s", "entry")), ties)
    assert np.any([np.sum((df.t == u) & (df.d == 1)) > 3 for u in df.t])     # heavy ties indeed
    for st, (u, H) in enumerate(mine):
        np.testing.assert_array_equal(u, ref[st][0])
        np.testing.assert_allclose(H, np.cumsum(ref[st][1]), rtol=0, atol=1e-8)
    # several draws at once = one at a time
    many = breslow_cumulative_hazard(np.stack([eta, 0.5 * eta]), df.t, df.d, weights=df.w, strata=df.s,
                                     entry=df.entry, ties=ties)
    half = breslow_cumulative_hazard(0.5 * eta, df.t, df.d, weights=df.w, strata=df.s, entry=df.entry, ties=ties)
    for (_, H2), (_, H1), (_, Hh) in zip(many, mine, half, strict=True):
        np.testing.assert_allclose(H2, np.stack([H1, Hh]), rtol=1e-13)


def _direct_curves(sd, eta_at, ties, groups, times, horizon):
    """Per-group marginal S(t), step median and RMST for one draw, from the definition."""
    inc = brute_cumhaz(eta_at, sd.time, sd.event, sd.weights if sd.weights is not None else np.ones(sd.n),
                       sd.strata if sd.strata is not None else np.zeros(sd.n, int),
                       sd.entry if sd.entry is not None else np.zeros(sd.n), ties)
    strata = sd.strata if sd.strata is not None else np.zeros(sd.n, int)

    def H(t):                        # per-patient cumulative hazard at t
        out = np.zeros(sd.n)
        for st, (us, dh) in inc.items():
            m = strata == st
            for u, h in zip(us, dh, strict=True):
                if u <= t:
                    out[m] += h * np.exp(eta_at(u)[m])
        return out

    jumps = np.unique(np.concatenate([us for us, _ in inc.values()]))
    res = []
    for g in groups:
        surv = np.array([np.exp(-H(t))[g].mean() for t in times])
        at_jumps = np.array([np.exp(-H(u))[g].mean() for u in jumps])
        below = jumps[(at_jumps <= 0.5) & (jumps <= horizon)]
        knots = np.concatenate([[0.0], jumps[jumps < horizon], [horizon]])
        vals = np.concatenate([[1.0], at_jumps[jumps < horizon]])
        res.append((surv, below[0] if below.size else np.inf, np.sum(vals * np.diff(knots))))
    return res


@pytest.mark.parametrize("time_varying", [False, True])
def test_partial_survival_median_rmst_one_draw_match_definition(time_varying):
    """Through CoxModel (user row order, strata, weights, delayed entry, cluster frailty,
    time-varying effect): survival_draws, median_survival and rmst for one fixed draw against
    the definition - the step function S(t) built by loops, its first crossing of 0.5 and its
    exact integral."""
    df = with_entry(heavy_tie_frame(9, n=300), 9)
    df["site"] = np.arange(len(df)) % 7
    sd = bo.SurvivalData.from_frame(df, duration="t", event="d", covariates=["x1"], treatment="x2", strata="s",
                                    weights="w", entry="entry", cluster="site")
    assert not np.all(np.diff(sd.time) >= 0)
    kw = {"time_varying": True, "cut_points": [4.5, 9.5]} if time_varying else {}
    cox = bo.CoxModel(sd, ties="efron", **kw)
    beta, fr = np.array([-0.6, 0.4]), np.linspace(-0.5, 0.5, 7)
    g = np.array([-0.4, 0.1, 0.3])
    variables = {"log_hr": (("covariate",), beta), "frailty": (("cluster",), fr)}
    if time_varying:
        variables["time_varying_deviation"] = (("interval",), g)
    dt = one_draw_posterior(sd, **variables)
    eta0 = sd.X @ beta + fr[sd.cluster]
    z = sd.column("x2")
    eta_at = (lambda u: eta0 + z * g[np.searchsorted([4.5, 9.5], u)]) if time_varying else (lambda u: eta0)
    times = np.array([0.0, 0.5, 1.0, 3.0, 4.5, 7.25, 12.0, 30.0])      # event times, between, beyond
    groups = [df.x2.to_numpy() == 0, df.x2.to_numpy() == 1]
    direct = _direct_curves(sd, eta_at, "efron", groups, times, 15.0)
    da = cox.survival_draws(dt, times, by="x2")
    med = cox.median_survival(dt, by="x2", horizon=15.0)
    r = cox.rmst(dt, 15.0, by="x2")
    for gi, (surv, m, rm) in enumerate(direct):
        np.testing.assert_allclose(da.values[0, gi], surv, rtol=0, atol=1e-12)
        assert med["median"].iloc[gi] == m and np.isfinite(m)
        # Chebyshev-interpolated integral: error bound 1e-11 * horizon
        assert r["rmst"].iloc[gi] == pytest.approx(rm, abs=1e-9) and 0 < rm < 15
    # the direct integral of the step function, again from survival_draws on a fine grid
    grid = np.linspace(0, 15, 150_001)
    fine = cox.survival_draws(dt, grid, by="x2", max_draws=None).values[0]
    left = np.sum(fine[:, :-1] * np.diff(grid), axis=1)       # left Riemann sum: error <= h = 1e-4
    np.testing.assert_allclose(r["rmst"].to_numpy(), left, atol=2e-4)
    # posterior predictive KM runs on the step baseline (events only at observed event times)
    ppc = cox.ppc_km(dt, by="x2", n_draws=1, random_seed=1)
    assert set(ppc.columns) >= {"x2", "time", "observed", "median", "ci_low", "ci_high"}


@pytest.fixture(scope="module")
def liu_partial_fit():
    return _liu_cohort_fit("partial")


@pytest.mark.slow
def test_partial_survival_agrees_with_kaplan_meier_and_piecewise(liu_partial_fit, liu_fit):
    cox, dt, sd = liu_partial_fit
    times = [6, 12, 24, 36, 60]
    post = cox.survival(dt, times, by="metastasectomy")
    assert list(post.columns) == ["metastasectomy", "time", "median", "mean", "ci_low", "ci_high"]
    km = bo.kaplan_meier(sd, by="metastasectomy")
    for (g, t), row in post.set_index(["metastasectomy", "time"]).iterrows():
        k = km[(km.metastasectomy == g) & (km.time <= t)].iloc[-1]
        assert np.isfinite(k.se) and k.survival > 0
        # both estimate the group's marginal S(t); KM's sampling error dominates the difference
        # (the band here carries beta's uncertainty only). Same rule as the piecewise check:
        # 2.5 Greenwood SEs, the binomial SE at the group's starting size where Greenwood's is 0
        # (KM = 1 before the first event); no smoothing allowance - the Breslow curve steps at
        # the same event times as KM. Measured: |z| <= 1.45 (group 1 at 6 months, KM = 1).
        n0 = int(km.loc[km.metastasectomy == g, "n_risk"].max())
        se = max(k.se, np.sqrt(row["median"] * (1 - row["median"]) / n0))
        assert abs(row["median"] - k.survival) < 2.5 * se, (g, t, row["median"], k.survival)
        assert row["ci_low"] < row["median"] < row["ci_high"]
    # medians: a step function's median is an event time; the piecewise model's is interpolated.
    # Both summarise the same data; the difference comes from the baseline model only, so allow
    # one posterior SD of the piecewise median (95% width / 3.92, the model with the full
    # uncertainty). Measured: 0.6 months in both arms (SDs 1.3 and 5.8 months).
    med = cox.median_survival(dt, by="metastasectomy")
    pw_cox, pw_dt, _ = liu_fit
    pw = pw_cox.median_survival(pw_dt, by="metastasectomy")
    assert np.all(med.p_reached == 1) and np.all(np.isfinite(med[["median", "ci_low", "ci_high"]]))
    assert set(med["median"]) <= set(sd.time[sd.event > 0])
    sd_pw = (pw.ci_high - pw.ci_low) / 3.92
    assert np.all(np.abs(med["median"] - pw["median"]) < sd_pw), (med, pw)
    assert med.loc[0, "median"] < med.loc[1, "median"]
    # RMST: finite, ordered, and equal to the integral of the posterior-mean curve (exact for
    # the mean, by linearity; the grid's left Riemann sum errs by < h = 0.01 per unit drop)
    r = cox.rmst(dt, 36, by="metastasectomy", max_draws=400)
    grid = np.linspace(0, 36, 3601)
    curve = cox.survival_draws(dt, grid, by="metastasectomy", max_draws=400).to_numpy().mean(0)
    np.testing.assert_allclose(r["mean"].to_numpy(), np.sum(curve[:, :-1] * 0.01, axis=1), atol=0.011)
    assert np.all((r.ci_low < r.rmst) & (r.rmst < r.ci_high) & (r.ci_high < 36))
    ppc = cox.ppc_km(dt, by="metastasectomy", n_draws=60, random_seed=2)
    inside = (ppc.observed >= ppc.ci_low - 1e-9) & (ppc.observed <= ppc.ci_high + 1e-9)
    assert inside.mean() > 0.85


def split_episodes(df, cuts):
    """Counting-process rows (start, stop] written out by hand: one per interval a subject
    spends time in, the event only in the last, treatment x interval indicator columns."""
    lo, hi = [0.0, *cuts], [*cuts, np.inf]
    rows = []
    for r in df.itertuples():
        for j in range(len(lo)):
            a, b = max(lo[j], getattr(r, "entry", 0.0)), min(r.t, hi[j])
            if b > a:
                rows.append({"start": a, "stop": b, "d": int(r.d == 1 and r.t <= hi[j]), "x": r.x, "s": r.s,
                             **{f"z{k}": r.z * (k == j) for k in range(len(lo))}})
    return pd.DataFrame(rows)


def changing_hr_frame(seed, n=400):
    """HR 0.5 before t = 2, 1 after (x: a prognostic covariate with log-HR 0.4)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.integers(0, 2, n), "s": rng.integers(0, 2, n)})
    h = 0.2 * np.exp(0.4 * df.x.to_numpy())
    h_early = h * np.where(df.z == 1, 0.5, 1.0)
    e = rng.exponential(size=n)
    t = np.where(e < h_early * 2, e / h_early, 2 + (e - h_early * 2) / h)
    c = rng.uniform(1, 12, n)
    df["t"], df["d"] = np.minimum(t, c), (t <= c).astype(int)
    df["w"] = rng.integers(1, 3, n).astype(float)
    return df


@pytest.mark.parametrize("ties, strata", [("efron", None), ("breslow", "s")])
def test_time_varying_partial_map_matches_statsmodels_on_episodes(ties, strata):
    """Under vague priors (and a wide random-walk SD prior) the mode of the time-varying partial
    model is the MLE of the episode-split Cox model with entry times: statsmodels PHReg on the
    hand-split rows, one treatment column per interval. Measured: |diff| ~ 4e-5."""
    df = changing_hr_frame(8)
    cuts = [1.3, 2.7, 5.1]       # no event time equals a cut (statsmodels counts entry == t at risk)
    sd = bo.SurvivalData.from_frame(df, duration="t", event="d", covariates=["x"], treatment="z", strata=strata)
    pri = {**VAGUE_PRIORS, "time_varying_sd": bo.Prior("HalfNormal", sigma=1000)}
    cox = bo.CoxModel(sd, ties=ties, time_varying=True, cut_points=cuts, priors=pri)
    est = cox.find_map()
    ep = split_episodes(df, cuts)
    assert len(ep) == len(cox.data_arrays()["X"]) < 4 * len(df)
    ref = sm.PHReg(ep.stop, ep[["z0", "z1", "z2", "z3", "x"]], status=ep.d, entry=ep.start, ties=ties,
                   strata=None if strata is None else ep.s).fit()
    np.testing.assert_allclose(est["log_hr_time"].values, ref.params[:4], atol=1e-3)
    np.testing.assert_allclose(est["log_hr"].sel(covariate="x").values, ref.params[4], atol=1e-3)
    assert list(est["log_hr_time"]["interval"].values) == ["(0, 1.3]", "(1.3, 2.7]", "(2.7, 5.1]", "(5.1, inf)"]


def test_time_varying_partial_likelihood_identities():
    """(i) at g = 0 the episode-split likelihood is the ordinary one (strata, weights, entry);
    (ii) log_likelihood's per-event terms sum to the model's log-likelihood; (iii) data_arrays
    of new data (a different number of episodes) go into the built model unchanged."""
    import pymc as pm

    df = changing_hr_frame(9)
    rng = np.random.default_rng(9)
    df["entry"] = np.where(rng.random(len(df)) < 0.3, df.t * rng.uniform(0.1, 0.9, len(df)), 0.0)
    kw = dict(duration="t", event="d", covariates=["x"], treatment="z", strata="s", weights="w", entry="entry")
    sd = bo.SurvivalData.from_frame(df, **kw)
    cuts = [1.5, 3.5]
    tv = bo.CoxModel(sd, time_varying=True, cut_points=cuts)
    ll_tv = tv.model.compile_logp(jacobian=False, vars=[tv.model["partial_loglik"]])   # the only compile

    def total(model, g):            # sum of the per-event terms (numpy kernel) at one draw
        dt = one_draw_posterior(model.sd, log_hr=(("covariate",), [-0.3, 0.4]),
                                **({"time_varying_deviation": (("interval",), g)} if model.time_varying else {}))
        return float(model.log_likelihood(dt)["log_likelihood"]["loglik"].sum()), dt

    base = {"treatment_log_hr": np.array(-0.3), "covariate_log_hr": np.array([0.4])}
    p0 = {**base, "time_varying_sd_log__": np.array(0.0), "time_varying_deviation_z": np.zeros(2)}
    # (i) g = 0: the ordinary partial likelihood
    assert float(ll_tv(p0)) == pytest.approx(total(bo.CoxModel(sd), None)[0], rel=1e-12)
    # (ii) g != 0: the per-event terms of log_likelihood sum to the model's value
    zs = np.array([0.7, -0.4])
    p1 = {**p0, "time_varying_sd_log__": np.array(np.log(0.5)), "time_varying_deviation_z": zs}
    g = np.concatenate([[0.0], np.cumsum(0.5 * zs)])
    g -= g.mean()
    tot, dt = total(tv, g)
    np.testing.assert_array_equal(dt["log_likelihood"]["event"].values, np.flatnonzero(sd.event > 0))
    assert float(ll_tv(p1)) == pytest.approx(tot, rel=1e-12)
    assert float(ll_tv(p1)) != pytest.approx(float(ll_tv(p0)), rel=1e-6)
    # (iii) new data of the same shape (another number of episodes) into the built model
    other = df.copy()
    other["t"] = other.t * np.random.default_rng(2).uniform(0.6, 1.4, len(df))
    other["entry"] = np.minimum(other.entry, other.t / 2)
    sd2 = bo.SurvivalData.from_frame(other, **kw)
    arr2 = tv.data_arrays(sd2)
    assert len(arr2["X"]) != len(tv.data_arrays()["X"])
    with tv.model:
        pm.set_data(arr2)
    ref = bo.CoxModel(sd2, time_varying=True, cut_points=cuts)
    assert float(ll_tv(p1)) == pytest.approx(total(ref, g)[0], rel=1e-12)


def test_time_varying_partial_options_and_errors(rossi):
    sd = rossi_sd(rossi, covariates=["age", "prio"], treatment="fin")
    cox = bo.CoxModel(sd, time_varying=True)
    # default intervals as the piecewise model's: clip(events // 10, 2, 10) event-time quantiles
    assert len(cox.intervals) == 10 and cox.spec()["options"]["baseline"] == "partial"
    np.testing.assert_array_equal(cox.cut_points, bo.CoxModel(sd, baseline="piecewise").cut_points)
    assert len(bo.CoxModel(sd, time_varying=True, n_intervals=3).intervals) == 3
    with pytest.raises(ValueError, match="outside the follow-up"):
        bo.CoxModel(sd, time_varying=True, cut_points=[10, 60])
    with pytest.raises(ValueError, match="strictly increasing"):
        bo.CoxModel(sd, time_varying=True, cut_points=[20, 10])
    with pytest.raises(ValueError, match="time_varying=True, only"):
        bo.CoxModel(sd, cut_points=[10, 20])
    with pytest.raises(ValueError, match="time_varying=True, only"):
        bo.CoxModel(sd, n_intervals=3)
    with pytest.raises(ValueError, match="time_varying=True"):
        bo.CoxModel(sd).hr_over_time(None)
    # new data with delayed entry into a model built without: refused, not silently ignored
    df = rossi.copy()
    df["entry"] = np.where(np.arange(len(df)) % 3 == 0, 0.5, 0.0)
    sde = rossi_sd(df, covariates=["age", "prio"], treatment="fin", entry="entry")
    with pytest.raises(ValueError, match="entry times"):
        bo.CoxModel(sd).data_arrays(sde)
    assert bo.CoxModel(sd, time_varying=True).data_arrays(sde)["X"].shape[1] == 3


@pytest.mark.slow
def test_time_varying_partial_recovers_changing_hr():
    """HR 0.5 before t = 2 and 1 after: hr_over_time of the partial model brackets both."""
    rng = np.random.default_rng(51)
    n = 600
    z = rng.integers(0, 2, n)
    x = rng.normal(size=n)
    h = 0.25 * np.exp(0.3 * x)
    h_early = h * np.where(z == 1, 0.5, 1.0)
    e = rng.exponential(size=n)
    t = np.where(e < h_early * 2, e / h_early, 2 + (e - h_early * 2) / h)
    c = rng.uniform(3, 10, n)
    df = pd.DataFrame({"z": z, "x": x, "t": np.minimum(t, c), "d": (t <= c).astype(int)})
    sd = bo.SurvivalData.from_frame(df, duration="t", event="d", covariates=["x"], treatment="z")
    cox = bo.CoxModel(sd, time_varying=True, cut_points=[1, 2, 3.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = cox.fit(draws=600, tune=600, chains=2, random_seed=6, progressbar=False)
    hr_t = cox.hr_over_time(dt)
    assert list(hr_t.columns[:4]) == ["interval", "start", "end", "time"]
    for _, row in hr_t.iterrows():
        truth = 0.5 if row["end"] <= 2 else 1.0
        assert row["ci_low"] < truth < row["ci_high"], row
    assert hr_t.loc[:1, "ci_high"].max() < 1.0          # the early benefit is detected
    hr = bo.summarize.hazard_ratios(dt)
    assert hr.loc["x", "ci_low"] < np.exp(0.3) < hr.loc["x", "ci_high"]
    res = cox.loo(dt)
    assert dt["log_likelihood"]["loglik"].sizes["event"] == sd.n_events and np.isfinite(res.elpd)
    surv = cox.survival(dt, [1, 2, 4], by="z")
    assert np.all(np.diff(surv.loc[surv.z == 1, "median"]) < 0)
