"""BayesModel: the life cycle every model shares.

build -> prior predictive -> fit -> ``xarray.DataTree`` (posterior + sample stats + provenance in
``attrs``) -> save / load. Models never sample in ``__init__``, never print tables and never draw.

Provenance attributes written on every result (all plain strings/numbers so netCDF keeps them):

``bayes_osteo_model``   model kind ("cox", "meta", ...)
``bayes_osteo_spec``    JSON: options and priors (``Prior.to_dict``) that rebuild the model
``random_seed``         the seed passed to ``fit`` ("None" when none was)
``package_versions``    JSON: bayes_osteo, pymc, pytensor, arviz, nutpie, numpy, pandas, ...
``data_fingerprint``    SHA-256 prefix of the model's data (identifies it without storing it)
``ci_prob``, ``ci_kind``  interval convention used by ``summarize`` (0.95, "eti")
``inference``           "nuts", "exact" (i.i.d. draws) or "map"
``pseudo_posterior``    "true" when a weighted likelihood makes the result a pseudo-posterior
"""

from __future__ import annotations

import abc
import json
import os
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pymc as pm
import xarray as xr

from .priors import NormalMixture, Prior, prior_from_dict, resolve_priors

__all__ = ["BayesModel", "save", "load", "annotate", "package_versions", "CI_PROB", "CI_KIND",
           "read_spec"]

#: The interval convention of every summary: 95% equal-tailed (ArviZ's own default is 89%).
CI_PROB = 0.95
CI_KIND = "eti"

#: Groups that hold patient-level rows (or per-patient quantities) and are not saved by default.
PATIENT_GROUPS = ("observed_data", "constant_data", "log_likelihood", "posterior_predictive",
                  "prior_predictive")

_VERSION_PKGS = ("bayes-osteo", "pymc", "pytensor", "pymc-extras", "arviz-base", "arviz-stats",
                 "nutpie", "numpy", "pandas", "xarray", "scipy")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that determine a result."""
    out = {}
    for name in _VERSION_PKGS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, Prior | NormalMixture):
        return x.to_dict()
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def annotate(dt: xr.DataTree, *, model: str, spec: Mapping, random_seed: Any, fingerprint: str,
             inference: str, pseudo_posterior: bool = False, patient_level: bool = False,
             **extra: Any) -> xr.DataTree:
    """Write the provenance attributes (see module docstring) onto ``dt`` in place and return it."""
    dt.attrs.update({
        "bayes_osteo_model": model,
        "bayes_osteo_spec": json.dumps(_jsonable(spec), default=str),
        "random_seed": json.dumps(_jsonable(random_seed), default=str),
        "package_versions": json.dumps(package_versions()),
        "data_fingerprint": fingerprint,
        "ci_prob": CI_PROB,
        "ci_kind": CI_KIND,
        "inference": inference,
        "pseudo_posterior": "true" if pseudo_posterior else "false",
        "patient_level": "true" if patient_level else "false",
    })
    for k, v in extra.items():
        dt.attrs[k] = v if isinstance(v, str | int | float) else json.dumps(_jsonable(v), default=str)
    return dt


def read_spec(dt: xr.DataTree) -> dict:
    """The model spec stored in a result's attributes (priors as dicts)."""
    return json.loads(dt.attrs.get("bayes_osteo_spec", "{}"))


