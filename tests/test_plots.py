"""Plots: every function returns a Figure, draws into a given ``ax``, and shows what it says."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.figure import Figure

import bayes_osteo as bo
from bayes_osteo import plots


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _meta_dt(groups=None, k=5, seed=0):
    rng = np.random.default_rng(seed)
    S = (2, 300)
    if groups is None:
        mu = rng.normal(-1.0, 0.1, S)
        post = {"log_hr": (("chain", "draw"), mu), "hr": (("chain", "draw"), np.exp(mu)),
                "tau": (("chain", "draw"), np.abs(rng.normal(0.2, 0.05, S))),
                "log_hr_new": (("chain", "draw"), mu + rng.normal(0, 0.3, S))}
        coords = {}
    else:
        mu = rng.normal(-1.0, 0.1, (*S, len(groups)))
        post = {"log_hr": (("chain", "draw", "group"), mu), "hr": (("chain", "draw", "group"), np.exp(mu)),
                "log_hr_new": (("chain", "draw", "group"), mu + rng.normal(0, 0.3, mu.shape))}
        coords = {"group": groups}
    theta = rng.normal(-1.0, 0.2, (*S, k))
    post["theta"] = (("chain", "draw", "study"), theta)
    coords["study"] = [f"s{i}" for i in range(k)]
    ds = xr.Dataset(post, coords=coords)
    return xr.DataTree.from_dict({"posterior": ds})


def _studies(groups=None, k=5):
    rng = np.random.default_rng(1)
    grp = None if groups is None else [groups[i % len(groups)] for i in range(k)]
    return bo.StudyEstimates(rng.normal(-1, 0.3, k), rng.uniform(0.2, 0.5, k),
                             study=[f"s{i}" for i in range(k)], group=grp)


def test_forest_ungrouped_has_studies_pooled_and_prediction_rows():
    st = _studies()
    fig = plots.forest(_meta_dt(), st)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:5] == [f"s{i}" for i in range(5)]
    assert any(lab.startswith("Pooled") for lab in labels)
    assert any(lab.startswith("New study") for lab in labels)
    assert ax.get_xscale() == "log"
    # shrunken estimates are drawn on the HR scale: exp(median theta_i)
    dt = _meta_dt()
    fig = plots.forest(dt, st)
    shrunk = [c for c in fig.axes[0].collections if c.get_label().startswith("shrunken")][0]
    x0 = shrunk.get_offsets()[0][0]
    np.testing.assert_allclose(x0, np.exp(np.median(dt["posterior"]["theta"].values[..., 0])), rtol=1e-3)


def test_forest_grouped_and_into_given_ax():
    groups = ["PRS", "PMOS"]
    fig0, ax = plt.subplots()
    fig = plots.forest(_meta_dt(groups, k=6), _studies(groups, k=6), ax=ax)
    assert fig is fig0
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert sum(lab.startswith("Pooled") for lab in labels) == 2
    assert "PRS" in labels and "PMOS" in labels


def test_funnel_and_pooled_line_from_posterior():
    st = _studies()
    fig = plots.funnel(st, _meta_dt())
    ax = fig.axes[0]
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # SE axis inverted
    # the vertical pooled line sits at the posterior median HR
    med = float(np.exp(np.median(_meta_dt()["posterior"]["log_hr"].values)))
    xs = [ln.get_xdata()[0] for ln in ax.lines if len(set(np.round(ln.get_xdata(), 12))) == 1]
    assert any(abs(x - med) < 1e-3 for x in xs)  # even draw count: median of exp vs exp of median


def test_love_wide_and_long():
    bal = pd.DataFrame({"smd_before": [0.5, -0.3, 0.05], "smd_after_iptw": [0.02, 0.04, -0.01]},
                       index=pd.Index(["age", "bilateral", "sex"], name="covariate"))
    fig = plots.love(bal)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["age", "bilateral", "sex"]
    assert list(ax.get_yticks()) == [2, 1, 0]  # first covariate on top
    # absolute values plotted
    offs = ax.collections[0].get_offsets()
    assert np.all(np.asarray(offs)[:, 0] >= 0)
    long = bal.reset_index().melt(id_vars="covariate", var_name="method", value_name="smd")
    _, ax2 = plt.subplots()
    assert plots.love(long, ax=ax2) is ax2.get_figure()


def test_ps_overlap_counts():
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"ps": rng.uniform(0.05, 0.95, 40), "treatment": np.r_[np.ones(15), np.zeros(25)]})
    fig = plots.ps_overlap(df)
    ax = fig.axes[0]
    heights = np.array([p.get_height() for p in ax.patches])
    assert heights[heights > 0].sum() == 15 and -heights[heights < 0].sum() == 25


def test_prior_posterior_density_matches_prior():
    rng = np.random.default_rng(3)
    dt = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"tau": (("chain", "draw"), np.abs(rng.normal(0, 0.3, (2, 500)))),
         "log_hr": (("chain", "draw", "covariate"), rng.normal(-1, 0.2, (2, 500, 2)))},
        coords={"covariate": ["pm", "age"]})})
    prior = bo.Prior("HalfNormal", sigma=0.5)
    fig = plots.prior_posterior(dt, "tau", prior)
    line = [ln for ln in fig.axes[0].lines if ln.get_label().startswith("prior")][0]
    x, y = line.get_xdata(), line.get_ydata()
    from scipy import stats

    np.testing.assert_allclose(y, stats.halfnorm(0, 0.5).pdf(x))
    mix = bo.NormalMixture([0.8, 0.2], [-1.2, 0], [0.3, 2])
    fig = plots.prior_posterior(dt, "log_hr", mix, coords={"covariate": "pm"}, hr_scale=True)
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="coords"):
        plots.prior_posterior(dt, "log_hr", mix)


def test_hr_over_time_piecewise_and_smooth():
    df = pd.DataFrame({"start": [0, 12, 24], "end": [12, 24, 60], "hr_median": [0.2, 0.3, 0.5],
                       "ci_low": [0.1, 0.15, 0.2], "ci_high": [0.4, 0.6, 1.2]})
    assert isinstance(plots.hr_over_time(df), Figure)
    df2 = pd.DataFrame({"time": [1, 2, 3], "median": [0.5, 0.6, 0.7], "ci_low": [0.3, 0.4, 0.5],
                        "ci_high": [0.9, 1.0, 1.1]})
    fig = plots.hr_over_time(df2)
    assert fig.axes[0].get_yscale() == "log"


def test_hazard_ratio_plot():
    tab = pd.DataFrame({"hr_median": [0.2, 1.3], "ci_low": [0.1, 0.9], "ci_high": [0.4, 1.9],
                        "p_hr_lt_1": [1.0, 0.1]}, index=["pm", "age"])
    fig = plots.hazard_ratio_plot(tab)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["pm", "age"]
    assert list(ax.get_yticks()) == [1, 0]


def test_trace_and_rank_through_arviz_plots():
    dt = _meta_dt()
    f1 = plots.trace(dt, ["log_hr", "tau"])
    f2 = plots.rank(dt, ["log_hr", "tau"])
    assert isinstance(f1, Figure) and isinstance(f2, Figure)
    assert len(f1.axes) >= 4  # trace + density for each variable


def test_rank_histograms_band():
    rng = np.random.default_rng(4)
    ranks = pd.DataFrame({"log_hr": rng.integers(0, 100, 200), "tau": rng.integers(0, 100, 200)})
    ranks.attrs["n_draws"] = 99
    fig = plots.rank_histograms(ranks)
    assert len(fig.axes) == 2
    counts = [p.get_height() for p in fig.axes[0].containers[0]]
    assert sum(counts) == 200


def test_km_and_at_risk_from_table():
    """km() with a precomputed table draws the steps and numbers at risk computed from the data."""
    df = pd.DataFrame({"months": [2.0, 4, 6, 8, 10, 12], "death": [1, 0, 1, 1, 0, 1],
                       "pm": [1, 1, 1, 0, 0, 0]})
    sd = bo.SurvivalData.from_frame(df, duration="months", event="death", treatment="pm")
    table = pd.DataFrame({"time": [2.0, 6, 8, 12], "survival": [0.8, 0.5, 0.4, 0.0], "group": "all"})
    fig = plots.km(sd, table=table, times=[0, 5, 10])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "At risk" in texts
    assert ["6", "4", "2"] == [t for t in texts if t.isdigit()]
