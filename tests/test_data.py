"""Validation and conversions of bayes_osteo.data (SurvivalData, StudyEstimates)."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_osteo as bo
from bayes_osteo.data import DataValidationError


@pytest.fixture
def df():
    return pd.DataFrame({
        "months": [5.0, 8.0, 12.0, 20.0, 3.0, 30.0],
        "death": [1, 0, 1, 1, 1, 0],
        "pm": [1, 0, 1, 0, 0, 1],
        "age": [12.0, 15.0, 18.0, 30.0, 22.0, 17.0],
        "sex": ["m", "f", "f", "m", "m", "f"],
        "site": ["a", "a", "b", "b", "c", "c"],
        "w": [1.0, 2.0, 1.0, 0.5, 1.0, 1.0],
        "entry": [0.0, 1.0, 0.0, 2.0, 0.0, 0.0],
    })


def build(df, **kw):
    args = {"duration": "months", "event": "death", "covariates": ["age"], "treatment": "pm"}
    args.update(kw)
    return bo.SurvivalData.from_frame(df, **args)


def test_basic_coding(df):
    sd = build(df, covariates=["age", "sex"], strata="site", weights="w", entry="entry")
    assert sd.covariate_names == ["pm", "age", "sex[m]"]
    assert sd.reference_levels == {"sex": "f"}
    np.testing.assert_array_equal(sd.column("sex[m]"), [1, 0, 0, 1, 1, 0])
    assert sd.n == 6 and sd.n_events == 4 and sd.p == 3
    assert sd.strata_levels == ["a", "b", "c"]
    assert sd.spec()["weights"] == "w" and sd.spec()["entry"] == "entry"
    assert len(sd.fingerprint()) == 16


@pytest.mark.parametrize("value, words", [(-1.0, "<= 0"), (0.0, "<= 0"), (np.inf, "non-finite")])
def test_bad_durations(df, value, words):
    df.loc[2, "months"] = value
    with pytest.raises(DataValidationError, match="months") as e:
        build(df)
    assert words in str(e.value) and "2" in str(e.value)


def test_nan_duration_is_missing(df):
    df.loc[1, "months"] = np.nan
    with pytest.raises(DataValidationError, match="'months'.*missing.*dropna=True"):
        build(df)


def test_event_not_binary(df):
    df.loc[3, "death"] = 2
    with pytest.raises(DataValidationError, match="'death'.*0/1"):
        build(df)


def test_missing_column(df):
    with pytest.raises(DataValidationError, match="'nodules'"):
        build(df, covariates=["age", "nodules"])
    with pytest.raises(DataValidationError, match="'time'"):
        build(df, duration="time")


def test_nan_covariate_and_dropna(df):
    df.loc[4, "age"] = np.nan
    with pytest.raises(DataValidationError, match="'age'.*row\\(s\\) 4"):
        build(df)
    with pytest.warns(UserWarning, match="dropped 1 of 6"):
        sd = build(df, dropna=True)
    assert sd.n == 5 and sd.n_dropped == 1


def test_constant_covariate(df):
    df["const"] = 3.0
    with pytest.raises(DataValidationError, match="'const'.*constant"):
        build(df, covariates=["const"])
    df["one_level"] = "x"
    with pytest.raises(DataValidationError, match="'one_level'.*single value"):
        build(df, covariates=["one_level"])


def test_no_events(df):
    df["death"] = 0
    with pytest.raises(DataValidationError, match="'death'.*no events"):
        build(df)


def test_empty_frame(df):
    with pytest.raises(DataValidationError, match="empty"):
        build(df.iloc[:0])


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_non_positive_weights(df, value):
    df.loc[1, "w"] = value
    with pytest.raises(DataValidationError, match="'w'.*> 0"):
        build(df, weights="w")


def test_entry_after_exit(df):
    df.loc[0, "entry"] = 6.0
    with pytest.raises(DataValidationError, match="'entry'.*entry >= exit"):
        build(df, entry="entry")


@pytest.mark.parametrize("col", ["months", "death"])
def test_duration_or_event_as_covariate(df, col):
    with pytest.raises(DataValidationError, match=f"'{col}'.*cannot also be a covariate"):
        build(df, covariates=["age", col])


def test_treatment_not_binary(df):
    df.loc[0, "pm"] = 3
    with pytest.raises(DataValidationError, match="treatment column 'pm'"):
        build(df)


def test_single_subject_stratum_warns(df):
    df["s"] = ["a", "a", "b", "b", "b", "lonely"]
    with pytest.warns(UserWarning, match="'s'.*lonely"):
        build(df, strata="s")


def test_subset_revalidates(df):
    sd = build(df, covariates=["age", "sex"])
    sub = sd.subset(df.pm.to_numpy() == 1)
    assert sub.n == 3 and sub.covariate_names[0] == "pm"


# -- StudyEstimates ------------------------------------------------------------------------------
def test_hr_ci_conversion_matches_reference():
    # REFERENCES.md: HR 0.69 (0.54-0.89) gives SE 0.127465 (z = 1.959964).
    st = bo.StudyEstimates.from_hr_ci(pd.DataFrame({"study": ["x"], "hr": [0.69], "ci_low": [0.54],
                                                    "ci_high": [0.89]}))
    assert st.se[0] == pytest.approx(0.127465, abs=1e-6)
    assert st.log_hr[0] == pytest.approx(np.log(0.69))


@pytest.mark.parametrize("level, z", [(0.90, 1.644854), (0.99, 2.575829)])
def test_hr_ci_other_levels(level, z):
    d = pd.DataFrame({"study": ["x"], "hr": [0.7], "ci_low": [0.5], "ci_high": [0.98]})
    st = bo.StudyEstimates.from_hr_ci(d, ci_level=level, check_symmetry=10)
    assert st.se[0] == pytest.approx((np.log(0.98) - np.log(0.5)) / (2 * z), rel=1e-6)


def test_from_p_value_and_logrank():
    st = bo.StudyEstimates.from_p_value(pd.DataFrame({"study": ["a"], "hr": [0.5], "p": [0.01]}))
    assert st.se[0] == pytest.approx(abs(np.log(0.5)) / 2.575829, rel=1e-6)
    st = bo.StudyEstimates.from_logrank(pd.DataFrame({"study": ["a"], "o_minus_e": [-5.0], "v": [20.0]}))
    assert st.log_hr[0] == pytest.approx(-0.25) and st.se[0] == pytest.approx(1 / np.sqrt(20))


def test_asymmetric_ci_warns_naming_row():
    d = pd.DataFrame({"study": ["a", "b"], "hr": [0.69, 0.30], "ci_low": [0.54, 0.29], "ci_high": [0.89, 0.90]})
    with pytest.warns(UserWarning, match="Row\\(s\\) 1"):
        bo.StudyEstimates.from_hr_ci(d)


def test_rounding_does_not_warn():
    d = pd.DataFrame({"study": ["a"], "hr": [0.185], "ci_low": [0.103], "ci_high": [0.33]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bo.StudyEstimates.from_hr_ci(d)


@pytest.mark.parametrize("row, match", [
    ({"hr": -0.5, "ci_low": 0.2, "ci_high": 0.9}, "'hr'.*> 0"),
    ({"hr": 0.5, "ci_low": 0.6, "ci_high": 0.9}, "'ci_low' < 'hr' < 'ci_high'"),
    ({"hr": 0.5, "ci_low": 0.2, "ci_high": np.inf}, "'ci_high'.*finite"),
])
def test_hr_ci_bad_values(row, match):
    with pytest.raises(DataValidationError, match=match):
        bo.StudyEstimates.from_hr_ci(pd.DataFrame({"study": ["a"], **{k: [v] for k, v in row.items()}}))


@pytest.mark.parametrize("level", [0, 1, 95, -0.5])
def test_bad_ci_level(level):
    d = pd.DataFrame({"study": ["a"], "hr": [0.5], "ci_low": [0.2], "ci_high": [0.9]})
    with pytest.raises(DataValidationError, match="ci_level"):
        bo.StudyEstimates.from_hr_ci(d, ci_level=level)


def test_direct_checks():
    with pytest.raises(DataValidationError, match="se must be finite and > 0"):
        bo.StudyEstimates([0.1, 0.2], [0.0, 0.1])
    with pytest.raises(DataValidationError, match="different lengths"):
        bo.StudyEstimates([0.1, 0.2], [0.1, 0.1, 0.2])
    with pytest.raises(DataValidationError, match="not finite"):
        bo.StudyEstimates([np.nan, 0.2], [0.1, 0.1])
    with pytest.raises(DataValidationError, match="unique within a group.*'a'"):
        bo.StudyEstimates([0.1, 0.2], [0.1, 0.1], study=["a", "a"])
    # the same study label in two groups is fine
    st = bo.StudyEstimates([0.1, 0.2], [0.1, 0.1], study=["a", "a"], group=["g1", "g2"])
    assert st.groups == ["g1", "g2"] and st.select("g2").log_hr[0] == 0.2


def test_group_from_columns():
    d = pd.DataFrame({"study": ["a", "b", "a"], "hr": [0.5, 0.6, 1.5], "ci_low": [0.3, 0.4, 1.1],
                      "ci_high": [0.83, 0.9, 2.05], "factor": ["pm", "pm", "bilat"],
                      "endpoint": ["PRS", "PRS", "PMOS"]})
    st = bo.StudyEstimates.from_hr_ci(d, group=["factor", "endpoint"], check_symmetry=10)
    assert st.groups == ["pm | PRS", "bilat | PMOS"]
    assert st.select("pm | PRS").k == 2
