"""BayesModel life cycle: build, fit, reproducibility, save/load, provenance."""

import json

import numpy as np
import pymc as pm
import pytest

import bayes_osteo as bo
from bayes_osteo.base import BayesModel


class _Normal(BayesModel):
    """y_i ~ N(log_hr, 1): the posterior of log_hr is conjugate (closed form)."""

    kind = "toy"
    prior_names = ("log_hr",)
    patient_level = True
    default_sampler = "pymc"

    def __init__(self, y, **kw):
        super().__init__(**kw)
        self.y = np.asarray(y, float)

    def build(self):
        with pm.Model() as m:
            b = bo.priors.create(self.priors["log_hr"], "log_hr")
            pm.Deterministic("hr", pm.math.exp(b))
            pm.Normal("y", b, 1.0, observed=self.y)
        return m

    def options(self):
        return {"n": int(self.y.size)}

    def data_fingerprint(self):
        return bo.data.fingerprint(self.y)


@pytest.fixture(scope="module")
def fitted():
    y = np.random.default_rng(0).normal(-0.5, 1.0, 40)
    model = _Normal(y, priors={"log_hr": bo.Prior("Normal", mu=0, sigma=1)})
    return model, model.fit(draws=500, tune=500, chains=2, random_seed=7, progressbar=False)


def test_no_sampling_in_init():
    m = _Normal([0.1, 0.2])
    assert m._model is None


def test_posterior_matches_conjugate(fitted):
    model, dt = fitted
    n = model.y.size
    post_var = 1 / (1 + n)
    post_mean = model.y.sum() * post_var
    draws = dt.posterior["log_hr"].to_numpy().ravel()
    ess = float(bo.summarize.diagnostics(dt).loc["log_hr", "ess_bulk"])
    # Monte-Carlo SE of the mean = posterior sd / sqrt(ESS); 4 MCSE tolerance
    assert draws.mean() == pytest.approx(post_mean, abs=4 * np.sqrt(post_var / ess))
    mode = model.find_map()["log_hr"]
    assert float(mode) == pytest.approx(post_mean, abs=1e-5)


def test_same_seed_same_draws(fitted):
    model, dt = fitted
    dt2 = model.fit(draws=500, tune=500, chains=2, random_seed=7, progressbar=False)
    np.testing.assert_array_equal(dt.posterior["log_hr"].values, dt2.posterior["log_hr"].values)


def test_provenance_attrs(fitted):
    model, dt = fitted
    assert dt.attrs["bayes_osteo_model"] == "toy"
    assert json.loads(dt.attrs["random_seed"]) == 7
    assert dt.attrs["ci_prob"] == 0.95 and dt.attrs["ci_kind"] == "eti"
    assert dt.attrs["data_fingerprint"] == model.data_fingerprint()
    spec = bo.base.read_spec(dt)
    assert spec["priors"]["log_hr"] == {"dist": "Normal", "kwargs": {"mu": 0, "sigma": 1}}
    assert "pymc" in json.loads(dt.attrs["package_versions"])


def test_save_load_round_trip_without_patient_rows(fitted, tmp_path):
    _, dt = fitted
    assert "observed_data" in dt.children
    path = bo.save(dt, tmp_path / "res.nc")
    back = bo.load(path)
    np.testing.assert_array_equal(back.posterior["log_hr"].values, dt.posterior["log_hr"].values)
    assert "observed_data" not in back.children and "constant_data" not in back.children
    assert back.attrs["patient_rows_saved"] == "false"
    for k in ("bayes_osteo_spec", "random_seed", "package_versions", "data_fingerprint", "ci_prob"):
        assert back.attrs[k] == dt.attrs[k]
    bo.save(dt, tmp_path / "with.nc", include_data=True)
    assert "observed_data" in bo.load(tmp_path / "with.nc").children


def test_zarr_round_trip(fitted, tmp_path):
    pytest.importorskip("zarr")
    _, dt = fitted
    back = bo.load(bo.save(dt, tmp_path / "res.zarr"))
    np.testing.assert_array_equal(back.posterior["hr"].values, dt.posterior["hr"].values)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        bo.load(tmp_path / "nope.nc")
