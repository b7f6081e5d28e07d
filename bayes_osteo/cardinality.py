"""Cardinality matching: the largest 1:1 matched sample that meets a balance bound.

Greedy nearest-neighbour matching (:func:`~bayes_osteo.propensity.match_nearest`) pairs close
scores but does not look at the covariates themselves; in a small cohort the chance imbalance of
~50 pairs (SD ~ sqrt(2/50) = 0.2 per covariate) can leave an |SMD| well above 0.1. Cardinality
matching (Zubizarreta, Paredes & Rosenbaum 2014, Ann Appl Stat 8:204; R: ``designmatch``,
``MatchIt::matchit(method = "cardinality")``) turns the balance criterion into constraints and asks
for the largest matched sample satisfying them::

    maximise   sum_p x_p                          x_p in {0, 1}, one per candidate pair p = (i, j)
    subject to sum_{p contains i} x_p <= 1        each treated subject at most once
               sum_{p contains j} x_p <= 1        each control at most once
               | sum_p x_p (X_ik - X_jk) | <= tol * s_k * sum_p x_p      for every covariate k

where candidate pairs are those within the score caliper and ``s_k`` is the SMD denominator of
:func:`~bayes_osteo.propensity.standardized_differences` (the unweighted pooled SD of the full
sample), so the last line is exactly ``|SMD_k| <= tol`` in the matched sample, and linear. A
second integer programme then re-pairs the same number of subjects to minimise the total logit
distance under the same constraints (the two-stage form of Zubizarreta et al.). Both are solved
by HiGHS through :func:`scipy.optimize.milp`; the formulation is this package's own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, sparse

from .propensity import MatchResult, _check_t, smd_scale

__all__ = ["match_cardinality"]

# constraints are imposed this much inside ``tol`` so that HiGHS's feasibility tolerance (1e-7)
# cannot leave an SMD a hair above the bound
_MARGIN = 1e-6


def match_cardinality(logit_score: np.ndarray, treatment: np.ndarray, X: np.ndarray, *,
                      caliper: float | None = 0.2, tol: float = 0.1,
                      binary: np.ndarray | None = None, time_limit: float = 60.0) -> MatchResult:
    """1:1 matching without replacement: the most pairs with every ``|SMD| <= tol``.

    Parameters
    ----------
    logit_score : ndarray
        Logit of the propensity score per subject.
    treatment : ndarray
        0/1 treatment indicator.
    X : ndarray, shape (n, r)
        Covariates whose balance is constrained (e.g. ``PropensityScore.design.balance_X``).
    caliper : float or None
        Candidate pairs differ by at most ``caliper`` SDs of the logit score (default 0.2, as
        for nearest-neighbour matching); ``None``: any pair is a candidate.
    tol : float
        Bound on every covariate's absolute SMD in the matched sample (default 0.1).
    binary : ndarray of bool, optional
        Which columns of ``X`` are binary (``p(1-p)`` variance in the SMD); detected if omitted.
    time_limit : float
        Seconds allowed to each of the two integer programmes.

    Returns
    -------
    MatchResult
        As from nearest-neighbour matching (``replace`` False); ``pairs`` holds the pairs of
        the distance-minimising second stage.

    Raises
    ------
    ValueError
        When no non-empty matched sample meets the bound (then even one pair is too unbalanced:
        widen ``tol`` or the caliper), or the solver fails / runs out of time.

    Examples
    --------
    >>> import numpy as np
    >>> lg = np.array([0.0, 0.1, 1.0, 0.05, 0.12, 1.1])
    >>> t = np.array([1, 1, 1, 0, 0, 0])
    >>> x = np.array([[0.0], [1.0], [0.0], [0.0], [1.0], [0.0]])
    >>> m = match_cardinality(lg, t, x, caliper=None)
    >>> m.n_pairs
    3
    """
    lg = np.asarray(logit_score, float)
    t = _check_t(treatment)
    X = np.asarray(X, float)
    X = X[:, None] if X.ndim == 1 else X
    if lg.shape != t.shape or X.shape[0] != t.size:
        raise ValueError("logit_score, treatment and X must have one entry / row per subject.")
    if not (np.isfinite(lg).all() and np.isfinite(X).all()):
        raise ValueError("match_cardinality: the logit score and X must be finite.")
    if not tol > 0:
        raise ValueError(f"tol must be > 0; got {tol!r}.")
    if caliper is not None and caliper <= 0:
        raise ValueError(f"caliper must be > 0 (SD units of the logit score) or None; got {caliper!r}.")
    width = np.inf if caliper is None else float(caliper) * float(np.std(lg, ddof=1))
    scale = smd_scale(X, t, binary=binary)
    use = scale > 0                      # a constant column is balanced whatever is matched
    tr, co = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
    dist = np.abs(lg[tr][:, None] - lg[co][None, :])
    ii, jj = np.nonzero(dist <= width)
    if ii.size == 0:
        raise ValueError(f"No treated subject has a control within the caliper ({caliper} SD of the "
                         "logit score); widen it or check overlap.")
    npair = ii.size
    d = dist[ii, jj]
    cols = np.arange(npair)
    # each treated / control at most once
    A_t = sparse.csr_array((np.ones(npair), (ii, cols)), shape=(tr.size, npair))
    A_c = sparse.csr_array((np.ones(npair), (jj, cols)), shape=(co.size, npair))
    # balance: -bound * N <= sum x_p diff_pk <= bound * N, as two one-sided rows per covariate
    diff = (X[tr[ii]] - X[co[jj]])[:, use] / scale[use]          # (npair, r) in SD units
    bound = tol - _MARGIN
    B = np.vstack([(diff - bound).T, (-diff - bound).T])         # each row: <= 0
    cons = [optimize.LinearConstraint(A_t, -np.inf, 1), optimize.LinearConstraint(A_c, -np.inf, 1)]
    if B.size:
        cons.append(optimize.LinearConstraint(B, -np.inf, 0))
    opts = {"time_limit": float(time_limit), "disp": False}
    integ = np.ones(npair)
    bnds = optimize.Bounds(0, 1)
    first = optimize.milp(-np.ones(npair), constraints=cons, integrality=integ, bounds=bnds,
                          options=opts)
    if first.status != 0 or first.x is None:
        raise ValueError(f"Cardinality matching: the solver stopped without an optimum "
                         f"({first.message}); raise time_limit or loosen tol.")
    n_best = int(round(-first.fun))
    if n_best == 0:
        raise ValueError(f"Cardinality matching: no non-empty 1:1 matched sample has every "
                         f"|SMD| <= {tol}; loosen tol or widen the caliper.")
    # stage 2: the same number of pairs, closest in the logit score, same balance constraints
    cons2 = [*cons, optimize.LinearConstraint(np.ones((1, npair)), n_best, n_best)]
    second = optimize.milp(d, constraints=cons2, integrality=integ, bounds=bnds, options=opts)
    x = first.x if second.status != 0 or second.x is None else second.x
    chosen = np.flatnonzero(x > 0.5)
    pairs = pd.DataFrame({"treated": tr[ii[chosen]], "control": co[jj[chosen]],
                          "distance": d[chosen]}).sort_values("treated", ignore_index=True)
    w = np.zeros(t.size)
    w[pairs["treated"].to_numpy()] = 1.0
    w[pairs["control"].to_numpy()] = 1.0
    return MatchResult(pairs=pairs, weights=w, caliper=width, n_treated=int(tr.size),
                       n_control=int(co.size), replace=False)
