"""Analysis specs: a TOML file that names the data, the model, the priors, the sampler and the
report, and everything needed to run it reproducibly.

A spec is validated as a whole before anything runs: every problem (unknown key, wrong type,
value out of range, unknown data set, missing column, malformed prior) is collected with its key
path and reported in ONE :class:`SpecError`.

Layout (``kind = "cox" | "meta" | "propensity" | "bridge"``)::

    title = "Cox model of a SIMULATED cohort"
    kind = "cox"

    [data]                      # a bundled data set or a CSV file (path relative to the spec)
    dataset = "liu2022_cohort"  # or: path = "my_cohort.csv"
    duration = "months"
    event = "death"
    treatment = "metastasectomy"
    covariates = ["age", "bilateral"]

    [model]                     # options of the model class
    baseline = "piecewise"

    [model.priors.treatment_log_hr]          # Prior.to_dict tables
    dist = "Normal"
    kwargs = { mu = 0, sigma = 2.5 }

    [sampler]
    draws = 1000
    tune = 1000
    chains = 4
    random_seed = 1

    [report]
    times = [12, 24, 60]
    thresholds = [0.5]

Examples
--------
>>> from bayes_osteo.spec import validate_spec
>>> for p in validate_spec({"title": "x", "kind": "cox", "data": {"dataset": "nope"}}):
...     print(p[:50])
data.duration: required key missing
data.event: required key missing
data.dataset: unknown dataset 'nope'; known: ['bcg
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["SpecError", "AnalysisSpec", "load_spec", "validate_spec", "load_data", "KINDS",
           "known_datasets", "fast_mode", "FAST_SAMPLER", "run_spec", "parse_override", "prepare",
           "fit_spec"]

KINDS = ("cox", "meta", "propensity", "bridge")

#: Sampler settings used when ``BAYES_OSTEO_FAST=1`` (tests, notebooks in CI): small but valid.
FAST_SAMPLER = {"draws": 200, "tune": 200, "chains": 2}


def fast_mode() -> bool:
    """True when the environment asks for short runs (``BAYES_OSTEO_FAST=1``)."""
    return os.environ.get("BAYES_OSTEO_FAST", "").strip().lower() in ("1", "true", "yes", "on")


class SpecError(ValueError):
    """An invalid analysis spec. ``problems`` lists every problem, each prefixed by its key path."""

    def __init__(self, problems: Sequence[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" {source}" if source else ""
        n = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Invalid analysis spec{where}: {n} problem{'s' if n != 1 else ''}\n{lines}")


# -- schema ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class F:
    """One key of the schema: accepted type(s), whether required, allowed values, help text."""

    type: str
    required: bool = False
    choices: tuple | None = None
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None


def _type_ok(v: Any, t: str) -> bool:
    for alt in t.split("|"):
        if alt == "str" and isinstance(v, str):
            return True
        if alt == "bool" and isinstance(v, bool):
            return True
        if alt == "int" and isinstance(v, int) and not isinstance(v, bool):
            return True
        if alt == "float" and isinstance(v, int | float) and not isinstance(v, bool):
            return True
        if alt in ("table", "priors") and isinstance(v, Mapping):
            return True
        if alt == "tables" and isinstance(v, list) and all(isinstance(x, Mapping) for x in v):
            return True
        if alt.startswith("list[") and isinstance(v, list):
            inner = alt[5:-1]
            if all(_type_ok(x, inner) for x in v):
                return True
    return False


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, Mapping):
        return "table"
    return type(v).__name__


_SOURCE = {
    "dataset": F("str", doc="a bundled data set (bayes_osteo.datasets.<name>())"),
    "path": F("str", doc="a CSV file, relative to the spec file"),
    "query": F("str", doc="pandas DataFrame.query() expression selecting rows"),
}
DATA_COHORT = {
    **_SOURCE,
    "duration": F("str", True, doc="follow-up time column"),
    "event": F("str", True, doc="event indicator column (0/1)"),
    "covariates": F("list[str]", doc="adjustment covariates"),
    "treatment": F("str", doc="treatment column (0/1)"),
    "strata": F("str", doc="stratification column (separate baseline hazards)"),
    "cluster": F("str", doc="cluster column (shared frailty)"),
    "weights": F("str", doc="case-weight column"),
    "entry": F("str", doc="delayed-entry time column"),
    "dropna": F("bool", doc="drop rows with missing values (reported), instead of failing"),
}
DATA_META_ONE = {
    **_SOURCE,
    "log_hr": F("str", doc="log hazard-ratio column (with se)"),
    "se": F("str", doc="standard-error column of log_hr"),
    "hr": F("str", doc="hazard-ratio column (with lower, upper)"),
    "lower": F("str", doc="lower confidence-limit column"),
    "upper": F("str", doc="upper confidence-limit column"),
    "ci_level": F("float", minimum=0.5, maximum=0.999, doc="level of the confidence limits"),
    "study": F("str", doc="study-label column"),
    "group": F("str|list[str]", doc="column(s) defining separate pooled groups"),
    "group_label": F("str", doc="fixed group label for every row of this source"),
    "label": F("str", doc="how this source is described in the report"),
}
DATA_META = {**DATA_META_ONE, "include": F("tables", doc="more sources appended ([[data.include]])")}

_COX_OPTS = {
    "baseline": F("str", choices=("partial", "piecewise")),
    "ties": F("str", choices=("efron", "breslow")),
    "cut_points": F("list[float]"),
    "n_intervals": F("int", minimum=1),
    "subgroups": F("list[str]", doc="columns of pre-specified treatment-effect subgroups"),
    "time_varying": F("bool"),
    "priors": F("priors"),
}
MODEL = {
    "cox": _COX_OPTS,
    "meta": {
        "effects": F("str", choices=("random", "fixed")),
        "share_tau": F("bool"),
        "moderators": F("list[str]"),
        "priors": F("priors"),
    },
    "propensity": {
        **_COX_OPTS,
        "method": F("str|list[str]", doc="matching | stratification | covariate | iptw"),
        "confounders": F("list[str]", doc="propensity-model covariates (default data.covariates)"),
        "caliper": F("float", minimum=0, doc="matching caliper, SD of the logit score"),
        "matching": F("str", choices=("nearest", "cardinality"),
                      doc="greedy nearest neighbour, or the most pairs with every |SMD| <= 0.1"),
        "n_strata": F("int", minimum=2, doc="stratification: number of score strata"),
        "ps_draws": F("str", choices=("posterior", "mean"), doc="propagate score draws or use the mean"),
        "n_ps_draws": F("int", minimum=1, doc="score draws (outcome fits) mixed"),
        "estimand": F("str", choices=("ATE", "ATT")),
        "trim": F("float", minimum=0, maximum=0.5),
        "adjust": F("list[str]", doc="extra outcome covariates"),
        "splines": F("list[str]", doc="score covariates entered as restricted cubic splines"),
        "ps_priors": F("priors"),
    },
    "bridge": {k: v for k, v in _COX_OPTS.items()},
}
PS_METHODS = ("matching", "stratification", "covariate", "iptw")
SAMPLER = {
    "draws": F("int", minimum=1),
    "tune": F("int", minimum=0),
    "chains": F("int", minimum=1),
    "random_seed": F("int", minimum=0),
    "nuts_sampler": F("str", choices=("nutpie", "pymc", "numpyro", "blackjax")),
    "target_accept": F("float", minimum=0.5, maximum=0.999),
    "method": F("str", choices=("exact", "nuts"), doc="meta-analysis only"),
    "cores": F("int", minimum=1),
}
REPORT = {
    "times": F("list[float]", doc="times for survival probabilities"),
    "thresholds": F("list[float]", doc="report P(HR < t) for each t"),
    "by": F("str", doc="column whose levels get separate survival curves"),
    "horizon": F("float", minimum=0, doc="restricted mean survival time horizon"),
    "km": F("bool"),
    "leave_one_out": F("bool"),
    "diagnostic_plots": F("bool"),
}
BRIDGE = {
    "robust_weight": F("float", minimum=0, maximum=1),
    "robust_sd": F("float", minimum=0),
    "group": F("str", doc="meta-analysis group whose predictive distribution is the prior"),
    "n_components": F("int", minimum=1),
}
SOURCE = {"title": F("str"), "data": F("table", True), "model": F("table"), "sampler": F("table")}
TOP = {
    "title": F("str", True),
    "description": F("str"),
    "kind": F("str", True, choices=KINDS),
    "data": F("table", True),
    "model": F("table"),
    "sampler": F("table"),
    "report": F("table"),
    "source": F("table", doc="bridge only: the meta-analysis giving the prior"),
    "bridge": F("table", doc="bridge only: options of the meta-analytic-predictive prior"),
}


def _check_table(tbl: Mapping, schema: Mapping[str, F], path: str, errors: list[str]) -> None:
    for key in tbl:
        if key not in schema:
            known = ", ".join(sorted(schema))
            errors.append(f"{_p(path, key)}: unknown key; allowed here: {known}")
    for key, f in schema.items():
        if key not in tbl:
            if f.required:
                errors.append(f"{_p(path, key)}: required key missing")
            continue
        v = tbl[key]
        if not _type_ok(v, f.type):
            errors.append(f"{_p(path, key)}: expected {_pretty(f.type)}, got {_type_name(v)} {v!r}")
            continue
        if f.choices is not None:
            vals = v if isinstance(v, list) else [v]
            for x in vals:
                if x not in f.choices:
                    errors.append(f"{_p(path, key)}: {x!r} is not one of {list(f.choices)}")
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, int | float) and not isinstance(x, bool):
                if f.minimum is not None and x < f.minimum:
                    errors.append(f"{_p(path, key)}: {x} is below the minimum {f.minimum:g}")
                if f.maximum is not None and x > f.maximum:
                    errors.append(f"{_p(path, key)}: {x} is above the maximum {f.maximum:g}")


def _p(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _pretty(t: str) -> str:
    names = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true/false",
             "table": "a table", "priors": "a table of priors", "tables": "an array of tables",
             "list[str]": "an array of strings", "list[float]": "an array of numbers",
             "list[int]": "an array of integers"}
    return " or ".join(names.get(a, a) for a in t.split("|"))


# -- data sets ---------------------------------------------------------------------------------
def known_datasets() -> list[str]:
    """Names accepted by ``data.dataset`` (loaders in :mod:`bayes_osteo.datasets`)."""
    from . import datasets

    return sorted(n for n in getattr(datasets, "__all__", []) if not n.startswith("simulate")
                  and callable(getattr(datasets, n, None)))


def load_data(src: Mapping, base_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """The DataFrame a ``[data]`` table names (bundled data set or CSV), rows selected by ``query``.

    ``attrs["provenance"]`` records where it came from: data-set name and its citation/``simulated``
    flag, or the CSV path and its SHA-256.
    """
    from . import datasets

    if "dataset" in src:
        name = src["dataset"]
        if name not in known_datasets():
            raise ValueError(f"unknown dataset {name!r}; known: {known_datasets()}")
        df = getattr(datasets, name)()
        attrs = dict(df.attrs)
        prov = {"source": "bundled dataset", "name": name,
                "simulated": bool(attrs.get("simulated", False)),
                "description": str(attrs.get("description", "")),
                "citation": str(attrs.get("citation", ""))}
    elif "path" in src:
        p = Path(src["path"])
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        if not p.exists():
            raise FileNotFoundError(f"no CSV file at {p}")
        raw = p.read_bytes()
        df = pd.read_csv(p)
        attrs = {}
        prov = {"source": "CSV file", "name": str(p), "sha256": hashlib.sha256(raw).hexdigest()[:16],
                "simulated": False, "description": "", "citation": ""}
    else:
        raise ValueError("give data.dataset (a bundled data set) or data.path (a CSV file)")
    if "query" in src:
        n0 = len(df)
        df = df.query(src["query"]).reset_index(drop=True)
        prov["query"] = src["query"]
        prov["rows_selected"] = f"{len(df)} of {n0}"
    if "label" in src:
        prov["label"] = src["label"]
    df.attrs = {**attrs, "provenance": prov}
    prov["n_rows"] = len(df)
    return df


# -- the spec object ---------------------------------------------------------------------------
@dataclass
class AnalysisSpec:
    """A validated analysis spec.

    Attributes
    ----------
    raw : dict
        The parsed TOML.
    path : Path or None
        Where it was read from (CSV paths are relative to its folder).
    text : str
        The TOML text (copied into every report).
    """

    raw: dict
    path: Path | None = None
    text: str = ""
    _frames: dict = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return self.raw["kind"]

    @property
    def title(self) -> str:
        return self.raw["title"]

    @property
    def name(self) -> str:
        return self.path.stem if self.path is not None else self.title.split(":")[0].replace(" ", "_")

    @property
    def base_dir(self) -> Path | None:
        return self.path.parent if self.path is not None else None

    def section(self, name: str) -> dict:
        return copy.deepcopy(self.raw.get(name, {}))

    def sampler(self, **overrides: Any) -> dict:
        """Sampler settings: the spec's, then ``BAYES_OSTEO_FAST`` limits, then explicit overrides."""
        s = self.section("sampler")
        if fast_mode():
            for k, v in FAST_SAMPLER.items():
                s[k] = min(s.get(k, v), v)
        s.update({k: v for k, v in overrides.items() if v is not None})
        return s

    def frame(self, key: str = "data") -> pd.DataFrame:
        """The data of ``[data]`` (or ``[source.data]`` with ``key="source"``), loaded once."""
        if key not in self._frames:
            src = self.raw["data"] if key == "data" else self.raw["source"]["data"]
            self._frames[key] = _load_all(src, self.base_dir)
        return self._frames[key]

    def to_json(self) -> str:
        return json.dumps(self.raw, default=str)

    def _repr_html_(self) -> str:
        import html

        return (f"<b>Analysis spec</b> ({html.escape(self.kind)}): {html.escape(self.title)}"
                f"<pre>{html.escape(self.text or json.dumps(self.raw, indent=2))}</pre>")


