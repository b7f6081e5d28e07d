"""Patient data reconstructed from a published Kaplan-Meier curve (Guyot et al. 2012).

Most studies publish a Kaplan-Meier figure with a table of numbers at risk rather than the
patient rows. :func:`reconstruct_ipd` inverts the Kaplan-Meier estimator on digitised points of
one arm's curve, following the algorithm of

    Guyot P, Ades AE, Ouwens MJNM, Welton NJ. Enhanced secondary analysis of survival data:
    reconstructing the data from published Kaplan-Meier survival curves.
    BMC Med Res Methodol 2012;12:9. doi:10.1186/1471-2288-12-9

The algorithm
-------------
Digitised points ``(t_k, S_k)`` and the published numbers at risk ``n_i`` at times ``a_i``
(``a_0 = 0``) define intervals ``[a_i, a_{i+1})``. Within interval ``i``:

1. guess the number censored, ``c_i = round(n_i S(a_{i+1}) / S(a_i) - n_{i+1})``;
2. spread the ``c_i`` censoring times evenly over the interval;
3. walk through the points of the interval: the number at risk ``r_k`` falls by the deaths and
   censorings before ``t_k``; deaths at ``t_k`` are ``d_k = round(r_k (1 - S_k / KM_last))``,
   where ``KM_last`` is the reconstructed Kaplan-Meier value at the previous death, so the
   rebuilt curve tracks the digitised one;
4. compare the reconstructed number at risk at ``a_{i+1}`` with ``n_{i+1}``, move ``c_i`` by the
   difference and repeat from 2 until they agree.

After the last published time nobody is counted at risk, so the number censored is taken from
the censoring rate of the previous interval, or, when the publication reports the total number
of events, adjusted until the reconstructed events add up to it. Whoever is still at risk at the
last digitised time is censored there.

Digitisation clean-up (this module's, described in :func:`reconstruct_ipd`): points are put in
their order along the curve, small inversions caused by digitisation noise are removed by
isotonic regression in both coordinates, inversions larger than the stated tolerance are an
error, and changes of survival smaller than ``min_drop`` are pooled into plateaus so that noise
in a flat tail is never read as deaths.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

__all__ = ["reconstruct_ipd", "kaplan_meier_steps", "GUYOT_CITATION"]

GUYOT_CITATION = ("Guyot P, Ades AE, Ouwens MJNM, Welton NJ. Enhanced secondary analysis of "
                  "survival data: reconstructing the data from published Kaplan-Meier survival "
                  "curves. BMC Med Res Methodol 2012;12:9. doi:10.1186/1471-2288-12-9")


# ---------------------------------------------------------------------------------------------
# Kaplan-Meier (numpy; used for the fit report)
# ---------------------------------------------------------------------------------------------
def kaplan_meier_steps(time, event) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate as a step function: distinct event times and S just after each.

    Examples
    --------
    >>> t, s = kaplan_meier_steps([1, 2, 2, 3, 4], [1, 1, 0, 1, 0])
    >>> t.tolist(), [float(round(x, 4)) for x in s]
    ([1.0, 2.0, 3.0], [0.8, 0.6, 0.3])
    """
    time = np.asarray(time, float)
    event = np.asarray(event, float)
    ut, inv = np.unique(time, return_inverse=True)
    deaths = np.bincount(inv, weights=event, minlength=ut.size)
    leaving = np.bincount(inv, minlength=ut.size).astype(float)
    at_risk = time.size - np.concatenate([[0.0], np.cumsum(leaving)[:-1]])
    keep = deaths > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk > 0, 1.0 - deaths / at_risk, 1.0)
    surv = np.cumprod(factor)
    return ut[keep], surv[keep]


