"""Summaries work on any DataTree with the contract's variable names."""

import numpy as np
import pytest
import xarray as xr

import bayes_osteo as bo
from bayes_osteo.summarize import ConvergenceWarning


def _tree(values, dims=("chain", "draw", "covariate"), coords=None, diverging=None, attrs=None):
    post = xr.Dataset({"log_hr": (dims, values)}, coords=coords)
    post["hr"] = np.exp(post["log_hr"])
    children = {"posterior": xr.DataTree(post)}
    if diverging is not None:
        children["sample_stats"] = xr.DataTree(xr.Dataset({"diverging": (("chain", "draw"), diverging)}))
    dt = xr.DataTree(children=children)
    dt.attrs.update(attrs or {})
    return dt


def test_hazard_ratio_table_against_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal([-1.0, 0.2], [0.3, 0.1], size=(4, 1000, 2))
    dt = _tree(x, coords={"covariate": ["pm", "age"]})
    tab = bo.summarize.hazard_ratios(dt, thresholds=[0.5])
    hr = np.exp(x.reshape(-1, 2))
    np.testing.assert_allclose(tab["hr_median"], np.median(hr, 0))
    np.testing.assert_allclose(tab["ci_low"], np.quantile(hr, 0.025, 0))
    np.testing.assert_allclose(tab["ci_high"], np.quantile(hr, 0.975, 0))
    np.testing.assert_allclose(tab["p_hr_lt_1"], (hr < 1).mean(0))
    np.testing.assert_allclose(tab["p_hr_lt_0.5"], (hr < 0.5).mean(0))
    assert list(tab.index) == ["pm", "age"] and tab.attrs["ci_prob"] == 0.95
    # HDI is no wider than the ETI and holds 95% of the draws
    assert np.all(tab.hdi_high - tab.hdi_low <= tab.ci_high - tab.ci_low + 1e-12)
    inside = ((hr >= tab.hdi_low.values) & (hr <= tab.hdi_high.values)).mean(0)
    np.testing.assert_allclose(inside, 0.95, atol=1e-3)
    assert (tab.r_hat < 1.01).all() and (tab.ess_bulk > 3000).all()


def test_hazard_ratios_from_log_only_and_scalar():
    x = np.random.default_rng(2).normal(0, 0.1, size=(2, 300))
    post = xr.Dataset({"log_hr": (("chain", "draw"), x)})
    dt = xr.DataTree(children={"posterior": xr.DataTree(post)})
    tab = bo.summarize.hazard_ratios(dt)
    assert tab.index.tolist() == ["hr"]
    assert tab["hr_median"].iloc[0] == pytest.approx(np.median(np.exp(x)))


def test_pseudo_posterior_flagged():
    x = np.random.default_rng(3).normal(0, 0.1, size=(2, 300, 1))
    tab = bo.summarize.hazard_ratios(_tree(x, attrs={"pseudo_posterior": "true"}))
    assert tab.attrs["pseudo_posterior"] and tab["note"].str.contains("pseudo").all()


def test_convergence_warning_names_variables():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, size=(4, 200, 1))
    x[0] += 5  # one chain stuck elsewhere: R-hat far above 1.01
    div = np.zeros((4, 200), bool)
    div[1, 3] = True
    dt = _tree(x, diverging=div)
    with pytest.warns(ConvergenceWarning, match=r"R-hat > 1.01 for \['log_hr', 'hr'\].*1 divergent"):
        tab = bo.summarize.check_convergence(dt)
    assert not tab["ok"].any() and tab.attrs["divergences"] == 1


def test_missing_posterior_errors():
    with pytest.raises(ValueError, match="no 'posterior' group"):
        bo.summarize.hazard_ratios(xr.DataTree())