def _load_all(src: Mapping, base_dir) -> pd.DataFrame:
    """Main source plus ``include`` sources (meta-analysis), with a ``_source`` column."""
    main = load_data(src, base_dir)
    incs = src.get("include", [])
    if not incs:
        return main
    frames = [_meta_frame(main, src)]
    provs = [main.attrs["provenance"]]
    for inc in incs:
        d = load_data(inc, base_dir)
        frames.append(_meta_frame(d, inc))
        provs.append(d.attrs["provenance"])
    out = pd.concat(frames, ignore_index=True)
    out.attrs = {"provenance": provs[0], "provenances": provs, "combined": True}
    return out


def _meta_columns(src: Mapping, attrs: Mapping) -> dict:
    """Which columns hold the estimates: explicit keys, else the data set's ``attrs`` hints."""
    out = {}
    for k in ("log_hr", "se", "hr", "lower", "upper", "study"):
        if k in src:
            out[k] = src[k]
        elif k in attrs and isinstance(attrs[k], str):
            out[k] = attrs[k]
    if "log_hr" in src or "se" in src:
        out.pop("hr", None), out.pop("lower", None), out.pop("upper", None)
    elif "hr" in src:
        out.pop("log_hr", None), out.pop("se", None)
    if "study" not in out:
        for c in ("study", "row_id"):
            out.setdefault("study", c)
            break
    return out


