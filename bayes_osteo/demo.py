"""``make demo``: run every analysis spec in ``models/`` into ``reports/`` and say where they are.

Each spec runs as ``bayes-osteo run models/<name>.toml --out reports/<name>`` would. A spec that
fails is reported (with its error) and the others still run. When no spec can run (e.g. a model
module is missing from this checkout), a short scripted analysis that needs only the foundation is
printed instead, so the command always shows a posterior hazard-ratio table.

Options: ``python -m bayes_osteo.demo [--fast] [--models DIR] [--out DIR] [NAME ...]``;
``--fast`` (or ``BAYES_OSTEO_FAST=1``) uses short chains.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

__all__ = ["main", "fallback_table"]


def fallback_table():
    """Exact fixed-effect posterior of the pooled HR of metastasectomy from the real cited rows of
    :func:`bayes_osteo.datasets.osteosarcoma_studies` (one row per cohort), as a hazard-ratio table.

    Model: ``y_i ~ N(mu, s_i^2)``, ``mu ~ N(0, 2.5^2)``; the posterior of ``mu`` is normal with
    precision ``1/2.5^2 + sum 1/s_i^2`` (conjugate), sampled i.i.d.
    """
    import numpy as np
    import xarray as xr

    from . import datasets, summarize
    from .base import annotate
    from .data import StudyEstimates

    df = datasets.osteosarcoma_studies()
    rows = df[df.row_id.isin(["liu2022_pm", "smolle2023_pm_iptw"])]
    st = StudyEstimates.from_hr_ci(rows, hr="hr", lower="ci_low", upper="ci_high", study="row_id")
    prec = 1 / 2.5**2 + np.sum(1 / st.se**2)
    mean = np.sum(st.log_hr / st.se**2) / prec
    draws = np.random.default_rng(1).normal(mean, prec**-0.5, size=(1, 4000))
    dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"log_hr": (("chain", "draw"), draws),
                                                         "hr": (("chain", "draw"), np.exp(draws))})})
    annotate(dt, model="meta-fixed-conjugate", spec={}, random_seed=1, fingerprint=st.fingerprint(),
             inference="exact")
    return summarize.hazard_ratios(dt)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bayes_osteo.demo", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="spec names (default: all in --models)")
    p.add_argument("--models", default="models", help="folder of specs (default: models)")
    p.add_argument("--out", default="reports", help="output folder (default: reports)")
    p.add_argument("--fast", action="store_true", help="short chains (BAYES_OSTEO_FAST=1)")
    args = p.parse_args(argv)
    if args.fast:
        os.environ["BAYES_OSTEO_FAST"] = "1"
    import matplotlib

    matplotlib.use("Agg")
    specs = sorted(Path(args.models).glob("*.toml"))
    if args.names:
        specs = [s for s in specs if s.stem in set(args.names)]
    written, failed = [], []
    for s in specs:
        print(f"\n=== {s} ===", flush=True)
        t0 = time.perf_counter()
        try:
            from .report import write_report
            from .spec import run_spec

            res = run_spec(s, progressbar=sys.stdout.isatty(), log=print)
            path = write_report(res, Path(args.out) / s.stem)
            print(res.summary.to_string(float_format=lambda v: f"{v:.3f}"))
            print(f"-> {path}  ({time.perf_counter() - t0:.1f} s)", flush=True)
            written.append(path)
        except Exception as e:  # noqa: BLE001 - keep going, report at the end
            traceback.print_exc()
            failed.append((s, f"{type(e).__name__}: {e}"))
    if not written:
        print("\nNo spec could be run; a short scripted analysis instead (real cited rows, exact "
              "fixed-effect posterior of the pooled HR of metastasectomy):")
        print(fallback_table().to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nReports:")
    for w in written:
        print(f"  {w.resolve()}")
    for s, e in failed:
        print(f"  FAILED {s}: {e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
