"""Posterior summaries: DataTree in, DataFrame out, the same functions for every model.

Intervals are 95% equal-tailed by default (``ci_prob`` is always passed to ArviZ explicitly; its
own default is 89%), and the convention is recorded in the DataFrame's ``attrs``. Diagnostics come
from ``arviz_stats`` (rank-normalised split R-hat, bulk/tail ESS).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from .base import CI_PROB

__all__ = ["hazard_ratios", "diagnostics", "check_convergence", "heterogeneity", "posterior_table",
           "ConvergenceWarning", "RHAT_MAX", "ESS_MIN"]

RHAT_MAX = 1.01
ESS_MIN = 400
SAMPLE_DIMS = ("chain", "draw")


class ConvergenceWarning(UserWarning):
    """R-hat, ESS or divergences short of the thresholds."""


def _posterior(dt: xr.DataTree) -> xr.Dataset:
    if "posterior" not in dt.children:
        raise ValueError("The result has no 'posterior' group; pass the DataTree returned by fit().")
    return dt["posterior"].to_dataset()


def _labels(da: xr.DataArray) -> list[str]:
    """One label per element over the non-sample dims (coordinates joined with ', ')."""
    dims = [d for d in da.dims if d not in SAMPLE_DIMS]
    if not dims:
        return [str(da.name)]
    coords = [list(map(str, da[d].values)) if d in da.coords else list(map(str, range(da.sizes[d])))
              for d in dims]
    idx = pd.MultiIndex.from_product(coords) if len(coords) > 1 else pd.Index(coords[0])
    return [", ".join(x) if isinstance(x, tuple) else x for x in idx]


def _flat(da: xr.DataArray) -> np.ndarray:
    """Samples as (chain*draw, elements)."""
    dims = [d for d in da.dims if d not in SAMPLE_DIMS]
    arr = da.transpose(*SAMPLE_DIMS, *dims).to_numpy()
    return arr.reshape(arr.shape[0] * arr.shape[1], -1)


def _diag(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    dims = [d for d in da.dims if d not in SAMPLE_DIMS]
    ds = xr.Dataset({"v": da.transpose(*SAMPLE_DIMS, *dims)})
    if da.sizes["chain"] * da.sizes["draw"] < 8:
        n = int(np.prod([da.sizes[d] for d in dims])) if dims else 1
        return np.full(n, np.nan), np.full(n, np.nan)
    rhat = az.rhat(ds)["v"].to_numpy().ravel()
    ess = az.ess(ds, method="bulk")["v"].to_numpy().ravel()
    return rhat, ess


def _hdi(x: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray]:
    """Shortest interval containing ``prob`` of the draws (per column)."""
    xs = np.sort(x, axis=0)
    n = xs.shape[0]
    m = max(1, int(np.floor(prob * n)))
    widths = xs[m:] - xs[: n - m]
    i = np.argmin(widths, axis=0)
    cols = np.arange(xs.shape[1])
    return xs[i, cols], xs[i + m, cols]


def posterior_table(dt: xr.DataTree, var_names: Sequence[str] | None = None, *,
                    ci_prob: float = CI_PROB) -> pd.DataFrame:
    """Mean, SD, median, ETI and HDI, R-hat, bulk/tail ESS for any posterior variables.

    A thin front for :func:`arviz.summary` with ``ci_prob`` passed explicitly.
    """
    post = _posterior(dt)
    names = list(var_names) if var_names is not None else list(post.data_vars)
    tab = az.summary(dt, var_names=names, ci_prob=ci_prob, ci_kind="eti", round_to="none")
    tab.attrs.update({"ci_prob": ci_prob, "ci_kind": "eti"})
    return tab


def hazard_ratios(dt: xr.DataTree, var: str = "hr", *, ci_prob: float = CI_PROB,
                  thresholds: Sequence[float] = (), include_new: bool = False) -> pd.DataFrame:
    """Hazard-ratio table of any model's result.

    One row per element of ``var`` (``hr``: per covariate in a Cox model, pooled per group in a
    meta-analysis). Columns: ``hr_median``, ``hr_mean``, ``ci_low``/``ci_high`` (equal-tailed),
    ``hdi_low``/``hdi_high``, ``p_hr_lt_1`` (posterior probability HR < 1), ``p_hr_lt_<t>`` for each
    threshold ``t``, ``r_hat``, ``ess_bulk``.

    Parameters
    ----------
    dt : DataTree
        A fitted result (NUTS or exact draws).
    var : str
        Variable on the HR scale; if absent, ``exp`` of ``log_<var>`` is used.
    ci_prob : float
        Interval probability (default 0.95, recorded in ``attrs``).
    thresholds : sequence of float
        Extra thresholds ``t`` for ``P(HR < t)``.
    include_new : bool
        Also report ``hr_new`` (the predicted HR in a new study), when present.

    Examples
    --------
    >>> import bayes_osteo as bo
    >>> ma = bo.MetaAnalysis(bo.StudyEstimates([-1.0, -0.7, -1.3], [0.3, 0.4, 0.35]))
    >>> tab = bo.summarize.hazard_ratios(ma.fit(method="exact", random_seed=1))
    >>> list(tab.columns[:4])
    ['hr_median', 'hr_mean', 'ci_low', 'ci_high']
    """
    post = _posterior(dt)
    vars_ = [var] + (["hr_new"] if include_new and ("hr_new" in post or "log_hr_new" in post) else [])
    frames = []
    for v in vars_:
        if v in post:
            da = post[v]
        elif f"log_{v}" in post:
            da = np.exp(post[f"log_{v}"]).rename(v)
        else:
            raise KeyError(f"The posterior has neither {v!r} nor 'log_{v}'; variables: {list(post.data_vars)}")
        x = _flat(da)
        lo, hi = np.quantile(x, [(1 - ci_prob) / 2, (1 + ci_prob) / 2], axis=0)
        hlo, hhi = _hdi(x, ci_prob)
        rhat, ess = _diag(da)
        cols = {"hr_median": np.median(x, 0), "hr_mean": x.mean(0), "ci_low": lo, "ci_high": hi,
                "hdi_low": hlo, "hdi_high": hhi, "p_hr_lt_1": (x < 1).mean(0)}
        for t in thresholds:
            cols[f"p_hr_lt_{t:g}"] = (x < t).mean(0)
        cols["r_hat"] = rhat
        cols["ess_bulk"] = ess
        labels = _labels(da)
        if v != var:
            labels = [f"{lab} (new study)" if lab != v else "new study" for lab in labels]
        frames.append(pd.DataFrame(cols, index=pd.Index(labels, name=_index_name(da))))
    out = pd.concat(frames)
    pseudo = dt.attrs.get("pseudo_posterior", "false") == "true"
    if pseudo:
        out["note"] = "pseudo-posterior (weighted likelihood)"
    out.attrs.update({"ci_prob": ci_prob, "ci_kind": "eti", "pseudo_posterior": pseudo,
                      "model": dt.attrs.get("bayes_osteo_model", "unknown"),
                      "inference": dt.attrs.get("inference", "unknown")})
    return out


def _index_name(da: xr.DataArray) -> str:
    dims = [d for d in da.dims if d not in SAMPLE_DIMS]
    return "/".join(dims) if dims else "parameter"


def diagnostics(dt: xr.DataTree, var_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Convergence table: one row per variable with worst R-hat, smallest bulk/tail ESS, and the
    number of divergences, plus an ``ok`` flag (R-hat <= 1.01, bulk ESS >= 400, no divergence).

    ``attrs["divergences"]`` holds the total divergence count; ``attrs["problems"]`` the names.
    """
    post = _posterior(dt)
    names = list(var_names) if var_names is not None else list(post.data_vars)
    rows = {}
    for v in names:
        da = post[v]
        if da.sizes.get("chain", 0) * da.sizes.get("draw", 0) < 8:
            continue
        ds = xr.Dataset({"v": da})
        rhat = float(np.nanmax(az.rhat(ds)["v"].to_numpy()))
        ess_b = float(np.nanmin(az.ess(ds, method="bulk")["v"].to_numpy()))
        ess_t = float(np.nanmin(az.ess(ds, method="tail")["v"].to_numpy()))
        rows[v] = {"r_hat": rhat, "ess_bulk": ess_b, "ess_tail": ess_t}
    tab = pd.DataFrame.from_dict(rows, orient="index", columns=["r_hat", "ess_bulk", "ess_tail"])
    tab.index.name = "variable"
    n_div = 0
    if "sample_stats" in dt.children and "diverging" in dt["sample_stats"].dataset:
        n_div = int(dt["sample_stats"]["diverging"].sum())
    tab["divergences"] = n_div
    exact = dt.attrs.get("inference") == "exact"
    # r_hat is NaN for constant draws (e.g. tau = 0 in a fixed-effect model): not a failure.
    tab["ok"] = ((tab["r_hat"].fillna(1.0) <= RHAT_MAX) & (tab["ess_bulk"].fillna(np.inf) >= ESS_MIN)
                 & (n_div == 0)) | exact
    tab.attrs.update({"divergences": n_div, "problems": list(tab.index[~tab["ok"]]),
                      "thresholds": {"r_hat": RHAT_MAX, "ess_bulk": ESS_MIN, "divergences": 0}})
    return tab