def _meta_frame(df: pd.DataFrame, src: Mapping) -> pd.DataFrame:
    """One meta source as columns study, log_hr, se, group, _source (standard form)."""
    from .data import StudyEstimates

    cols = _meta_columns(src, df.attrs)
    study = cols.get("study")
    if study not in df.columns:
        study = "row_id" if "row_id" in df.columns else None
    group = src.get("group")
    if "group_label" in src:
        garr = [src["group_label"]] * len(df)
    elif group is not None:
        gcols = [group] if isinstance(group, str) else list(group)
        garr = df[gcols].astype(str).agg(" | ".join, axis=1).to_list()
    else:
        garr = None
    if "log_hr" in cols:
        st = StudyEstimates(df[cols["log_hr"]].to_numpy(float), df[cols["se"]].to_numpy(float),
                            study=None if study is None else df[study].astype(str).to_numpy(),
                            group=garr)
    else:
        st = StudyEstimates.from_hr_ci(df.assign(_group=garr) if garr is not None else df,
                                       hr=cols["hr"], lower=cols["lower"], upper=cols["upper"],
                                       study=study, ci_level=src.get("ci_level", 0.95),
                                       group="_group" if garr is not None else None)
    out = pd.DataFrame({"study": st.study, "log_hr": st.log_hr, "se": st.se})
    if garr is not None:
        out["group"] = garr
    prov = df.attrs.get("provenance", {})
    out["_source"] = prov.get("label") or prov.get("name", "")
    out["_simulated"] = bool(prov.get("simulated", False))
    return out


