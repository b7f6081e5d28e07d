"""Reports: a self-contained HTML page (figures embedded as base64 PNG, tables, diagnostics, the
spec, package versions, seed, data provenance) plus ``summary.csv`` and ``summary.md``.

A report is written from an :class:`AnalysisResult` (what :func:`bayes_osteo.spec.run_spec`
returns). :func:`rebuild_report` re-creates it from a folder written earlier, reading the saved
posterior(s) instead of refitting.

Output folder layout::

    posterior.nc        main result (bayes_osteo.save; provenance in attrs, no patient rows)
    <name>.nc           other results of the analysis (e.g. the source meta-analysis of a bridge)
    spec.toml           the analysis spec, verbatim
    summary.csv         the main table (hazard ratios)
    summary.md          every table, in Markdown
    figures/*.png       every figure
    report.html         self-contained report

Examples
--------
>>> import bayes_osteo as bo, tempfile
>>> res = bo.run_spec("models/ning2026_meta.toml", progressbar=False)   # doctest: +SKIP
>>> bo.report.write_report(res, tempfile.mkdtemp())                      # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["AnalysisResult", "write_report", "rebuild_report", "render_html", "markdown_table",
           "table_html", "products", "MAIN_RESULT"]

MAIN_RESULT = "posterior"


@dataclass
class AnalysisResult:
    """Everything one analysis produced.

    Attributes
    ----------
    spec : AnalysisSpec
    results : dict of name -> DataTree
        ``"posterior"`` is the main result; others (e.g. ``"source"``) are saved next to it.
    tables : dict of name -> DataFrame
        The first is the main summary (``summary.csv``).
    figures : dict of name -> matplotlib Figure
    notes : list of str
        Messages for the reader (simulated data, pseudo-posterior, convergence ...).
    provenance : list of dict
        One entry per data source (name, citation, simulated flag, rows, query, file hash).
    objects : dict
        The model objects (``SurvivalData``, ``CoxModel``, ...) for further work in a notebook.
    """

    spec: Any
    results: dict[str, xr.DataTree]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    provenance: list[dict] = field(default_factory=list)
    objects: dict[str, Any] = field(default_factory=dict)
    elapsed: dict[str, float] = field(default_factory=dict)

    @property
    def dt(self) -> xr.DataTree:
        """The main result."""
        return self.results[MAIN_RESULT]

    @property
    def summary(self) -> pd.DataFrame:
        """The main table."""
        return next(iter(self.tables.values()))

    @property
    def simulated(self) -> bool:
        return any(p.get("simulated") for p in self.provenance)

    def _repr_html_(self) -> str:
        return render_html(self, standalone=False)

    def __repr__(self) -> str:
        return (f"AnalysisResult({self.spec.kind!r}, {self.spec.title!r}, tables={list(self.tables)}, "
                f"figures={list(self.figures)})")


# -- formatting --------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        v = float(v)
        if math.isnan(v):
            return "–"
        if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    d = df.reset_index() if _has_named_index(df) else df
    head = "| " + " | ".join(map(str, d.columns)) + " |"
    sep = "|" + "|".join("---" for _ in d.columns) + "|"
    rows = ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in r) + " |"
            for r in d.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def _has_named_index(df: pd.DataFrame) -> bool:
    return df.index.name is not None or not isinstance(df.index, pd.RangeIndex)


def table_html(df: pd.DataFrame, *, caption: str | None = None) -> str:
    """An HTML table with the report's number format; the caption notes the interval convention."""
    d = (df.rename_axis(df.index.name or "") .reset_index()) if _has_named_index(df) else df
    cap = caption or ""
    if df.attrs.get("ci_prob"):
        cap += f" (intervals: {df.attrs['ci_prob']:.0%} equal-tailed)"
    if df.attrs.get("pseudo_posterior"):
        cap += " — pseudo-posterior (weighted likelihood)"
    th = "".join(f"<th>{html.escape(str(c))}</th>" for c in d.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>"
                   for r in d.itertuples(index=False))
    capt = f"<caption>{html.escape(cap.strip())}</caption>" if cap.strip() else ""
    return (f'<div class="bo-wrap"><table class="bo-table">{capt}<thead><tr>{th}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _png(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.bo-banner{background:#b00020;color:#fff;padding:.8em 1em;border-radius:6px;font-weight:600;margin:1em 0}
.bo-note{background:#fff6d5;border-left:4px solid #e0a800;padding:.5em .8em;margin:.4em 0}
.bo-table{border-collapse:collapse;margin:.6em 0 1.2em 0;font-size:.86em}
.bo-table caption{text-align:left;font-weight:600;padding:.3em 0;caption-side:top}
.bo-table th,.bo-table td{border:1px solid #ccc;padding:.25em .55em;text-align:right}
.bo-table th{background:#f2f2f2}.bo-table td:first-child,.bo-table th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.82em}
.bo-wrap{overflow-x:auto;max-width:100%}
.bo-meta td{border:none;text-align:left;padding:.1em .8em .1em 0}
"""


def _attrs_info(dt: xr.DataTree) -> dict:
    a = dt.attrs
    info = {"model": a.get("bayes_osteo_model", "?"), "inference": a.get("inference", "?"),
            "random_seed": a.get("random_seed", "?"), "data_fingerprint": a.get("data_fingerprint", "?"),
            "pseudo_posterior": a.get("pseudo_posterior", "false"),
            "sampler": a.get("sampler", ""), "draws": a.get("draws", ""), "tune": a.get("tune", ""),
            "chains": a.get("chains", "")}
    try:
        info["versions"] = json.loads(a.get("package_versions", "{}"))
    except json.JSONDecodeError:
        info["versions"] = {}
    return info


def _provenance_html(prov: list[dict]) -> str:
    rows = []
    for p in prov:
        flag = ("<b style='color:#b00020'>SIMULATED</b>" if p.get("simulated") else "real (cited)"
                if p.get("citation") else "user data")
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in (
            html.escape(str(p.get("label") or p.get("name", ""))), html.escape(p.get("source", "")), flag,
            html.escape(str(p.get("n_rows", ""))), html.escape(str(p.get("query", ""))),
            html.escape(str(p.get("citation") or p.get("sha256", ""))),
            html.escape(str(p.get("description", ""))))) + "</tr>")
    return ('<table class="bo-table"><caption>Data sources</caption><thead><tr><th>data</th><th>from</th>'
            "<th>status</th><th>rows</th><th>selection</th><th>citation / file hash</th><th>description</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def render_html(result: AnalysisResult, *, standalone: bool = True, figure_pngs: Mapping | None = None) -> str:
    """The report as HTML. ``standalone=False`` gives the body only (notebook display)."""
    spec = result.spec
    parts = [f"<h1>{html.escape(spec.title)}</h1>"]
    if spec.raw.get("description"):
        parts.append(f"<p>{html.escape(spec.raw['description'])}</p>")
    if result.simulated:
        sims = [p.get("label") or p.get("name") for p in result.provenance if p.get("simulated")]
        parts.append('<div class="bo-banner">SIMULATED DATA: ' + html.escape(", ".join(map(str, sims)))
                     + " — generated by bayes_osteo to mimic published summaries; these are not patient "
                     "records of any study and the results are illustrations, not evidence.</div>")
    for n in result.notes:
        parts.append(f'<div class="bo-note">{html.escape(n)}</div>')
    info = _attrs_info(result.dt)
    meta_rows = [("analysis kind", spec.kind), ("model", info["model"]), ("inference", info["inference"]),
                 ("sampler", f"{info['sampler']} draws={info['draws']} tune={info['tune']} chains={info['chains']}"
                  if info["inference"] == "nuts" else info["inference"]),
                 ("random seed", info["random_seed"]), ("data fingerprint", info["data_fingerprint"]),
                 ("pseudo-posterior", info["pseudo_posterior"]),
                 ("spec file", str(spec.path) if spec.path else "(inline)"),
                 ("report written", _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))]
    parts.append('<table class="bo-meta">' + "".join(
        f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(str(v))}</td></tr>" for k, v in meta_rows)
        + "</table>")
    parts.append("<h2>Results</h2>")
    diag = None
    for name, tab in result.tables.items():
        if name == "diagnostics":
            diag = tab
            continue
        parts.append(table_html(tab, caption=_title(name)))
    if result.figures:
        parts.append("<h2>Figures</h2>")
        for name, fig in result.figures.items():
            png = figure_pngs[name] if figure_pngs and name in figure_pngs else _png(fig)
            b64 = base64.b64encode(png).decode("ascii")
            parts.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{b64}"/>'
                         f"<figcaption>{html.escape(_title(name))}</figcaption></figure>")
    parts.append("<h2>Diagnostics</h2>")
    if diag is not None:
        bad = diag.attrs.get("problems", [])
        ok = "all variables pass" if not bad else f"short of thresholds: {', '.join(map(str, bad))}"
        parts.append(f"<p>R-hat &le; 1.01, bulk ESS &ge; 400, no divergences: {html.escape(ok)}. "
                     f"Divergent transitions: {diag.attrs.get('divergences', 0)}.</p>")
        parts.append(table_html(diag, caption="Convergence diagnostics"))
    else:
        parts.append("<p>No MCMC diagnostics (exact or closed-form inference).</p>")
    parts.append("<h2>Data provenance</h2>")
    parts.append(_provenance_html(result.provenance))
    parts.append("<h2>Analysis spec</h2>")
    parts.append(f"<pre>{html.escape(spec.text or json.dumps(spec.raw, indent=2))}</pre>")
    parts.append("<h2>Software</h2>")
    vers = info["versions"]
    parts.append('<table class="bo-table"><thead><tr><th>package</th><th>version</th></tr></thead><tbody>'
                 + "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                           for k, v in vers.items()) + "</tbody></table>")
    body = "\n".join(parts)
    if not standalone:
        return f'<div class="bo-report"><style>{_CSS}</style>{body}</div>'
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(spec.title)}</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def _title(name: str) -> str:
    t = name.replace("_", " ").capitalize()
    for a, b in (("Rmst", "Restricted mean survival time (RMST)"), (" hr", " HR"), ("Map prior", "MAP prior"),
                 ("Prior data", "Prior-data"), ("Hr ", "HR ")):
        t = t.replace(a, b)
    return t


# -- writing -----------------------------------------------------------------------------------
def write_report(result: AnalysisResult, out: str | Path, *, save_results: bool = True) -> Path:
    """Write the outputs of an analysis into folder ``out``; returns the path of ``report.html``."""
    from .base import save

    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    if save_results:
        for name, dt in result.results.items():
            dt = dt.copy()
            if result.spec.text:
                dt.attrs["analysis_spec_toml"] = result.spec.text
            dt.attrs["analysis_spec_json"] = result.spec.to_json()
            if result.spec.path is not None:
                dt.attrs["analysis_spec_path"] = str(result.spec.path)
            save(dt, out / f"{name}.nc")
    if result.spec.text:
        (out / "spec.toml").write_text(result.spec.text, encoding="utf-8")
    tables = dict(result.tables)
    main = next(iter(tables.values()))
    main.to_csv(out / "summary.csv")
    md = [f"# {result.spec.title}", ""]
    if result.simulated:
        md += ["> **SIMULATED DATA** — the results illustrate the method; they are not evidence.", ""]
    md += [f"> {n}" for n in result.notes] + ([""] if result.notes else [])
    for name, tab in tables.items():
        cap = _title(name) + (f" ({tab.attrs['ci_prob']:.0%} equal-tailed intervals)"
                              if tab.attrs.get("ci_prob") else "")
        md += [f"## {cap}", "", markdown_table(tab), ""]
    md += ["## Data sources", ""]
    for p in result.provenance:
        md.append(f"- {p.get('label') or p.get('name')}: {'SIMULATED' if p.get('simulated') else 'real'}"
                  f"; {p.get('citation') or p.get('sha256', '')}")
    (out / "summary.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    pngs = {}
    for name, fig in result.figures.items():
        png = _png(fig, dpi=100)
        (out / "figures" / f"{name}.png").write_bytes(png)
        pngs[name] = png
    path = out / "report.html"
    path.write_text(render_html(result, figure_pngs=pngs), encoding="utf-8")
    import matplotlib.pyplot as plt

    for fig in result.figures.values():
        plt.close(fig)
    return path


def rebuild_report(out: str | Path) -> Path:
    """Re-create the tables, figures and ``report.html`` of a folder written by
    :func:`write_report`, from its saved posterior(s) and spec, without refitting.
    """
    from .base import load
    from .spec import AnalysisSpec, load_spec

    out = Path(out)
    post = out / f"{MAIN_RESULT}.nc"
    if not post.exists():
        raise FileNotFoundError(f"No {MAIN_RESULT}.nc in {out}; run `bayes-osteo run SPEC --out {out}` first.")
    results = {MAIN_RESULT: load(post)}
    for p in sorted(out.glob("*.nc")):
        if p.stem != MAIN_RESULT:
            results[p.stem] = load(p)
    attrs = results[MAIN_RESULT].attrs
    # The spec exactly as run (overrides included) is stored in the result; spec.toml is its text.
    text = attrs.get("analysis_spec_toml", "")
    if not text and (out / "spec.toml").exists():
        text = (out / "spec.toml").read_text(encoding="utf-8")
    raw = json.loads(attrs["analysis_spec_json"]) if "analysis_spec_json" in attrs else text
    # CSV paths in the spec are relative to the original spec file: resolve them from its folder.
    orig = attrs.get("analysis_spec_path")
    base = Path(orig).parent if orig else out
    spec = load_spec(raw, base_dir=base)
    spec = AnalysisSpec(raw=spec.raw, path=Path(orig) if orig else None, text=text)
    result = products(spec, results)
    return write_report(result, out, save_results=False)


# -- tables and figures of each kind ---------------------------------------------------------------
def _safe(notes: list[str], what: str, fn, *args, **kwargs):
    """Run one optional product; a failure becomes a note in the report instead of no report."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported to the reader, never hidden
        notes.append(f"{what} could not be produced: {type(e).__name__}: {e}")
        return None


def _is_nuts(dt: xr.DataTree) -> bool:
    return dt.attrs.get("inference") == "nuts"


def products(spec, results: Mapping[str, xr.DataTree], objects: Mapping | None = None) -> AnalysisResult:
    """Tables and figures of an analysis from its fitted results (no fitting happens here, except
    that ``objects`` are rebuilt from the spec's data when not given)."""
    from .spec import prepare, provenance

    objs = dict(objects) if objects is not None else prepare(spec, results)
    res = AnalysisResult(spec=spec, results=dict(results), objects=objs,
                         provenance=_safe([], "provenance", provenance, spec) or [])
    dt = res.dt
    pseudo = [k if k != MAIN_RESULT else str(d.attrs.get("method", "main result"))
              for k, d in results.items() if d.attrs.get("pseudo_posterior") == "true"]
    if pseudo:
        res.notes.append(f"Weighted likelihood ({', '.join(pseudo)}): a pseudo-posterior; its intervals "
                         "treat the weights as known frequencies and lack the usual Bayesian calibration.")
    {"cox": _cox_products, "meta": _meta_products, "propensity": _propensity_products,
     "bridge": _bridge_products}[spec.kind](res)
    if _is_nuts(dt):
        from .summarize import diagnostics

        res.tables["diagnostics"] = _safe(res.notes, "diagnostics", diagnostics, dt)
        if spec.raw.get("report", {}).get("diagnostic_plots", True):
            from . import plots

            fig = _safe(res.notes, "trace plot", plots.trace, dt)
            if fig is not None:
                res.figures["trace"] = fig
            fig = _safe(res.notes, "rank plot", plots.rank, dt)
            if fig is not None:
                res.figures["rank"] = fig
    res.tables = {k: v for k, v in res.tables.items() if v is not None}
    res.figures = {k: v for k, v in res.figures.items() if v is not None}
    return res


def _report_opts(res: AnalysisResult) -> dict:
    return dict(res.spec.raw.get("report", {}))


def _cox_core(res: AnalysisResult, dt: xr.DataTree, cox, *, prefix: str = "") -> None:
    from . import plots
    from .summarize import hazard_ratios, posterior_table

    rep = _report_opts(res)
    notes = res.notes
    res.tables[prefix + "hazard_ratios"] = _safe(notes, "HR table", hazard_ratios, dt,
                                                 thresholds=rep.get("thresholds", ()))
    post = dt["posterior"].to_dataset()
    hyper = [v for v in ("frailty_sd", "subgroup_sd", "smoothing_sd", "time_varying_sd") if v in post]
    if getattr(cox, "subgroups", None):
        res.tables[prefix + "subgroup_effects"] = _safe(notes, "subgroup table", cox.subgroup_effects, dt)
        if res.tables[prefix + "subgroup_effects"] is not None:
            res.figures[prefix + "subgroup_effects"] = _safe(
                notes, "subgroup plot", plots.hazard_ratio_plot, res.tables[prefix + "subgroup_effects"],
                title="Treatment HR by pre-specified subgroup (partially pooled)")
    if getattr(cox, "time_varying", False):
        hrt = _safe(notes, "HR(t) table", cox.hr_over_time, dt)
        res.tables[prefix + "hr_over_time"] = hrt
        if hrt is not None:
            res.figures[prefix + "hr_over_time"] = _safe(notes, "HR(t) plot", plots.hr_over_time, hrt)
    if hyper:
        res.tables[prefix + "hyperparameters"] = _safe(notes, "hyperparameter table", posterior_table,
                                                       dt, hyper)
    tab = res.tables.get(prefix + "hazard_ratios")
    if tab is not None:
        res.figures[prefix + "hazard_ratios"] = _safe(notes, "HR plot", plots.hazard_ratio_plot, tab)
    by = rep.get("by")
    sd = res.objects.get("sd")
    piecewise = getattr(cox, "baseline", None) == "piecewise" or \
        cox.options().get("baseline") == "piecewise"
    # the partial-likelihood model gives curves too (Breslow baseline per draw), when asked for
    partial_curves = not piecewise and getattr(cox, "baseline", None) == "partial" and \
        bool(rep.get("times") or rep.get("horizon"))
    if partial_curves:
        notes.append("Survival curves, median and RMST of the partial-likelihood model use the "
                     "Breslow (Efron) baseline at each posterior draw: their bands carry the "
                     "uncertainty in the log hazard ratios only, not in the baseline hazard.")
    if piecewise or partial_curves:
        times = rep.get("times")
        if times:
            res.tables[prefix + "survival"] = _safe(notes, "survival table", cox.survival, dt,
                                                    times=times, by=by)
            res.tables[prefix + "median_survival"] = _safe(notes, "median survival", cox.median_survival,
                                                           dt, by=by)
        if rep.get("horizon"):
            res.tables[prefix + "rmst"] = _safe(notes, "RMST table", cox.rmst, dt, rep["horizon"], by=by)
        res.figures[prefix + "survival"] = _safe(notes, "survival plot", plots.survival, cox, dt, by=by)
    elif rep.get("km", True) and sd is not None and not prefix:
        res.figures["kaplan_meier"] = _safe(notes, "Kaplan-Meier plot", plots.km, sd, by=by)
    tname = getattr(sd, "treatment", None)
    prior = getattr(cox, "priors", {}).get("treatment_log_hr")
    if tname and prior is not None:
        res.figures[prefix + "prior_posterior_treatment"] = _safe(
            notes, "prior/posterior plot", plots.prior_posterior, dt, "log_hr", prior,
            coords={"covariate": tname}, hr_scale=True, label=f"log HR of {tname}")


def _cox_products(res: AnalysisResult) -> None:
    cox = res.objects["cox"]
    _cox_core(res, res.dt, cox)
    rep = _report_opts(res)
    if rep.get("by") and rep.get("km", True):
        from .cox import logrank

        res.tables["logrank"] = _safe(res.notes, "log-rank test", logrank, res.objects["sd"], rep["by"])


def _meta_products(res: AnalysisResult) -> None:
    from . import plots
    from .summarize import hazard_ratios, heterogeneity

    rep = _report_opts(res)
    dt, ma, st = res.dt, res.objects["meta"], res.objects["studies"]
    notes = res.notes
    res.tables["pooled_hazard_ratios"] = _safe(notes, "pooled HR table", hazard_ratios, dt,
                                               thresholds=rep.get("thresholds", ()), include_new=True)
    if "tau" in dt["posterior"].dataset:
        res.tables["heterogeneity"] = _safe(notes, "heterogeneity table", heterogeneity, dt)
    targets = _safe(notes, "published targets", _published_targets, res)
    if targets is not None and len(targets):
        res.tables["published_targets"] = targets
    res.tables["frequentist"] = _safe(notes, "frequentist cross-check", _frequentist, ma, st)
    res.tables["studies"] = _safe(notes, "study table", _study_table, dt, st)
    if rep.get("leave_one_out"):
        res.tables["leave_one_out"] = _safe(notes, "leave-one-out", ma.leave_one_out)
    res.figures["forest"] = _safe(notes, "forest plot", plots.forest, dt, st)
    res.figures["funnel"] = _safe(notes, "funnel plot", plots.funnel, st, dt)
    tau_p = ma.priors.get("tau")
    if tau_p is not None and "tau" in dt["posterior"].dataset:
        tau = dt["posterior"]["tau"]
        extra = [d for d in tau.dims if d not in ("chain", "draw")]
        coords = {extra[0]: tau[extra[0]].values[0]} if extra else None
        res.figures["prior_posterior_tau"] = _safe(notes, "tau prior/posterior plot", plots.prior_posterior,
                                                   dt, "tau", tau_p, coords=coords,
                                                   label="tau" + (f" ({coords[extra[0]]})" if coords else ""))


def _published_targets(res: AnalysisResult) -> pd.DataFrame | None:
    """Published pooled HRs a simulated data set was calibrated to (``attrs["targets"]``) next to
    this analysis's posterior pooled HRs."""
    from .spec import load_data
    from .summarize import hazard_ratios

    src = res.spec.raw["data"]
    if "dataset" not in src:
        return None
    targets = load_data({"dataset": src["dataset"]}).attrs.get("targets")
    if not targets:
        return None
    pooled = hazard_ratios(res.dt)
    rows = []
    for g, (hr, lo, hi) in targets.items():
        if g in pooled.index:
            r = pooled.loc[g]
            rows.append({"group": g, "published_hr": hr, "published_ci_low": lo, "published_ci_high": hi,
                         "posterior_hr_median": r["hr_median"], "posterior_ci_low": r["ci_low"],
                         "posterior_ci_high": r["ci_high"]})
    out = pd.DataFrame(rows).set_index("group") if rows else None
    if out is not None:
        out.attrs["ci_prob"] = 0.95
    return out


def _frequentist(ma, st) -> pd.DataFrame:
    return ma.frequentist()


def _study_table(dt: xr.DataTree, st) -> pd.DataFrame:
    tab = st.to_frame()
    post = dt["posterior"].dataset
    if "theta" in post:
        th = np.exp(post["theta"])
        q = th.quantile([0.025, 0.5, 0.975], dim=("chain", "draw")).transpose("study", "quantile").to_numpy()
        if q.shape[0] == len(tab):
            tab["shrunken_hr"] = q[:, 1]
            tab["shrunken_ci_low"] = q[:, 0]
            tab["shrunken_ci_high"] = q[:, 2]
    return tab.set_index("study")


def _propensity_products(res: AnalysisResult) -> None:
    from . import plots

    notes = res.notes
    ps = res.objects["ps"]
    if ps.result is None and "propensity_score" in res.results:
        ps.result = res.results["propensity_score"]
    _propensity_outcome_tables(res)
    model = res.spec.raw.get("model", {})
    bal = _safe(notes, "balance table", ps.balance, caliper=model.get("caliper", 0.2),
                matching=model.get("matching", "nearest"))
    if bal is not None:
        res.tables["balance"] = bal
        res.figures["love"] = _safe(notes, "Love plot", plots.love, bal)
    ov = _safe(notes, "overlap data", ps.overlap_data)
    if ov is not None:
        res.figures["ps_overlap"] = _safe(notes, "overlap plot", plots.ps_overlap, ov)
    res.tables["propensity_coefficients"] = _safe(notes, "score coefficients", ps.coefficients)
    sd = res.objects.get("sd")
    if sd is not None and _report_opts(res).get("km", True):
        res.figures["kaplan_meier"] = _safe(notes, "Kaplan-Meier plot", plots.km, sd, by=sd.treatment)


def _propensity_outcome_tables(res: AnalysisResult) -> None:
    from .summarize import hazard_ratios

    rep = _report_opts(res)
    frames = []
    methods = res.spec.raw.get("model", {}).get("method", "iptw")
    methods = [methods] if isinstance(methods, str) else list(methods)
    order = [MAIN_RESULT] + methods[1:]  # the spec's order (a rebuilt report reads files in any order)
    for name in sorted(res.results, key=lambda k: order.index(k) if k in order else len(order)):
        dt = res.results[name]
        if name == "propensity_score":
            continue
        tab = _safe(res.notes, f"HR table ({name})", hazard_ratios, dt, thresholds=rep.get("thresholds", ()))
        if tab is None:
            continue
        tname = res.objects["sd"].treatment
        row = tab.loc[[tname]] if tname in tab.index else tab.iloc[[0]]
        row = row.copy()
        row.index = pd.Index([dt.attrs.get("method", name)], name="method")
        frames.append(row)
    if frames:
        out = pd.concat(frames)
        out.attrs.update({"ci_prob": 0.95})
        res.tables = {"treatment_hazard_ratio": out, **res.tables}


def _bridge_products(res: AnalysisResult) -> None:
    from . import plots
    from .bridge import prior_data_conflict
    from .summarize import hazard_ratios

    notes = res.notes
    cox, prior = res.objects["cox"], res.objects["map_prior"]
    sd = res.objects["sd"]
    rep = _report_opts(res)
    tname = sd.treatment
    rows = []
    for label, key in (("vague prior (cohort alone)", "vague"), ("MAP prior (cohort + meta-analysis)",
                                                                  "posterior")):
        if key in res.results:
            t = hazard_ratios(res.results[key], thresholds=rep.get("thresholds", ()))
            r = t.loc[[tname]].copy()
            r.index = pd.Index([label], name="analysis")
            rows.append(r)
    if "source" in res.results:
        t = hazard_ratios(res.results["source"], include_new=True, thresholds=rep.get("thresholds", ()))
        t.index = pd.Index([f"meta-analysis: {i}" for i in t.index], name="analysis")
        rows.insert(0, t)
    comp = pd.concat(rows)
    comp.attrs.update({"ci_prob": 0.95})
    res.tables["treatment_effect"] = comp
    res.tables["map_prior"] = _mixture_table(prior)
    if "vague" in res.results:
        b = res.spec.raw.get("bridge", {})
        res.tables["prior_data_conflict"] = _safe(
            notes, "prior-data conflict", _conflict, prior_data_conflict, res.objects["map_prior_plain"],
            res.results["vague"], tname, robust_weight=b.get("robust_weight", 0.2),
            robust_sd=b.get("robust_sd"))
    _cox_core(res, res.dt, cox)
    if "source" in res.results:
        res.figures["source_forest"] = _safe(notes, "forest plot of the source", plots.forest,
                                             res.results["source"], res.objects["studies"],
                                             title="Source meta-analysis")


def _conflict(fn, prior, vague_dt, tname, **kw) -> pd.DataFrame:
    out = fn(prior, vague_dt, coord=tname, **kw)
    if isinstance(out, pd.Series):
        return out.to_frame("value").rename_axis("quantity")
    if isinstance(out, pd.DataFrame):
        return out
    if isinstance(out, Mapping):
        return pd.DataFrame([dict(out)], index=pd.Index(["conflict"], name="check"))
    return pd.DataFrame({"value": [out]}, index=pd.Index(["p_value"], name="check"))


def _mixture_table(prior) -> pd.DataFrame:
    tab = pd.DataFrame({"weight": prior.weights, "mean_log_hr": prior.means, "sd_log_hr": prior.sds,
                        "hr_at_mean": np.exp(prior.means)},
                       index=pd.Index([f"component {i + 1}" for i in range(prior.n_components)],
                                      name="component"))
    tab.attrs["ess_events"] = prior.ess()
    tab.loc["ESS (ELIR, events)"] = [np.nan, np.nan, np.nan, np.nan]
    tab.loc["ESS (ELIR, events)", "weight"] = prior.ess()
    return tab
