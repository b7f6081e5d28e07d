"""Execution engine for many independent simulations (used by :mod:`bayes_osteo.simulate`).

- **Seeds**: simulation ``i`` gets ``np.random.SeedSequence(random_seed).spawn(n_sims)[i]``; its
  result depends on nothing else, so a seed gives the same table whatever the number of workers,
  the chunking or the executor (in-process, process pool, Dask).
- **Executors**: ``client=None`` runs on a local ``concurrent.futures`` process pool started with
  ``spawn`` (``n_jobs`` workers; ``n_jobs=1`` runs in this process); a
  ``dask.distributed.Client`` (or a scheduler address) sends chunks of simulations to its
  workers. The problem travels as a cloudpickle payload, so closures and locally defined model
  factories work with both.
- **Compile once**: each worker process keeps a cache (:func:`cached`) of compiled models keyed by
  model kind, options and data shapes; a problem asks it for its compiled model and then only
  swaps in new data (``nutpie``'s ``with_data``). PyTensor's C cache (``compiledir``) is shared by
  the workers and guarded by PyTensor's own file lock, which serialises concurrent compilations.
- **Progress**: a ``rich`` progress bar over finished simulations (``progress=False`` to silence).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Protocol

import cloudpickle
import numpy as np
import pandas as pd

__all__ = ["Problem", "run", "cached", "clear_cache", "cache_info", "NutpieFit", "LaplaceFit", "seed_int"]

_CACHE: dict[Any, Any] = {}
_CACHE_LOCK = threading.RLock()
_STATS = {"hits": 0, "misses": 0}
_PROBLEMS: dict[str, Any] = {}

#: Environment for spawned workers: one BLAS/OpenMP thread each (the pool provides parallelism).
_WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Problem(Protocol):
    """One kind of simulation: ``run_one(seed)`` returns a flat dict of numbers for one replicate."""

    def run_one(self, seed: np.random.SeedSequence) -> dict[str, float]: ...


def cached(key: Any, make: Callable[[], Any]) -> Any:
    """Per-process cache: return ``_CACHE[key]``, calling ``make()`` once to fill it."""
    with _CACHE_LOCK:
        if key in _CACHE:
            _STATS["hits"] += 1
            return _CACHE[key]
        _STATS["misses"] += 1
        val = make()
        _CACHE[key] = val
        return val


def clear_cache() -> None:
    """Forget the compiled models of this process (the benchmark uses it to time cold starts)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _PROBLEMS.clear()
        _STATS.update(hits=0, misses=0)


def cache_info() -> dict[str, int]:
    """Hits, misses and size of this process's compiled-model cache."""
    with _CACHE_LOCK:
        return {**_STATS, "size": len(_CACHE)}


def seed_int(seed: np.random.SeedSequence, bits: int = 63) -> int:
    """A non-negative integer seed (for samplers that take an int) derived from a SeedSequence."""
    return int(seed.generate_state(1, np.uint64)[0] >> np.uint64(64 - bits))


def _load(payload: bytes) -> Any:
    key = hashlib.sha256(payload).hexdigest()
    with _CACHE_LOCK:
        if key not in _PROBLEMS:
            _PROBLEMS[key] = cloudpickle.loads(payload)
        return _PROBLEMS[key]


def _run_chunk(payload: bytes, items: list[tuple[Any, int, np.random.SeedSequence]]) -> list[tuple[Any, dict]]:
    """Worker entry point: run the simulations ``items`` = (key, problem index, seed)."""
    problems = _load(payload)
    out = []
    for key, k, seed in items:
        try:
            res = problems[k].run_one(seed)
        except Exception as err:  # name the replicate so a failure can be reproduced
            raise RuntimeError(f"simulation {key} (seed entropy {seed.entropy}, spawn_key "
                               f"{seed.spawn_key}) failed: {type(err).__name__}: {err}") from err
        out.append((key, dict(res)))
    return out


def _chunks(items: list, n_workers: int, chunk_size: int | None) -> list[list]:
    if chunk_size is None:
        # ~8 chunks per worker: balances load and gives a progress bar that moves, while the
        # per-task overhead (a few ms) stays small next to a fit.
        chunk_size = max(1, math.ceil(len(items) / (8 * max(1, n_workers))))
    return [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]