# -- validation --------------------------------------------------------------------------------
def _prior_names(kind: str) -> tuple[str, ...]:
    try:
        if kind in ("cox", "propensity", "bridge"):
            from .cox import CoxModel

            names = tuple(CoxModel.prior_names)
        else:
            from .meta import MetaAnalysis

            names = tuple(MetaAnalysis.prior_names)
    except Exception:  # model module not importable yet: the documented contract names
        names = (("log_hr", "treatment_log_hr", "frailty_sd", "subgroup_sd", "smoothing_sd",
                  "log_baseline_level") if kind != "meta" else ("log_hr", "tau"))
    if kind == "bridge":
        names = tuple(n for n in names if n != "treatment_log_hr")
    return names


def _check_priors(priors: Mapping, allowed: Sequence[str], path: str, errors: list[str],
                  ) -> None:
    from pymc_extras.prior import Prior

    from .priors import NormalMixture

    for name, d in priors.items():
        p = f"{path}.{name}"
        if name not in allowed:
            errors.append(f"{p}: unknown prior name; this model accepts priors for {sorted(allowed)}")
            continue
        if not isinstance(d, Mapping):
            errors.append(f"{p}: expected a table with 'dist' and 'kwargs' (Prior.to_dict form), "
                          f"got {_type_name(d)}")
            continue
        extra = sorted(set(d) - {"dist", "kwargs", "dims", "centered", "transform"})
        for k in extra:
            errors.append(f"{p}.{k}: unknown key; a prior has dist, kwargs (and optionally dims, "
                          "centered, transform)")
        dist = d.get("dist")
        if not isinstance(dist, str):
            errors.append(f"{p}.dist: required: the distribution name, e.g. 'Normal'")
            continue
        kwargs = d.get("kwargs", {})
        if not isinstance(kwargs, Mapping):
            errors.append(f"{p}.kwargs: expected a table of parameters, got {_type_name(kwargs)}")
            continue
        if dist == "NormalMixture":
            try:
                NormalMixture.from_dict(d)
            except KeyError as e:
                errors.append(f"{p}.kwargs: NormalMixture needs weights, means and sds; missing {e}")
            except (ValueError, TypeError) as e:
                errors.append(f"{p}.kwargs: {e}")
            continue
        import pymc as pm

        if not hasattr(pm, dist):
            errors.append(f"{p}.dist: unknown distribution {dist!r}")
            continue
        try:
            Prior.from_dict(dict(d))
        except Exception as e:  # noqa: BLE001 - report whatever pymc_extras says, with the path
            errors.append(f"{p}.kwargs: {e}")


