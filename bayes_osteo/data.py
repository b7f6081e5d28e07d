"""Validated inputs: patient-level survival data and study-level hazard-ratio estimates.

Nothing here is Bayesian. These classes check what users hand in, fail fast with a message that
names the column, the row and the fix, and convert to the arrays the models use.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["DataValidationError", "SurvivalData", "StudyEstimates", "fingerprint"]


class DataValidationError(ValueError):
    """Bad input data. The message names the column, the row(s) and the fix."""


def _rows(mask: np.ndarray, index: pd.Index, limit: int = 5) -> str:
    bad = list(index[np.asarray(mask)])
    more = f" (+{len(bad) - limit} more)" if len(bad) > limit else ""
    return ", ".join(map(str, bad[:limit])) + more


def fingerprint(*arrays: object) -> str:
    """SHA-256 fingerprint of arrays / frames (identifies data without storing it)."""
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, pd.DataFrame):
            h.update(pd.util.hash_pandas_object(a, index=True).to_numpy().tobytes())
            h.update(",".join(map(str, a.columns)).encode())
        elif a is None:
            h.update(b"<none>")
        else:
            arr = np.asarray(a)
            if arr.dtype == object:
                h.update("|".join(map(str, arr.ravel())).encode())
            else:
                h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Patient-level survival data
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SurvivalData:
    """Right-censored (optionally left-truncated) survival data, validated and design-coded.

    Build it with :meth:`from_frame`. Arrays are in the order of the input rows (no rows are
    dropped unless ``dropna=True`` was asked for, and then ``n_dropped`` says how many).

    Attributes
    ----------
    time, event : ndarray
        Exit time (> 0) and event indicator (0/1).
    X : ndarray, shape (n, p)
        Design matrix; categorical covariates are dummy-coded (reference level dropped).
    covariate_names : list of str
        Column names of ``X``; the treatment column, if any, is among them.
    treatment : str or None
        Name of the treatment column in ``X`` (0/1).
    strata, cluster : ndarray of int codes or None; ``strata_levels`` / ``cluster_levels`` name them.
    weights : ndarray or None
        Case weights (> 0).
    entry : ndarray or None
        Left-truncation (delayed entry) times, ``0 <= entry < time``.
    reference_levels : dict
        For each dummy-coded covariate, the reference level dropped.
    frame : DataFrame
        The validated source rows (kept in memory only; never saved unless asked).

    Examples
    --------
    >>> import pandas as pd, bayes_osteo as bo
    >>> df = pd.DataFrame({"months": [5.0, 8, 12, 20], "death": [1, 0, 1, 1],
    ...                    "pm": [1, 0, 1, 0], "age": [12, 15, 18, 30]})
    >>> sd = bo.SurvivalData.from_frame(df, duration="months", event="death",
    ...                                 covariates=["age"], treatment="pm")
    >>> sd.covariate_names
    ['pm', 'age']
    """

    time: np.ndarray
    event: np.ndarray
    X: np.ndarray
    covariate_names: list[str]
    duration_col: str
    event_col: str
    treatment: str | None = None
    strata: np.ndarray | None = None
    strata_levels: list | None = None
    strata_col: str | None = None
    cluster: np.ndarray | None = None
    cluster_levels: list | None = None
    cluster_col: str | None = None
    weights: np.ndarray | None = None
    weights_col: str | None = None
    entry: np.ndarray | None = None
    entry_col: str | None = None
    reference_levels: dict = field(default_factory=dict)
    n_dropped: int = 0
    frame: pd.DataFrame | None = field(default=None, repr=False)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        duration: str,
        event: str,
        covariates: Sequence[str] = (),
        treatment: str | None = None,
        strata: str | None = None,
        cluster: str | None = None,
        weights: str | None = None,
        entry: str | None = None,
        dropna: bool = False,
    ) -> SurvivalData:
        """Validate a data frame and code it for the survival models.

        Parameters
        ----------
        df : DataFrame
            One row per subject.
        duration, event : str
            Follow-up time (> 0, finite) and event indicator (0/1 or bool) columns.
        covariates : sequence of str
            Adjustment covariates. Numeric columns enter as they are; string, categorical and
            boolean columns are dummy-coded against their first level (sorted), reported in
            ``reference_levels``.
        treatment : str, optional
            A 0/1 treatment column; it becomes the first column of ``X``.
        strata, cluster : str, optional
            Columns giving separate baseline hazards (strata) or a shared frailty (cluster).
        weights : str, optional
            Positive case weights.
        entry : str, optional
            Left-truncation (delayed-entry) time, ``0 <= entry < duration``.
        dropna : bool
            Drop rows with a missing value in a used column (and say how many went, as a
            warning and in ``n_dropped``). Default: missing values are an error.
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"SurvivalData.from_frame needs a pandas DataFrame, got {type(df).__name__}.")
        if len(df) == 0:
            raise DataValidationError("The data frame is empty: there are no subjects to analyse.")
        covariates = [covariates] if isinstance(covariates, str) else list(covariates)
        named = {"duration": duration, "event": event, "treatment": treatment, "strata": strata,
                 "cluster": cluster, "weights": weights, "entry": entry}
        missing = [f"{role}={col!r}" for role, col in named.items() if col is not None and col not in df.columns]
        missing += [f"covariate {c!r}" for c in covariates if c not in df.columns]
        if missing:
            raise DataValidationError(
                f"Column(s) not in the data frame: {', '.join(missing)}. "
                f"Available columns: {list(df.columns)}. Fix the name or add the column."
            )
        for role, col in (("duration", duration), ("event", event)):
            if col in covariates:
                raise DataValidationError(
                    f"Column {col!r} is the {role} column and cannot also be a covariate; "
                    "remove it from covariates."
                )
        if treatment is not None and treatment in covariates:
            covariates = [c for c in covariates if c != treatment]
        dup = [c for c in covariates if covariates.count(c) > 1]
        if dup:
            raise DataValidationError(f"Covariate(s) listed twice: {sorted(set(dup))}.")

        used = [duration, event] + ([treatment] if treatment else []) + covariates
        used += [c for c in (strata, cluster, weights, entry) if c is not None]
        df = df.copy()
        na = df[used].isna()
        n_dropped = 0
        if na.to_numpy().any():
            if not dropna:
                col = na.any().idxmax()
                raise DataValidationError(
                    f"Column {col!r} has missing values in row(s) {_rows(na[col].to_numpy(), df.index)}. "
                    "Impute or remove them, or pass dropna=True to drop incomplete rows (and be told how many)."
                )
            keep = ~na.any(axis=1)
            n_dropped = int((~keep).sum())
            warnings.warn(
                f"dropna=True: dropped {n_dropped} of {len(df)} rows with missing values in "
                f"{[c for c in used if na[c].any()]}.",
                UserWarning,
                stacklevel=2,
            )
            df = df.loc[keep]
            if len(df) == 0:
                raise DataValidationError("No rows left after dropping missing values.")

        time = _numeric(df, duration)
        bad = ~np.isfinite(time)
        if bad.any():
            raise DataValidationError(
                f"Duration column {duration!r} has non-finite values (inf/NaN) in row(s) "
                f"{_rows(bad, df.index)}; durations must be finite and > 0."
            )
        bad = time <= 0
        if bad.any():
            raise DataValidationError(
                f"Duration column {duration!r} has values <= 0 in row(s) {_rows(bad, df.index)}; "
                "durations must be > 0 (a same-day event can be coded as a small positive time)."
            )
        ev = _binary(df, event, "event")
        if ev.sum() == 0:
            raise DataValidationError(
                f"Event column {event!r} has no events (all 0): a survival model cannot be fitted."
            )

        ent = None
        if entry is not None:
            ent = _numeric(df, entry)
            bad = ~np.isfinite(ent) | (ent < 0) | (ent >= time)
            if bad.any():
                raise DataValidationError(
                    f"Entry column {entry!r} must satisfy 0 <= entry < {duration!r}; row(s) "
                    f"{_rows(bad, df.index)} break this (entry >= exit or negative)."
                )
        w = None
        if weights is not None:
            w = _numeric(df, weights)
            bad = ~np.isfinite(w) | (w <= 0)
            if bad.any():
                raise DataValidationError(
                    f"Weights column {weights!r} must be finite and > 0; row(s) {_rows(bad, df.index)} "
                    "are not. Remove those rows or fix the weights."
                )

        cols: list[np.ndarray] = []
        names: list[str] = []
        refs: dict = {}
        if treatment is not None:
            cols.append(_binary(df, treatment, "treatment").astype(float))
            names.append(treatment)
        for c in covariates:
            s = df[c]
            if _is_categorical(s):
                levels = sorted(pd.unique(s.astype(str)))
                if len(levels) < 2:
                    raise DataValidationError(
                        f"Covariate {c!r} takes a single value ({levels[0]!r}) in every row; a constant "
                        "covariate is not identifiable. Remove it from covariates."
                    )
                refs[c] = levels[0]
                sv = s.astype(str).to_numpy()
                for lev in levels[1:]:
                    cols.append((sv == lev).astype(float))
                    names.append(f"{c}[{lev}]")
            else:
                x = _numeric(df, c)
                bad = ~np.isfinite(x)
                if bad.any():
                    raise DataValidationError(
                        f"Covariate {c!r} has non-finite values in row(s) {_rows(bad, df.index)}."
                    )
                if np.ptp(x) == 0:
                    raise DataValidationError(
                        f"Covariate {c!r} is constant ({x[0]!r}) in every row; a constant covariate is "
                        "not identifiable. Remove it from covariates."
                    )
                cols.append(x)
                names.append(c)
        X = np.column_stack(cols) if cols else np.zeros((len(df), 0))

        def codes(col: str | None):
            if col is None:
                return None, None
            cat = pd.Categorical(df[col])
            return np.asarray(cat.codes, dtype=np.int64), list(cat.categories)

        s_codes, s_levels = codes(strata)
        if s_codes is not None:
            ev_by = np.bincount(s_codes, weights=ev, minlength=len(s_levels))
            n_by = np.bincount(s_codes, minlength=len(s_levels))
            lonely = [s_levels[i] for i in range(len(s_levels)) if n_by[i] == 1 and ev_by[i] == 0]
            if lonely:
                warnings.warn(
                    f"Strata column {strata!r}: stratum/strata {lonely} hold a single subject without an "
                    "event; they contribute nothing to the partial likelihood (kept, not dropped).",
                    UserWarning,
                    stacklevel=2,
                )
        c_codes, c_levels = codes(cluster)
        return cls(
            time=time,
            event=ev.astype(np.int64),
            X=X,
            covariate_names=names,
            duration_col=duration,
            event_col=event,
            treatment=treatment,
            strata=s_codes,
            strata_levels=s_levels,
            strata_col=strata,
            cluster=c_codes,
            cluster_levels=c_levels,
            cluster_col=cluster,
            weights=w,
            weights_col=weights,
            entry=ent,
            entry_col=entry,
            reference_levels=refs,
            n_dropped=n_dropped,
            frame=df,
        )

    # -- conveniences -------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.time.shape[0])

    @property
    def n_events(self) -> int:
        return int(self.event.sum())

    @property
    def p(self) -> int:
        return int(self.X.shape[1])

    def column(self, name: str) -> np.ndarray:
        """A column of the design matrix by name."""
        try:
            return self.X[:, self.covariate_names.index(name)]
        except ValueError:
            raise KeyError(f"{name!r} is not a covariate; covariates are {self.covariate_names}") from None

    def fingerprint(self) -> str:
        """Fingerprint of everything the models see (identifies the data without storing it)."""
        return fingerprint(self.time, self.event, self.X, self.strata, self.cluster, self.weights,
                           self.entry, np.array(self.covariate_names, dtype=object))

    def subset(self, mask: np.ndarray) -> SurvivalData:
        """Rows where ``mask`` is true, re-validated from the source frame."""
        if self.frame is None:
            raise ValueError("subset needs the source frame, which this SurvivalData does not hold.")
        return SurvivalData.from_frame(self.frame.loc[np.asarray(mask, bool)], **self.spec())

    def spec(self) -> dict:
        """Keyword arguments that rebuild this object with :meth:`from_frame`."""
        covs = []
        for name in self.covariate_names:
            base = name.split("[", 1)[0]
            if name != self.treatment and base not in covs:
                covs.append(base)
        return {"duration": self.duration_col, "event": self.event_col, "covariates": covs,
                "treatment": self.treatment, "strata": self.strata_col, "cluster": self.cluster_col,
                "weights": self.weights_col, "entry": self.entry_col}

    def to_frame(self) -> pd.DataFrame:
        """The coded data as a frame (time, event, design columns, strata/cluster/weights/entry)."""
        out = pd.DataFrame(self.X, columns=self.covariate_names)
        out.insert(0, "event", self.event)
        out.insert(0, "time", self.time)
        for nm, arr, lv in (("strata", self.strata, self.strata_levels),
                            ("cluster", self.cluster, self.cluster_levels)):
            if arr is not None:
                out[nm] = np.asarray(lv, dtype=object)[arr]
        if self.weights is not None:
            out["weights"] = self.weights
        if self.entry is not None:
            out["entry"] = self.entry
        return out

    def _repr_html_(self) -> str:
        return (
            f"<b>SurvivalData</b>: {self.n} subjects, {self.n_events} events; covariates "
            f"{self.covariate_names}; treatment {self.treatment!r}"
            + (f"; strata {self.strata_col!r} ({len(self.strata_levels)})" if self.strata is not None else "")
            + (f"; cluster {self.cluster_col!r} ({len(self.cluster_levels)})" if self.cluster is not None else "")
        )

    def __repr__(self) -> str:
        return (f"SurvivalData(n={self.n}, events={self.n_events}, covariates={self.covariate_names}, "
                f"treatment={self.treatment!r})")


