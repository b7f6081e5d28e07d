"""The bayes-osteo command, run in-process: every spec in models/ end to end with small draws,
the report rebuilt from the saved posterior without refitting, validation messages, --help."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import bayes_osteo as bo
from bayes_osteo.cli import main

MODELS = Path(__file__).resolve().parents[1] / "models"
SPECS = sorted(MODELS.glob("*.toml"))

# Small but valid runs: 2 chains of 100 draws after 100 tuning steps. Propensity: one score draw
# per design (the propagation over score draws is tested in test_propensity_methods).
SMALL = ["--draws", "100", "--tune", "100", "--chains", "2", "--no-progress"]
EXTRA = {"liu2022_propensity": ["--set", "model.n_ps_draws=1", "--set", 'model.ps_draws="mean"']}


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_run_then_report_without_refit(spec, tmp_path, capsys):
    out = tmp_path / spec.stem
    assert main(["run", str(spec), "--out", str(out), *SMALL, *EXTRA.get(spec.stem, [])]) == 0
    printed = capsys.readouterr().out
    assert str(out / "report.html") in printed
    # outputs exist and parse
    dt = bo.load(out / "posterior.nc")
    assert "posterior" in dt.children
    assert dt.attrs["bayes_osteo_model"] in ("cox", "meta", "propensity")
    assert json.loads(dt.attrs["analysis_spec_json"])["title"]
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert {"hr_median", "ci_low", "ci_high"} <= set(summary.columns)
    assert (summary["ci_low"] <= summary["hr_median"]).all() and (summary["hr_median"] <= summary["ci_high"]).all()
    md = (out / "summary.md").read_text()
    assert md.startswith("# ") and "| hr_median |" in md.replace("hr_median |", "hr_median |")
    pngs = sorted((out / "figures").glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    html = (out / "report.html").read_text()
    assert html.count("<img ") == len(pngs) and "<table" in html
    assert (out / "spec.toml").read_text().startswith(spec.read_text()[:40])
    if bo.load_spec(spec).frame().attrs["provenance"].get("simulated"):
        assert "SIMULATED DATA" in html and "SIMULATED" in md
    # rebuild: the posterior file is read, not rewritten
    mtime = (out / "posterior.nc").stat().st_mtime_ns
    (out / "report.html").unlink()
    for p in pngs:
        p.unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "posterior.nc").stat().st_mtime_ns == mtime
    html2 = (out / "report.html").read_text()
    assert html2.count("<img ") == len(pngs)
    # same numbers in the rebuilt report's tables (the posterior, not a refit)
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv", index_col=0), summary)


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in ("run", "report", "validate", "posterior.nc", "BAYES_OSTEO_FAST"):
        assert word in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--out" in capsys.readouterr().out


def test_validate_lists_every_problem(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('title = "bad"\nkind = "cox"\ncolour = "red"\n[data]\ndataset = "liu2022_cohort"\n'
                   'duration = "monthz"\nevent = "death"\ncovariates = "age"\n[sampler]\ndraws = 1.5\n')
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "4 problems" in err
    for exp in ("colour: unknown key", "data.duration: column 'monthz' not in the data",
                "data.covariates: expected an array of strings, got string 'age'",
                "sampler.draws: expected an integer, got float 1.5"):
        assert exp in err
    assert main(["validate", *map(str, SPECS)]) == 0
    assert len(re.findall(r": OK \(", capsys.readouterr().out)) == len(SPECS)


def test_report_of_missing_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "No posterior.nc" in capsys.readouterr().err