def _columns_needed(kind: str, raw: Mapping) -> list[tuple[str, str]]:
    """(key path, column) pairs that must exist in the cohort data."""
    data = raw.get("data", {}) if isinstance(raw.get("data"), Mapping) else {}
    model = raw.get("model", {}) if isinstance(raw.get("model"), Mapping) else {}
    report = raw.get("report", {}) if isinstance(raw.get("report"), Mapping) else {}
    out = []
    for k in ("duration", "event", "treatment", "strata", "cluster", "weights", "entry"):
        if isinstance(data.get(k), str):
            out.append((f"data.{k}", data[k]))
    for k, sec in (("covariates", data), ("subgroups", model), ("confounders", model),
                   ("adjust", model), ("splines", model)):
        v = sec.get(k)
        if isinstance(v, list):
            pre = "data" if sec is data else "model"
            out += [(f"{pre}.{k}[{i}]", c) for i, c in enumerate(v) if isinstance(c, str)]
    if isinstance(report.get("by"), str):
        out.append(("report.by", report["by"]))
    return out


def _check_meta_source(src: Mapping, path: str, errors: list[str], base_dir, *,
                       moderators: Sequence[str] = ()) -> None:
    _check_table(src, DATA_META if path.endswith("data") else DATA_META_ONE, path, errors)
    n_src = ("dataset" in src) + ("path" in src)
    if n_src != 1:
        errors.append(f"{path}: give exactly one of 'dataset' (bundled) or 'path' (CSV)")
        return
    if "log_hr" in src and "hr" in src:
        errors.append(f"{path}: give either log_hr + se or hr + lower + upper, not both")
    for a, b in (("log_hr", "se"), ("se", "log_hr")):
        if a in src and b not in src:
            errors.append(f"{path}.{b}: required with {path}.{a}")
    for k in ("hr", "lower", "upper"):
        if any(x in src for x in ("hr", "lower", "upper")) and k not in src:
            errors.append(f"{path}.{k}: required with the other hr/lower/upper keys")
    try:
        df = load_data({k: src[k] for k in ("dataset", "path") if k in src}, base_dir)
    except (ValueError, FileNotFoundError) as e:
        key = "dataset" if "dataset" in src else "path"
        errors.append(f"{path}.{key}: {e}")
        return
    if isinstance(src.get("query"), str):
        try:
            df = df.query(src["query"])
        except Exception as e:  # noqa: BLE001
            errors.append(f"{path}.query: cannot evaluate {src['query']!r}: {e}")
        else:
            if len(df) == 0:
                errors.append(f"{path}.query: selects no rows")
    cols = _meta_columns(src, df.attrs)
    if not ("log_hr" in cols or "hr" in cols):
        errors.append(f"{path}: name the estimate columns (log_hr + se, or hr + lower + upper); "
                      f"the data set gives no default")
    need = [(f"{path}.{k}", c) for k, c in cols.items() if isinstance(c, str) and k != "study"]
    if "study" in src:
        need.append((f"{path}.study", src["study"]))
    g = src.get("group")
    for i, c in enumerate([g] if isinstance(g, str) else (g or [])):
        if isinstance(c, str):
            need.append((f"{path}.group" + ("" if isinstance(g, str) else f"[{i}]"), c))
    for i, c in enumerate(moderators):
        need.append((f"model.moderators[{i}]", c))
    for key, c in need:
        if c not in df.columns:
            errors.append(f"{key}: column {c!r} not in the data (columns: {', '.join(map(str, df.columns))})")


def _check_cohort_source(raw: Mapping, kind: str, errors: list[str], base_dir) -> None:
    data = raw["data"]
    _check_table(data, DATA_COHORT, "data", errors)
    if ("dataset" in data) + ("path" in data) != 1:
        errors.append("data: give exactly one of 'dataset' (bundled) or 'path' (CSV)")
        return
    try:
        df = load_data({k: data[k] for k in ("dataset", "path") if k in data}, base_dir)
    except (ValueError, FileNotFoundError) as e:
        errors.append(f"data.{'dataset' if 'dataset' in data else 'path'}: {e}")
        return
    if isinstance(data.get("query"), str):
        try:
            df.query(data["query"])
        except Exception as e:  # noqa: BLE001
            errors.append(f"data.query: cannot evaluate {data['query']!r}: {e}")
    for key, c in _columns_needed(kind, raw):
        if c not in df.columns:
            errors.append(f"{key}: column {c!r} not in the data (columns: {', '.join(map(str, df.columns))})")
    if kind in ("propensity", "bridge") and "treatment" not in data:
        errors.append(f"data.treatment: required for kind = '{kind}'")