def _is_categorical(s: pd.Series) -> bool:
    return (isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(s)
            or pd.api.types.is_string_dtype(s) or s.dtype == object)


def _numeric(df: pd.DataFrame, col: str) -> np.ndarray:
    try:
        return pd.to_numeric(df[col], errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError):
        bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
        raise DataValidationError(
            f"Column {col!r} must be numeric; row(s) {_rows(bad.to_numpy(), df.index)} are not "
            f"(e.g. {df[col][bad].iloc[0]!r})."
        ) from None


def _binary(df: pd.DataFrame, col: str, role: str) -> np.ndarray:
    s = df[col]
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=float)
    x = _numeric(df, col)
    bad = ~np.isin(x, (0.0, 1.0))
    if bad.any():
        raise DataValidationError(
            f"The {role} column {col!r} must be 0/1 (or boolean); row(s) {_rows(bad, df.index)} hold "
            f"{sorted(set(x[bad].tolist()))[:5]}. Recode it as 0/1."
        )
    return x


# --------------------------------------------------------------------------------------------
# Study-level estimates
# --------------------------------------------------------------------------------------------
class StudyEstimates:
    """Study-level log hazard ratios with known standard errors, optionally in groups.

    Model input for :class:`~bayes_osteo.MetaAnalysis`: ``y_i = log HR_i`` with standard error
    ``s_i`` (treated as known). Conversions from published summaries follow Tierney et al.
    (Trials 2007) and the Cochrane Handbook.

    Parameters
    ----------
    log_hr, se : array-like
        Log hazard ratios and their standard errors (finite, ``se > 0``).
    study : array-like of str, optional
        Study labels (default ``study_1..k``); unique within a group.
    group : array-like, optional
        Group label per row (e.g. ``"metastasectomy | PRS"``); one analysis per group.
    covariates : DataFrame, optional
        Study-level covariates for meta-regression (one row per study).

    Examples
    --------
    >>> import bayes_osteo as bo
    >>> st = bo.StudyEstimates(log_hr=[-1.2, -0.9, -1.5], se=[0.3, 0.4, 0.5], study=["a", "b", "c"])
    >>> round(float(st.hr[0]), 3)
    0.301
    """

    def __init__(self, log_hr, se, study=None, group=None, *, covariates: pd.DataFrame | None = None,
                 meta: pd.DataFrame | None = None):
        y = np.atleast_1d(np.asarray(log_hr, dtype=float))
        s = np.atleast_1d(np.asarray(se, dtype=float))
        if y.ndim != 1 or s.ndim != 1:
            raise DataValidationError("log_hr and se must be one-dimensional.")
        k = y.shape[0]
        if k == 0:
            raise DataValidationError("StudyEstimates needs at least one study; got none.")
        study_arr = (np.array([f"study_{i + 1}" for i in range(k)], dtype=object) if study is None
                     else np.asarray(study, dtype=object).ravel())
        group_arr = None if group is None else np.asarray(group, dtype=object).ravel()
        lengths = {"log_hr": k, "se": s.shape[0], "study": study_arr.shape[0]}
        if group_arr is not None:
            lengths["group"] = group_arr.shape[0]
        if covariates is not None:
            lengths["covariates"] = len(covariates)
        if len(set(lengths.values())) != 1:
            raise DataValidationError(f"Inputs have different lengths: {lengths}; give one value per study.")
        bad = ~np.isfinite(y)
        if bad.any():
            raise DataValidationError(f"log_hr is not finite for study {list(study_arr[bad])}; check the inputs.")
        bad = ~np.isfinite(s) | (s <= 0)
        if bad.any():
            raise DataValidationError(
                f"se must be finite and > 0; study {list(study_arr[bad])} has se = {s[bad].tolist()}."
            )
        if group_arr is not None and pd.isna(pd.Series(group_arr)).any():
            raise DataValidationError("group has missing labels; give every study a group.")
        key = pd.DataFrame({"study": study_arr, "group": group_arr if group_arr is not None else ""})
        dup = key.duplicated(keep=False).to_numpy()
        if dup.any():
            raise DataValidationError(
                f"Study labels must be unique within a group; duplicated: "
                f"{sorted(set(map(str, study_arr[dup])))}. Rename them or put them in different groups."
            )
        self.log_hr = y
        self.se = s
        self.study = study_arr
        self.group = group_arr
        self.covariates = None if covariates is None else covariates.reset_index(drop=True)
        self.meta = None if meta is None else meta.reset_index(drop=True)

    # -- conversions --------------------------------------------------------------------------
    @classmethod
    def from_hr_ci(cls, df: pd.DataFrame, *, hr: str = "hr", lower: str = "ci_low", upper: str = "ci_high",
                   study: str | None = "study", ci_level: float = 0.95, group: str | Sequence[str] | None = None,
                   check_symmetry: float = 0.1) -> StudyEstimates:
        """From hazard ratios with confidence limits: ``SE = (ln U - ln L) / (2 z_{(1+level)/2})``.

        Rows whose ``ln HR`` is more than ``check_symmetry`` x SE away from the midpoint of the log
        limits get a warning naming them (rounding is fine; a typo is not).
        """
        _check_level(ci_level)
        _need(df, [hr, lower, upper] + ([study] if study else []) + _as_list(group))
        h, lo, up = (_positive(df, c) for c in (hr, lower, upper))
        bad = ~((lo < h) & (h < up))
        if bad.any():
            raise DataValidationError(
                f"Need {lower!r} < {hr!r} < {upper!r}; row(s) {_rows(bad, df.index)} break this."
            )
        z = stats.norm.ppf(0.5 + ci_level / 2)
        se = (np.log(up) - np.log(lo)) / (2 * z)
        mid = (np.log(up) + np.log(lo)) / 2
        off = np.abs(np.log(h) - mid) > check_symmetry * se
        if off.any():
            warnings.warn(
                f"Row(s) {_rows(off, df.index)}: ln({hr}) lies far from the midpoint of the log CI "
                f"(> {check_symmetry} SE); check for a typo or an asymmetric interval.",
                UserWarning,
                stacklevel=2,
            )
        return cls(np.log(h), se, _study(df, study), _group(df, group), meta=df.reset_index(drop=True))

    @classmethod
    def from_p_value(cls, df: pd.DataFrame, *, hr: str = "hr", p: str = "p", study: str | None = "study",
                     group: str | Sequence[str] | None = None) -> StudyEstimates:
        """From a hazard ratio and a two-sided p-value: ``SE = |ln HR| / z_{1 - p/2}``."""
        _need(df, [hr, p] + ([study] if study else []) + _as_list(group))
        h = _positive(df, hr)
        pv = _numeric(df, p)
        bad = ~((pv > 0) & (pv < 1))
        if bad.any():
            raise DataValidationError(f"p-values in {p!r} must lie in (0, 1); row(s) {_rows(bad, df.index)}.")
        bad = h == 1
        if bad.any():
            raise DataValidationError(f"HR = 1 in row(s) {_rows(bad, df.index)}: the SE cannot be recovered from a p-value.")
        se = np.abs(np.log(h)) / stats.norm.ppf(1 - pv / 2)
        return cls(np.log(h), se, _study(df, study), _group(df, group), meta=df.reset_index(drop=True))

    @classmethod
    def from_logrank(cls, df: pd.DataFrame, *, o_minus_e: str = "o_minus_e", v: str = "v",
                     study: str | None = "study", group: str | Sequence[str] | None = None) -> StudyEstimates:
        """From log-rank ``O - E`` and its variance ``V``: ``ln HR = (O-E)/V``, ``SE = 1/sqrt(V)``."""
        _need(df, [o_minus_e, v] + ([study] if study else []) + _as_list(group))
        oe = _numeric(df, o_minus_e)
        var = _positive(df, v)
        return cls(oe / var, 1 / np.sqrt(var), _study(df, study), _group(df, group), meta=df.reset_index(drop=True))

    # -- views ----------------------------------------------------------------------------------
    @property
    def k(self) -> int:
        return int(self.log_hr.shape[0])

    @property
    def hr(self) -> np.ndarray:
        return np.exp(self.log_hr)

    @property
    def groups(self) -> list:
        """Group labels in order of first appearance (``[None]`` when ungrouped)."""
        return [None] if self.group is None else list(dict.fromkeys(self.group))

    def select(self, group) -> StudyEstimates:
        """The studies of one group, as an ungrouped :class:`StudyEstimates`."""
        if self.group is None:
            return self
        m = self.group == group
        if not m.any():
            raise KeyError(f"No group {group!r}; groups are {self.groups}")
        return StudyEstimates(self.log_hr[m], self.se[m], self.study[m],
                              covariates=None if self.covariates is None else self.covariates[m],
                              meta=None if self.meta is None else self.meta[m])

    def drop(self, i: int) -> StudyEstimates:
        """All studies but the ``i``-th (for leave-one-out)."""
        m = np.ones(self.k, bool)
        m[i] = False
        return StudyEstimates(self.log_hr[m], self.se[m], self.study[m],
                              None if self.group is None else self.group[m],
                              covariates=None if self.covariates is None else self.covariates[m],
                              meta=None if self.meta is None else self.meta[m])

    def to_frame(self) -> pd.DataFrame:
        z = stats.norm.ppf(0.975)
        out = pd.DataFrame({"study": self.study, "log_hr": self.log_hr, "se": self.se, "hr": self.hr,
                            "ci_low": np.exp(self.log_hr - z * self.se),
                            "ci_high": np.exp(self.log_hr + z * self.se)})
        if self.group is not None:
            out.insert(0, "group", self.group)
        return out

    def fingerprint(self) -> str:
        return fingerprint(self.log_hr, self.se, self.study, self.group)

    def __len__(self) -> int:
        return self.k

    def __repr__(self) -> str:
        g = "" if self.group is None else f", groups={len(self.groups)}"
        return f"StudyEstimates(k={self.k}{g})"

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(float_format=lambda v: f"{v:.3f}")