@contextlib.contextmanager
def _env(updates: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in updates}
    os.environ.update({k: v for k, v in updates.items() if k not in os.environ})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Progress:
    def __init__(self, total: int, desc: str, enabled: bool):
        self._bar = None
        if enabled:
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )
            except ImportError:  # pragma: no cover - rich is a dependency of several of ours
                return
            self._bar = Progress("[progress.description]{task.description}", BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
            self._task = self._bar.add_task(desc, total=total)
            self._bar.start()

    def advance(self, k: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, k)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _n_workers(client: Any, n_jobs: int | None) -> int:
    if client is not None:
        return max(1, sum(client.nthreads().values()))
    if n_jobs is None:
        return os.cpu_count() or 1
    if int(n_jobs) < 1:
        raise ValueError(f"n_jobs must be >= 1 (or None for one worker per CPU); got {n_jobs}.")
    return int(n_jobs)


def run(problem: Problem | list[Problem], n_sims: int, random_seed: Any = None, *, client: Any = None,
        n_jobs: int | None = None, chunk_size: int | None = None, progress: bool = True,
        desc: str = "simulations") -> pd.DataFrame:
    """Run ``problem.run_one`` for ``n_sims`` spawned seeds; one row per simulation.

    Parameters
    ----------
    problem : object with ``run_one(seed) -> dict``, or a list of them (scenarios)
        Must be cloudpickle-able. With a list, scenario ``k`` uses the seeds
        ``SeedSequence(random_seed).spawn(len(problem))[k].spawn(n_sims)`` and the result has a
        ``(scenario, sim)`` index; with one problem the seeds are
        ``SeedSequence(random_seed).spawn(n_sims)`` and the index is ``sim``.
    n_sims : int
        Number of simulations (per scenario).
    random_seed : int, optional
        Root of the per-simulation seeds (None: fresh entropy, recorded in ``attrs``).
    client : dask.distributed.Client or str, optional
        Run on this Dask cluster (a string is a scheduler address; a client is opened and closed).
    n_jobs : int, optional
        Local worker processes when ``client`` is None (default: one per CPU; 1 = this process).
    chunk_size : int, optional
        Simulations per task (default about ``total / (8 * workers)``); does not affect results.
    progress : bool
        Show a progress bar.
    """
    n_sims = int(n_sims)
    if n_sims < 1:
        raise ValueError(f"n_sims must be >= 1; got {n_sims}.")
    root = np.random.SeedSequence(random_seed)
    many = isinstance(problem, list | tuple)
    problems = list(problem) if many else [problem]
    if many:
        items = [((k, i), k, s) for k, ss in enumerate(root.spawn(len(problems)))
                 for i, s in enumerate(ss.spawn(n_sims))]
    else:
        items = [(i, 0, s) for i, s in enumerate(root.spawn(n_sims))]
    payload = cloudpickle.dumps(problems)
    own_client = None
    if isinstance(client, str):
        from distributed import Client

        client = own_client = Client(client)
    try:
        n_workers = _n_workers(client, n_jobs)
        chunks = _chunks(items, n_workers, chunk_size)
        bar = _Progress(len(items), desc, progress)
        results: list[tuple[Any, dict]] = []
        try:
            if client is not None:
                from distributed import as_completed as dask_completed

                [remote] = client.scatter([payload], broadcast=True, hash=False)
                futures = client.map(_run_chunk, [remote] * len(chunks), chunks, pure=False)
                for fut in dask_completed(futures):
                    part = fut.result()
                    results.extend(part)
                    bar.advance(len(part))
            elif n_workers == 1:
                for chunk in chunks:
                    part = _run_chunk(payload, chunk)
                    results.extend(part)
                    bar.advance(len(part))
            else:
                ctx = multiprocessing.get_context("spawn")
                with _env(_WORKER_ENV), ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as ex:
                    futures = [ex.submit(_run_chunk, payload, chunk) for chunk in chunks]
                    for fut in as_completed(futures):
                        part = fut.result()
                        results.extend(part)
                        bar.advance(len(part))
        finally:
            bar.close()
    finally:
        if own_client is not None:
            own_client.close()
    results.sort(key=lambda r: r[0])
    keys = [k for k, _ in results]
    index = (pd.MultiIndex.from_tuples(keys, names=["scenario", "sim"]) if many
             else pd.Index(keys, name="sim"))
    df = pd.DataFrame.from_records([r for _, r in results], index=index)
    df.attrs["random_seed"] = random_seed if random_seed is not None else int(root.entropy)
    df.attrs["n_sims"] = n_sims
    return df


# -- compile-once NUTS ------------------------------------------------------------------------------

class NutpieFit:
    """A PyMC model compiled once by nutpie (numba) and sampled for new data of the same shapes.

    ``sample(data, seed=...)`` swaps the ``pm.Data`` containers named in ``data`` with
    ``CompiledModel.with_data`` (no recompilation) and reads the draws straight from nutpie's
    Arrow trace, skipping the DataTree conversion (which costs more than a small fit).
    """

    def __init__(self, model: Any, *, var_names: list[str] | None = None):
        import nutpie

        self.compiled = nutpie.compile_pymc_model(model, var_names=var_names)
        #: pm.Data names the compiled functions read (containers used only by unrequested
        #: deterministics are pruned by the compiler and are ignored here).
        self.data_names = {v.name for v in self.compiled.shared_var_keys}

    def sample(self, data: Mapping[str, np.ndarray] | None = None, *, seed: int, draws: int = 500,
               tune: int = 500, chains: int = 1, **kwargs: Any) -> tuple[dict[str, np.ndarray], int]:
        """Posterior draws ``{name: array (chains*draws, *shape)}`` and the number of divergences."""
        import nutpie
        import pyarrow

        data = {k: v for k, v in (data or {}).items() if k in self.data_names}
        compiled = self.compiled.with_data(**data) if data else self.compiled
        raw = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=1, seed=seed,
                            progress_bar=False, return_raw_trace=True, save_warmup=False, **kwargs)
        draw_batches, stat_batches = raw.get_arrow_trace()
        out: dict[str, list[np.ndarray]] = {}
        n_div = 0
        for db, sb in zip(draw_batches, stat_batches, strict=True):
            tuning = np.asarray(pyarrow.array(sb.column("tuning")).to_numpy(zero_copy_only=False), bool)
            keep = ~tuning
            div = np.asarray(pyarrow.array(sb.column("diverging")).to_numpy(zero_copy_only=False), bool)
            n_div += int(div[keep].sum())
            for name in db.column_names:
                col = db.column(name)
                meta = col.field.metadata or {}
                shape = [int(s) for s in meta.get(b"shape", b"").decode().split(",") if s]
                arr = pyarrow.array(col)
                if hasattr(arr, "flatten"):
                    arr = arr.flatten()
                vals = np.asarray(arr.to_numpy(zero_copy_only=False), float).reshape(-1, *shape)
                out.setdefault(name, []).append(vals[keep])
        return {k: np.concatenate(v, axis=0) for k, v in out.items()}, n_div