def validate_spec(raw: Mapping, *, base_dir: str | os.PathLike | None = None) -> list[str]:
    """Every problem of a parsed spec, each as ``"key.path: message"`` (empty list: valid)."""
    errors: list[str] = []
    if not isinstance(raw, Mapping):
        return [f"spec: expected a table, got {_type_name(raw)}"]
    _check_table(raw, TOP, "", errors)
    kind = raw.get("kind")
    if kind not in KINDS:
        return errors  # nothing else can be checked without the kind (already reported)
    if kind != "bridge":
        for k in ("source", "bridge"):
            if k in raw:
                errors.append(f"{k}: only used by kind = 'bridge'")
    elif "source" not in raw:
        errors.append("source: required for kind = 'bridge' (the meta-analysis that gives the prior)")
    model = raw.get("model", {})
    if isinstance(model, Mapping):
        _check_table(model, MODEL[kind], "model", errors)
        if isinstance(model.get("priors"), Mapping):
            _check_priors(model["priors"], _prior_names(kind), "model.priors", errors)
        if kind == "propensity":
            m = model.get("method", "iptw")
            for x in ([m] if isinstance(m, str) else m if isinstance(m, list) else []):
                if x not in PS_METHODS:
                    errors.append(f"model.method: {x!r} is not one of {list(PS_METHODS)}")
            if isinstance(model.get("ps_priors"), Mapping):
                _check_priors(model["ps_priors"], ("beta", "intercept"), "model.ps_priors", errors)
    sampler = raw.get("sampler", {})
    if isinstance(sampler, Mapping):
        _check_table(sampler, SAMPLER, "sampler", errors)
        if "method" in sampler and kind != "meta":
            errors.append("sampler.method: only for kind = 'meta' (exact or nuts)")
    if isinstance(raw.get("report"), Mapping):
        _check_table(raw["report"], REPORT, "report", errors)
    if isinstance(raw.get("bridge"), Mapping):
        _check_table(raw["bridge"], BRIDGE, "bridge", errors)
    data = raw.get("data")
    if isinstance(data, Mapping):
        if kind == "meta":
            mods = model.get("moderators", []) if isinstance(model, Mapping) else []
            _check_meta_source(data, "data", errors, base_dir,
                               moderators=[m for m in mods if isinstance(m, str)] if isinstance(mods, list) else [])
            for i, inc in enumerate(data.get("include", []) if isinstance(data.get("include"), list) else []):
                if isinstance(inc, Mapping):
                    _check_meta_source(inc, f"data.include[{i}]", errors, base_dir)
        else:
            _check_cohort_source(raw, kind, errors, base_dir)
    src = raw.get("source")
    if kind == "bridge" and isinstance(src, Mapping):
        _check_table(src, SOURCE, "source", errors)
        if isinstance(src.get("data"), Mapping):
            _check_meta_source(src["data"], "source.data", errors, base_dir)
        if isinstance(src.get("model"), Mapping):
            _check_table(src["model"], MODEL["meta"], "source.model", errors)
            if isinstance(src["model"].get("priors"), Mapping):
                _check_priors(src["model"]["priors"], _prior_names("meta"), "source.model.priors", errors)
        if isinstance(src.get("sampler"), Mapping):
            _check_table(src["sampler"], SAMPLER, "source.sampler", errors)
    return errors


def parse_override(item: str) -> tuple[str, Any]:
    """``"model.n_ps_draws=2"`` -> ``("model.n_ps_draws", 2)``; the value is read as a TOML value
    (numbers, booleans, arrays, quoted strings), else taken as a bare string."""
    if "=" not in item:
        raise SpecError([f"--set {item}: expected KEY=VALUE, e.g. sampler.draws=500"])
    key, val = item.split("=", 1)
    try:
        v = tomllib.loads(f"v = {val}")["v"]
    except tomllib.TOMLDecodeError:
        v = val
    return key.strip(), v


def _apply_overrides(raw: dict, overrides: Mapping[str, Any]) -> None:
    for key, v in overrides.items():
        node = raw
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SpecError([f"--set {key}: {p} is not a table"])
        node[parts[-1]] = v


def load_spec(spec: str | os.PathLike | Mapping, *, base_dir: str | os.PathLike | None = None,
              overrides: Mapping[str, Any] | None = None) -> AnalysisSpec:
    """Read (TOML path or text, or an already parsed mapping) and validate a spec.

    ``overrides`` maps dotted keys to values (``{"sampler.draws": 200}``), applied before
    validation and recorded as a comment at the end of :attr:`AnalysisSpec.text`.

    Raises
    ------
    SpecError
        Listing every problem found, each with its key path.
    """
    path = None
    if isinstance(spec, AnalysisSpec):
        return spec
    if isinstance(spec, Mapping):
        raw, text = dict(spec), ""
    else:
        s = str(spec)
        if "\n" not in s and (s.endswith(".toml") or Path(s).exists()):
            path = Path(s)
            if not path.exists():
                raise SpecError([f"file: no spec at {path}"], str(path))
            text = path.read_text(encoding="utf-8")
        else:
            text = s
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SpecError([f"TOML syntax: {e}"], str(path) if path else None) from None
    if overrides:
        raw = copy.deepcopy(raw)
        _apply_overrides(raw, overrides)
        text = (text + "\n" if text else "") + "# overrides applied at run time: " + ", ".join(
            f"{k} = {json.dumps(v)}" for k, v in overrides.items()) + "\n"
    problems = validate_spec(raw, base_dir=path.parent if path else base_dir)
    if problems:
        raise SpecError(problems, str(path) if path else None)
    return AnalysisSpec(raw=raw, path=path.resolve() if path else None, text=text)


