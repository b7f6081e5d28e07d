"""Benchmark: the evidence bridge (MAP prior fit, ESS, sensitivity table by refit vs reweighting).

Workload: the metastasectomy | PRS rows of ``ning2026_simulated_studies()`` (9 SIMULATED studies),
random-effects meta-analysis with the default priors; the SIMULATED Liu-like cohort
(``liu2022_cohort()``, 125 patients, 7 confounders). Timed:

- ``map_prior(ma)``: mixture fitted to the exact predictive density (no Monte-Carlo noise), and
  ``map_prior(dt)`` fitted by EM to 4 x 5000 exact i.i.d. draws; max |quantile error| against the
  exact predictive quantiles (0.5% ... 99.5%);
- ``NormalMixture.ess()`` (ELIR) of the robust MAP prior;
- ``prior_sensitivity`` (vague + robust weights 0, 0.2, 0.5, 1) by ``method="refit"`` (one Cox fit
  per row) and ``method="reweight"`` (one fit, PSIS), and the largest difference between the two
  in posterior median HR.

Run alone: ``.venv/bin/python benchmarks/bench_bridge.py [--draws 1000 --chains 4]``. Prints a
Markdown table and writes it into ``benchmarks/RESULTS.md`` between the ``bridge`` markers.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
from _results import write_section  # noqa: E402  (benchmarks/ is the script's folder)

import bayes_osteo as bo
from bayes_osteo import bridge

GROUP = "metastasectomy | PRS"
Q = np.array([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995])


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(draws: int = 1000, chains: int = 4) -> str:
    warnings.simplefilter("ignore")
    ning = bo.datasets.ning2026_simulated_studies()
    st = bo.StudyEstimates.from_hr_ci(ning, study="study", group=["factor", "endpoint"])
    ma = bo.MetaAnalysis(st)
    ex = ma.exact_posterior(group=GROUP)
    target = ex.quantile("log_hr_new", Q)
    t_exact, p_exact = _timed(lambda: bridge.map_prior(ma, group=GROUP, robust_weight=0))
    dt = ma.fit(method="exact", draws=5000, chains=4, random_seed=1)
    t_draws, p_draws = _timed(lambda: bridge.map_prior(dt, group=GROUP, robust_weight=0))
    robust = p_exact.robustify(0.2, bridge.ROBUST_SD)
    t_ess, ess = _timed(robust.ess)
    rows = [
        ("map_prior, exact predictive", t_exact, f"K = {p_exact.n_components}, max quantile error "
         f"{np.abs(p_exact.quantile(Q) - target).max():.1e}"),
        ("map_prior, 20000 exact draws (EM, BIC)", t_draws, f"K = {p_draws.n_components}, max quantile "
         f"error {np.abs(p_draws.quantile(Q) - target).max():.1e} (Monte-Carlo error of the draws)"),
        ("ESS (ELIR) of the robust MAP prior", t_ess,
         f"{ess:.1f} events (MAP alone {p_exact.ess():.1f}; moment-based {robust.ess(method='moment'):.1f})"),
    ]
    df = bo.datasets.liu2022_cohort()
    sd = bo.SurvivalData.from_frame(df, duration="months", event="death",
                                    covariates=df.attrs["confounders"], treatment="metastasectomy")
    kw = dict(draws=draws, tune=draws, chains=chains, random_seed=2022)
    t_rw, tab_rw = _timed(lambda: bridge.prior_sensitivity(sd, p_exact, method="reweight", **kw))
    t_rf, tab_rf = _timed(lambda: bridge.prior_sensitivity(sd, p_exact, method="refit", **kw))
    diff = np.abs(tab_rw.hr_median - tab_rf.hr_median).max()
    rows += [
        ("prior_sensitivity, reweight (1 Cox fit + PSIS)", t_rw,
         f"max Pareto k {tab_rw.pareto_k.max():.2f}"),
        ("prior_sensitivity, refit (5 Cox fits)", t_rf,
         f"largest difference in median HR vs reweight: {diff:.3f}"),
    ]
    lines = ["| step | wall time (s) | result |", "|---|---|---|"]
    lines += [f"| {a} | {t:.2f} | {c} |" for a, t, c in rows]
    cols = ["prior_ess", "hr_median", "ci_low", "ci_high", "log_hr_sd", "robust_weight_posterior"]
    sens = (tab_rf[cols].round(3).to_markdown() if _has_tabulate()
            else "```\n" + tab_rf[cols].round(3).to_string() + "\n```")
    note = (f"\nSensitivity table (refit; SIMULATED cohort and SIMULATED source studies), "
            f"{chains} chains x {draws} draws:\n\n{sens}\n\n"
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs ({platform.python_version()}); "
            "wall clock on a shared machine (other jobs running): treat as orders of magnitude. "
            "Cox fit times include model compilation.\n")
    table = "\n".join(lines) + "\n" + note
    print(table)
    _write(table)
    return table


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _write(table: str) -> None:
    write_section("bridge", "Evidence bridge (`benchmarks/bench_bridge.py`)", table)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    args = ap.parse_args()
    main(args.draws, args.chains)