def check_convergence(dt: xr.DataTree, *, stacklevel: int = 2) -> pd.DataFrame:
    """Warn (:class:`ConvergenceWarning`) naming the variables short of the thresholds."""
    tab = diagnostics(dt)
    msgs = []
    bad_r = tab.index[tab["r_hat"] > RHAT_MAX].tolist()
    bad_e = tab.index[tab["ess_bulk"] < ESS_MIN].tolist()
    if bad_r:
        msgs.append(f"R-hat > {RHAT_MAX} for {bad_r}")
    if bad_e:
        msgs.append(f"bulk ESS < {ESS_MIN} for {bad_e}")
    if tab.attrs["divergences"]:
        msgs.append(f"{tab.attrs['divergences']} divergent transitions")
    if msgs:
        warnings.warn("Convergence: " + "; ".join(msgs) + ". Run longer chains, raise target_accept "
                      "or reparameterise before trusting the result.", ConvergenceWarning,
                      stacklevel=stacklevel)
    return tab


def heterogeneity(dt: xr.DataTree, *, ci_prob: float = CI_PROB) -> pd.DataFrame:
    """Between-study heterogeneity of a meta-analysis result, per group.

    Columns: ``tau_median``, ``tau_mean``, ``tau_ci_low``, ``tau_ci_high``, ``I2_median`` (I^2 at the
    posterior of tau, with the typical within-study variance of Higgins & Thompson 2002), its
    interval, and the prediction interval for a new study's HR (``pi_low``, ``pi_high``).
    """
    post = _posterior(dt)
    if "tau" not in post:
        raise KeyError("No 'tau' in the posterior: heterogeneity needs a random-effects meta-analysis.")
    qlo, qhi = (1 - ci_prob) / 2, (1 + ci_prob) / 2
    tau = post["tau"]
    labels = _labels(tau)
    t = _flat(tau)
    cols = {"tau_median": np.median(t, 0), "tau_mean": t.mean(0),
            "tau_ci_low": np.quantile(t, qlo, 0), "tau_ci_high": np.quantile(t, qhi, 0)}
    if "I2" in post:
        i2 = _flat(post["I2"])
        cols.update({"I2_median": np.median(i2, 0), "I2_ci_low": np.quantile(i2, qlo, 0),
                     "I2_ci_high": np.quantile(i2, qhi, 0)})
    new = post["hr_new"] if "hr_new" in post else (np.exp(post["log_hr_new"]) if "log_hr_new" in post else None)
    if new is not None:
        n = _flat(new)
        cols.update({"pi_low": np.quantile(n, qlo, 0), "pi_high": np.quantile(n, qhi, 0)})
    out = pd.DataFrame(cols, index=pd.Index(labels, name=_index_name(tau)))
    out.attrs.update({"ci_prob": ci_prob, "ci_kind": "eti"})
    return out
