"""Building blocks: the Cox partial-likelihood kernel/Op and the piecewise exposures.

Independent answers: closed forms (Therneau & Grambsch, REFERENCES.md), statsmodels PHReg's
log-likelihood and score, finite differences, a brute-force loop over risk sets written from
the definition (for weighted Efron, which statsmodels does not implement), and row replication
(integer Breslow weights).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import statsmodels.api as sm

from bayes_osteo.components import (
    RISK_KEYS,
    CoxPartialLogLik,
    CoxPartialLogLikX,
    cox_loglik_terms,
    cox_op_keys,
    cox_partial_loglik,
    cox_risk_structure,
    default_cut_points,
    piecewise_exposure,
    random_walk,
)

TIME = np.array([1, 1, 6, 6, 8, 9.0])
STATUS = np.array([1, 0, 1, 1, 0, 1])
XC = np.array([1, 1, 1, 0, 0, 0.0])


def closed_form(b, ties):
    r = np.exp(b)
    if ties == "breslow":
        return 2 * b - (np.log(3 * r + 3) + 2 * np.log(r + 3))
    return 2 * b - (np.log(3 * r + 3) + np.log((r + 5) / 2) + np.log(r + 3))


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_closed_form_loglik_and_score(ties):
    st = cox_risk_structure(TIME, STATUS)
    for b in (-1.0, 0.0, 0.7, 1.5, 3.0):
        ll, g = cox_partial_loglik(b * XC, st, ties=ties)
        assert ll == pytest.approx(closed_form(b, ties), abs=1e-12)
        h = 1e-6
        fd = (closed_form(b + h, ties) - closed_form(b - h, ties)) / (2 * h)
        assert g @ XC == pytest.approx(fd, abs=1e-7)


@pytest.mark.parametrize("ties, mle", [("breslow", np.log(1.5 + np.sqrt(33) / 2)), ("efron", 1.676857)])
def test_closed_form_score_zero_at_mle(ties, mle):
    st = cox_risk_structure(TIME, STATUS)
    _, g = cox_partial_loglik(mle * XC, st, ties=ties)
    # Efron's MLE is published to 6 decimals; the score's slope there is ~ -0.5 -> |score| < 1e-6
    assert abs(g @ XC) < 1e-6


def heavy_ties(seed, n=300, p=3, n_strata=3, entry=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    t = rng.integers(1, 12, n).astype(float)        # 11 distinct times -> heavy ties
    d = rng.integers(0, 2, n)
    s = rng.integers(0, n_strata, n)
    ent = None
    if entry:  # non-integer entries: statsmodels counts entry == t as at risk, R (and we) do not
        ent = np.where(rng.random(n) < 0.5, rng.integers(0, 6, n) + 0.5, 0.0)
        ent = np.minimum(ent, t - 0.5)
    return X, t, d, s, ent


@pytest.mark.parametrize("ties", ["breslow", "efron"])
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("use_strata", [False, True])
@pytest.mark.parametrize("use_entry", [False, True])
def test_agrees_with_statsmodels_loglik_and_score(ties, seed, use_strata, use_entry):
    X, t, d, s, ent = heavy_ties(seed, entry=use_entry)
    strata = s if use_strata else None
    st = cox_risk_structure(t, d, None, strata, ent)
    mod = sm.PHReg(t, X, status=d, ties=ties, strata=strata, entry=ent)
    for b in (np.zeros(3), np.array([0.4, -0.8, 0.2]), np.array([-1.5, 1.0, 2.0])):
        ll, g = cox_partial_loglik(X @ b, st, ties=ties)
        assert ll == pytest.approx(mod.loglike(b), rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(X.T @ g, mod.score(b), rtol=1e-10, atol=1e-9)


def brute_force(eta, t, d, w, s, ent, ties):
    """Weighted partial likelihood from the definition (R coxph's weighted Efron)."""
    ll = 0.0
    for stratum in np.unique(s):
        m = s == stratum
        for u in np.unique(t[m & (d == 1)]):
            risk = m & (t >= u) & (ent < u)
            dead = m & (t == u) & (d == 1)
            R = np.sum(w[risk] * np.exp(eta[risk]))
            Rd = np.sum(w[dead] * np.exp(eta[dead]))
            k = dead.sum()
            W = w[dead].sum()
            ll += np.sum(w[dead] * eta[dead])
            if ties == "breslow":
                ll -= W * np.log(R)
            else:
                ll -= W / k * np.sum(np.log(R - np.arange(k) / k * Rd))
    return ll


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_weights_strata_tied_entry_vs_definition_and_finite_differences(ties):
    rng = np.random.default_rng(7)
    n = 150
    X, t, d, s, _ = heavy_ties(7, n=n)
    ent = np.where(rng.random(n) < 0.5, rng.integers(0, 6, n).astype(float), 0.0)
    ent = np.minimum(ent, t - 1)  # entries tied with event times (R: not at risk at t == entry)
    w = rng.uniform(0.3, 3.0, n)
    eta = X @ np.array([0.5, -0.3, 0.9])
    st = cox_risk_structure(t, d, w, s, ent)
    ll, g = cox_partial_loglik(eta, st, ties=ties)
    assert ll == pytest.approx(brute_force(eta, t, d, w, s, ent, ties), rel=1e-12)
    h = 1e-6
    fd = np.array([(cox_partial_loglik(eta + h * e, st, ties=ties)[0]
                    - cox_partial_loglik(eta - h * e, st, ties=ties)[0]) / (2 * h) for e in np.eye(n)])
    np.testing.assert_allclose(g, fd, atol=1e-6)  # central differences: O(h^2) + rounding ~1e-8


def test_breslow_integer_weights_equal_row_replication():
    X, t, d, s, _ = heavy_ties(11, n=120)
    w = np.random.default_rng(11).integers(1, 4, 120)
    b = np.array([0.3, -0.6, 0.1])
    rep = np.repeat(np.arange(120), w)
    mod = sm.PHReg(t[rep], X[rep], status=d[rep], ties="breslow", strata=s[rep])
    ll, g = cox_partial_loglik(X @ b, cox_risk_structure(t, d, w, s), ties="breslow")
    assert ll == pytest.approx(mod.loglike(b), rel=1e-12)
    np.testing.assert_allclose(X.T @ g, mod.score(b), rtol=1e-10)


def test_constant_weights_scale_the_efron_score():
    X, t, d, s, _ = heavy_ties(5)
    eta = X @ np.array([0.2, 0.1, -0.4])
    _, g1 = cox_partial_loglik(eta, cox_risk_structure(t, d, None, s), ties="efron")
    _, g3 = cox_partial_loglik(eta, cox_risk_structure(t, d, np.full(t.size, 3.0), s), ties="efron")
    np.testing.assert_allclose(g3, 3 * g1, rtol=1e-12)


def test_contributions_sum_to_loglik_and_are_zero_for_censored():
    X, t, d, s, _ = heavy_ties(4)
    eta = X @ np.array([0.2, 0.1, -0.4])
    st = cox_risk_structure(t, d, None, s)
    for ties in ("breslow", "efron"):
        ll, _, c = cox_partial_loglik(eta, st, ties=ties, contributions=True)
        assert c.sum() == pytest.approx(ll, rel=1e-12)
        assert np.all(c[d == 0] == 0)
    terms = cox_loglik_terms(np.vstack([eta, 2 * eta]), st, ties="efron")
    assert terms.shape == (2, t.size)


def test_large_linear_predictor_is_stable():
    X, t, d, s, _ = heavy_ties(9)
    eta = 400.0 * X[:, 0]  # exp(eta) overflows without the max shift
    ll, g = cox_partial_loglik(eta, cox_risk_structure(t, d), ties="efron")
    assert np.isfinite(ll) and np.all(np.isfinite(g))


@pytest.mark.parametrize("mode", ["NUMBA", "FAST_COMPILE"])
def test_op_value_and_gradient_in_pytensor(mode):
    X, t, d, s, ent = heavy_ties(2, entry=True)
    st = cox_risk_structure(t, d, None, s, ent)
    beta = pt.dvector("beta")
    op = CoxPartialLogLik("efron", True)
    ll = op(pt.dot(pt.as_tensor(X), beta), *(pt.as_tensor(st[k]) for k in RISK_KEYS))[0]
    f = pytensor.function([beta], [ll, pytensor.grad(ll, beta)], mode=mode)
    b = np.array([0.4, -0.8, 0.2])
    val, grad = f(b)
    mod = sm.PHReg(t, X, status=d, ties="efron", strata=s, entry=ent)
    assert float(val) == pytest.approx(mod.loglike(b), rel=1e-12)
    np.testing.assert_allclose(grad, mod.score(b), rtol=1e-10)


def test_op_verify_grad():
    X, t, d, s, _ = heavy_ties(3, n=60)
    st = cox_risk_structure(t, d, None, s)
    consts = [pt.as_tensor(st[k]) for k in RISK_KEYS]
    rng = np.random.default_rng(0)
    pytensor.gradient.verify_grad(lambda eta: CoxPartialLogLik("efron")(eta, *consts)[0],
                                  [rng.normal(size=60)], rng=rng)


def test_piecewise_exposure():
    time = np.array([0.5, 2.0, 3.5, 10.0])
    entry = np.array([0.0, 0.0, 1.5, 2.5])
    E, j = piecewise_exposure(time, [1.0, 2.0, 3.0], entry)
    np.testing.assert_allclose(E.sum(1), time - entry)
    np.testing.assert_allclose(E[3], [0, 0, 0.5, 7.0])
    assert j.tolist() == [0, 1, 3, 3]   # (1, 2] holds 2.0: right-closed intervals


def test_default_cut_points_are_event_quantiles():
    t = np.arange(1, 101, dtype=float)
    c = default_cut_points(t, np.ones(100), 4)
    np.testing.assert_allclose(c, np.quantile(t, [0.25, 0.5, 0.75]))
    assert default_cut_points(t, np.ones(100), 1).size == 0


def test_random_walk_centred():
    with pm.Model(coords={"interval": list("abcd")}):
        rw = random_walk("g", 1.0, "interval", center=True)
        draws = pm.draw(rw, 50, random_seed=1)
    np.testing.assert_allclose(draws.mean(axis=1), 0, atol=1e-12)


@pytest.mark.parametrize("mode", ["NUMBA", "FAST_COMPILE"])
@pytest.mark.parametrize("ties", ["breslow", "efron"])
@pytest.mark.parametrize("entry", [True, False])
def test_fused_op_on_presorted_rows_matches_statsmodels(mode, ties, entry):
    """CoxPartialLogLikX (X beta, likelihood and X' gradient in one numba call) on rows sorted
    once by (stratum, time), with pm.Data-like int32 index arrays (no per-call casts), taking
    only the arrays its input layout names (cox_op_keys), with and without left truncation."""
    X, t, d, s, ent = heavy_ties(4, entry=entry)
    row = np.lexsort((t, s))
    st = cox_risk_structure(t[row], d[row], None, s[row], None if ent is None else ent[row])
    assert np.array_equal(st["order"], np.arange(t.size))      # presorted: identity
    op = CoxPartialLogLikX(ties, entry)
    assert op.keys == cox_op_keys(use_entry=entry)
    assert len(op.keys) == (7 if entry else 2)
    risk = [pt.as_tensor(st[k].astype(np.int32) if st[k].dtype.kind == "i" else st[k]) for k in op.keys]
    beta = pt.dvector("beta")
    XT = np.ascontiguousarray(X[row].T)    # covariates x rows
    ll = op(beta, pt.as_tensor(XT), *risk)[0]
    f = pytensor.function([beta], [ll, pytensor.grad(ll, beta)], mode=mode)
    b = np.array([0.4, -0.8, 0.2])
    val, grad = f(b)
    mod = sm.PHReg(t, X, status=d, ties=ties, strata=s, entry=ent)
    assert float(val) == pytest.approx(mod.loglike(b), rel=1e-12)
    np.testing.assert_allclose(grad, mod.score(b), rtol=1e-10)
    # and the eta-Op with presorted=True gives the same
    eta = pt.dot(pt.as_tensor(X[row]), beta)
    ll2 = CoxPartialLogLik(ties, entry, presorted=True)(eta, *risk)[0]
    val2, grad2 = pytensor.function([beta], [ll2, pytensor.grad(ll2, beta)], mode=mode)(b)
    assert float(val2) == pytest.approx(float(val), rel=1e-13)
    np.testing.assert_allclose(grad2, grad, rtol=1e-11)
    with pytest.raises(TypeError, match="risk arrays"):
        op(beta, pt.as_tensor(XT), *risk[:-1])
    with pytest.raises(TypeError, match="covariates x rows"):
        op(beta, pt.as_tensor(XT[0]), *risk)


def test_unit_weight_product_matches_log_sum_at_scale():
    """The running product of unit-weight risk-set totals (one log per call) against the
    per-event log sum it replaces (weights 1 vs weights 1 + 1e-15, which takes the log path)."""
    rng = np.random.default_rng(12)
    n = 50_000
    t = rng.exponential(size=n)
    d = (rng.random(n) < 0.7).astype(float)
    eta = rng.normal(scale=3.0, size=n)
    ll1, g1 = cox_partial_loglik(eta, cox_risk_structure(t, d), ties="breslow")
    w = np.full(n, 1.0 + 1e-15)
    ll2, _ = cox_partial_loglik(eta, cox_risk_structure(t, d, w), ties="breslow")
    # the weights change ll by ~1e-15 * |ll| ~ 1e-10; rounding of 35,000 terms ~1e-10
    assert ll1 == pytest.approx(ll2, rel=1e-12)
    assert np.all(np.isfinite(g1))


def test_vectorised_exp_within_two_ulp_of_libm():
    from bayes_osteo.components import _exp_nonpos

    rng = np.random.default_rng(0)
    x = np.concatenate([-np.abs(rng.normal(0, 30, 200_000)), -rng.uniform(0, 1e-3, 1000),
                        [0.0, -0.0, -5e-324, -0.34657359, -0.34657360, -1.0, -700.0, -708.0]])
    out = _exp_nonpos(x, np.empty_like(x), np.empty_like(x))
    ref = np.exp(x)
    ulp = np.spacing(ref)
    assert np.all(np.abs(out - ref) <= 2 * ulp)
    assert out[x == 0].tolist() == [1.0, 1.0]
    # clamped below -708 (documented): tiny, positive, never above exp(-708)
    low = _exp_nonpos(np.array([-708.5, -745.0, -1e4]), np.empty(3), np.empty(3))
    assert np.all((low > 0) & (low <= np.exp(-708.0) * (1 + 1e-15)))


@pytest.mark.parametrize("ties", ["breslow", "efron"])
@pytest.mark.parametrize("case", ["heavy_ties_weights_strata", "continuous_wide_eta", "one_row",
                                  "ties_and_strata_across_blocks", "rising_shift_inside_tie_groups",
                                  "simple_and_general_blocks"])
def test_blocked_fused_kernel_matches_two_pass(ties, case):
    """The blocked fused kernel (no left truncation: running shift rescaled between blocks of
    rows, the stratum's S1 = sum r x carried between blocks, Efron's S1_D accumulated across
    them) against the two-pass kernel (entry times all 0, so the same likelihood) and the numpy
    entry point: case weights, strata and heavy ties; untied data whose linear predictor spans
    +-300 so the shift is rescaled; tie groups and strata that straddle the block boundaries;
    and a linear predictor that rises block after block (the shift and the carried sums,
    Efron's included, are rescaled in every block) with tie groups longer than a block."""
    from bayes_osteo.components import _BLOCK, _block_is_simple, _cox_kernel_x

    rng = np.random.default_rng(11)
    if case == "heavy_ties_weights_strata":
        X, t, d, s, _ = heavy_ties(5, n=2500, p=4)
        w = rng.choice([1.0, 1.0, 0.5, 2.0, 1.7], t.size)
        b = np.array([0.3, -0.5, 0.2, 0.1])
    elif case == "continuous_wide_eta":
        n = 3000
        X = rng.normal(size=(n, 3))
        X[:, 0] = np.linspace(-1, 1, n)[rng.permutation(n)]
        t, d, s, w = rng.exponential(1, n), rng.integers(0, 2, n), np.zeros(n, int), None
        b = np.array([300.0, 0.5, -0.5])          # eta in about [-302, 302]
    elif case == "one_row":
        X, t, d, s, w = np.array([[0.7, -1.0]]), np.array([2.0]), np.array([1]), np.array([0]), None
        b = np.array([0.3, 0.4])
    elif case == "rising_shift_inside_tie_groups":
        n = 4 * _BLOCK + 37
        t = np.floor(rng.uniform(1, 7, n))   # 6 tie groups of ~350 rows (t > 0 = the entry times)
        d = (rng.random(n) < 0.6).astype(int)
        X = np.column_stack([-(t + rng.uniform(0, 1, n)) / 6, rng.normal(size=n)])
        s, w = np.zeros(n, int), rng.choice([1.0, 0.5, 2.0], n)
        b = np.array([200.0, 0.3])                 # earlier times, larger eta (up to ~200)
    elif case == "simple_and_general_blocks":
        # untied unit-weight rows (the fast path) mixed with blocks it must refuse: strata ending
        # inside a block or at its first row, one tied pair of events, one weighted row; a block
        # without events; a one-row first block; a stratum end at a block's last row and a
        # stratum start at a block's first row (both allowed)
        n = 6 * _BLOCK + 1
        edges = [0, _BLOCK + 1, _BLOCK + 300, 2 * _BLOCK + 2, 4 * _BLOCK + 1, 5 * _BLOCK + 9, n]
        s = np.repeat(np.arange(len(edges) - 1), np.diff(edges))
        t = np.concatenate([np.sort(rng.uniform(1, 10, k)) for k in np.diff(edges)])  # sorted
        d = (rng.random(n) < 0.6).astype(int)
        d[3 * _BLOCK + 1:4 * _BLOCK + 1] = 0              # a block without events
        pair = 5 * _BLOCK + 300                          # a tied pair of events
        t[pair + 1], d[pair:pair + 2] = t[pair], 1
        w = np.ones(n)
        w[5 * _BLOCK + 200] = 1.5
        X = rng.normal(size=(n, 3))
        b = np.array([0.8, -0.4, 0.3])
    else:   # 3 strata of 1.5 blocks each; 40-row tie groups every so often
        n = 3 * (_BLOCK + _BLOCK // 2)
        X = rng.normal(size=(n, 2))
        s = np.repeat([0, 1, 2], n // 3)
        t = np.round(rng.exponential(5, n), 1) + 0.1
        t[rng.random(n) < 0.3] = 2.0
        d = rng.integers(0, 2, n)
        w = None
        b = np.array([1.2, -0.7])
    row = np.lexsort((t, s))
    st = cox_risk_structure(t[row], d[row], None if w is None else w[row], s[row])
    Xs = np.ascontiguousarray(X[row])
    XT = np.ascontiguousarray(Xs.T)
    args = [st[k] for k in RISK_KEYS[1:]]
    if case == "simple_and_general_blocks":   # the case takes both paths
        simple = [_block_is_simple(st["row_flags"], max(0, hi - _BLOCK), hi)
                  for hi in range(t.size, 0, -_BLOCK)]
        assert simple == [False, True, True, False, False, True, True]
    ll1, g1 = _cox_kernel_x(b, XT, *args, ties == "efron", False)
    ll2, g2 = _cox_kernel_x(b, XT, *args, ties == "efron", True)
    ll3, g3 = cox_partial_loglik(Xs @ b, st, ties=ties, use_entry=False)
    assert np.isfinite(ll1)
    assert ll1 == pytest.approx(ll2, rel=1e-12, abs=1e-12)
    assert ll1 == pytest.approx(ll3, rel=1e-12, abs=1e-12)
    scale = np.abs(Xs).sum(0) + 1.0   # the score is a sum of terms of size |x|
    np.testing.assert_allclose(g1 / scale, g2 / scale, rtol=0, atol=1e-12)
    np.testing.assert_allclose(g1 / scale, (Xs.T @ g3) / scale, rtol=0, atol=1e-12)


def test_kernel_correct_when_first_compiled_by_a_fastmath_caller(tmp_path):
    """Regression: PyTensor's numba backend (nutpie) compiles with fastmath=True and numba
    compiles a callee with its first caller's flags (and caches it), which once turned the
    vectorised exp into 2**k. In a fresh process with an empty numba cache, a fast-math caller
    compiles the kernel first; the likelihood must still equal statsmodels'."""
    import subprocess
    import sys

    code = """
import numba, numpy as np, statsmodels.api as sm
from bayes_osteo.components import cox_risk_structure, _cox_kernel_x, RISK_KEYS, _exp_nonpos

@numba.njit(fastmath=True)
def caller(beta, X, w, flags, ef, ei):
    return _cox_kernel_x(beta, X, ef, ef, w, ei, flags, ei, ef, ei, True, False)

rng = np.random.default_rng(2)
X = rng.normal(size=(200, 2)); t = rng.integers(1, 20, 200).astype(float); d = rng.integers(0, 2, 200)
row = np.lexsort((t,))
st = cox_risk_structure(t[row], d[row])
b = np.array([0.5, -0.3])
ll, g = caller(b, np.ascontiguousarray(X[row].T), st["weight_sorted"], st["row_flags"],
               np.empty(0), np.empty(0, np.int64))
mod = sm.PHReg(t, X, status=d, ties="efron")
assert abs(ll - mod.loglike(b)) < 1e-9 * abs(ll), (ll, mod.loglike(b))
assert np.allclose(g, mod.score(b), rtol=1e-9)
x = np.full(8, -1.4753); o = np.empty(8); w = np.empty(8)
_exp_nonpos(x, o, w)
assert np.allclose(o, np.exp(x), rtol=1e-15), o
print("ok")
"""
    env = {**__import__("os").environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_left_truncation_with_extreme_linear_predictor_is_finite(ties):
    """With entry times, R(t) = (exits >= t) - (entries >= t) can cancel to 0 when linear
    predictors lie thousands apart (an optimiser's wild step); the kernel then keeps the lower
    bound given by the group's own events, so the log-likelihood stays finite and <= 0 (it once
    returned +inf, which an optimiser accepts as the best point). Found by the time-varying
    partial model's find_map."""
    X, t, d, s, ent = heavy_ties(7, n=200, p=2, entry=True)
    st = cox_risk_structure(t, d, None, s, ent)
    for scale in (1e2, 1e3, 7e3):
        eta = scale * X[:, 0] - 0.5 * scale * X[:, 1]
        ll, g = cox_partial_loglik(eta, st, ties=ties)
        assert np.isfinite(ll) and ll <= 0.0
        # (the score is not guaranteed there: with exp underflowing, Efron's 1/R can overflow)
