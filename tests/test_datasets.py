"""Bundled data: provenance, the simulated cohort's calibration and determinism."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.duration.survfunc import SurvfuncRight

import bayes_osteo as bo
from bayes_osteo.datasets import liu2022


def _km_at(time, event, t):
    sf = SurvfuncRight(time, event)
    i = np.searchsorted(sf.surv_times, t, side="right") - 1
    s = 1.0 if i < 0 else float(sf.surv_prob[i])
    se = 0.0 if i < 0 else float(np.nan_to_num(sf.surv_prob_se[i]))  # Greenwood SE is NaN at S = 0
    return s, se


def test_cohort_is_labelled_simulated():
    df = bo.datasets.liu2022_cohort()
    assert df.attrs["simulated"] is True and "SIMULATED" in df.attrs["description"]
    assert "SIMULATED" in bo.datasets.liu2022_cohort.__doc__
    assert df.shape[0] == 125 and int(df.metastasectomy.sum()) == 59
    assert (df.complete_resection <= df.metastasectomy).all()
    sd = bo.SurvivalData.from_frame(df, duration=df.attrs["duration"], event=df.attrs["event"],
                                    treatment=df.attrs["treatment"], covariates=df.attrs["confounders"])
    assert sd.covariate_names[0] == "metastasectomy"


def test_generator_is_deterministic():
    a = liu2022.simulate_liu2022_cohort(seed=11)
    b = liu2022.simulate_liu2022_cohort(seed=11)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(liu2022.simulate_liu2022_cohort(seed=12))
    pd.testing.assert_frame_equal(bo.datasets.liu2022_cohort(), liu2022.simulate_liu2022_cohort(seed=2022))


def test_bundled_cohort_reproduces_calibration_targets():
    """KM at 24/60 months by arm within sampling error of the calibrated population values
    (3 Greenwood SEs, floored at 0.02 where the SE vanishes), and the Cox HR of surgery within
    its 95% CI of the published adjusted HR 0.185."""
    df = bo.datasets.liu2022_cohort()
    pop = liu2022.POPULATION
    for arm, key in ((1, "pm"), (0, "chemo")):
        d = df[df.metastasectomy == arm]
        for t in (24, 60):
            s, se = _km_at(d.months.to_numpy(), d.death.to_numpy(), t)
            assert abs(s - pop[f"s{t}_{key}"]) <= max(3 * se, 0.02), (arm, t, s, se)
    X = pd.get_dummies(df[["metastasectomy"] + liu2022.CONFOUNDERS], columns=["sex"], drop_first=True,
                       dtype=float)
    fit = sm.PHReg(df.months.to_numpy(), X.to_numpy(float), status=df.death.to_numpy(), ties="efron").fit()
    b, se = fit.params[0], fit.bse[0]
    assert abs(b - np.log(0.185)) < 1.96 * se


@pytest.mark.slow
def test_population_calibration_at_large_n():
    """At n = 100,000 the generator reproduces its population values: KM within 4 SEs (~0.01)
    and the adjusted Cox HR within 4 SEs of 0.185; the published 2-year rates within 0.12."""
    n, nop = 100_000, 47_200
    df = liu2022.simulate_liu2022_cohort(n, nop, seed=99)
    pop = liu2022.POPULATION
    for arm, key in ((1, "pm"), (0, "chemo")):
        d = df[df.metastasectomy == arm]
        for t in (24, 60):
            s, se = _km_at(d.months.to_numpy(), d.death.to_numpy(), t)
            assert abs(s - pop[f"s{t}_{key}"]) <= 4 * se + 0.005
            assert abs(s - liu2022.TARGETS[f"s{t}_{key}"]) <= 0.12
    X = pd.get_dummies(df[["metastasectomy"] + liu2022.CONFOUNDERS], columns=["sex"], drop_first=True,
                       dtype=float)
    fit = sm.PHReg(df.months.to_numpy(), X.to_numpy(float), status=df.death.to_numpy(), ties="efron").fit()
    assert abs(fit.params[0] - np.log(0.185)) < 4 * fit.bse[0]


def test_study_tables_carry_citations():
    st = bo.datasets.osteosarcoma_studies()
    assert st.source.notna().all() and st.attrs["simulated"] is False
    assert "DERIVED" in st.loc[st.row_id == "choi2014_bilateral_derived", "note"].item()
    pooled = bo.datasets.published_pooled()
    row = pooled[pooled.row_id == "ning2026_pm_prs"].iloc[0]
    assert (row.hr, row.ci_low, row.ci_high) == (0.29, 0.18, 0.46)
    assert "Ning" in pooled.attrs["citation"]


def test_bcg_matches_reference_counts():
    df = bo.datasets.bcg()
    assert len(df) == 13
    first = df.iloc[0]
    assert (first.tpos, first.tneg, first.cpos, first.cneg) == (4, 119, 11, 128)
    assert first.yi == pytest.approx(np.log(4 / 123) - np.log(11 / 139))


def test_eight_schools():
    df = bo.datasets.eight_schools()
    assert df.y.tolist() == [28, 8, -3, 7, -1, 1, 18, 12]


def test_package_does_not_read_shared_folder():
    import pathlib

    src = pathlib.Path(bo.__file__).parent
    for f in src.rglob("*.py"):
        assert "../shared" not in f.read_text() and "/work/shared" not in f.read_text(), f
