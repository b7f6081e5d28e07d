"""The ``bayes-osteo`` command: run an analysis spec, rebuild a report, validate a spec.

Examples
--------
::

    bayes-osteo validate models/liu2022_cohort.toml
    bayes-osteo run models/liu2022_cohort.toml --out reports/liu2022_cohort
    bayes-osteo run models/ning2026_meta.toml --out /tmp/meta --draws 500 --seed 7
    bayes-osteo report reports/liu2022_cohort        # re-create the report, no refit
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

_EPILOG = """\
examples:
  bayes-osteo validate models/liu2022_cohort.toml
  bayes-osteo run models/liu2022_cohort.toml --out reports/liu2022_cohort
  bayes-osteo run models/ning2026_meta.toml --out /tmp/meta --draws 500 --seed 7
  bayes-osteo report reports/liu2022_cohort     (rebuild report.html from posterior.nc)

Outputs of `run`: posterior.nc (netCDF, provenance in its attributes, no patient rows),
summary.csv, summary.md, figures/*.png, spec.toml and a self-contained report.html.
Set BAYES_OSTEO_FAST=1 for short test runs (at most 200 draws, 200 tuning steps, 2 chains).
A spec's kind is one of: cox, meta, propensity, bridge (see the files in models/).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bayes-osteo",
        description="Bayesian survival analyses (Cox models, meta-analyses of hazard ratios, "
                    "propensity-score analyses, meta-analytic priors) run from a TOML spec, "
                    "with a reproducible HTML report.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="store_true", help="print the package version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="fit the model of a spec and write posterior, summaries, figures, report",
                       description="Fit the analysis described by SPEC and write its outputs into --out.")
    r.add_argument("spec", metavar="SPEC", help="analysis spec (TOML), e.g. models/liu2022_cohort.toml")
    r.add_argument("--out", "-o", metavar="DIR", help="output folder (default reports/<spec name>)")
    r.add_argument("--draws", type=int, help="posterior draws per chain (overrides the spec)")
    r.add_argument("--tune", type=int, help="tuning steps per chain (overrides the spec)")
    r.add_argument("--chains", type=int, help="number of chains (overrides the spec)")
    r.add_argument("--seed", type=int, help="random seed (overrides the spec)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, e.g. --set model.n_ps_draws=2 (TOML value syntax; "
                        "repeatable; recorded in the report)")
    r.add_argument("--no-progress", action="store_true", help="hide the sampler progress bar")
    r.add_argument("--quiet", "-q", action="store_true", help="print only the report path")

    rep = sub.add_parser("report", help="rebuild report.html, tables and figures of a run folder "
                         "from its saved posterior (no refit)",
                         description="Re-create the summaries, figures and report.html of DIR "
                                     "from DIR/posterior.nc and DIR/spec.toml, without refitting.")
    rep.add_argument("dir", metavar="DIR", help="a folder written by `bayes-osteo run`")

    v = sub.add_parser("validate", help="check a spec and list every problem (no fitting)",
                       description="Validate SPEC: unknown keys, wrong types, unknown data sets, "
                                   "missing columns and malformed priors are all listed at once.")
    v.add_argument("spec", metavar="SPEC", nargs="+", help="spec file(s)")
    return p


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayes-osteo`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"bayes-osteo {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2

    import matplotlib

    matplotlib.use("Agg")
    from .spec import SpecError, load_spec

    if args.command == "validate":
        status = 0
        for s in args.spec:
            try:
                spec = load_spec(s)
            except SpecError as e:
                print(str(e), file=sys.stderr)
                status = 1
            else:
                print(f"{s}: OK ({spec.kind}: {spec.title})")
        return status

    if args.command == "report":
        from .report import rebuild_report

        try:
            path = rebuild_report(args.dir)
        except (FileNotFoundError, SpecError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"report rebuilt from the saved posterior: {path}")
        return 0

    # run
    from .report import write_report
    from .spec import parse_override, run_spec

    try:
        overrides = dict(parse_override(x) for x in args.set)
        spec = load_spec(args.spec, overrides=overrides)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else Path("reports") / spec.name
    _say(f"[bayes-osteo] {spec.kind}: {spec.title}", args.quiet)
    t0 = time.perf_counter()
    result = run_spec(spec, draws=args.draws, tune=args.tune, chains=args.chains,
                      random_seed=args.seed, progressbar=not (args.no_progress or args.quiet),
                      log=None if args.quiet else print)
    _say(f"[bayes-osteo] writing outputs to {out}", args.quiet)
    path = write_report(result, out)
    _say(f"[bayes-osteo] done in {time.perf_counter() - t0:.1f} s", args.quiet)
    print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
