"""PyMC building blocks shared by the models.

* :func:`log_hr_block` - the log-hazard-ratio vector (treatment coefficient with its own prior,
  possibly a :class:`~bayes_osteo.priors.NormalMixture`; adjustment coefficients with ``log_hr``).
* :func:`random_effects` - non-centred normal random effects ``sd * z``.
* :func:`random_walk` - a Gaussian random walk (the smoothing prior of a piecewise log-baseline).
* :class:`CoxPartialLogLik` - the Cox partial log-likelihood (Breslow or Efron ties, strata,
  case weights, left truncation) as one PyTensor Op with a hand-written gradient, O(n) per
  evaluation after a one-off sort, with a numba implementation so nutpie runs it natively.
* :func:`cox_risk_structure`, :func:`cox_partial_loglik` (numpy reference entry point),
  :func:`piecewise_exposure`, :func:`default_cut_points`.

The partial likelihood
----------------------
For subjects sorted by (stratum, time), with ``r_i = w_i exp(eta_i)``, the risk set at an event
time ``t`` of stratum ``s`` is ``{i in s: entry_i < t <= time_i}``; its total
``R(t) = sum_{time_i >= t} r_i - sum_{entry_i >= t} r_i`` is accumulated by one backward sweep
(a running sum that restarts at each stratum boundary, plus a merge over entry times).
For a tie group ``D`` of ``m`` events at ``t`` with event weights summing to ``W`` and
``R_D = sum_{i in D} r_i``:

* Breslow: ``sum_{i in D} w_i eta_i - W log R(t)``
* Efron (weighted as in R's ``coxph``): ``sum_{i in D} w_i eta_i - (W/m) sum_{k<m} log(R(t) - k/m R_D)``

The values are computed after shifting ``eta`` by its maximum, so ``exp`` never overflows and
``log R`` is recovered exactly by adding the shift back. The gradient with respect to ``eta_i``
is ``w_i d_i - r_i [A(time_i) - A(entry_i)] + d_i r_i b_{g(i)}`` where ``A`` is the forward
cumulative sum of ``a_g = (W/m) sum_k 1/den_k`` over tie groups (``b_g`` the Efron correction),
so value and gradient both cost O(n); the only O(n p) work is ``X @ beta`` and ``X.T @ grad``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from .priors import create

__all__ = [
    "CoxPartialLogLik",
    "CoxPartialLogLikX",
    "cox_partial_loglik",
    "cox_risk_structure",
    "cox_loglik_terms",
    "default_cut_points",
    "log_hr_block",
    "piecewise_exposure",
    "random_effects",
    "random_walk",
    "RISK_KEYS",
]

#: Names (and order) of the risk-structure arrays the partial-likelihood Op takes after ``eta``.
RISK_KEYS = ("order", "time_sorted", "event_sorted", "weight_sorted", "stratum_sorted",
             "group_start", "entry_order", "entry_sorted", "entry_stratum_sorted")


# ---------------------------------------------------------------------------------------------
# Risk-set structure (computed once per data set)
# ---------------------------------------------------------------------------------------------
def cox_risk_structure(time, event, weights=None, strata=None, entry=None) -> dict[str, np.ndarray]:
    """Sorted arrays that define the risk sets (the data of :class:`CoxPartialLogLik`).

    All arrays have length ``n``, so a compiled model can take a new data set of the same size.
    When the rows are already sorted by (stratum, time), ``order`` is the identity and the Op
    built with ``presorted=True`` skips the permutation entirely (what :class:`CoxModel` does).

    Returns
    -------
    dict
        ``order`` (permutation sorting by stratum then time, stable), ``time_sorted``,
        ``event_sorted``, ``weight_sorted``, ``stratum_sorted``, ``group_start`` (1 at the first
        sorted row of each (stratum, time) tie group, else 0), ``entry_order`` (positions in the
        sorted rows, ordered by stratum then entry time), ``entry_sorted``,
        ``entry_stratum_sorted``.
    """
    time = np.asarray(time, float)
    n = time.shape[0]
    event = np.asarray(event, float)
    weights = np.ones(n) if weights is None else np.asarray(weights, float)
    strata = np.zeros(n, np.int64) if strata is None else np.asarray(strata, np.int64)
    entry = np.zeros(n) if entry is None else np.asarray(entry, float)
    order = np.lexsort((time, strata)).astype(np.int64)
    t_s, s_s, e_sorted_rows = time[order], strata[order], entry[order]
    gstart = np.ones(n, np.int64)
    if n > 1:
        gstart[1:] = ((t_s[1:] != t_s[:-1]) | (s_s[1:] != s_s[:-1])).astype(np.int64)
    eorder = np.lexsort((e_sorted_rows, s_s)).astype(np.int64)   # positions in the sorted rows
    return {
        "order": order,
        "time_sorted": t_s,
        "event_sorted": event[order],
        "weight_sorted": weights[order],
        "stratum_sorted": s_s,
        "group_start": gstart,
        "entry_order": eorder,
        "entry_sorted": e_sorted_rows[eorder],
        "entry_stratum_sorted": s_s[eorder],
    }


# ---------------------------------------------------------------------------------------------
# The kernel (numba): value, gradient and per-event contributions in O(n)
# ---------------------------------------------------------------------------------------------
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238       # Cody-Waite split of ln 2 (the high part is exact in k * hi)
_LN2_LO = 1.9082149292705877e-10
_SHIFTER = 6755399441055744.0      # 1.5 * 2**52: x + shifter rounds x to an integer (low bits)
_SHIFTER_BITS = 0x4338000000000000  # bit pattern of _SHIFTER


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _exp_nonpos(x, out, tmp):
    """``out[i] = exp(x[i])`` for ``x[i] <= 0``, written to vectorise (no libm call per element).

    Our own code, because numba calls the scalar libm ``exp`` (~9 ns per element here, a quarter
    of a Cox gradient at n = 10^5) unless Intel's SVML is installed. Range reduction
    ``x = k ln2 + r`` (|r| <= ln2 / 2, Cody-Waite two-part ln 2), ``exp(r)`` by its Taylor
    polynomial to degree 12 (truncation < 2e-17 relative), and ``2^k`` added to the exponent
    bits. Accuracy: within 2 ulp of libm (tested). Arguments below -708 are clamped to -708
    (``exp`` ~ 3e-308 instead of a denormal or 0): the kernel's largest term is exp(0) = 1, so
    the absolute difference is below 1e-307. ``x``, ``out`` and ``tmp`` (workspace, length n)
    must be distinct arrays: overlapping ones defeat the vectoriser's alias check.
    """
    n = x.shape[0]
    for i in range(n):
        xi = max(x[i], -708.0)
        kd = xi * _LOG2E + _SHIFTER
        k = kd - _SHIFTER
        r = xi - k * _LN2_HI - k * _LN2_LO
        p = 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        out[i] = p * r + 1.0
        tmp[i] = kd
    ob = out.view(np.int64)
    kb = tmp.view(np.int64)
    for i in range(n):
        ob[i] += (kb[i] - _SHIFTER_BITS) << 52
    return out


_TWO_500 = 2.0 ** 500
_TWO_M500 = 2.0 ** -500
_LN2 = float(np.log(2.0))

@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cox_kernel_sorted(eta, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s, efron, use_entry,
                       want_contrib):
    """Value and gradient for ``eta`` in SORTED row order (all inputs sorted by stratum, time).

    Two streaming passes and no gathers: a backward pass accumulates the shifted risk-set
    totals (restarting at stratum boundaries) and closes each tie group at its first row; a
    forward pass accumulates ``A`` and writes the gradient in place of the risk weights.
    No fastmath: the max shift and the exact order of the sums are what keep it stable.
    """
    n = eta.shape[0]
    shift = -np.inf
    for i in range(n):
        shift = max(shift, eta[i])
    if n == 0:
        shift = 0.0
    r = np.empty(n)            # risk weights w exp(eta - shift); overwritten by the gradient
    ga = np.empty(n)           # a_g at the first row of each tie group (0 elsewhere)
    gb = np.empty(n if efron else 0)          # Efron b_g at the first row of each group
    gc = np.empty(n if want_contrib else 0)   # per-event share of log R at each group start
    for i in range(n):
        ga[i] = eta[i] - shift
    _exp_nonpos(ga, r, gb if efron else np.empty(n))   # ga, gb: workspace until the pass below
    for i in range(n):
        r[i] *= w_s[i]
    ll = 0.0
    R = 0.0
    Rd = 0.0
    W = 0.0
    m = 0
    Rentry = 0.0
    P = 1.0        # product of the unit-weight risk-set totals, times 2**E2
    E2 = 0
    n_prod = 0
    ep = n - 1
    for i in range(n - 1, -1, -1):
        s = s_s[i]
        if i == n - 1 or s_s[i + 1] != s:  # last row of a stratum: restart the sums
            R = 0.0
            Rentry = 0.0
            if use_entry:
                while ep >= 0 and es_s[ep] > s:
                    ep -= 1
        ri = r[i]
        R += ri
        # branch-free event bookkeeping (events are ~random along the sorted rows)
        di = 1.0 if d_s[i] > 0 else 0.0
        wi = w_s[i] * di
        ll += wi * eta[i]
        Rd += di * ri
        W += wi
        m += 1 if d_s[i] > 0 else 0
        if gstart[i] == 0:
            continue
        # i is the first row of its tie group: the whole group is in R now
        if m == 0:
            ga[i] = 0.0
            if efron:
                gb[i] = 0.0
            continue
        t = t_s[i]
        if use_entry:
            while ep >= 0 and es_s[ep] == s and e_s[ep] >= t:
                Rentry += r[eorder[ep]]
                ep -= 1
        Rrisk = R - Rentry
        if efron and m > 1:
            wmean = W / m
            a = 0.0
            b = 0.0
            lsum = 0.0
            for kk in range(m):
                f = kk / m
                den = Rrisk - f * Rd
                lsum += np.log(den)
                a += 1.0 / den
                b += f / den
            lsum += m * shift
            ll -= wmean * lsum
            ga[i] = wmean * a
            gb[i] = wmean * b
            if want_contrib:
                gc[i] = wmean * lsum / m
        elif W == 1.0 and not want_contrib and 1e-100 < Rrisk < 1e100:
            # unit-weight term: fold log R into a running product (one log per call instead
            # of one per event time); P is renormalised by exact powers of two, so it neither
            # overflows nor loses more than ~1 ulp per factor (|error| ~ 1e-16 per event)
            P *= Rrisk
            n_prod += 1
            if P > _TWO_500:
                P *= _TWO_M500
                E2 += 500
            elif P < _TWO_M500:
                P *= _TWO_500
                E2 -= 500
            ga[i] = 1.0 / Rrisk
            if efron:
                gb[i] = 0.0
        else:
            lr = np.log(Rrisk) + shift
            ll -= W * lr
            ga[i] = W / Rrisk
            if efron:
                gb[i] = 0.0
            if want_contrib:   # Efron: the group's mean-weight share; Breslow: log R
                gc[i] = W * lr if efron else lr
        Rd = 0.0
        W = 0.0
        m = 0
    ll -= np.log(P) + E2 * _LN2 + n_prod * shift
    # forward pass: A = cumulative a_g of the stratum (own group included); grad in place of r
    contrib = np.zeros(n if want_contrib else 0)
    acc = 0.0
    cb = 0.0
    cc = 0.0
    for i in range(n):
        if i == 0 or s_s[i] != s_s[i - 1]:
            acc = 0.0
        if gstart[i] != 0:
            acc += ga[i]
            if efron:
                cb = gb[i]
            if want_contrib:
                cc = gc[i]
        ri = r[i]
        di = 1.0 if d_s[i] > 0 else 0.0
        g = di * (w_s[i] + ri * cb) - ri * acc     # cb = 0 for Breslow
        if want_contrib and d_s[i] > 0:
            if efron:      # the group's log-denominator shared equally by its events
                contrib[i] = w_s[i] * eta[i] - cc
            else:
                contrib[i] = w_s[i] * (eta[i] - cc)
        r[i] = g
    if use_entry:
        # add r_i * A(entry_i): A over groups with time <= entry_i in the same stratum
        qq = 0
        acc = 0.0
        curs = -1
        for p in range(n):
            s = es_s[p]
            if p == 0 or s != curs:
                curs = s
                acc = 0.0
                while qq < n and s_s[qq] < s:
                    qq += 1
            while qq < n and s_s[qq] == s and t_s[qq] <= e_s[p]:
                if gstart[qq] != 0:
                    acc += ga[qq]
                qq += 1
            j = eorder[p]
            r[j] += w_s[j] * np.exp(eta[j] - shift) * acc
    return ll, r, contrib


def cox_partial_loglik(eta, structure: dict, *, ties: str = "efron", use_entry: bool | None = None,
                       contributions: bool = False):
    """Cox partial log-likelihood at linear predictor ``eta`` (numpy entry point).

    Parameters
    ----------
    eta : array, shape (n,)
        Linear predictor in the original row order.
    structure : dict
        From :func:`cox_risk_structure`.
    ties : {"efron", "breslow"}
    use_entry : bool, optional
        Apply left truncation (default: whenever any entry time is > 0).
    contributions : bool
        Also return the per-subject contributions (non-zero for subjects with an event; they
        sum to the log-likelihood).

    Returns
    -------
    loglik, grad (, contributions)

    Examples
    --------
    >>> import numpy as np
    >>> st = cox_risk_structure([1, 1, 6, 6, 8, 9], [1, 0, 1, 1, 0, 1])
    >>> b = np.log(1.5 + np.sqrt(33) / 2)
    >>> ll, g = cox_partial_loglik(b * np.array([1, 1, 1, 0, 0, 0.]), st, ties="breslow")
    >>> bool(abs(g @ np.array([1, 1, 1, 0, 0, 0.])) < 1e-10)
    True
    """
    _check_ties(ties)
    if use_entry is None:
        use_entry = bool(np.any(structure["entry_sorted"] > 0))
    ll, grad, contrib = _cox_kernel(np.ascontiguousarray(eta, dtype=float),
                                    *(structure[k] for k in RISK_KEYS),
                                    ties == "efron", use_entry, contributions, False)
    return (ll, grad, contrib) if contributions else (ll, grad)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cox_kernel(eta, order, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s, efron, use_entry,
                want_contrib, presorted):
    """:func:`_cox_kernel_sorted` for ``eta`` in the original row order (gather, then scatter).

    With ``presorted`` the rows already are in (stratum, time) order and ``order`` is ignored.
    """
    if presorted:
        return _cox_kernel_sorted(eta, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s, efron,
                                  use_entry, want_contrib)
    n = eta.shape[0]
    eta_s = np.empty(n)
    for q in range(n):
        eta_s[q] = eta[order[q]]
    ll, g_s, c_s = _cox_kernel_sorted(eta_s, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s,
                                      efron, use_entry, want_contrib)
    grad = np.empty(n)
    for q in range(n):
        grad[order[q]] = g_s[q]
    contrib = np.empty(c_s.shape[0])
    for q in range(c_s.shape[0]):
        contrib[order[q]] = c_s[q]
    return ll, grad, contrib


def _check_ties(ties: str) -> None:
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow'; got {ties!r}.")


def cox_loglik_terms(eta_draws: np.ndarray, structure: dict, *, ties: str = "efron",
                     use_entry: bool | None = None) -> np.ndarray:
    """Per-subject partial-likelihood contributions for each row of ``eta_draws`` (draws x n)."""
    eta_draws = np.asarray(eta_draws, float)
    out = np.empty_like(eta_draws)
    for k in range(eta_draws.shape[0]):
        out[k] = cox_partial_loglik(eta_draws[k], structure, ties=ties, use_entry=use_entry,
                                    contributions=True)[2]
    return out


# ---------------------------------------------------------------------------------------------
# The PyTensor Op
# ---------------------------------------------------------------------------------------------
class _CoxLogLikOp(Op):
    """What both Cox Ops share: outputs (log-likelihood, its gradient with respect to the first
    input); every other input is data, disconnected from the gradient."""

    def infer_shape(self, node, shapes):
        return [(), shapes[0]]

    def connection_pattern(self, node):
        return [[True, True]] + [[False, False]] * (len(node.inputs) - 1)

    def pullback(self, inputs, outputs, cotangents):
        g_ll, g_grad = cotangents
        if not isinstance(g_grad.type, DisconnectedType):
            raise NotImplementedError(f"{type(self).__name__}: second derivatives are not implemented.")
        return [g_ll * outputs[1]] + [DisconnectedType()() for _ in inputs[1:]]


class CoxPartialLogLik(_CoxLogLikOp):
    """Cox partial log-likelihood Op: inputs ``eta`` then the arrays of :data:`RISK_KEYS`.

    Outputs the scalar log-likelihood and its gradient with respect to ``eta`` (the gradient
    output is what :meth:`pullback` uses, so value and gradient come from one O(n) pass).
    """

    __props__ = ("ties", "use_entry", "presorted")

    def __init__(self, ties: str = "efron", use_entry: bool = False, presorted: bool = False):
        _check_ties(ties)
        self.ties = ties
        self.use_entry = bool(use_entry)
        self.presorted = bool(presorted)
        super().__init__()

    def make_node(self, eta, order, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s):
        eta = pt.as_tensor_variable(eta)
        order, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s = _risk_inputs(
            order, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s)
        eta = pt.cast(eta, "float64")
        inputs = [eta, order, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s]
        return Apply(self, inputs, [pt.dscalar(), pt.dvector()])

    def perform(self, node, inputs, output_storage):
        ll, grad, _ = _cox_kernel(*inputs, self.ties == "efron", self.use_entry, False,
                                  self.presorted)
        output_storage[0][0] = np.asarray(ll, dtype=np.float64)
        output_storage[1][0] = grad


def _risk_inputs(order, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s):
    """Risk-structure tensors: integers keep their integer dtype (``pm.Data`` stores int32; a
    cast would copy five n-arrays per call), floats become float64."""
    def as_int(x):
        x = pt.as_tensor_variable(x)
        return x if x.dtype in ("int32", "int64") else pt.cast(x, "int64")

    def as_flt(x):
        x = pt.as_tensor_variable(x)
        return x if x.dtype == "float64" else pt.cast(x, "float64")

    return (as_int(order), as_flt(t_s), as_flt(d_s), as_flt(w_s), as_int(s_s), as_int(gstart),
            as_int(eorder), as_flt(e_s), as_int(es_s))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cox_kernel_x(beta, X, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s, efron, use_entry):
    """Fused ``eta = X beta``, partial log-likelihood and ``X' dll/deta`` (rows presorted).

    Two streaming passes over ``X`` (row-major, so each pass reads it once) and no BLAS call,
    no n x p temporary: the only O(n) work arrays are ``eta`` and the kernel's two.
    """
    n, p = X.shape
    eta = np.empty(n)
    for i in range(n):
        acc = 0.0
        for k in range(p):
            acc += X[i, k] * beta[k]
        eta[i] = acc
    ll, g, _ = _cox_kernel_sorted(eta, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s, efron,
                                  use_entry, False)
    gb = np.zeros(p)
    for i in range(n):
        gi = g[i]
        for k in range(p):
            gb[k] += X[i, k] * gi
    return ll, gb


class CoxPartialLogLikX(_CoxLogLikOp):
    """Fused Cox partial log-likelihood of ``eta = X @ beta`` for rows presorted by (stratum,
    time): inputs ``beta``, ``X`` (data: no gradient), then the arrays of :data:`RISK_KEYS`
    (``order`` is not used). Outputs the log-likelihood and its gradient with respect to
    ``beta``, so one call gives both and nutpie runs it as a single numba function.
    """

    __props__ = ("ties", "use_entry")

    def __init__(self, ties: str = "efron", use_entry: bool = False):
        _check_ties(ties)
        self.ties = ties
        self.use_entry = bool(use_entry)
        super().__init__()

    def make_node(self, beta, X, order, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s):
        beta = pt.cast(pt.as_tensor_variable(beta), "float64")
        X = pt.as_tensor_variable(X)
        X = X if X.dtype == "float64" else pt.cast(X, "float64")
        risk = _risk_inputs(order, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s)
        return Apply(self, [beta, X, *risk], [pt.dscalar(), pt.dvector()])

    def perform(self, node, inputs, output_storage):
        beta, X, _order, *risk = inputs
        ll, gb = _cox_kernel_x(beta, np.ascontiguousarray(X), *risk, self.ties == "efron",
                               self.use_entry)
        output_storage[0][0] = np.asarray(ll, dtype=np.float64)
        output_storage[1][0] = gb


def _kernel_salt() -> int:
    """Salt of PyTensor's on-disk numba cache key: changes whenever the kernel's source does."""
    import hashlib
    import inspect

    try:
        src = "".join(inspect.getsource(f) for f in (
            _exp_nonpos.py_func, _cox_kernel.py_func, _cox_kernel_sorted.py_func,
            _cox_kernel_x.py_func, _funcify_source_marker))
    except (OSError, TypeError):  # pragma: no cover - source unavailable (frozen install)
        return 3
    return int(hashlib.sha256(src.encode()).hexdigest()[:12], 16)


def _funcify_source_marker():  # the wrapper below is part of the cached code: keep in sync
    return "cox_partial_loglik_numba error_model=numpy presorted v4"


_NUMBA_KERNEL_VERSION = _kernel_salt()

try:  # numba implementation for nutpie / the numba backend
    from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

    @register_funcify_default_op_cache_key(CoxPartialLogLik)
    def _numba_funcify_cox(op, node=None, **kwargs):
        efron = op.ties == "efron"
        use_entry = op.use_entry
        presorted = op.presorted

        @numba.njit(error_model="numpy")
        def cox_partial_loglik_numba(eta, order, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s):
            ll, grad, _ = _cox_kernel(eta, order, t_s, d_s, w_s, s_s, gstart, eorder, e_s, es_s,
                                      efron, use_entry, False, presorted)
            return np.asarray(ll), grad

        return cox_partial_loglik_numba, _NUMBA_KERNEL_VERSION

    @register_funcify_default_op_cache_key(CoxPartialLogLikX)
    def _numba_funcify_cox_x(op, node=None, **kwargs):
        efron = op.ties == "efron"
        use_entry = op.use_entry

        @numba.njit(error_model="numpy")
        def cox_partial_loglik_x_numba(beta, X, order, t_s, d_s, w_s, s_s, gstart, eorder, e_s,
                                       es_s):
            ll, gb = _cox_kernel_x(beta, np.ascontiguousarray(X), t_s, d_s, w_s, s_s, gstart,
                                   eorder, e_s, es_s, efron, use_entry)
            return np.asarray(ll), gb

        return cox_partial_loglik_x_numba, _NUMBA_KERNEL_VERSION
except ImportError:  # pragma: no cover - older PyTensor: the object-mode fallback still works
    pass


def cox_partial_loglik_pt(eta, risk: Sequence, *, ties: str, use_entry: bool):
    """The partial log-likelihood as a PyTensor scalar (``risk``: tensors in :data:`RISK_KEYS` order)."""
    return CoxPartialLogLik(ties, use_entry)(eta, *risk)[0]


# ---------------------------------------------------------------------------------------------
# PyMC blocks
# ---------------------------------------------------------------------------------------------
def log_hr_block(priors: dict, covariate_names: Sequence[str], treatment: str | None, *,
                 dim: str = "covariate"):
    """Create the log-HR vector (dim ``dim``) in the model on the context stack.

    The treatment coefficient is the free variable ``treatment_log_hr`` with the
    ``treatment_log_hr`` prior (used exactly, mixture or not); the others are
    ``covariate_log_hr`` (dim ``adjustment``) with the ``log_hr`` prior. ``log_hr`` and
    ``hr = exp(log_hr)`` are deterministics with dim ``dim`` in ``covariate_names`` order.
    """
    names = list(covariate_names)
    parts = []
    others = [c for c in names if c != treatment]
    model = pm.modelcontext(None)
    if treatment is not None:
        trt = create(priors["treatment_log_hr"], "treatment_log_hr")
    if others:
        if "adjustment" not in model.coords:
            model.add_coord("adjustment", others)
        adj = create(priors["log_hr"], "covariate_log_hr", dims="adjustment")
    k = 0
    for c in names:
        if c == treatment:
            parts.append(pt.atleast_1d(trt))
        else:
            parts.append(adj[k : k + 1])
            k += 1
    log_hr = pm.Deterministic("log_hr", pt.concatenate(parts), dims=dim)
    pm.Deterministic("hr", pt.exp(log_hr), dims=dim)
    return log_hr


def random_effects(name: str, sd, dim: str):
    """Non-centred normal random effects: ``name = sd * z``, ``z ~ N(0, 1)`` (dim ``dim``)."""
    z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=dim)
    return pm.Deterministic(name, sd * z, dims=dim)


def random_walk(name: str, sd, dims: tuple[str, str] | str, *, level=None, center: bool = False):
    """Gaussian random walk along the last dim, non-centred.

    ``x_0 = level`` (0 when ``level`` is None), ``x_j = x_{j-1} + sd * z_j``. With
    ``center=True`` the walk is shifted to mean zero along the last dim (used for deviations).
    ``level`` may have the leading dim for a 2-D walk.
    """
    dims = (dims,) if isinstance(dims, str) else tuple(dims)
    model = pm.modelcontext(None)
    J = len(model.coords[dims[-1]])
    if J == 1:
        lead = tuple(len(model.coords[d]) for d in dims[:-1])
        steps = pt.zeros((*lead, 1))
    else:
        if f"{dims[-1]}_step" not in model.coords:
            model.add_coord(f"{dims[-1]}_step", list(model.coords[dims[-1]])[1:])
        z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=(*dims[:-1], f"{dims[-1]}_step"))
        steps = pt.concatenate([pt.zeros((*z.shape[:-1], 1)), pt.cumsum(sd * z, axis=-1)], axis=-1)
    if center:
        steps = steps - steps.mean(axis=-1, keepdims=True)
    if level is not None:
        steps = steps + (level[..., None] if len(dims) > 1 else level)
    return pm.Deterministic(name, steps, dims=dims)


# ---------------------------------------------------------------------------------------------
# Piecewise-exponential helpers
# ---------------------------------------------------------------------------------------------
def default_cut_points(time, event, n_intervals: int) -> np.ndarray:
    """Interior cut points at event-time quantiles (``n_intervals - 1`` distinct values)."""
    t_ev = np.sort(np.asarray(time, float)[np.asarray(event) > 0])
    if n_intervals < 1:
        raise ValueError(f"n_intervals must be >= 1; got {n_intervals}.")
    if n_intervals == 1 or t_ev.size < 2:
        return np.array([], float)
    q = np.quantile(t_ev, np.arange(1, n_intervals) / n_intervals)
    cuts = np.unique(q)
    cuts = cuts[(cuts > 0) & (cuts < np.max(time))]
    return cuts


def piecewise_exposure(time, cut_points, entry=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-subject exposure in each interval and the interval of the exit time.

    Intervals are ``(0, c_1], (c_1, c_2], ..., (c_{J-1}, inf)``. Exposure ``E[i, j]`` is the
    length of ``(entry_i, time_i]`` inside interval ``j``.

    Returns
    -------
    exposure : ndarray (n, J)
    interval : ndarray of int (n,)
    """
    time = np.asarray(time, float)
    entry = np.zeros_like(time) if entry is None else np.asarray(entry, float)
    cuts = np.asarray(cut_points, float)
    lo = np.concatenate([[0.0], cuts])
    hi = np.concatenate([cuts, [np.inf]])
    exposure = np.clip(np.minimum(time[:, None], hi) - np.maximum(entry[:, None], lo), 0.0, None)
    interval = np.searchsorted(cuts, time, side="left").astype(np.int64)
    return exposure, interval