def _step_eval(step_t: np.ndarray, step_s: np.ndarray, t: np.ndarray, *, left: bool = False):
    """Evaluate a right-continuous step function (value 1 before the first step) at ``t``.

    ``left=True`` gives the left limit ``S(t-)``.
    """
    idx = np.searchsorted(step_t, t, side="left" if left else "right")
    vals = np.concatenate([[1.0], step_s])
    return vals[idx]


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------
def _points(curve_points, time: str, survival: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(curve_points, pd.DataFrame):
        missing = [c for c in (time, survival) if c not in curve_points.columns]
        if missing:
            raise ValueError(
                f"curve_points has no column(s) {missing}; it needs a {time!r} column (digitised "
                f"times) and a {survival!r} column (survival on the 0-1 scale). Columns found: "
                f"{list(curve_points.columns)}; pass time=/survival= to name yours.")
        rows = np.asarray(curve_points.index)
        t = pd.to_numeric(curve_points[time], errors="coerce").to_numpy(float)
        s = pd.to_numeric(curve_points[survival], errors="coerce").to_numpy(float)
    else:
        arr = np.asarray(curve_points, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError("curve_points must be a DataFrame with 'time' and 'survival' columns "
                             f"or an (n, 2) array of (time, survival); got shape {arr.shape}.")
        t, s = arr[:, 0].copy(), arr[:, 1].copy()
        rows = np.arange(arr.shape[0])
    if t.size < 2:
        raise ValueError(f"curve_points needs at least 2 digitised points; got {t.size}.")
    for name, v in ((time, t), (survival, s)):
        bad = ~np.isfinite(v)
        if bad.any():
            raise ValueError(f"curve_points column {name!r} has missing or non-numeric values at "
                             f"row(s) {rows[bad][:5].tolist()}; remove or fix those points.")
    return t, s, rows


def _at_risk(at_risk_times, at_risk_counts) -> tuple[np.ndarray, np.ndarray]:
    a = np.atleast_1d(np.asarray(at_risk_times, dtype=float))
    n_raw = np.atleast_1d(np.asarray(at_risk_counts, dtype=float))
    if a.ndim != 1 or n_raw.ndim != 1 or a.size != n_raw.size:
        raise ValueError(f"at_risk_times and at_risk_counts need one value each per column of the "
                         f"published at-risk table; got {a.size} times and {n_raw.size} counts.")
    if a.size == 0:
        raise ValueError("The at-risk table is empty: give at least the number randomised at time 0.")
    if not np.all(np.isfinite(a)) or not np.all(np.isfinite(n_raw)):
        raise ValueError("at_risk_times and at_risk_counts must be finite numbers (no missing values).")
    if a[0] != 0:
        raise ValueError(f"at_risk_times must start at 0 with the number of patients in the arm; "
                         f"got first time {a[0]}. Add time 0 and the arm's size.")
    steps = np.diff(a)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        raise ValueError(f"at_risk_times must be strictly increasing; position {i + 1} "
                         f"({a[i + 1]}) does not come after position {i} ({a[i]}). Give the "
                         f"at-risk table in time order without repeats.")
    if np.any(n_raw < 0) or np.any(n_raw != np.round(n_raw)):
        raise ValueError(f"at_risk_counts must be non-negative whole numbers; got {n_raw.tolist()}.")
    n = n_raw.astype(np.int64)
    if n[0] <= 0:
        raise ValueError("at_risk_counts[0] (patients at time 0) must be positive.")
    rises = np.diff(n) > 0
    if rises.any():
        i = int(np.argmax(rises))
        raise ValueError(f"at_risk_counts must not increase over time: {n[i + 1]} at time {a[i + 1]} "
                         f"is more than {n[i]} at time {a[i]}. Check the at-risk table (columns "
                         f"swapped, or numbers from the other arm?).")
    return a, n


# ---------------------------------------------------------------------------------------------
# Digitisation clean-up
# ---------------------------------------------------------------------------------------------
def _clean_curve(t, s, rows, a, *, tolerance, time_tolerance, min_drop):
    """Order the points along the curve, make them monotone, pool sub-``min_drop`` changes."""
    if np.any(s < -tolerance) or np.any(s > 1 + tolerance):
        bad = (s < -tolerance) | (s > 1 + tolerance)
        hint = " (they look like percentages: divide by 100)" if s.max() > 1.5 else ""
        raise ValueError(
            f"curve_points survival must lie in [0, 1]; row(s) {rows[bad][:5].tolist()} have "
            f"{s[bad][:5].tolist()}{hint}. Values within tolerance={tolerance} of the bounds are "
            f"clipped as digitisation noise.")
    if np.any(t < -time_tolerance):
        bad = t < -time_tolerance
        raise ValueError(f"curve_points time must be >= 0; row(s) {rows[bad][:5].tolist()} have "
                         f"{t[bad][:5].tolist()} (beyond time_tolerance={time_tolerance:g}).")
    s = np.clip(s, 0.0, 1.0)
    t = np.clip(t, 0.0, None)
    # Non-monotone beyond noise: a point higher by more than ``tolerance`` than a point that
    # lies more than ``time_tolerance`` before it (no jitter within the tolerances explains it).
    by_t = np.argsort(t, kind="stable")
    ts, ss = t[by_t], s[by_t]
    prefix_min = np.minimum.accumulate(ss)
    n_before = np.searchsorted(ts, ts - time_tolerance, side="left")
    has = n_before > 0
    rise = np.full(ts.size, -np.inf)
    rise[has] = ss[has] - prefix_min[n_before[has] - 1]
    if rise.max() > tolerance:
        k = int(np.argmax(rise))
        j = int(np.argmin(ss[: n_before[k]]))
        raise ValueError(
            f"curve_points are not monotone beyond digitisation noise: row {rows[by_t[k]]} "
            f"(time={ts[k]:g}, survival={ss[k]:g}) lies {rise[k]:.3g} above row {rows[by_t[j]]} "
            f"(time={ts[j]:g}, survival={ss[j]:g}), which is earlier by more than "
            f"time_tolerance={time_tolerance:g}; survival cannot rise by more than "
            f"tolerance={tolerance:g}. Fix or remove the mis-clicked point, check that all points "
            f"belong to one arm, or raise the tolerances.")
    # Order along the staircase: both axes in axis units (time / time range, survival 0-1).
    # A vertical step separates its corners by the step height, a plateau its ends by its
    # length, so only points closer than the digitisation noise can swap; the isotonic fits
    # below then remove those small inversions in each coordinate.
    scale = max(float(t.max()), float(a[-1]), 1e-12)
    order = np.lexsort((t, t / scale - s))
    t, s = t[order], s[order]
    t = isotonic_regression(t, increasing=True).x
    s = isotonic_regression(s, increasing=False).x
    # Pool changes smaller than min_drop into plateaus (level = the plateau's mean; the first
    # plateau is pinned at S = 1 because S(0) = 1 is known).
    if min_drop > 0:
        out = s.copy()
        start, level, first = 0, 1.0, True
        for k in range(s.size + 1):
            if k == s.size or s[k] < level - min_drop:
                seg = slice(start, k)
                out[seg] = 1.0 if first else s[seg].mean()
                first = False
                if k < s.size:
                    start, level = k, s[k]
        s = np.minimum.accumulate(out)
    # The curve starts at (0, 1).
    t = np.concatenate([[0.0], t])
    s = np.concatenate([[1.0], s])
    return t, s


def _insert_anchors(t, s, a):
    """Add a point at each at-risk time not already digitised (value of the curve there)."""
    missing = a[~np.isin(a, t)]
    if missing.size:
        pos = np.searchsorted(t, missing, side="right")
        vals = s[pos - 1]
        t = np.insert(t, pos, missing)
        s = np.insert(s, pos, vals)
    return t, s


# ---------------------------------------------------------------------------------------------
# The Guyot recursion
# ---------------------------------------------------------------------------------------------
@dataclass
class _Pass:
    deaths: np.ndarray      # deaths at each point of the interval
    cens_times: np.ndarray  # censoring times actually used
    n_end: int              # number at risk after the interval
    km_last: float          # reconstructed KM at the last death


def _run_interval(T, S, lo, hi, t_end, n_start, n_cens, km_last, *, no_deaths=False,
                  death_cap=None) -> _Pass:
    """One pass over points ``lo..hi`` with ``n_cens`` censorings spread over ``(T[lo], t_end)``.

    ``death_cap`` bounds the deaths of the pass (the at-risk table or the published total
    allows no more); deaths beyond it are left to the next interval's points.
    """
    m = hi - lo + 1
    if n_cens > 0:
        width = t_end - T[lo]
        c = T[lo] + width * np.arange(1, n_cens + 1) / (n_cens + 1)
        idx = np.searchsorted(T[lo:hi + 1], c, side="right") - 1
        idx = np.clip(idx, 0, m - 1)
    else:
        c = np.empty(0)
        idx = np.empty(0, np.int64)
    cen = np.bincount(idx, minlength=m)
    deaths = np.zeros(m, np.int64)
    used = []
    n = int(n_start)
    cap = np.inf if death_cap is None else int(death_cap)
    total = 0
    for j in range(m):
        k = lo + j
        if not no_deaths and n > 0 and km_last > 0:
            dk = int(np.floor(n * (1.0 - S[k] / km_last) + 0.5))
            dk = int(min(max(dk, 0), n, cap - total))
            if dk > 0:
                total += dk
                km_last = km_last * (1.0 - dk / n)
                deaths[j] = dk
                n -= dk
        ck = min(int(cen[j]), n)   # never censor more people than are left
        if ck:
            used.append(c[idx == j][:ck])
            n -= ck
    cens = np.concatenate(used) if used else np.empty(0)
    return _Pass(deaths, cens, n, km_last)


def _solve(run, n_cens0, target, lo_bound, hi_bound, max_iter):
    """Iterate ``n_cens <- n_cens + (achieved - target)`` (Guyot's update) to a fixed point.

    ``run(n_cens) -> (result, achieved)``. Stops on agreement, on a revisited value (the
    update cycles) or after ``max_iter`` passes; returns the pass with the smallest gap.
    """
    nc = int(min(max(n_cens0, lo_bound), hi_bound))
    seen: dict[int, tuple[int, object]] = {}
    for _ in range(max_iter):
        res, achieved = run(nc)
        gap = achieved - target
        seen[nc] = (abs(gap), res)
        if gap == 0:
            break
        new = int(min(max(nc + gap, lo_bound), hi_bound))
        if new in seen:
            break
        nc = new
    best = min(seen, key=lambda k: (seen[k][0], abs(k - nc)))
    return best, seen[best][1], seen[best][0]


def _value_before(T, S, x):
    """Value of the cleaned curve just before ``x`` (1 when no point precedes it)."""
    k = np.searchsorted(T, x, side="left")
    return S[k - 1] if k > 0 else 1.0


@dataclass
class _Result:
    death_times: list
    cens_times: list
    mismatches: list
    capped_starts: list     # intervals whose deaths had to be capped by the at-risk table
    cens_counts: list       # censorings placed in each interval


def _guyot(T, S, a, n_risk, total_events, max_iter) -> _Result:
    """The Guyot et al. (2012) recursion over the published intervals (see module docstring)."""
    m = T.size
    R = a.size
    lower = np.searchsorted(T, a, side="left")
    upper = np.append(lower[1:] - 1, m - 1)
    death_times, cens_times, mismatches, capped, counts = [], [], [], [], []
    km_last = 1.0
    n_now = int(n_risk[0])
    cens_prev = 0
    events_so_far = 0
    for i in range(R):
        lo, hi = int(lower[i]), int(upper[i])
        last = i == R - 1
        t_end = T[hi] if last else a[i + 1]
        if not last:
            target = int(n_risk[i + 1])
            exits = n_now - target
            guess = round(n_now * S[lower[i + 1]] / S[lo] - target) if S[lo] > 0 else exits

            def run(nc, lo=lo, hi=hi, t_end=t_end, n0=n_now, km=km_last):
                p = _run_interval(T, S, lo, hi, t_end, n0, nc, km)
                return p, p.n_end

            nc, p, gap = _solve(run, guess, target, 0, max(exits, 0), max_iter)
            if p.n_end < target:
                # The drops imply more deaths than the published at-risk counts allow even with
                # no censoring (rounding, noise, or a drop digitised across an at-risk time):
                # cap them; the KM catches up at the next interval's first point.
                p = _run_interval(T, S, lo, hi, t_end, n_now, nc, km_last,
                                  death_cap=max(exits - nc, 0))
                if i > 0:
                    capped.append(i)
            if p.n_end != target:
                mismatches.append((a[i + 1], target, p.n_end))
        else:
            # After the last published time: the censoring rate of the previous interval.
            if R >= 2:
                guess = round(cens_prev / (a[i] - a[i - 1]) * (T[hi] - T[lo]))
            else:
                guess = 0
            guess = min(guess, n_now)
            if total_events is None:
                p = _run_interval(T, S, lo, hi, t_end, n_now, guess, km_last)
            elif total_events - events_so_far <= 0:
                # All published events already accounted for (a flat tail): everyone left is
                # censored, spread over the interval; residual wiggles are not read as deaths.
                p = _run_interval(T, S, lo, hi, t_end, n_now, n_now, km_last, no_deaths=True)
            else:
                need = total_events - events_so_far

                def run(nc, lo=lo, hi=hi, t_end=t_end, n0=n_now, km=km_last, need=need):
                    p = _run_interval(T, S, lo, hi, t_end, n0, nc, km, death_cap=need)
                    # more censoring -> fewer deaths, so n_cens += deaths - need (Guyot's update)
                    return p, int(p.deaths.sum())

                _, p, _ = _solve(run, guess, need, 0, n_now, max_iter)
        pts = np.arange(lo, hi + 1)
        death_times.append(np.repeat(T[pts], p.deaths))
        cens_times.append(p.cens_times)
        counts.append(int(p.cens_times.size))
        events_so_far += int(p.deaths.sum())
        cens_prev = p.cens_times.size
        km_last = p.km_last
        n_now = p.n_end
    # Whoever is still at risk is censored at the last digitised time.
    cens_times.append(np.full(max(n_now, 0), T[-1]))
    return _Result(death_times, cens_times, mismatches, capped, counts)


def reconstruct_ipd(
    curve_points: pd.DataFrame | np.ndarray,
    *,
    at_risk_times: Sequence[float],
    at_risk_counts: Sequence[int],
    total_events: int | None = None,
    time: str = "time",
    survival: str = "survival",
    tolerance: float = 0.02,
    time_tolerance: float | None = None,
    min_drop: float = 0.01,
    max_iter: int = 200,
) -> pd.DataFrame:
    """Approximate individual patient data of one arm from its digitised Kaplan-Meier curve.

    Implements the algorithm of Guyot et al. (2012, BMC Med Res Methodol 12:9): numbers at risk
    per published interval, censoring spread evenly within each interval, deaths from the drops
    of the curve, the number censored adjusted until the reconstructed number at risk equals the
    next published one; ``total_events`` (when published) fixes the events after the last
    at-risk time.

    Parameters
    ----------
    curve_points : DataFrame or array (n, 2)
        Digitised points of ONE arm's curve: columns ``time`` and ``survival`` (0-1 scale, not
        percent), in any row order (a digitiser's click order is fine). Click both corners of
        each step and the end of the curve.
    at_risk_times, at_risk_counts : sequence
        The published at-risk table: strictly increasing times starting at 0, and the
        (non-increasing) numbers at risk; ``at_risk_counts[0]`` is the arm's size.
    total_events : int, optional
        Total events reported for the arm; used for the interval after the last at-risk time.
    time, survival : str
        Column names in ``curve_points``.
    tolerance : float
        Digitisation noise allowed on the survival axis: values within ``tolerance`` outside
        [0, 1] are clipped, and a point may sit up to ``tolerance`` above an earlier one before
        the curve is declared non-monotone (an error).
    time_tolerance : float, optional
        The same on the time axis (default 1% of the time range).
    min_drop : float
        Changes of survival smaller than this (accumulated) are pooled into a plateau at the
        mean level: noise in a flat stretch is not read as deaths. Set it to about twice the
        digitisation noise SD (0 to use every wiggle, for exact points).
    max_iter : int
        Maximum passes per interval of the censoring adjustment.

    Returns
    -------
    DataFrame
        One row per reconstructed patient: ``time`` and ``event`` (1 death, 0 censored),
        sorted by time. ``attrs`` hold the fit report: ``n``, ``events``, ``max_abs_gap`` and
        ``rms_gap`` (reconstructed Kaplan-Meier minus the cleaned curve at the digitised
        times; at a vertical step the nearer side is used), ``max_abs_gap_input`` and
        ``rms_gap_input`` (the same against the raw points), ``at_risk`` (dict with ``time``,
        ``published``, ``reconstructed``), ``max_at_risk_diff``, ``total_events_published``,
        ``n_points_input``/``n_points_used``, the tolerances and ``citation``.

    Raises
    ------
    ValueError
        Missing columns or values, survival outside [0, 1] beyond ``tolerance``, points that
        are non-monotone beyond the noise tolerances, an at-risk table that is out of time
        order, does not start at 0, or increases, or ``total_events`` outside ``[0, n]``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> pts = pd.DataFrame({"time": [0, 2, 2, 5, 5, 9, 9, 12],
    ...                     "survival": [1, 1, .9, .9, .75, .75, .6, .6]})
    >>> ipd = reconstruct_ipd(pts, at_risk_times=[0, 6], at_risk_counts=[20, 14], min_drop=0)
    >>> int(ipd["event"].sum()), ipd.attrs["max_at_risk_diff"], ipd.attrs["max_abs_gap"] < 0.03
    (8, 0, True)
    """
    t_in, s_in, rows = _points(curve_points, time, survival)
    a, n_risk = _at_risk(at_risk_times, at_risk_counts)
    if not (tolerance >= 0 and min_drop >= 0):
        raise ValueError(f"tolerance and min_drop must be >= 0; got {tolerance}, {min_drop}.")
    span = max(float(np.max(t_in)), float(a[-1]))
    if time_tolerance is None:
        time_tolerance = 0.01 * span
    if time_tolerance < 0:
        raise ValueError(f"time_tolerance must be >= 0; got {time_tolerance}.")
    if total_events is not None:
        if total_events != int(total_events) or not 0 <= total_events <= n_risk[0]:
            raise ValueError(f"total_events must be a whole number between 0 and the arm size "
                             f"{n_risk[0]}; got {total_events}.")
        total_events = int(total_events)

    T0, S0 = _clean_curve(t_in, s_in, rows, a, tolerance=tolerance,
                          time_tolerance=time_tolerance, min_drop=min_drop)
    # A drop digitised just after an at-risk time may really lie just before it (time jitter).
    # When the at-risk table leaves no room for its deaths in the later interval but the
    # earlier interval has censorings they could replace, move the first drop within
    # time_tolerance after that at-risk time to just before it, and redo.
    eps = 1e-9 * span
    for _ in range(4 * a.size):
        T, S = _insert_anchors(T0, S0, a)
        res = _guyot(T, S, a, n_risk, total_events, max_iter)
        move = np.zeros(T0.size, bool)
        for i in res.capped_starts:
            if res.cens_counts[i - 1] == 0:
                continue
            near = (T0 >= a[i]) & (T0 <= a[i] + time_tolerance) & (S0 < _value_before(T0, S0, a[i]))
            if near.any():
                move |= T0 == T0[np.argmax(near)]
        if not move.any():
            break
        T0 = T0.copy()
        T0[move] = a[np.searchsorted(a, T0[move], side="right") - 1] - eps
        order = np.argsort(T0, kind="stable")
        T0, S0 = T0[order], np.minimum.accumulate(S0[order])
    death_times, cens_times, mismatches = res.death_times, res.cens_times, res.mismatches
    m = T.size
    R = a.size
    dt = np.concatenate(death_times)
    ct = np.concatenate(cens_times)
    out = pd.DataFrame({"time": np.concatenate([dt, ct]),
                        "event": np.concatenate([np.ones(dt.size, np.int64),
                                                 np.zeros(ct.size, np.int64)])})
    out = out.sort_values(["time", "event"], ascending=[True, False], kind="stable")
    out = out.reset_index(drop=True)

    # ---- fit report ----
    km_t, km_s = kaplan_meier_steps(out["time"], out["event"])

    def gaps(tt, ss):
        g = np.minimum(np.abs(_step_eval(km_t, km_s, tt) - ss),
                       np.abs(_step_eval(km_t, km_s, tt, left=True) - ss))
        return float(g.max()), float(np.sqrt(np.mean(g ** 2)))

    gmax, grms = gaps(T, S)
    gmax_in, grms_in = gaps(np.clip(t_in, 0, None), np.clip(s_in, 0, 1))
    times = out["time"].to_numpy()
    recon_risk = np.array([int(np.sum(times >= ai)) for ai in a])
    out.attrs.update({
        "source": "reconstructed from a digitised Kaplan-Meier curve (Guyot et al. 2012)",
        "citation": GUYOT_CITATION,
        "n": int(len(out)),
        "events": int(out["event"].sum()),
        "total_events_published": total_events,
        "max_abs_gap": gmax,
        "rms_gap": grms,
        "max_abs_gap_input": gmax_in,
        "rms_gap_input": grms_in,
        "at_risk": {"time": a.tolist(), "published": n_risk.tolist(),
                    "reconstructed": recon_risk.tolist()},
        "max_at_risk_diff": int(np.max(np.abs(recon_risk - n_risk))),
        "n_points_input": int(t_in.size),
        "n_points_used": int(m),
        "tolerance": float(tolerance),
        "time_tolerance": float(time_tolerance),
        "min_drop": float(min_drop),
    })
    # Rounding can shift about one death per interval between the curve and the total, so a
    # larger disagreement with the published total means the inputs disagree.
    if total_events is not None and abs(out.attrs["events"] - total_events) > R:
        mismatches.append(("total events", total_events, out.attrs["events"]))
    if mismatches:
        msg = "; ".join(
            f"at time {x:g}: published {pub}, reconstructed {rec}" if not isinstance(x, str)
            else f"{x}: published {pub}, reconstructed {rec}"
            for x, pub, rec in mismatches)
        warnings.warn(
            f"reconstruct_ipd could not match the published figures exactly ({msg}). The curve's "
            f"drops and the at-risk table disagree: check that both belong to the same arm and "
            f"that the at-risk times are on the curve's time scale.", UserWarning, stacklevel=2)
    return out
