"""Cardinality matching: optimality against brute-force enumeration, the balance bound checked
with the independent SMD function, the caliper, and bad input."""

import numpy as np
import pytest

from bayes_osteo.cardinality import match_cardinality
from bayes_osteo.propensity import smd_scale, standardized_differences


def _all_matchings(nt: int, nc: int):
    """Every partial 1:1 matching of nt treated to nc controls, as lists of (i, j)."""
    def rec(i, used):
        if i == nt:
            yield []
            return
        yield from rec(i + 1, used)                      # treated i unmatched
        for j in range(nc):
            if j not in used:
                for rest in rec(i + 1, used | {j}):
                    yield [(i, j), *rest]
    return rec(0, frozenset())


def _brute_force(lg, t, X, caliper, tol):
    """Largest matching with every |SMD| <= tol (within the caliper); among those, the smallest
    total |logit difference|."""
    tr, co = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
    width = np.inf if caliper is None else caliper * np.std(lg, ddof=1)
    s = smd_scale(X, t)
    best = (0, 0.0)
    for m in _all_matchings(tr.size, co.size):
        if not m:
            continue
        ti, cj = tr[[a for a, _ in m]], co[[b for _, b in m]]
        d = np.abs(lg[ti] - lg[cj])
        if np.any(d > width):
            continue
        smd = (X[ti].mean(0) - X[cj].mean(0)) / s
        if np.any(np.abs(smd) > tol):
            continue
        key = (len(m), -d.sum())
        if key > (best[0], -best[1]):
            best = (len(m), d.sum())
    return best


@pytest.mark.parametrize("seed", range(6))
def test_optimal_against_enumeration(seed):
    rng = np.random.default_rng(seed)
    nt, nc = 4, 5
    t = np.r_[np.ones(nt, int), np.zeros(nc, int)]
    X = np.column_stack([rng.normal(t * 0.8, 1.0), rng.binomial(1, 0.3 + 0.3 * t)]).astype(float)
    lg = X @ np.array([0.9, 0.7]) + rng.normal(0, 0.3, t.size)
    tol = 0.25
    n_best, d_best = _brute_force(lg, t, X, None, tol)
    if n_best == 0:
        with pytest.raises(ValueError, match="no non-empty"):
            match_cardinality(lg, t, X, caliper=None, tol=tol)
        return
    m = match_cardinality(lg, t, X, caliper=None, tol=tol)
    assert m.n_pairs == n_best
    # stage 2 attains the smallest total distance among the largest balanced matchings
    assert m.pairs["distance"].sum() == pytest.approx(d_best, abs=1e-7)
    assert np.all(np.abs(standardized_differences(X, t, m.weights)) <= tol)


def test_caliper_and_balance_bound_hold_on_a_larger_problem():
    rng = np.random.default_rng(7)
    n = 300
    x = rng.normal(size=(n, 3))
    lg = x @ np.array([0.8, -0.5, 0.3]) - 0.3
    t = rng.binomial(1, 1 / (1 + np.exp(-lg)))
    X = np.column_stack([x, (x[:, 0] > 0).astype(float)])
    m = match_cardinality(lg, t, X, caliper=0.2, tol=0.05)
    smd = standardized_differences(X, t, m.weights)
    assert np.all(np.abs(smd) <= 0.05)
    assert np.all(m.pairs["distance"] <= m.caliper + 1e-12)
    assert m.n_pairs > 0.5 * min(t.sum(), (1 - t).sum())
    # each subject at most once, pairs cross the arms
    assert m.pairs["treated"].is_unique and m.pairs["control"].is_unique
    assert np.all(t[m.pairs["treated"]] == 1) and np.all(t[m.pairs["control"]] == 0)
    np.testing.assert_array_equal(m.weights, m.mask.astype(float))


def test_a_constant_column_does_not_block_matching():
    t = np.array([1, 1, 0, 0, 0])
    X = np.column_stack([np.ones(5), [0.1, 0.5, 0.12, 0.48, 3.0]])
    m = match_cardinality(np.array([0.0, 0.2, 0.01, 0.19, 2.0]), t, X, caliper=None, tol=0.1)
    assert m.n_pairs == 2


def test_bad_input():
    t = np.array([1, 0, 1, 0])
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    lg = np.array([0.0, 0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="tol must be > 0"):
        match_cardinality(lg, t, X, tol=0)
    with pytest.raises(ValueError, match="caliper must be > 0"):
        match_cardinality(lg, t, X, caliper=-1)
    with pytest.raises(ValueError, match="one entry / row"):
        match_cardinality(lg, t, X[:3])
    with pytest.raises(ValueError, match="finite"):
        match_cardinality(np.array([0.0, np.nan, 0.2, 0.3]), t, X)
    with pytest.raises(ValueError, match="within the caliper"):
        match_cardinality(np.array([0.0, 10.0, 0.1, 10.1]), t, X, caliper=0.001)
