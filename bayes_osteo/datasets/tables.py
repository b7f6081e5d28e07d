"""Study-level tables: real published numbers (cited) and classic validation data."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

__all__ = ["osteosarcoma_studies", "published_pooled", "bcg", "eight_schools"]


def _read(name: str) -> pd.DataFrame:
    with resources.files(__package__).joinpath("data", name).open("r", encoding="utf-8") as f:
        return pd.read_csv(f)


def osteosarcoma_studies() -> pd.DataFrame:
    """Real study-level hazard ratios (95% CI) read from published abstracts.

    One row per reported estimate, with ``source`` (PMID/DOI) and ``note`` columns giving each
    row's citation. One row (``choi2014_bilateral_derived``) is derived by inversion and says so;
    rows from the same cohort (``smolle2023_*``; ``lautz2021_vats_os`` and its subset) must not be
    pooled together.

    Columns: row_id, first_author, year, journal, n, endpoint, factor, comparison, adjustment, hr,
    ci_low, ci_high, source, note.

    Examples
    --------
    >>> df = osteosarcoma_studies()
    >>> df.loc[df.row_id == "liu2022_pm", "hr"].item()
    0.185
    """
    df = _read("osteosarcoma_study_hrs.csv")
    df.attrs.update({
        "name": "osteosarcoma_studies",
        "simulated": False,
        "description": "Study-level HRs with 95% CIs read from published abstracts; cite each row's source.",
        "citation": "See the 'source' column (PMID/DOI) of each row.",
        "hr": "hr", "lower": "ci_low", "upper": "ci_high", "ci_level": 0.95,
    })
    return df


def published_pooled() -> pd.DataFrame:
    """Published pooled hazard ratios (reference targets, not study rows).

    Ning et al. 2026 systematic review of 21 retrospective studies (pooled by fixed or random
    effects chosen by heterogeneity), and Li et al. 2018 (J Cancer Res Ther 14(9):457-462, repeat
    metastasectomy, mixed sarcoma).
    """
    df = _read("published_pooled_hrs.csv")
    df.attrs.update({
        "name": "published_pooled",
        "simulated": False,
        "description": "Published pooled HRs (95% CI): targets for validation, never pooled as studies.",
        "citation": "Ning et al. 2026, systematic review and meta-analysis of 21 studies (abstract); "
                    "Li et al. 2018, J Cancer Res Ther 14(9):457-462, doi 10.4103/0973-1482.183207.",
    })
    return df


# metafor's dat.bcg (Colditz et al. 1994): counts per arm.
_BCG = [
    ("Aronson", 1948, 4, 119, 11, 128), ("Ferguson & Simes", 1949, 6, 300, 29, 274),
    ("Rosenthal et al", 1960, 3, 228, 11, 209), ("Hart & Sutherland", 1977, 62, 13536, 248, 12619),
    ("Frimodt-Moller et al", 1973, 33, 5036, 47, 5761), ("Stein & Aronson", 1953, 180, 1361, 372, 1079),
    ("Vandiviere et al", 1973, 8, 2537, 10, 619), ("TPT Madras", 1980, 505, 87886, 499, 87892),
    ("Coetzee & Berjak", 1968, 29, 7470, 45, 7232), ("Rosenthal et al", 1961, 17, 1699, 65, 1600),
    ("Comstock et al", 1974, 186, 50448, 141, 27197), ("Comstock & Webster", 1969, 5, 2493, 3, 2338),
    ("Comstock et al", 1976, 27, 16886, 29, 17825),
]
_BCG_ABLAT = [44, 55, 42, 52, 13, 44, 19, 13, 27, 42, 18, 33, 33]


def bcg() -> pd.DataFrame:
    """BCG vaccine trials (13 trials; metafor's ``dat.bcg``): log risk ratios and variances.

    ``yi = log(tpos/(tpos+tneg)) - log(cpos/(cpos+cneg))``, ``vi = 1/tpos - 1/(tpos+tneg) + 1/cpos
    - 1/(cpos+cneg)``, ``sei = sqrt(vi)``; ``ablat`` is absolute latitude (a meta-regression
    covariate). Source: Colditz et al., JAMA 1994;271:698-702, as distributed with R's metafor.
    """
    df = pd.DataFrame(_BCG, columns=["author", "year", "tpos", "tneg", "cpos", "cneg"])
    df.insert(0, "trial", np.arange(1, 14))
    df["study"] = [f"{a} {y}" for a, y in zip(df.author, df.year, strict=True)]
    df["ablat"] = _BCG_ABLAT
    df["yi"] = np.log(df.tpos / (df.tpos + df.tneg)) - np.log(df.cpos / (df.cpos + df.cneg))
    df["vi"] = 1 / df.tpos - 1 / (df.tpos + df.tneg) + 1 / df.cpos - 1 / (df.cpos + df.cneg)
    df["sei"] = np.sqrt(df.vi)
    df.attrs.update({"name": "bcg", "simulated": False,
                     "citation": "Colditz GA et al. JAMA 1994;271(9):698-702 (metafor dat.bcg)",
                     "log_hr": "yi", "se": "sei", "study": "study",
                     "note": "log risk ratios, used as generic log effect sizes for validation"})
    return df


def eight_schools() -> pd.DataFrame:
    """Eight schools (Rubin 1981): coaching effects ``y`` with standard errors ``se``."""
    df = pd.DataFrame({"study": list("ABCDEFGH"), "y": [28.0, 8, -3, 7, -1, 1, 18, 12],
                       "se": [15.0, 10, 16, 11, 9, 11, 10, 18]})
    df.attrs.update({"name": "eight_schools", "simulated": False,
                     "citation": "Rubin DB. J Educ Stat 1981;6(4):377-401",
                     "log_hr": "y", "se": "se", "study": "study"})
    return df