# -- running -------------------------------------------------------------------------------------
def _priors(tbl: Mapping | None) -> dict:
    from .priors import prior_from_dict

    return {k: prior_from_dict(v) for k, v in (tbl or {}).items()}


def _survival_data(spec: AnalysisSpec):
    from .data import SurvivalData

    d = spec.section("data")
    df = spec.frame()
    kw = {k: d[k] for k in ("duration", "event", "treatment", "strata", "cluster", "weights", "entry")
          if k in d}
    return SurvivalData.from_frame(df, covariates=d.get("covariates", []),
                                   dropna=d.get("dropna", False), **kw)


def _cox_options(model: Mapping) -> dict:
    keys = ("baseline", "ties", "cut_points", "n_intervals", "subgroups", "time_varying")
    return {k: model[k] for k in keys if k in model}


def _study_estimates(spec: AnalysisSpec, key: str = "data"):
    from .data import StudyEstimates

    src = spec.raw["data"] if key == "data" else spec.raw["source"]["data"]
    df = spec.frame(key)
    if not df.attrs.get("combined"):
        df = _meta_frame(df, src).assign(_prov=0)
    group = df["group"].to_numpy(object) if "group" in df.columns else None
    return StudyEstimates(df["log_hr"].to_numpy(float), df["se"].to_numpy(float),
                          study=df["study"].astype(str).to_numpy(object), group=group)


def provenance(spec: AnalysisSpec) -> list[dict]:
    """One record per data source of the spec (main data, included sources, bridge source)."""
    out = []
    for key in ("data", "source") if spec.kind == "bridge" else ("data",):
        df = spec.frame(key)
        out += list(df.attrs.get("provenances") or [df.attrs.get("provenance", {})])
    return out


def prepare(spec: AnalysisSpec, results: Mapping | None = None) -> dict:
    """Data and (unfitted) model objects of a spec. For ``bridge`` the MAP prior is derived from
    the source meta-analysis (its exact posterior, or ``results["source"]`` when fitted by NUTS)."""
    model = spec.section("model")
    objs: dict[str, Any] = {}
    if spec.kind == "meta":
        from .meta import MetaAnalysis

        st = _study_estimates(spec)
        opts = {k: model[k] for k in ("effects", "share_tau", "moderators") if k in model}
        objs.update(studies=st, meta=MetaAnalysis(st, priors=_priors(model.get("priors")), **opts))
        return objs
    sd = _survival_data(spec)
    objs["sd"] = sd
    priors = _priors(model.get("priors"))
    if spec.kind == "cox":
        from .cox import CoxModel

        objs["cox"] = CoxModel(sd, priors=priors, **_cox_options(model))
    elif spec.kind == "propensity":
        from .propensity import PropensityScore

        conf = model.get("confounders") or [c for c in spec.raw["data"].get("covariates", [])]
        objs["ps"] = PropensityScore(sd, treatment=sd.treatment, covariates=conf,
                                     splines=model.get("splines"),
                                     priors=_priors(model.get("ps_priors")))
        objs["priors"] = priors
    elif spec.kind == "bridge":
        from .bridge import map_prior
        from .cox import CoxModel
        from .meta import MetaAnalysis

        src = spec.raw["source"]
        smodel = dict(src.get("model", {}))
        st = _study_estimates(spec, "source")
        opts = {k: smodel[k] for k in ("effects", "share_tau", "moderators") if k in smodel}
        ma = MetaAnalysis(st, priors=_priors(smodel.get("priors")), **opts)
        b = spec.section("bridge")
        method = src.get("sampler", {}).get("method", "exact")
        basis = ma if method == "exact" or not results or "source" not in results else results["source"]
        mkw = {"group": b.get("group"), "max_components": b.get("n_components", 4)}
        prior = map_prior(basis, robust_weight=b.get("robust_weight", 0.2), robust_sd=b.get("robust_sd"),
                          **mkw)
        objs["map_prior_plain"] = map_prior(basis, robust_weight=0, **mkw)  # for the conflict check
        vague = {k: v for k, v in priors.items()}
        objs.update(studies=st, meta=ma, map_prior=prior,
                    cox=CoxModel(sd, priors={**priors, "treatment_log_hr": prior}, **_cox_options(model)),
                    cox_vague=CoxModel(sd, priors=vague, **_cox_options(model)))
    return objs


def _nuts_kwargs(s: Mapping, progressbar: bool) -> dict:
    kw = {k: s[k] for k in ("draws", "tune", "chains", "random_seed") if k in s}
    for k in ("nuts_sampler", "target_accept", "cores"):
        if k in s:
            kw[k] = s[k]
    kw["progressbar"] = progressbar
    return kw


