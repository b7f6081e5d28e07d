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
             "entry_order", "entry_sorted", "entry_stratum_sorted")


# ---------------------------------------------------------------------------------------------
# Risk-set structure (computed once per data set)
# ---------------------------------------------------------------------------------------------
def cox_risk_structure(time, event, weights=None, strata=None, entry=None) -> dict[str, np.ndarray]:
    """Sorted arrays that define the risk sets (the data of :class:`CoxPartialLogLik`).

    All arrays have length ``n``, so a compiled model can take a new data set of the same size.

    Returns
    -------
    dict
        ``order`` (permutation sorting by stratum then time), ``time_sorted``,
        ``event_sorted``, ``weight_sorted``, ``stratum_sorted``, ``entry_order`` (permutation
        sorting by stratum then entry time), ``entry_sorted``, ``entry_stratum_sorted``.
    """
    time = np.asarray(time, float)
    n = time.shape[0]
    event = np.asarray(event, float)
    weights = np.ones(n) if weights is None else np.asarray(weights, float)
    strata = np.zeros(n, np.int64) if strata is None else np.asarray(strata, np.int64)
    entry = np.zeros(n) if entry is None else np.asarray(entry, float)
    order = np.lexsort((time, strata)).astype(np.int64)
    eorder = np.lexsort((entry, strata)).astype(np.int64)
    return {
        "order": order,
        "time_sorted": time[order],
        "event_sorted": event[order],
        "weight_sorted": weights[order],
        "stratum_sorted": strata[order],
        "entry_order": eorder,
        "entry_sorted": entry[eorder],
        "entry_stratum_sorted": strata[eorder],
    }


