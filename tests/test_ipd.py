"""Tests for bayes_osteo.ipd: reconstruction of patient data from digitised Kaplan-Meier curves.

Round trips: simulate a two-arm trial (Weibull, known HR), compute each arm's Kaplan-Meier curve
and its at-risk table every 6 months, digitise the curve as a person would (both corners of every
step and the curve's end, Gaussian jitter in time and survival, a share of the rows shuffled out
of order), reconstruct, and compare with the original patient rows and with the truth.

Tolerances. Reconstruction error was measured by a Monte-Carlo study of this exact scenario
(100 replicate trials, 150 patients per arm, HR 0.65; noise SD 0.1 month and 0.003 survival):
the reconstructed-minus-original Cox log-HR had SD 0.0092 and max |.| 0.030; the reconstructed
event count differed from the true one by at most 3 per arm. For the flat-tail scenario (60
replicates with and 40 without total events): SD 0.0075, max 0.020, no death ever placed after
the last true death. Sampling error of the original estimate is its own Cox SE (about 0.13).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.duration.hazard_regression import PHReg

import bayes_osteo as bo
from bayes_osteo.ipd import kaplan_meier_steps, reconstruct_ipd

HR = 0.65
SHAPE, SCALE = 1.3, 24.0
SD_T, SD_S = 0.1, 0.003
RECON_LOGHR_TOL = 0.05    # > 5 MC SDs (0.0092) of the reconstruction error, > max of 100 trials
EVENT_TOL = 3             # max |events reconstructed - events true| over 200 simulated arms


# ---------------------------------------------------------------------------------------------
# simulation helpers
# ---------------------------------------------------------------------------------------------
def simulate_trial(rng, n=150, hr=HR, scale=SCALE, accrual=36.0, follow=24.0, t_flat=np.inf):
    """Two arms, Weibull(SHAPE, scale) control hazard, PH with ``hr``; uniform accrual.

    With ``t_flat`` finite the hazard is 0 after ``t_flat`` in both arms (PH still holds):
    the curves are flat from there on while late-accrued patients are censored.
    """
    rows = []
    for arm in (0, 1):
        lam = (1 / scale) ** SHAPE * (hr if arm else 1.0)
        t = (-np.log(rng.uniform(size=n)) / lam) ** (1 / SHAPE)
        t[t > t_flat] = np.inf
        c = follow + rng.uniform(0, accrual, n)
        rows.append(pd.DataFrame({"time": np.minimum(t, c), "event": (t <= c).astype(int),
                                  "treatment": arm}))
    return pd.concat(rows, ignore_index=True)


def digitise(time, event, rng, sd_t=SD_T, sd_s=SD_S, shuffle=0.1):
    """Points a person would click on the KM curve: both corners of each step and the end."""
    kt, ks = kaplan_meier_steps(time, event)
    before = np.concatenate([[1.0], ks[:-1]])
    t = np.concatenate([kt, kt, [np.max(time)]])
    s = np.concatenate([before, ks, [ks[-1]]])
    t = t + rng.normal(0, sd_t, t.size)
    s = s + rng.normal(0, sd_s, s.size)
    idx = np.arange(t.size)
    pick = rng.choice(t.size, int(shuffle * t.size), replace=False)
    idx[pick] = rng.permutation(idx[pick])
    return pd.DataFrame({"time": t[idx], "survival": s[idx]})


def at_risk_table(time, step=6.0):
    grid = np.arange(0, np.max(time), step)
    return grid, np.array([(time >= g).sum() for g in grid])


def reconstruct_trial(df, rng, *, use_total=True):
    arms = []
    for arm in (0, 1):
        d = df[df.treatment == arm]
        grid, counts = at_risk_table(d.time.to_numpy())
        pts = digitise(d.time.to_numpy(), d.event.to_numpy(), rng)
        r = reconstruct_ipd(pts, at_risk_times=grid, at_risk_counts=counts,
                            total_events=int(d.event.sum()) if use_total else None)
        arms.append(r.assign(treatment=arm))
    return arms


def cox(df):
    fit = PHReg(df.time.to_numpy(), df[["treatment"]].to_numpy(float),
                status=df.event.to_numpy(float), ties="efron").fit()
    return float(fit.params[0]), float(fit.bse[0])


def km_quantile_time(time, event, p):
    """First time the KM curve is <= p (inf if never)."""
    kt, ks = kaplan_meier_steps(time, event)
    return float(kt[np.argmax(ks <= p)]) if np.any(ks <= p) else np.inf


def greenwood_se_at(time, event, t0):
    time, event = np.asarray(time, float), np.asarray(event, float)
    ut = np.unique(time[(event > 0) & (time <= t0)])
    d = np.array([np.sum((time == u) & (event > 0)) for u in ut])
    n = np.array([np.sum(time >= u) for u in ut])
    s = np.prod(1 - d / n)
    return s * np.sqrt(np.sum(d / (n * (n - d))))


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def weibull_trial():
    rng = np.random.default_rng(20240601)
    df = simulate_trial(rng)
    arms = reconstruct_trial(df, rng)
    return df, arms


def test_round_trip_at_risk_and_events(weibull_trial):
    df, arms = weibull_trial
    for arm, rec in enumerate(arms):
        d = df[df.treatment == arm]
        rep = rec.attrs
        assert rep["n"] == len(d) == len(rec)
        assert rep["max_at_risk_diff"] == 0
        assert rep["at_risk"]["reconstructed"] == rep["at_risk"]["published"]
        assert abs(rep["events"] - d.event.sum()) <= EVENT_TOL
        # digitisation noise is 0.003; a reconstructed curve follows the cleaned points closely
        assert rep["rms_gap"] < 0.01
        assert set(rec.columns) >= {"time", "event"} and rec.time.is_monotonic_increasing


def test_round_trip_curve_close_to_original_km(weibull_trial):
    """Levy-type distance between reconstructed and original KM, where >= 20 are at risk.

    Allowed: |S_rec(t) - S_orig(t')| for some |t - t'| <= 3 SD_T (time jitter) below 0.025
    (survival noise 0.003, plateau pooling <= min_drop/2 = 0.005, rounding of one death in
    >= 20 at risk times S <= 0.5 * S / 20 <= 0.025).
    """
    df, arms = weibull_trial
    h = 3 * SD_T
    for arm, rec in enumerate(arms):
        d = df[df.treatment == arm]
        kt, ks = kaplan_meier_steps(d.time, d.event)
        rt, rs = kaplan_meier_steps(rec.time, rec.event)

        def K(x, kt=kt, ks=ks):
            return np.concatenate([[1.0], ks])[np.searchsorted(kt, x, "right")]

        grid = np.linspace(0, d.time.max(), 1000)
        grid = grid[np.array([(d.time >= g).sum() for g in grid]) >= 20]
        R = np.concatenate([[1.0], rs])[np.searchsorted(rt, grid, "right")]
        dist = np.maximum(0, np.maximum(R - K(grid - h), K(grid + h) - R))
        assert dist.max() < 0.025


def test_round_trip_hazard_ratio(weibull_trial):
    df, arms = weibull_trial
    b_orig, se = cox(df)
    b_rec, se_rec = cox(pd.concat(arms, ignore_index=True))
    # reconstruction error only (same trial): MC SD 0.0092, see module docstring
    assert abs(b_rec - b_orig) < RECON_LOGHR_TOL
    assert se_rec == pytest.approx(se, rel=0.05)
    # against the truth: sampling error (3.5 SE, two-sided p ~ 5e-4) + reconstruction error
    assert abs(b_rec - np.log(HR)) < 3.5 * se + RECON_LOGHR_TOL


def test_round_trip_median(weibull_trial):
    """Median survival per arm.

    Against the original KM: the reconstructed median lies where the original curve is within
    0.025 of 0.5 (the curve tolerance above), widened by 3 SD of time jitter. Against the truth:
    the true S at the reconstructed median is within 3.5 Greenwood SE + 0.025 of 0.5.
    """
    df, arms = weibull_trial
    h = 3 * SD_T
    for arm, rec in enumerate(arms):
        d = df[df.treatment == arm]
        m_rec = km_quantile_time(rec.time, rec.event, 0.5)
        lo = km_quantile_time(d.time, d.event, 0.525) - h
        hi = km_quantile_time(d.time, d.event, 0.475) + h
        assert lo <= m_rec <= hi
        lam = (1 / SCALE) ** SHAPE * (HR if arm else 1.0)
        s_true = np.exp(-lam * m_rec ** SHAPE)
        se = greenwood_se_at(d.time, d.event, km_quantile_time(d.time, d.event, 0.5))
        assert abs(s_true - 0.5) < 3.5 * se + 0.025


@pytest.mark.parametrize("use_total", [True, False])
def test_flat_tail_heavy_late_censoring(use_total):
    """Hazard 0 after 30 months, accrual over 60 months: long flat tails with many censored.

    No death may be placed in the flat tail (after the last true death + 3 SD of time jitter),
    whether or not the total number of events is given.
    """
    rng = np.random.default_rng(7 + use_total)
    df = simulate_trial(rng, scale=20.0, accrual=60.0, follow=12.0, t_flat=30.0)
    arms = reconstruct_trial(df, rng, use_total=use_total)
    for arm, rec in enumerate(arms):
        d = df[df.treatment == arm]
        last_death = d.time[d.event == 1].max()
        assert (d.time > last_death).sum() >= 15          # a long tail of censored patients
        assert rec.event[rec.time > last_death + 3 * SD_T].sum() == 0
        assert abs(rec.attrs["events"] - d.event.sum()) <= EVENT_TOL
        assert rec.attrs["max_at_risk_diff"] == 0
        kt, ks = kaplan_meier_steps(rec.time, rec.event)
        assert ks[-1] == pytest.approx(kaplan_meier_steps(d.time, d.event)[1][-1], abs=0.025)
    b_orig, se = cox(df)
    b_rec, _ = cox(pd.concat(arms, ignore_index=True))
    assert abs(b_rec - b_orig) < RECON_LOGHR_TOL
    assert abs(b_rec - np.log(HR)) < 3.5 * se + RECON_LOGHR_TOL


def test_row_order_does_not_matter():
    rng = np.random.default_rng(3)
    df = simulate_trial(rng, n=80)
    d = df[df.treatment == 0]
    grid, counts = at_risk_table(d.time.to_numpy())
    pts = digitise(d.time.to_numpy(), d.event.to_numpy(), rng, shuffle=0.0)
    a = reconstruct_ipd(pts, at_risk_times=grid, at_risk_counts=counts)
    b = reconstruct_ipd(pts.sample(frac=1.0, random_state=1), at_risk_times=grid,
                        at_risk_counts=counts)
    pd.testing.assert_frame_equal(a, b)


def test_exact_points_simple_curve():
    """Noise-free points of a known data set: the deaths are recovered exactly.

    20 patients: deaths at 2 (2), 5 (3), 9 (3); censored: 3 at 4, 2 at 7, 10 at 12. At risk at
    6 months: 20 - 2 - 3 - 3 = 12. KM: 0.9, 0.9 * 12/15 = 0.72, 0.72 * 7/10 = 0.504.
    The censoring times are unknown to the algorithm and spread evenly over (0, 6): one falls at
    1.5, before the deaths at 2, so the rebuilt KM is 1 - 2/19 = 0.8947 there (gap 0.0053) and
    the gaps later stay below 0.02.
    """
    pts = pd.DataFrame({"time": [0, 2, 2, 5, 5, 9, 9, 12],
                        "survival": [1, 1, .9, .9, .72, .72, .504, .504]})
    rec = reconstruct_ipd(pts, at_risk_times=[0, 6], at_risk_counts=[20, 12], total_events=8,
                          min_drop=0)
    deaths = rec.time[rec.event == 1].to_numpy()
    np.testing.assert_allclose(deaths, [2, 2, 5, 5, 5, 9, 9, 9])
    assert len(rec) == 20 and rec.attrs["max_abs_gap"] < 0.02
    assert rec.attrs["at_risk"]["reconstructed"] == [20, 12]


def test_public_api_and_report():
    assert bo.reconstruct_ipd is reconstruct_ipd
    pts = pd.DataFrame({"time": [0, 3, 3, 8], "survival": [1, 1, 0.8, 0.8]})
    rec = reconstruct_ipd(pts, at_risk_times=[0], at_risk_counts=[10])
    for key in ("max_abs_gap", "rms_gap", "max_abs_gap_input", "rms_gap_input", "at_risk",
                "max_at_risk_diff", "n", "events", "citation"):
        assert key in rec.attrs
    assert rec.attrs["events"] == 2 and rec.attrs["n"] == 10


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
GOOD = pd.DataFrame({"time": [0, 2, 2, 5, 5, 9, 9, 12],
                     "survival": [1, 1, .9, .9, .75, .75, .6, .6]})


@pytest.mark.parametrize("kwargs, match", [
    ({"at_risk_times": [0, 8, 4], "at_risk_counts": [20, 14, 10]}, "strictly increasing"),
    ({"at_risk_times": [0, 4, 4], "at_risk_counts": [20, 14, 10]}, "strictly increasing"),
    ({"at_risk_times": [0, 4, 8], "at_risk_counts": [20, 14, 16]}, "must not increase"),
    ({"at_risk_times": [2, 4, 8], "at_risk_counts": [20, 14, 10]}, "start at 0"),
    ({"at_risk_times": [0, 4], "at_risk_counts": [20, 14, 10]}, "one value each"),
    ({"at_risk_times": [0, 4], "at_risk_counts": [20, 13.5]}, "whole numbers"),
    ({"at_risk_times": [0, 4], "at_risk_counts": [20, -1]}, "non-negative"),
    ({"at_risk_times": [0, 4], "at_risk_counts": [0, 0]}, "must be positive"),
    ({"at_risk_times": [0, 4], "at_risk_counts": [20, 14], "total_events": 25}, "total_events"),
    ({"at_risk_times": [0, np.nan], "at_risk_counts": [20, 14]}, "finite"),
])
def test_bad_at_risk_table(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reconstruct_ipd(GOOD, **kwargs)


def _with(row, time, surv):
    df = GOOD.copy()
    df.loc[row] = [time, surv]
    return df


@pytest.mark.parametrize("points, match", [
    (_with(3, 5, 1.3), r"\[0, 1\]"),                       # survival above 1
    (_with(3, 5, -0.2), r"\[0, 1\]"),                      # below 0
    (GOOD.assign(survival=GOOD.survival * 100), "percentages"),
    (_with(6, 9, 0.85), "not monotone"),                   # rises 0.10 at a later time
    (_with(2, 1, 0.5), "not monotone"),                    # a mis-click far below the curve
    (_with(2, -3, 0.9), "time must be >= 0"),
    (_with(2, np.nan, 0.9), "missing"),
    (GOOD.rename(columns={"survival": "surv"}), "no column"),
    (GOOD.iloc[:1], "at least 2"),
    (np.zeros((4, 3)), "shape"),
])
def test_bad_curve_points(points, match):
    with pytest.raises(ValueError, match=match):
        reconstruct_ipd(points, at_risk_times=[0, 6], at_risk_counts=[20, 14])


def test_noise_within_tolerance_is_cleaned_not_rejected():
    noisy = _with(6, 9, 0.76)               # 0.01 above the previous plateau: noise, not error
    noisy.loc[1] = [2, 1.008]               # slightly above 1: clipped
    rec = reconstruct_ipd(noisy, at_risk_times=[0, 6], at_risk_counts=[20, 14])
    assert rec.attrs["n"] == 20 and rec.attrs["max_at_risk_diff"] == 0


def test_inconsistent_total_events_warn():
    """A published total far from what the curve's drops allow: a warning naming both numbers,
    and the at-risk counts are still honoured."""
    with pytest.warns(UserWarning, match="total events: published 19"):
        rec = reconstruct_ipd(GOOD, at_risk_times=[0, 6], at_risk_counts=[20, 14],
                              total_events=19)
    assert rec.attrs["at_risk"]["reconstructed"] == [20, 14]
