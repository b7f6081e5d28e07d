"""Benchmark: simulations per minute of the simulation engine.

Workload: SBC of the partial-likelihood Cox model (n = 60 patients, treatment + 1 covariate,
NUTS by nutpie: one chain, 300 warm-up + 297 draws per fit). Compared:

- local, one process, compile once (cold: the call includes the one compilation; warm: a second
  call that finds the compiled model in the process cache);
- local process pool with 2 workers (each worker compiles once);
- Dask ``LocalCluster`` with 2 worker processes (cold call, then a warm call: workers keep
  their compiled models between calls);
- local, one process, WITHOUT compile-once reuse (every fit compiles the model again).

Run alone: ``.venv/bin/python benchmarks/bench_simulate.py [--n-sims 60]``. Prints a Markdown
table and writes it into ``benchmarks/RESULTS.md`` between the ``simulate`` markers.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from _results import write_section  # noqa: E402  (benchmarks/ is the script's folder)

import bayes_osteo as bo
from bayes_osteo import sim_engine


def _timed(label: str, n: int, fn) -> dict:
    t0 = time.perf_counter()
    res = fn()
    dt = time.perf_counter() - t0
    return {"setup": label, "n_sims": n, "seconds": dt, "sims_per_min": 60 * n / dt, "result": res}


def main(n_sims: int = 60, n_no_reuse: int = 3, n_patients: int = 60) -> str:
    kw = dict(n_patients=n_patients, random_seed=1, progress=False)
    rows = []
    sim_engine.clear_cache()
    rows.append(_timed("local, 1 process, compile once (cold: includes the compile)", n_sims,
                       lambda: bo.simulate.sbc("cox", n_sims=n_sims, n_jobs=1, **kw)))
    rows.append(_timed("local, 1 process, compile once (warm: model cached)", n_sims,
                       lambda: bo.simulate.sbc("cox", n_sims=n_sims, n_jobs=1, **kw)))
    rows.append(_timed("local process pool, 2 workers (cold: each worker compiles)", n_sims,
                       lambda: bo.simulate.sbc("cox", n_sims=n_sims, n_jobs=2, **kw)))
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("bayes_osteo"))  # worker start-up is not simulation time
        rows.append(_timed("Dask LocalCluster, 2 workers (cold: each worker compiles)", n_sims,
                           lambda: bo.simulate.sbc("cox", n_sims=n_sims, client=client, **kw)))
        rows.append(_timed("Dask LocalCluster, 2 workers (warm: workers keep the model)", n_sims,
                           lambda: bo.simulate.sbc("cox", n_sims=n_sims, client=client, **kw)))
    sim_engine.clear_cache()
    rows.append(_timed("local, 1 process, NO reuse (compile every fit)", n_no_reuse,
                       lambda: bo.simulate.sbc("cox", n_sims=n_no_reuse, n_jobs=1,
                                               reuse_compiled=False, **kw)))
    same = all(r["result"].ranks.equals(rows[0]["result"].ranks) for r in rows[1:5])
    lines = [
        f"Cox partial-likelihood SBC, n = {n_patients} patients, 1 NUTS chain (300 tune + 297 draws) "
        f"per fit; machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        "shared with other jobs (timings are noisy).",
        "",
        "| setup | simulations | seconds | simulations / minute |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['setup']} | {r['n_sims']} | {r['seconds']:.1f} | {r['sims_per_min']:.1f} |" for r in rows]
    lines += ["", f"Same SBC ranks in every setup with compile-once (seed 1): {same}."]
    table = "\n".join(lines)
    print(table)
    _write(table)
    return table


def _write(table: str) -> None:
    write_section("simulate", "Simulation engine (`benchmarks/bench_simulate.py`)", table)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-sims", type=int, default=60)
    ap.add_argument("--n-no-reuse", type=int, default=3)
    args = ap.parse_args()
    main(args.n_sims, args.n_no_reuse)
