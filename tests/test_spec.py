"""Analysis specs: parsing, validation (every problem at once, with key paths), data loading."""

import tomllib
from pathlib import Path

import pandas as pd
import pytest

import bayes_osteo as bo
from bayes_osteo.spec import SpecError, load_data, load_spec, validate_spec

MODELS = Path(__file__).resolve().parents[1] / "models"

GOOD = """
title = "t"
kind = "cox"
[data]
dataset = "liu2022_cohort"
duration = "months"
event = "death"
treatment = "metastasectomy"
covariates = ["age", "bilateral"]
[model]
baseline = "piecewise"
[model.priors.treatment_log_hr]
dist = "Normal"
kwargs = { mu = 0, sigma = 2.5 }
[sampler]
draws = 10
"""


def test_good_spec_loads():
    spec = load_spec(GOOD)
    assert spec.kind == "cox" and spec.section("model")["baseline"] == "piecewise"
    assert spec.frame().attrs["provenance"]["simulated"] is True


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.toml")), ids=lambda p: p.stem)
def test_bundled_specs_are_valid(path):
    spec = load_spec(path)
    assert spec.kind in ("cox", "meta", "propensity", "bridge")
    assert spec.text == path.read_text()


def test_all_problems_reported_at_once_cohort():
    bad = GOOD.replace('covariates = ["age", "bilateral"]', 'covariates = ["age", "bilaterall"]\nfoo = 1')
    bad = bad.replace("draws = 10", 'draws = "many"\nchain = 4')
    bad = bad.replace('dist = "Normal"', 'dist = "HalfNormall"')
    bad = bad.replace('baseline = "piecewise"', 'baseline = "smooth"')
    with pytest.raises(SpecError) as e:
        load_spec(bad)
    msg = str(e.value)
    probs = e.value.problems
    assert "5 problems" in msg or len(probs) >= 5
    expected = [
        "data.covariates[1]: column 'bilaterall' not in the data",
        "data.foo: unknown key",
        "sampler.draws: expected an integer, got string 'many'",
        "sampler.chain: unknown key",
        "model.priors.treatment_log_hr.dist: unknown distribution 'HalfNormall'",
        "model.baseline: 'smooth' is not one of ['partial', 'piecewise']",
    ]
    for exp in expected:
        assert any(p.startswith(exp) for p in probs), (exp, probs)
        assert exp in msg


def test_unknown_dataset_wrong_types_and_prior_kwargs():
    raw = tomllib.loads(GOOD)
    raw["data"]["dataset"] = "liu2023_cohort"
    raw["kind"] = "cox"
    raw["title"] = 3
    raw["model"]["priors"]["tau"] = {"dist": "HalfNormal", "kwargs": {"sigma": 1}}
    raw["model"]["priors"]["treatment_log_hr"]["kwargs"] = {"mu": 0, "sigmaa": 1}
    raw["report"] = {"times": [12, "x"]}
    probs = validate_spec(raw)
    joined = "\n".join(probs)
    assert "data.dataset: unknown dataset 'liu2023_cohort'; known:" in joined
    assert "title: expected a string, got integer 3" in joined
    assert "model.priors.tau: unknown prior name" in joined
    assert "model.priors.treatment_log_hr.kwargs:" in joined and "sigmaa" in joined
    assert "report.times: expected an array of numbers" in joined


def test_missing_required_and_kind():
    probs = validate_spec({"kind": "survival", "data": {}})
    assert "title: required key missing" in probs
    assert any(p.startswith("kind: 'survival' is not one of") for p in probs)


def test_meta_spec_columns_and_include(tmp_path):
    csv = tmp_path / "s.csv"
    pd.DataFrame({"name": ["a", "b"], "HR": [0.5, 0.7], "lo": [0.3, 0.4], "hi": [0.9, 1.2]}).to_csv(csv, index=False)
    raw = {"title": "m", "kind": "meta",
           "data": {"path": "s.csv", "hr": "HR", "lower": "lo", "upper": "hii", "study": "nm",
                    "include": [{"dataset": "osteosarcoma_studies", "query": "row_id == 'nope'"}]},
           "model": {"effects": "random", "priors": {"tau": {"dist": "HalfNormal", "kwargs": {"sigma": 0.5}}}},
           "sampler": {"method": "gibbs"}}
    probs = validate_spec(raw, base_dir=tmp_path)
    joined = "\n".join(probs)
    assert "data.upper: column 'hii' not in the data" in joined
    assert "data.study: column 'nm' not in the data" in joined
    assert "data.include[0].query: selects no rows" in joined
    assert "sampler.method: 'gibbs' is not one of ['exact', 'nuts']" in joined
    raw["data"].update(upper="hi", study="name")
    raw["data"]["include"][0]["query"] = "row_id == 'liu2022_pm'"
    raw["sampler"]["method"] = "exact"
    assert validate_spec(raw, base_dir=tmp_path) == []
    # CSV path that does not exist
    raw["data"]["path"] = "missing.csv"
    assert any(p.startswith("data.path: no CSV file at") for p in validate_spec(raw, base_dir=tmp_path))


def test_toml_syntax_error_is_a_spec_error():
    with pytest.raises(SpecError, match="TOML syntax"):
        load_spec('title = "x"\nkind = ')


def test_load_data_provenance_and_query():
    df = load_data({"dataset": "osteosarcoma_studies", "query": "factor == 'metastasectomy'"})
    prov = df.attrs["provenance"]
    assert prov["simulated"] is False and prov["rows_selected"].endswith(f"of {len(bo.datasets.osteosarcoma_studies())}")
    assert set(df["factor"]) == {"metastasectomy"}


def test_fast_mode_caps_sampler(monkeypatch):
    spec = load_spec(GOOD.replace("draws = 10", "draws = 5000\ntune = 5000\nchains = 4"))
    monkeypatch.setenv("BAYES_OSTEO_FAST", "1")
    assert spec.sampler() == {"draws": 200, "tune": 200, "chains": 2}
    assert spec.sampler(draws=50)["draws"] == 50
    monkeypatch.delenv("BAYES_OSTEO_FAST")
    assert spec.sampler()["draws"] == 5000