# -- compile-once normal approximation at the mode -------------------------------------------------

class LaplaceFit:
    """Normal approximation at the posterior mode, compiled once (PyTensor) and reused.

    ``fit(data)`` sets the model's ``pm.Data`` containers, maximises the log posterior on the
    unconstrained scale (BFGS with the analytic gradient) and takes the covariance from a
    central finite-difference Hessian of that gradient. It is a cheap approximation (a
    Wald-type interval under a vague prior), not a posterior: results from it say so.
    """

    def __init__(self, model: Any):
        from pymc.blocking import DictToArrayBijection

        self.model = model
        point = model.initial_point(0)
        self._fn = model.logp_dlogp_function(ravel_inputs=True, initial_point=point)
        self._fn.set_extra_values(point)
        grad_vars = model.continuous_value_vars
        raveled = DictToArrayBijection.map({v.name: point[v.name] for v in grad_vars})
        self.x0 = np.asarray(raveled.data, float)
        self.slices: dict[str, tuple[slice, tuple[int, ...]]] = {}
        start = 0
        for name, shape, size, _dtype in raveled.point_map_info:
            self.slices[name] = (slice(start, start + size), tuple(shape))
            start += size

    def _set(self, data: Mapping[str, np.ndarray]) -> None:
        for name, val in data.items():
            var = self.model[name]
            var.set_value(np.asarray(val, dtype=var.dtype))

    def fit(self, data: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mode and covariance on the unconstrained (raveled) scale; see :attr:`slices`."""
        from scipy import optimize

        if data:
            self._set(data)

        def neg(x):
            lp, g = self._fn(x)
            return -float(lp), -np.asarray(g, float)

        res = optimize.minimize(neg, self.x0, jac=True, method="BFGS",
                                options={"gtol": 1e-8, "maxiter": 2000})
        x = res.x
        d = x.size
        H = np.empty((d, d))
        for j in range(d):
            h = 1e-5 * max(1.0, abs(x[j]))
            e = np.zeros(d)
            e[j] = h
            H[:, j] = (neg(x + e)[1] - neg(x - e)[1]) / (2 * h)
        H = 0.5 * (H + H.T)
        try:
            cov = np.linalg.inv(H)
        except np.linalg.LinAlgError:
            cov = np.full((d, d), np.nan)
        return x, cov