# ---------------------------------------------------------------------------------------------
# The kernel (numba): value, gradient and per-event contributions in O(n)
# ---------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cox_kernel(eta, order, t_s, d_s, w_s, s_s, eorder, e_s, es_s, efron, use_entry, want_contrib):
    # Few allocations on purpose: at n = 1e5 fresh arrays (page faults, zeroing) cost more
    # than the arithmetic. Work arrays: r (risk weights, sorted), ga (a_g at the first
    # position of each tie group, then reused), gb (Efron b_g at event positions), grad.
    n = eta.shape[0]
    shift = -np.inf
    for i in range(n):
        if eta[i] > shift:
            shift = eta[i]
    r = np.empty(n)
    ll = 0.0
    for q in range(n):
        e = eta[order[q]]
        r[q] = w_s[q] * np.exp(e - shift)
        if d_s[q] > 0:
            ll += w_s[q] * e
    re = np.empty(n if use_entry else 0)
    if use_entry:  # risk weights in entry-sorted order
        grad_tmp = np.empty(n)
        for q in range(n):
            grad_tmp[order[q]] = r[q]
        for p in range(n):
            re[p] = grad_tmp[eorder[p]]
    ga = np.zeros(n)
    gb = np.zeros(n if efron else 0)
    contrib = np.zeros(n if want_contrib else 0)   # per-subject contributions (original order)
    R = 0.0
    Rentry = 0.0
    cur = -1
    first = True
    ep = n - 1
    k = n - 1
    while k >= 0:
        s = s_s[k]
        t = t_s[k]
        if first or s != cur:
            first = False
            cur = s
            R = 0.0
            Rentry = 0.0
            if use_entry:
                while ep >= 0 and es_s[ep] > s:
                    ep -= 1
        j = k
        while j - 1 >= 0 and s_s[j - 1] == s and t_s[j - 1] == t:
            j -= 1
        Rd = 0.0
        W = 0.0
        m = 0
        for q in range(j, k + 1):
            R += r[q]
            if d_s[q] > 0:
                Rd += r[q]
                W += w_s[q]
                m += 1
        if use_entry:
            while ep >= 0 and es_s[ep] == s and e_s[ep] >= t:
                Rentry += re[ep]
                ep -= 1
        if m > 0:
            Rrisk = R - Rentry
            if efron and m > 1:
                wmean = W / m
                a = 0.0
                b = 0.0
                lsum = 0.0
                for kk in range(m):
                    f = kk / m
                    den = Rrisk - f * Rd
                    lsum += np.log(den) + shift
                    a += 1.0 / den
                    b += f / den
                ll -= wmean * lsum
                ga[j] = wmean * a
                share = wmean * lsum / m
                for q in range(j, k + 1):
                    if d_s[q] > 0:
                        gb[q] = wmean * b
                        if want_contrib:
                            contrib[order[q]] = w_s[q] * eta[order[q]] - share
            else:
                lr = np.log(Rrisk) + shift
                ll -= W * lr
                ga[j] = W / Rrisk
                if want_contrib:
                    for q in range(j, k + 1):
                        if d_s[q] > 0:
                            contrib[order[q]] = w_s[q] * (eta[order[q]] - lr)
        k = j - 1
    # forward sweep: A(t) = cumulative a_g over tie groups of the stratum (own group included)
    grad = np.empty(n)
    acc = 0.0
    for q in range(n):
        if q == 0 or s_s[q] != s_s[q - 1]:
            acc = 0.0
        acc += ga[q]
        g = w_s[q] * d_s[q] - r[q] * acc
        if efron and d_s[q] > 0:
            g += r[q] * gb[q]
        grad[order[q]] = g
    if use_entry:
        # add r_i * A(entry_i): A over groups with time <= entry_i in the same stratum.
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
                acc += ga[qq]
                qq += 1
            grad[eorder[p]] += re[p] * acc
    return ll, grad, contrib


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
                                    ties == "efron", use_entry, contributions)
    return (ll, grad, contrib) if contributions else (ll, grad)


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
class CoxPartialLogLik(Op):
    """Cox partial log-likelihood Op: inputs ``eta`` then the arrays of :data:`RISK_KEYS`.

    Outputs the scalar log-likelihood and its gradient with respect to ``eta`` (the gradient
    output is what :meth:`pullback` uses, so value and gradient come from one O(n) pass).
    """

    __props__ = ("ties", "use_entry")

    def __init__(self, ties: str = "efron", use_entry: bool = False):
        _check_ties(ties)
        self.ties = ties
        self.use_entry = bool(use_entry)
        super().__init__()

    def make_node(self, eta, order, t_s, d_s, w_s, s_s, eorder, e_s, es_s):
        eta = pt.as_tensor_variable(eta)
        ints = [pt.as_tensor_variable(x) for x in (order, s_s, eorder, es_s)]
        flts = [pt.as_tensor_variable(x) for x in (t_s, d_s, w_s, e_s)]
        order, s_s, eorder, es_s = (pt.cast(x, "int64") for x in ints)
        t_s, d_s, w_s, e_s = (pt.cast(x, "float64") for x in flts)
        eta = pt.cast(eta, "float64")
        inputs = [eta, order, t_s, d_s, w_s, s_s, eorder, e_s, es_s]
        return Apply(self, inputs, [pt.dscalar(), pt.dvector()])

    def perform(self, node, inputs, output_storage):
        ll, grad, _ = _cox_kernel(*inputs, self.ties == "efron", self.use_entry, False)
        output_storage[0][0] = np.asarray(ll, dtype=np.float64)
        output_storage[1][0] = grad

    def infer_shape(self, node, shapes):
        return [(), shapes[0]]

    def connection_pattern(self, node):
        return [[True, True]] + [[False, False]] * 8

    def pullback(self, inputs, outputs, cotangents):
        g_ll, g_grad = cotangents
        if not isinstance(g_grad.type, DisconnectedType):
            raise NotImplementedError("CoxPartialLogLik: second derivatives are not implemented.")
        out = [g_ll * outputs[1]]
        out += [DisconnectedType()() for _ in range(8)]
        return out


def _kernel_salt() -> int:
    """Salt of PyTensor's on-disk numba cache key: changes whenever the kernel's source does."""
    import hashlib
    import inspect

    try:
        src = inspect.getsource(_cox_kernel.py_func) + inspect.getsource(_funcify_source_marker)
    except (OSError, TypeError):  # pragma: no cover - source unavailable (frozen install)
        return 3
    return int(hashlib.sha256(src.encode()).hexdigest()[:12], 16)


def _funcify_source_marker():  # the wrapper below is part of the cached code: keep in sync
    return "cox_partial_loglik_numba error_model=numpy v3"


_NUMBA_KERNEL_VERSION = _kernel_salt()

try:  # numba implementation for nutpie / the numba backend
    from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

    @register_funcify_default_op_cache_key(CoxPartialLogLik)
    def _numba_funcify_cox(op, node=None, **kwargs):
        efron = op.ties == "efron"
        use_entry = op.use_entry

        @numba.njit(error_model="numpy")
        def cox_partial_loglik_numba(eta, order, t_s, d_s, w_s, s_s, eorder, e_s, es_s):
            ll, grad, _ = _cox_kernel(eta, order, t_s, d_s, w_s, s_s, eorder, e_s, es_s,
                                      efron, use_entry, False)
            return np.asarray(ll), grad

        return cox_partial_loglik_numba, _NUMBA_KERNEL_VERSION
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
