"""Reports: the HTML is self-contained and holds the tables, embedded figures, diagnostics, spec,
versions, seed and data provenance; Markdown/CSV summaries; notebook rich display."""

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

import bayes_osteo as bo
from bayes_osteo.report import markdown_table, render_html, table_html, write_report

MODELS = Path(__file__).resolve().parents[1] / "models"


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.h2, self._in_h2 = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data.strip())
            self._in_h2 = False


@pytest.fixture(scope="module")
def meta_result():
    # exact posterior: no MCMC, a fraction of a second; 500 i.i.d. draws x 2 chains
    return bo.run_spec(MODELS / "ning2026_meta.toml", draws=500, chains=2, progressbar=False)


def test_html_structure(meta_result, tmp_path):
    path = write_report(meta_result, tmp_path)
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>")
    p = _Collect()
    p.feed(html)
    # self-contained: no external resources
    assert not re.search(r'<(link|script)[^>]+(href|src)="http', html)
    assert all(img["src"].startswith("data:image/png;base64,") for img in p.imgs)
    for img in p.imgs:
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(p.imgs) == len(meta_result.figures) >= 3
    assert {"forest", "funnel"} <= {img["alt"] for img in p.imgs}
    # sections
    assert p.h2 == ["Results", "Figures", "Diagnostics", "Data provenance", "Analysis spec", "Software"]
    # every table is there: results tables + provenance + versions
    assert p.tags.count("table") >= len(meta_result.tables) + 2
    for name in meta_result.tables:
        assert name.replace("_", " ").capitalize().split()[0] in html
    # simulated data are flagged prominently, the real rows carry their citation
    assert 'class="bo-banner">SIMULATED DATA' in html
    assert "PMID" in html or "pmid" in html.lower() or "Ning et al. 2026" in html
    # spec verbatim, seed, versions
    assert "dataset = &quot;ning2026_simulated_studies&quot;" in html
    assert "2026" in html and "pymc" in html and "bayes-osteo" in html
    # exact inference: no MCMC diagnostics table, and the report says so
    assert "No MCMC diagnostics" in html


def test_summary_files(meta_result, tmp_path):
    write_report(meta_result, tmp_path)
    csv = pd.read_csv(tmp_path / "summary.csv", index_col=0)
    assert list(csv.index) == list(meta_result.summary.index)
    md = (tmp_path / "summary.md").read_text()
    assert "**SIMULATED DATA**" in md
    assert md.count("\n## ") >= len(meta_result.tables)
    loaded = bo.load(tmp_path / "posterior.nc")
    assert loaded.attrs["inference"] == "exact" and "analysis_spec_toml" in loaded.attrs


def test_published_targets_reproduced(meta_result):
    """The simulated table is calibrated to the published pooled HRs: the Bayesian pooled medians
    sit near them (prior and tau integration move them a little; not an equality check)."""
    t = meta_result.tables["published_targets"]
    assert len(t) == 6
    ratio = t["posterior_hr_median"] / t["published_hr"]
    assert ratio.between(0.8, 1.25).all(), t


def test_rich_display(meta_result):
    html = meta_result._repr_html_()
    assert html.startswith('<div class="bo-report">') and "<img" in html and "<table" in html
    assert "<html" not in html
    assert "ning2026_meta" in repr(meta_result) or "meta" in repr(meta_result)
    assert "<pre>" in meta_result.spec._repr_html_()


def test_markdown_and_html_tables():
    df = pd.DataFrame({"hr": [0.25, 1.5], "p": [1e-6, float("nan")]}, index=pd.Index(["a|b", "c"], name="x"))
    md = markdown_table(df)
    assert md.splitlines()[0] == "| x | hr | p |"
    assert "a\\|b" in md and "1e-06" in md and "–" in md
    df.attrs["ci_prob"] = 0.95
    h = table_html(df, caption="T")
    assert "<caption>T (intervals: 95% equal-tailed)</caption>" in h and "<td>0.250</td>" in h


def test_render_without_figures(meta_result):
    import copy

    r = copy.copy(meta_result)
    r.figures = {}
    html = render_html(r)
    assert "<img" not in html and "<h2>Figures</h2>" not in html


@pytest.mark.slow
def test_partial_model_report_gives_survival_when_times_are_asked_for():
    """A partial-likelihood spec with [report] times/horizon gets survival, median and RMST
    tables (Breslow baseline per draw) and a note saying what their bands carry."""
    import tomllib

    spec = tomllib.loads((MODELS / "liu2022_cohort.toml").read_text())
    spec["model"] = {"baseline": "partial", "priors": spec["model"]["priors"]}
    spec["model"]["priors"].pop("subgroup_sd")
    res = bo.run_spec(spec, draws=300, chains=2, progressbar=False)
    surv = res.tables["survival"]
    assert surv is not None and set(surv["time"]) == {12, 24, 60}
    assert surv["metastasectomy"].nunique() == 2
    assert ((surv["ci_low"] <= surv["median"]) & (surv["median"] <= surv["ci_high"])).all()
    assert res.tables["median_survival"] is not None and res.tables["rmst"] is not None
    assert any("Breslow" in n for n in res.notes)