def _as_list(x) -> list:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def _need(df: pd.DataFrame, cols: list[str]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"Expected a pandas DataFrame, got {type(df).__name__}.")
    miss = [c for c in cols if c not in df.columns]
    if miss:
        raise DataValidationError(f"Column(s) {miss} not in the data frame; available: {list(df.columns)}.")
    if len(df) == 0:
        raise DataValidationError("The data frame is empty.")


def _positive(df: pd.DataFrame, col: str) -> np.ndarray:
    x = _numeric(df, col)
    bad = ~np.isfinite(x) | (x <= 0)
    if bad.any():
        raise DataValidationError(
            f"Column {col!r} must be finite and > 0 (hazard ratios and limits are ratios); "
            f"row(s) {_rows(bad, df.index)} are not."
        )
    return x


def _check_level(level: float) -> None:
    if not (0 < float(level) < 1):
        raise DataValidationError(f"ci_level must be a probability in (0, 1), e.g. 0.95; got {level!r}.")


def _study(df: pd.DataFrame, col: str | None):
    return None if col is None else df[col].astype(str).to_numpy(dtype=object)


def _group(df: pd.DataFrame, group):
    cols = _as_list(group)
    if not cols:
        return None
    return df[cols].astype(str).agg(" | ".join, axis=1).to_numpy(dtype=object)