class BayesModel(abc.ABC):
    """Base class: a Bayesian model with a PyMC graph, priors, a fit and provenance.

    Subclasses set ``kind`` and ``prior_names`` and implement :meth:`build` (return a fresh
    ``pm.Model``), :meth:`options` (JSON-able options that rebuild the model) and
    :meth:`data_fingerprint`. They may override :meth:`postprocess` to add derived variables
    (e.g. ``hr = exp(log_hr)``) to a result.

    The PyMC model is built lazily on first use and cached in :attr:`model`.
    """

    kind: ClassVar[str] = "model"
    prior_names: ClassVar[tuple[str, ...]] = ()
    patient_level: ClassVar[bool] = False
    #: "nutpie" for models where compile time pays off, "pymc" for tiny ones; None = PyMC's choice.
    default_sampler: ClassVar[str | None] = None

    def __init__(self, *, priors: Mapping[str, Any] | None = None):
        self.priors = resolve_priors(priors, self.prior_names)
        self._model: pm.Model | None = None

    # -- to implement -----------------------------------------------------------------------
    @abc.abstractmethod
    def build(self) -> pm.Model:
        """Return a new PyMC model for this object's data, options and priors."""

    @abc.abstractmethod
    def options(self) -> dict:
        """JSON-able model options (not the priors) that, with the data, rebuild the model."""

    @abc.abstractmethod
    def data_fingerprint(self) -> str:
        """A fingerprint of the data the model sees."""

    def postprocess(self, dt: xr.DataTree) -> xr.DataTree:
        """Hook: add derived variables to a fitted result. Default: nothing."""
        return dt

    @property
    def pseudo_posterior(self) -> bool:
        return False

    # -- shared life cycle ------------------------------------------------------------------
    @property
    def model(self) -> pm.Model:
        if self._model is None:
            self._model = self.build()
        return self._model

    def spec(self) -> dict:
        """Everything but the data that defines the model: kind, options and priors."""
        return {"model": self.kind, "options": _jsonable(self.options()),
                "priors": {k: v.to_dict() for k, v in self.priors.items()}}

    def _annotate(self, dt: xr.DataTree, random_seed: Any, inference: str, **extra) -> xr.DataTree:
        return annotate(dt, model=self.kind, spec=self.spec(), random_seed=random_seed,
                        fingerprint=self.data_fingerprint(), inference=inference,
                        pseudo_posterior=self.pseudo_posterior, patient_level=self.patient_level,
                        **extra)

    def prior_predictive(self, draws: int = 500, *, random_seed: Any = None) -> xr.DataTree:
        """Draws from the prior (and prior predictive), as a DataTree with ``prior`` groups."""
        with self.model:
            dt = pm.sample_prior_predictive(draws=draws, random_seed=random_seed)
        return self._annotate(dt, random_seed, "prior")

    def fit(self, draws: int = 1000, tune: int = 1000, chains: int = 4, random_seed: Any = None,
            progressbar: bool = True, *, nuts_sampler: str | None = None, check: bool = True,
            **sampler_kwargs: Any) -> xr.DataTree:
        """Sample the posterior with NUTS.

        Parameters
        ----------
        draws, tune, chains : int
            Posterior draws and tuning steps per chain, and the number of chains.
        random_seed : int, optional
            Makes the draws reproducible bit for bit.
        progressbar : bool
            Show the sampler's progress bar.
        nuts_sampler : {"nutpie", "pymc"}, optional
            Default: the model's ``default_sampler`` (nutpie for large data, PyMC's NUTS for
            small models where numba compilation would dominate).
        check : bool
            Warn (naming the variables) when R-hat > 1.01, bulk ESS < 400 or any divergence.
        **sampler_kwargs
            Passed to :func:`pymc.sample` (e.g. ``target_accept``).

        Returns
        -------
        xarray.DataTree
            ``posterior``, ``sample_stats`` and provenance in ``attrs``.
        """
        sampler = nuts_sampler or self.default_sampler
        kw = dict(sampler_kwargs)
        if sampler is not None:
            kw["nuts_sampler"] = sampler
        kw.setdefault("cores", min(chains, os.cpu_count() or 1))
        with self.model, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*at least 4 chains.*")
            warnings.filterwarnings("ignore", message=".*effective sample size per chain.*")
            warnings.filterwarnings("ignore", message=".*[Rr]hat statistic.*")
            warnings.filterwarnings("ignore", message=".*divergences after tuning.*")
            dt = pm.sample(draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                           progressbar=progressbar, compute_convergence_checks=False, **kw)
        dt = self.postprocess(dt)
        self._annotate(dt, random_seed, "nuts", sampler=sampler or "default",
                       draws=draws, tune=tune, chains=chains)
        if check:
            from .summarize import check_convergence

            check_convergence(dt, stacklevel=3)
        return dt

    def find_map(self, *, method: str = "L-BFGS-B", maxeval: int = 50_000, **kwargs: Any) -> dict[str, xr.DataArray]:
        """Posterior mode on the constrained scale: mapping variable name -> ``xarray.DataArray``.

        Under vague priors this is the maximum-likelihood estimate.
        """
        with self.model:
            point = pm.find_MAP(method=method, maxeval=maxeval, progressbar=False,
                                include_transformed=False, **kwargs)
        out = {}
        names = {v.name for v in self.model.free_RVs + self.model.deterministics}
        for name, val in point.items():
            if name not in names:
                continue
            dims = self.model.named_vars_to_dims.get(name, ())
            coords = {d: list(self.model.coords[d]) for d in dims if d in self.model.coords}
            out[name] = xr.DataArray(np.asarray(val), dims=dims, coords=coords, name=name)
        return out

    def save(self, dt: xr.DataTree, path: str | os.PathLike, *, include_data: bool = False) -> Path:
        """Save a result of this model (see :func:`save`)."""
        return save(dt, path, include_data=include_data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{k}</td><td>{v!r}</td></tr>" for k, v in self.priors.items())
        opts = "".join(f"<tr><td>{k}</td><td>{v!r}</td></tr>" for k, v in self.options().items())
        return (f"<b>{type(self).__name__}</b><table><tr><th colspan=2>options</th></tr>{opts}"
                f"<tr><th colspan=2>priors</th></tr>{rows}</table>")


def save(dt: xr.DataTree, path: str | os.PathLike, *, include_data: bool = False) -> Path:
    """Write a result to netCDF (``.nc``, via h5netcdf) or zarr (``.zarr``).

    Provenance attributes travel with it. Groups holding patient rows or per-patient quantities
    (observed/constant data, pointwise log-likelihood, predictive draws) of patient-level models
    are left out unless ``include_data=True``.
    """
    path = Path(path)
    out = dt.copy()
    if not include_data and dt.attrs.get("patient_level", "false") == "true":
        for g in PATIENT_GROUPS:
            if g in out.children:
                del out[g]
        out.attrs["patient_rows_saved"] = "false"
    else:
        out.attrs["patient_rows_saved"] = "true" if dt.attrs.get("patient_level") == "true" else "n/a"
    # netCDF cannot store object arrays of None; cast object data to str.
    for node in out.subtree:
        ds = node.dataset
        changed = False
        for name, var in list(ds.variables.items()):
            if var.dtype == object:
                ds[name] = var.astype(str)
                changed = True
        if changed:
            node.dataset = ds
    if path.suffix == ".zarr":
        out.to_zarr(path, mode="w")
    else:
        out.to_netcdf(path, engine="h5netcdf")
    return path


def load(path: str | os.PathLike) -> xr.DataTree:
    """Read a result written by :func:`save` (netCDF or zarr), fully into memory."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No saved result at {path}")
    if path.suffix == ".zarr" or path.is_dir():
        dt = xr.open_datatree(path, engine="zarr")
    else:
        dt = xr.open_datatree(path, engine="h5netcdf")
    dt = dt.load()
    dt.close()
    return dt


def priors_from_spec(spec: Mapping) -> dict:
    """Priors stored in a spec (``read_spec(dt)["priors"]``) back as Prior/NormalMixture objects."""
    return {k: prior_from_dict(v) for k, v in spec.get("priors", {}).items()}
