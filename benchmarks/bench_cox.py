"""Benchmark: CoxModel fit times (partial likelihood) and piecewise vs the textbook Poisson model.

Workloads (simulated; X ~ N(0, 1), 10 covariates, exponential event times, uniform censoring,
about 60% events):

1. Partial likelihood (Efron), n = 125, 10^4, 10^5: ``CoxModel.fit`` with 4 chains x (1000 tune
   + 1000 draws), wall time including compilation, for PyMC's NUTS and nutpie; plus the cost of
   one log-density + gradient evaluation (the custom Op vs a pure-PyTensor graph of the same
   Breslow likelihood built from a shifted reverse cumulative sum, n = 10^5, numba backend).
2. Piecewise-exponential baseline (10 intervals, 10 covariates), n = 2000: ``CoxModel(...,
   baseline="piecewise")`` (per-subject exposures) vs the textbook PyMC piecewise-Poisson model
   on the episode-split data (one row per subject and interval at risk) with the same priors,
   both with nutpie, 4 chains x (1000 + 1000); ratio of wall times and of gradient costs.

Run alone: ``.venv/bin/python benchmarks/bench_cox.py [--sizes 125 10000 100000] [--quick]``.
Prints Markdown tables and writes them into ``benchmarks/RESULTS.md`` between the ``cox``
markers. The machine has 2 cores shared with other work: timings are wall-clock and noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
from _results import write_section  # noqa: E402  (benchmarks/ is the script's folder)

import bayes_osteo as bo
from bayes_osteo.components import piecewise_exposure, random_walk
from bayes_osteo.priors import create

P = 10


def simulate(n: int, p: int = P, seed: int = 1) -> bo.SurvivalData:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    beta = np.linspace(-0.5, 0.5, p)
    t = rng.exponential(1 / (0.1 * np.exp(X @ beta)))
    c = rng.uniform(2, 20, n)
    df = pd.DataFrame(X, columns=[f"x{k}" for k in range(p)])
    df["t"], df["d"] = np.minimum(t, c), (t <= c).astype(int)
    return bo.SurvivalData.from_frame(df, duration="t", event="d", covariates=list(df.columns[:p]))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _ess_min(dt) -> float:
    return float(bo.summarize.hazard_ratios(dt)["ess_bulk"].min())


def _grad_cost(model: pm.Model, reps: int = 200, repeats: int = 5) -> float:
    """Seconds per log-density + gradient evaluation (numba backend, compiled once): the best of
    ``repeats`` means over ``reps`` calls (the minimum is the estimate least disturbed by the
    other jobs on a shared machine, as in :mod:`timeit`)."""
    vals = model.value_vars
    logp = model.logp()
    f = pytensor.function(vals, [logp, *pytensor.grad(logp, vals)], mode="NUMBA")
    ip = model.initial_point()
    args = [ip[v.name] for v in vals]
    f(*args)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(reps):
            f(*args)
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def _nutpie_timed(model: pm.Model, draws: int, tune: int, chains: int):
    """nutpie compile seconds, sampling seconds, the trace and the number of gradient evaluations."""
    import nutpie

    t_c, compiled = _timed(lambda: nutpie.compile_pymc_model(model))
    t_s, tr = _timed(lambda: nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=1,
                                           progress_bar=False))
    grads = int(tr["sample_stats"]["n_steps"].sum()) + int(tr["warmup_sample_stats"]["n_steps"].sum())
    return t_c, t_s, tr, grads


def naive_breslow_model(sd: bo.SurvivalData) -> pm.Model:
    """Breslow partial likelihood as a plain PyTensor graph (no ties in the data)."""
    order = np.argsort(sd.time)
    X, d = sd.X[order], sd.event[order].astype(float)
    with pm.Model(coords={"covariate": sd.covariate_names}) as m:
        beta = pm.Normal("log_hr", 0, 2.5, dims="covariate")
        eta = pt.dot(pm.Data("X", X), beta)
        mx = pt.max(eta)
        risk = pt.cumsum(pt.exp(eta - mx)[::-1])[::-1]   # reverse cumulative sum, shifted
        pm.Potential("ll", pt.sum(pm.Data("d", d) * (eta - pt.log(risk) - mx)))
    return m


def bench_partial(sizes, samplers, draws, tune, chains):
    rows = []
    for n in sizes:
        sd = simulate(n)
        for s in samplers:
            if s == "pymc" and n > 10_000:
                continue  # PyMC's Python NUTS loop: minutes at 10^5; nutpie is the default there
            cox = bo.CoxModel(sd)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if s == "nutpie":   # compile and sampling timed separately (what fit() runs)
                    t_c, t_s, dt, grads = _nutpie_timed(cox.model, draws, tune, chains)
                    sec = t_c + t_s
                else:
                    sec, dt = _timed(lambda cox=cox, s=s: cox.fit(draws=draws, tune=tune, chains=chains,
                                                                  random_seed=1, progressbar=False,
                                                                  nuts_sampler=s, check=False))
                    t_c = t_s = grads = None
            rows.append({"n": n, "p": P, "sampler": s, "chains x draws": f"{chains} x {draws}",
                         "fit wall s (incl. compile)": round(sec, 1),
                         "compile s": "-" if t_c is None else round(t_c, 1),
                         "sampling s": "-" if t_s is None else round(t_s, 1),
                         "gradients (all chains)": "-" if grads is None else grads,
                         "min bulk ESS": round(_ess_min(dt)),
                         "grad eval ms": round(1e3 * _grad_cost(cox.model), 3)})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def fresh_process_compile(n: int) -> float:
    """Seconds to compile the n-row partial model with nutpie in a NEW Python process: the
    table's compile column is measured after the smaller fits, so numba's in-process caches of
    its own library code are warm there (the on-disk caches are warm in both)."""
    import subprocess
    import sys

    code = ("import sys, time, warnings; warnings.simplefilter('ignore'); "
            f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            "import nutpie; from bench_cox import simulate; import bayes_osteo as bo; "
            f"m = bo.CoxModel(simulate({n})).model; t0 = time.perf_counter(); "
            "nutpie.compile_pymc_model(m); print(time.perf_counter() - t0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_op_vs_graph(n: int = 100_000):
    sd = simulate(n, seed=3)
    op_ms = 1e3 * _grad_cost(bo.CoxModel(sd, ties="breslow").model)
    graph_ms = 1e3 * _grad_cost(naive_breslow_model(sd))
    return pd.DataFrame([{"n": n, "p": P, "custom Op (ms / logp+grad)": round(op_ms, 3),
                          "PyTensor graph (ms / logp+grad)": round(graph_ms, 3),
                          "ratio": round(graph_ms / op_ms, 2)}])


def textbook_piecewise_model(sd: bo.SurvivalData, cuts: np.ndarray, priors: dict) -> pm.Model:
    """The textbook PyMC piecewise-exponential model: episode-split rows, Poisson likelihood."""
    E, j = piecewise_exposure(sd.time, cuts)
    ii, kk = np.nonzero(E > 0)
    y = ((j[ii] == kk) & (sd.event[ii] == 1)).astype(int)
    Xc = sd.X - sd.X.mean(0)
    J = len(cuts) + 1
    with pm.Model(coords={"covariate": sd.covariate_names, "interval": list(range(J))}) as m:
        beta = create(priors["log_hr"], "log_hr", dims="covariate")
        level = create(priors["log_baseline_level"], "log_baseline_level")
        smooth = create(priors["smoothing_sd"], "smoothing_sd")
        lh = random_walk("log_baseline_hazard", smooth, "interval", level=level)
        Xl = pm.Data("X_long", Xc[ii])
        mu = pt.exp(lh[pm.Data("interval_long", kk)] + pt.dot(Xl, beta)) * pm.Data("exposure_long", E[ii, kk])
        pm.Poisson("y", mu=mu, observed=y)
    return m


def bench_piecewise(n, draws, tune, chains):
    sd = simulate(n, seed=2)
    cox = bo.CoxModel(sd, baseline="piecewise", n_intervals=10)
    text = textbook_piecewise_model(sd, cox.cut_points, cox.priors)
    rows_long = int((piecewise_exposure(sd.time, cox.cut_points)[0] > 0).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c_ours, s_ours, dt_ours, _ = _nutpie_timed(cox.model, draws, tune, chains)
        c_text, s_text, dt_text, _ = _nutpie_timed(text, draws, tune, chains)
        t_ours, t_text = c_ours + s_ours, c_text + s_text
    g_ours, g_text = _grad_cost(cox.model), _grad_cost(text)
    diff = float(np.max(np.abs(dt_ours["posterior"]["log_hr"].mean(("chain", "draw")).values
                               - dt_text["posterior"]["log_hr"].mean(("chain", "draw")).values)))
    return pd.DataFrame([{
        "n": n, "p": P, "intervals": len(cox.cut_points) + 1, "episode rows": rows_long,
        "exposure model s (compile + sampling)": f"{t_ours:.1f} ({c_ours:.1f} + {s_ours:.1f})",
        "textbook Poisson s (compile + sampling)": f"{t_text:.1f} ({c_text:.1f} + {s_text:.1f})",
        "wall ratio": round(t_text / t_ours, 2), "sampling ratio": round(s_text / s_ours, 2),
        "grad ms (exposure / textbook)": f"{1e3 * g_ours:.3f} / {1e3 * g_text:.3f}",
        "grad ratio": round(g_text / g_ours, 2),
        "max |diff| posterior mean log-HR": round(diff, 4)}])


def _md(df: pd.DataFrame) -> str:
    """Markdown table (no tabulate dependency)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def main(sizes=(125, 10_000, 100_000), samplers=("pymc", "nutpie"), draws=1000, tune=1000, chains=4,
         piecewise_n=2000) -> str:
    part = bench_partial(sizes, samplers, draws, tune, chains)
    opg = bench_op_vs_graph(max(sizes))
    print(opg, flush=True)
    pw = bench_piecewise(piecewise_n, draws, tune, chains)
    print(pw, flush=True)
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = float("nan")
    env = (f"{platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the end "
           f"(the cores are shared: wall times are upper bounds)")
    verdict = []
    big = part[(part["n"] == 100_000) & (part["sampler"] == "nutpie")]
    if len(big):
        sec = float(big["fit wall s (incl. compile)"].iloc[0])
        t_s = float(big["sampling s"].iloc[0])
        grads = int(big["gradients (all chains)"].iloc[0])
        fresh = fresh_process_compile(100_000)
        verdict.append(f"- Target: n = 10^5, p = 10, 4 x 1000 draws under 60 s on 2 cores: measured "
                       f"{sec:.1f} s ({'met' if sec < 60 else 'NOT met'}) after the smaller fits; "
                       f"in a fresh Python process nutpie's compile takes {fresh:.1f} s, so a first "
                       f"fit there takes about {fresh + t_s:.0f} s "
                       f"({'met' if fresh + t_s < 60 else 'NOT met'}). Sampling: "
                       f"{grads} gradients in {t_s:.1f} s, {2e3 * t_s / grads:.2f} ms per "
                       f"gradient per core with both cores busy (one call alone: "
                       f"{big['grad eval ms'].iloc[0]} ms). Two threads each run a call "
                       "1.0-1.6x slower than one thread alone (measured on different days), even "
                       "on data that fits in cache: the two vCPUs share execution units. The "
                       "fused kernel reads the design as covariates x rows in cache-sized blocks, "
                       "so each p-vector step is a contiguous loop that vectorises; blocks of "
                       "untied unit-weight "
                       "rows (all of them here) replace the per-row sweep by a reverse cumulative "
                       "sum and branch-free loops, and exp evaluates its polynomial by Estrin's "
                       "scheme. Run-to-run spread of the sampling time here: about +-15%.")
    pwr = pw.iloc[0]
    verdict.append(f"- Target: piecewise model >= 5x faster than the textbook model: per gradient "
                   f"{pwr['grad ratio']}x, sampling {pwr['sampling ratio']}x, wall including "
                   f"nutpie's compilation {pwr['wall ratio']}x (at n = {pwr['n']} the fixed "
                   "compile cost dominates our model's wall time).")
    block = "\n\n".join([
        f"Machine: {env}.",
        "\n".join(verdict),
        f"### Partial likelihood (Efron), fit = {chains} chains x ({tune} tune + {draws} draws), compile included\n\n"
        "nutpie rows: `nutpie.compile_pymc_model` (compile s) then `nutpie.sample` (sampling s), as "
        "`CoxModel.fit` runs them; pymc rows: `CoxModel.fit` wall time. `grad eval ms`: one "
        "log-density + gradient call of the numba-compiled model, single thread (best of 5 x 200 "
        "calls).\n\n" + _md(part),
        "### One log-density + gradient: custom Op vs PyTensor graph (Breslow, numba)\n\n" + _md(opg),
        "### Piecewise exponential: per-subject exposures vs textbook episode-split Poisson (nutpie)\n\n"
        + _md(pw),
    ])
    print(block)
    write_section("cox", "Cox models (`benchmarks/bench_cox.py`)", block)
    return block


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[125, 10_000, 100_000])
    ap.add_argument("--samplers", nargs="+", default=["pymc", "nutpie"])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--piecewise-n", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="small run to check the script")
    a = ap.parse_args()
    if a.quick:
        main((125, 2000), ("nutpie",), 200, 200, 2, 300)
    else:
        main(tuple(a.sizes), tuple(a.samplers), a.draws, a.tune, a.chains, a.piecewise_n)