def fit_spec(spec: AnalysisSpec, objs: Mapping, *, progressbar: bool = True, log=None,
             **overrides: Any) -> dict:
    """Fit the models of a prepared spec; returns ``{"posterior": DataTree, ...}``."""
    say = log or (lambda *_: None)
    s = spec.sampler(**overrides)
    if spec.kind == "meta":
        method = s.get("method", "exact")
        say(f"[bayes-osteo] meta-analysis of {objs['studies'].k} estimates ({method} posterior)")
        kw = _nuts_kwargs(s, progressbar)
        return {"posterior": objs["meta"].fit(method=method, **kw)}
    if spec.kind == "cox":
        say(f"[bayes-osteo] Cox model: {objs['sd'].n} patients, {objs['sd'].n_events} events")
        return {"posterior": objs["cox"].fit(**_nuts_kwargs(s, progressbar))}
    if spec.kind == "bridge":
        src_s = dict(spec.raw["source"].get("sampler", {}))
        method = src_s.get("method", "exact")
        say(f"[bayes-osteo] source meta-analysis ({method}); MAP prior: {objs['map_prior']!r}")
        source = objs["meta"].fit(method=method, **_nuts_kwargs({**s, **src_s}, progressbar))
        say("[bayes-osteo] cohort under the meta-analytic-predictive prior")
        post = objs["cox"].fit(**_nuts_kwargs(s, progressbar))
        say("[bayes-osteo] cohort under the vague prior (for comparison and prior-data conflict)")
        vague = objs["cox_vague"].fit(**_nuts_kwargs(s, progressbar))
        return {"posterior": post, "source": source, "vague": vague}
    if spec.kind == "propensity":
        return _fit_propensity(spec, objs, s, progressbar, say)
    raise ValueError(f"unknown kind {spec.kind!r}")


def _fit_propensity(spec: AnalysisSpec, objs: Mapping, s: Mapping, progressbar: bool, say) -> dict:
    """Score model once; then one outcome analysis per method, sharing the fitted score."""
    from .propensity_methods import propensity_analysis

    model = spec.section("model")
    methods = model.get("method", "iptw")
    methods = [methods] if isinstance(methods, str) else list(methods)
    ps = objs["ps"]
    kw = _nuts_kwargs(s, progressbar)
    say(f"[bayes-osteo] propensity-score model ({len(ps.covariates)} covariates)")
    ps.fit(**kw)
    opts = {"caliper": model.get("caliper", 0.2), "matching": model.get("matching", "nearest"),
            "k": model.get("n_strata", 5),
            "ps_draws": model.get("ps_draws", "posterior"), "n_ps_draws": model.get("n_ps_draws", 10),
            "estimand": model.get("estimand", "ATE"), "trim": model.get("trim"),
            "adjust": model.get("adjust", ()), "baseline": model.get("baseline", "partial"),
            "ties": model.get("ties", "efron"), "priors": objs["priors"]}
    out = {}
    for i, m in enumerate(methods):
        say(f"[bayes-osteo] outcome model: {m} ({opts['n_ps_draws'] if opts['ps_draws'] == 'posterior' else 1}"
            " score draw(s))")
        dt = propensity_analysis(objs["sd"], m, ps=ps, **opts, **kw)
        out["posterior" if i == 0 else m] = dt
    out["propensity_score"] = ps.result
    return out


def run_spec(spec: str | os.PathLike | Mapping | AnalysisSpec, *, draws: int | None = None,
             tune: int | None = None, chains: int | None = None, random_seed: int | None = None,
             progressbar: bool = True, log=None):
    """Validate, fit and summarise an analysis spec.

    Parameters
    ----------
    spec : path, TOML text, mapping or AnalysisSpec
    draws, tune, chains, random_seed : int, optional
        Override the spec's ``[sampler]`` (``BAYES_OSTEO_FAST=1`` caps them for quick runs).
    progressbar : bool
        Show the sampler's progress bar.
    log : callable, optional
        Called with progress messages (e.g. ``print``).

    Returns
    -------
    AnalysisResult
        ``.results`` (DataTrees), ``.tables``, ``.figures``; write it with
        :func:`bayes_osteo.report.write_report`.

    Examples
    --------
    >>> import bayes_osteo as bo
    >>> res = bo.run_spec("models/ning2026_meta.toml", progressbar=False)  # doctest: +SKIP
    >>> res.summary  # doctest: +SKIP
    """
    import time

    spec = load_spec(spec)
    t0 = time.perf_counter()
    objs = prepare(spec)
    results = fit_spec(spec, objs, progressbar=progressbar, log=log, draws=draws, tune=tune,
                       chains=chains, random_seed=random_seed)
    t1 = time.perf_counter()
    from .report import products

    res = products(spec, results, objs)
    res.elapsed = {"fit_s": t1 - t0, "summaries_s": time.perf_counter() - t1}
    return res
