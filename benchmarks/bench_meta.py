"""Benchmark: exact posterior vs NUTS for the random-effects meta-analysis, k = 5, 21, 100.

Workload: simulated log-HRs (mu = -0.5, tau = 0.3, SEs uniform on [0.1, 0.5]); priors
log_hr ~ Normal(0, 2.5), tau ~ HalfNormal(0.5). Timed:

- ``exact_posterior()``: the adaptive 1-D quadrature over tau (median of 5 repeats, cold object);
- ``fit(method="exact")``: the quadrature plus 4 x 1000 i.i.d. draws and the DataTree;
- ``fit(method="nuts")`` with PyMC's NUTS and with nutpie: 4 chains x (1000 tune + 1000 draws),
  wall time including compilation, and bulk ESS per second of tau.

Run alone: ``.venv/bin/python benchmarks/bench_meta.py [--ks 5 21 100]``. Prints a Markdown
table and writes it into ``benchmarks/RESULTS.md`` between the ``meta`` markers.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import numpy as np
from _results import write_section  # noqa: E402  (benchmarks/ is the script's folder)

import bayes_osteo as bo


def _studies(k: int, seed: int = 1) -> bo.StudyEstimates:
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.1, 0.5, k)
    y = rng.normal(-0.5 + 0.3 * rng.standard_normal(k), se)
    return bo.StudyEstimates(y, se)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(ks=(5, 21, 100), samplers=("pymc", "nutpie")) -> str:
    rows = []
    with warnings.catch_warnings():  # warm-up: first-call imports and caches are not the method's cost
        warnings.simplefilter("ignore")
        bo.MetaAnalysis(_studies(5)).fit(method="exact", draws=10, chains=1, random_seed=0)
    for k in ks:
        st = _studies(k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ma = bo.MetaAnalysis(st)
            times = [_timed(lambda st=st: bo.MetaAnalysis(st).exact_posterior())[0] for _ in range(5)]
            t_fit, _ = _timed(lambda ma=ma: ma.fit(method="exact", draws=1000, chains=4, random_seed=1))
            ex = ma.exact_posterior()
            row = {"k": k, "exact_ms": 1000 * statistics.median(times), "exact_fit_ms": 1000 * t_fit,
                   "tau_mean_exact": ex.mean("tau")}
            for s in samplers:
                m2 = bo.MetaAnalysis(st)
                t, dt = _timed(lambda m2=m2, s=s: m2.fit(method="nuts", draws=1000, tune=1000, chains=4,
                                                          random_seed=1, nuts_sampler=s, check=False))
                diag = bo.summarize.diagnostics(dt, ["tau", "log_hr"])
                row[f"{s}_s"] = t
                row[f"{s}_ess_tau_per_s"] = diag.loc["tau", "ess_bulk"] / t
                row[f"{s}_div"] = int(diag.attrs["divergences"])
                row[f"{s}_tau_mean"] = float(dt["posterior"]["tau"].mean())
        rows.append(row)
        print(row, flush=True)
    head = ("| k | exact_posterior() | fit(exact), 4000 draws | " +
            " | ".join(f"NUTS {s} (wall, s) | {s} ESS(tau)/s | {s} divergences" for s in samplers) +
            " | E[tau] exact | " + " | ".join(f"E[tau] {s}" for s in samplers) + " |")
    sep = "|" + "---|" * (3 + 3 * len(samplers) + 1 + len(samplers))
    lines = [head, sep]
    for r in rows:
        cells = [str(r["k"]), f"{r['exact_ms']:.1f} ms", f"{r['exact_fit_ms']:.0f} ms"]
        for s in samplers:
            cells += [f"{r[f'{s}_s']:.1f}", f"{r[f'{s}_ess_tau_per_s']:.0f}", str(r[f"{s}_div"])]
        cells.append(f"{r['tau_mean_exact']:.4f}")
        cells += [f"{r[f'{s}_tau_mean']:.4f}" for s in samplers]
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"\nMachine: {platform.machine()}, {os.cpu_count()} CPUs ({platform.python_version()}); "
            "timings are wall clock on a shared machine (other jobs running), so treat them as "
            "orders of magnitude. NUTS wall time includes model compilation.\n")
    table = "\n".join(lines) + "\n" + note
    print(table)
    _write(table)
    return table


def _write(table: str) -> None:
    write_section("meta", "Meta-analysis: exact vs NUTS (`benchmarks/bench_meta.py`)", table)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 21, 100])
    ap.add_argument("--samplers", nargs="+", default=["pymc", "nutpie"])
    args = ap.parse_args()
    main(tuple(args.ks), tuple(args.samplers))
