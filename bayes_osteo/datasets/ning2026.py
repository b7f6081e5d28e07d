"""SIMULATED study table calibrated to the pooled HRs of Ning et al. 2026 (per-study table not public).

Ning et al. 2026 pooled 21 retrospective studies of pulmonary metastasectomy in osteosarcoma and
report pooled hazard ratios only (abstract; ``published_pooled()``). This module generates a
deterministic, SIMULATED per-study table whose pooled estimates reproduce those published numbers,
so the grouped meta-analysis can be exercised and checked against them. No row is a real study.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize

from ..meta_frequentist import dersimonian_laird, fixed_effect

__all__ = ["ning2026_simulated_studies", "NING2026_TARGETS"]

_Z = 1.959963984540054

#: (factor, endpoint, comparison, published HR, CI low, CI high, number of simulated studies,
#:  pooling model assumed for the target). The abstract does not say which model gave each pooled
#:  HR ("fixed or random effects chosen by heterogeneity"); the simulator assumes random effects
#:  (DerSimonian-Laird, I^2 > 50%) for the three wider intervals and fixed effect (I^2 < 50%) for
#:  the others.
NING2026_TARGETS = [
    ("metastasectomy", "PRS", "PM vs no PM", 0.29, 0.18, 0.46, 9, "random"),
    ("complete resection", "PRS", "complete vs incomplete", 0.21, 0.12, 0.38, 6, "random"),
    ("complete resection", "PMOS", "complete vs incomplete", 0.31, 0.23, 0.42, 10, "fixed"),
    ("bilateral", "PMOS", "bilateral vs unilateral", 1.56, 1.27, 1.93, 8, "fixed"),
    ("bilateral", "PRS", "bilateral vs unilateral", 1.37, 0.92, 2.04, 6, "random"),
    ("VATS", "mortality", "VATS vs thoracotomy", 1.69, 1.01, 2.82, 4, "fixed"),
]
_N_STUDIES = 21


def _dl_estimate(y, s):
    t2 = dersimonian_laird(y, s)
    w = 1 / (s**2 + t2)
    return float(np.sum(w * y) / np.sum(w)), float(1 / np.sqrt(np.sum(w))), t2


def _calibrate(rng, k, log_hr, se_target, model):
    """SEs and log-HRs of ``k`` studies whose pooled estimate (fixed effect or DL) is ``log_hr`` with
    SE ``se_target`` exactly (up to root-finding tolerance)."""
    n = rng.integers(30, 160, size=k)                       # study sizes
    raw_se = 2.0 / np.sqrt(n * rng.uniform(0.35, 0.7, size=k))  # SE of a log-HR ~ 2/sqrt(events)
    e = rng.standard_normal(k)
    if model == "fixed":
        # all of the pooled SE from within-study error: scale the SEs to hit it
        s = raw_se * (se_target * math.sqrt(np.sum(1 / raw_se**2)))
        # residuals with Cochran's Q = 1.2 (k - 1)  ->  I^2 ~ 17% (< 50%)
        r = e * s
        r -= np.sum(r / s**2) / np.sum(1 / s**2)
        q = np.sum(r**2 / s**2)
        r *= math.sqrt(1.2 * (k - 1) / q)
        y = r - fixed_effect(r, s)["estimate"] + log_hr
        return n, y, s
    # random effects: fixed-effect SE = se_target / 1.6 (so I^2 ~ 60%), heterogeneity fills the rest
    s = raw_se * (se_target / 1.6 * math.sqrt(np.sum(1 / raw_se**2)))
    r = e * np.sqrt(s**2 + (se_target * math.sqrt(k)) ** 2)

    def gap(c):
        return _dl_estimate(c * r, s)[1] - se_target

    c = optimize.brentq(gap, 1e-3, 1e3, xtol=1e-14)
    y = c * r
    y = y - _dl_estimate(y, s)[0] + log_hr
    return n, y, s


def ning2026_simulated_studies(seed: int = 2026) -> pd.DataFrame:
    """SIMULATED 21-study table calibrated to the pooled HRs of Ning et al. 2026.

    THE ROWS ARE SIMULATED, NOT REAL STUDIES. 21 fictitious studies ("Sim01" ... "Sim21"), each
    reporting HRs for one or more (factor, endpoint) analyses; 43 rows in all. For every analysis
    the study SEs and log-HRs are drawn and then rescaled and shifted so that the pooled estimate
    reproduces the published pooled HR and its 95% CI exactly:

    - analyses assumed pooled by random effects (metastasectomy PRS, complete resection PRS,
      bilateral PRS): the DerSimonian-Laird estimate and SE equal the published ones, I^2 ~ 60%;
    - the others (complete resection PMOS, bilateral PMOS, VATS): the fixed-effect estimate and SE
      equal the published ones, I^2 ~ 17%.

    (The abstract does not say which model each pooled HR used; this split is an assumption, stored
    in ``attrs["pooling"]``.)

    Parameters
    ----------
    seed : int
        Seed of the generator (default 2026 is the bundled table); the calibration holds for any.

    Returns
    -------
    DataFrame
        ``study, year, n, factor, endpoint, comparison, hr, ci_low, ci_high, log_hr, se`` with
        ``attrs``: ``simulated=True``, ``description``, ``citation``, ``targets`` (published HRs),
        ``pooling`` (model per analysis).

    Examples
    --------
    >>> df = ning2026_simulated_studies()
    >>> df.attrs["simulated"], df.study.nunique(), len(df)
    (True, 21, 43)
    """
    rng = np.random.default_rng(seed)
    studies = [f"Sim{i:02d}" for i in range(1, _N_STUDIES + 1)]
    years = dict(zip(studies, np.sort(rng.integers(1998, 2024, size=_N_STUDIES)), strict=True))
    # which studies report which analysis: every study appears at least once
    order = rng.permutation(_N_STUDIES)
    assigned: list[np.ndarray] = []
    pos = 0
    for *_, k, _model in NING2026_TARGETS:
        first = order[pos:pos + k] if pos < _N_STUDIES else np.array([], int)
        pos += len(first)
        rest = rng.choice(np.setdiff1d(np.arange(_N_STUDIES), first), size=k - len(first), replace=False)
        assigned.append(np.sort(np.concatenate([first, rest]).astype(int)))
    rows = []
    for (factor, endpoint, comp, hr, lo, hi, k, model), idx in zip(NING2026_TARGETS, assigned, strict=True):
        se_target = (math.log(hi) - math.log(lo)) / (2 * _Z)
        n, y, s = _calibrate(rng, k, math.log(hr), se_target, model)
        for j, i in enumerate(idx):
            rows.append({"study": studies[i], "year": int(years[studies[i]]), "n": int(n[j]), "factor": factor,
                         "endpoint": endpoint, "comparison": comp, "hr": math.exp(y[j]),
                         "ci_low": math.exp(y[j] - _Z * s[j]), "ci_high": math.exp(y[j] + _Z * s[j]),
                         "log_hr": y[j], "se": s[j]})
    df = pd.DataFrame(rows)
    df.attrs.update({
        "name": "ning2026_simulated_studies",
        "simulated": True,
        "description": ("SIMULATED per-study HRs (21 fictitious studies, 43 estimates), calibrated so the "
                        "pooled estimates reproduce the published pooled HRs of Ning et al. 2026. Not real "
                        "data: the review's per-study table is not public."),
        "citation": "Targets: Ning et al. 2026, systematic review and meta-analysis of 21 studies (abstract).",
        "seed": seed,
        "targets": {f"{f} | {e}": [hr, lo, hi] for f, e, _, hr, lo, hi, _, _ in NING2026_TARGETS},
        "pooling": {f"{f} | {e}": ("random (DerSimonian-Laird)" if m == "random" else "fixed effect")
                    for f, e, *_, m in NING2026_TARGETS},
        "hr": "hr", "lower": "ci_low", "upper": "ci_high", "ci_level": 0.95, "log_hr": "log_hr", "se": "se",
        "study": "study", "group": ["factor", "endpoint"],
    })
    return df
