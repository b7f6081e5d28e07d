"""Write the narrated example notebooks (unexecuted) with nbformat.

Run: ``.venv/bin/python notebooks/make_notebooks.py``. The notebooks import only ``bayes_osteo``
(plus numpy/pandas/matplotlib for display) and read ``BAYES_OSTEO_FAST=1`` to use short chains
(the test suite executes them that way with nbclient).
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent

SETUP = '''import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import bayes_osteo as bo

FAST = os.environ.get("BAYES_OSTEO_FAST") == "1"   # the test suite sets this: short chains
DRAWS, TUNE, CHAINS = (200, 200, 2) if FAST else (1000, 1000, 4)
warnings.filterwarnings("ignore", category=bo.summarize.ConvergenceWarning) if FAST else None
pd.set_option("display.precision", 3)'''


def nb(cells):
    book = nbf.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.cells = [nbf.v4.new_markdown_cell(c[3:]) if c.startswith("md:") else nbf.v4.new_code_cell(c)
                  for c in cells]
    return book


COHORT = [
    """md:# 1. A Bayesian Cox model of a (simulated) relapsed-osteosarcoma cohort

**The data are SIMULATED.** `bo.datasets.liu2022_cohort()` generates 125 patients (59 operated)
calibrated to the published summaries of Liu et al. 2022 (J Thorac Cardiovasc Surg
163(2):469-479.e8, PMID 33349447); no patient record of that study exists in this package.

Question: how much does pulmonary metastasectomy lower the hazard of death after relapse, after
adjusting for the factors that drove the decision to operate, and is the benefit smaller in
patients with >= 3 involved lobes or high ALP?""",
    SETUP,
    """df = bo.datasets.liu2022_cohort()
print(df.attrs["description"][:300], "...")
print("simulated:", df.attrs["simulated"])
df.head()""",
    """md:## Descriptive survival: Kaplan-Meier and the log-rank test
The unadjusted comparison is confounded (surgery was offered to patients with better prognosis),
but it is the first look at the data.""",
    """confounders = df.attrs["confounders"]
sd = bo.SurvivalData.from_frame(df, duration="months", event="death", treatment="metastasectomy",
                                covariates=confounders)
sd""",
    """from bayes_osteo.cox import kaplan_meier, logrank

bo.plots.km(sd, by="metastasectomy")
logrank(sd, "metastasectomy")""",
    """md:## The model
Piecewise-exponential proportional hazards: `h_i(t) = h_0(t) exp(x_i' beta + z_i (b + delta_s(i)))`,
with a random-walk smoothing prior on `log h_0` over intervals, `beta ~ N(0, 2.5^2)` for the
confounders, the surgery log-HR `b ~ N(0, 2.5^2)`, and subgroup deviations
`delta_k ~ N(0, subgroup_sd^2)`, `subgroup_sd ~ HalfNormal(0.5)`: the two pre-specified subgroups
borrow strength from each other (partial pooling) instead of being analysed separately.""",
    """cox = bo.CoxModel(sd, baseline="piecewise", n_intervals=6, subgroups=["lobes_ge3", "alp_high"])
cox""",
    """dt = cox.fit(draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=2022, progressbar=False)
bo.summarize.diagnostics(dt)""",
    """md:## Hazard ratios
95% equal-tailed credible intervals; `p_hr_lt_1` is the posterior probability that the HR is below 1.
The generator's large-sample adjusted HR of surgery is stored with the data (`true_adjusted_hr`).""",
    """hr = bo.summarize.hazard_ratios(dt, thresholds=[0.5])
print("generator's adjusted HR:", round(df.attrs["true_adjusted_hr"], 3))
hr""",
    """bo.plots.hazard_ratio_plot(hr);""",
    """md:## Treatment effect by subgroup (partially pooled)""",
    """sub = cox.subgroup_effects(dt)
bo.plots.hazard_ratio_plot(sub, title="Surgery HR by subgroup")
sub""",
    """md:## Survival curves: the model against Kaplan-Meier
Posterior survival of each arm, averaged over that arm's own patients (what a Kaplan-Meier curve
estimates), with 95% bands and the numbers at risk.""",
    """bo.plots.survival(cox, dt, by="metastasectomy");""",
    """cox.survival(dt, times=[24, 60], by="metastasectomy")""",
    """cox.rmst(dt, 60, by="metastasectomy")""",
    """md:## Prior and posterior of the surgery effect""",
    """bo.plots.prior_posterior(dt, "log_hr", cox.priors["treatment_log_hr"],
                          coords={"covariate": "metastasectomy"}, hr_scale=True);""",
    """md:## Saving the result
The saved file carries the spec, seed, package versions and a data fingerprint, and no patient rows.""",
    """import tempfile

path = bo.save(dt, os.path.join(tempfile.mkdtemp(), "cohort.nc"))
again = bo.load(path)
{k: again.attrs[k] for k in ("bayes_osteo_model", "random_seed", "data_fingerprint", "patient_rows_saved")}""",
]

PROPENSITY = [
    """md:# 3. Propensity-score analyses of metastasectomy (simulated cohort)

**The data are SIMULATED** (`bo.datasets.liu2022_cohort()`, calibrated to Liu et al. 2022).
Surgery was not randomised: younger patients with solitary, unilateral nodules and a long
disease-free interval were more likely to be operated. A two-step Bayesian propensity score
(the outcome never informs the score model) balances these confounders; its posterior draws are
propagated into the outcome model so the HR's interval includes the score's uncertainty.""",
    SETUP,
    """from bayes_osteo.propensity import PropensityScore
from bayes_osteo.propensity_methods import propensity_analysis

df = bo.datasets.liu2022_cohort()
confounders = df.attrs["confounders"]
sd = bo.SurvivalData.from_frame(df, duration="months", event="death", treatment="metastasectomy",
                                covariates=confounders)
ps = PropensityScore(sd, covariates=confounders).fit(draws=DRAWS, tune=TUNE, chains=CHAINS,
                                                        random_seed=1, progressbar=False)
ps.coefficients()""",
    """md:## Overlap and balance""",
    """bo.plots.ps_overlap(ps.overlap_data());""",
    """bal = ps.balance()
bo.plots.love(bal)
bal""",
    """md:Greedy nearest-neighbour matching pairs close scores but, with ~50 pairs, leaves a chance
imbalance (SD ~ sqrt(2/50) = 0.2 per covariate) that can exceed the usual |SMD| <= 0.1.
*Cardinality matching* asks an integer programme for the most pairs within the same caliper with
every |SMD| <= 0.1 (Zubizarreta et al. 2014):""",
    """card = ps.balance(["matching"], matching="cardinality")
pd.DataFrame({"greedy": bal["smd_after_matching"], "cardinality": card["smd_after_matching"]}).round(3)""",
    """md:## Outcome analyses under four designs
Each design is repeated over a few posterior draws of the score and the posteriors mixed.
IPTW uses a weighted likelihood: a *pseudo-posterior*, flagged in the table. Matching uses the
cardinality match.""",
    """n_ps = 2 if FAST else 10
results = {}
for method in ["matching", "stratification", "covariate", "iptw"]:
    extra = {"matching": "cardinality"} if method == "matching" else {}
    results[method] = propensity_analysis(sd, method, ps=ps, n_ps_draws=n_ps, draws=DRAWS,
                                             tune=TUNE, chains=CHAINS, random_seed=7, **extra)
rows = []
for method, res in results.items():
    tab = bo.summarize.hazard_ratios(res)
    rows.append(tab.loc[["metastasectomy"]].assign(method=method).set_index("method"))
table = pd.concat(rows)
table""",
    """fig, ax = plt.subplots(figsize=(6, 3))
bo.plots.hazard_ratio_plot(table, ax=ax, title="Surgery HR by propensity design");""",
]

META = [
    """md:# 2. Bayesian meta-analysis of published hazard ratios

**The 21 studies here are SIMULATED.** Ning et al. 2026 pooled 21 retrospective studies of
pulmonary metastasectomy in osteosarcoma but published only the pooled HRs;
`bo.datasets.ning2026_simulated_studies()` is a table of fictitious studies calibrated so that
its pooled estimates reproduce those published numbers. The last section uses REAL published rows
(`bo.datasets.osteosarcoma_studies()`, each with its PMID/DOI).

Model per (factor, endpoint) group: `y_i ~ N(theta_i, s_i^2)`, `theta_i ~ N(mu, tau^2)`,
`mu ~ N(0, 2.5^2)`, `tau ~ HalfNormal(0.5)`; the posterior is computed exactly (1-D quadrature
over tau), so there is no MCMC error to worry about.""",
    SETUP,
    """df = bo.datasets.ning2026_simulated_studies()
print(df.attrs["description"])
st = bo.StudyEstimates(df["log_hr"], df["se"], study=df["study"],
                       group=(df["factor"] + " | " + df["endpoint"]).to_numpy())
st""",
    """ma = bo.MetaAnalysis(st, effects="random",
                     priors={"log_hr": bo.Prior("Normal", mu=0, sigma=2.5),
                             "tau": bo.Prior("HalfNormal", sigma=0.5)})
dt = ma.fit(method="exact", draws=DRAWS, chains=CHAINS, random_seed=2026)
pooled = bo.summarize.hazard_ratios(dt, include_new=True)
pooled""",
    """md:## Against the published pooled HRs
The simulated table was built to reproduce these; a Bayesian random-effects posterior (which
integrates over tau instead of plugging in an estimate) lands close to them.""",
    """targets = pd.DataFrame(df.attrs["targets"], index=["published_hr", "ci_low", "ci_high"]).T
targets.join(pooled[["hr_median", "ci_low", "ci_high"]], rsuffix="_posterior")""",
    """bo.summarize.heterogeneity(dt)""",
    """md:## Forest and funnel plots
Reported HRs (squares), shrunken study estimates (dots), pooled HR (diamond) and the 95%
prediction interval for a new study.""",
    """bo.plots.forest(dt, st);""",
    """bo.plots.funnel(st, dt);""",
    """md:## Frequentist cross-check and sensitivity to the heterogeneity prior""",
    """ma.frequentist().head(6)""",
    """ma.tau_sensitivity([bo.Prior("HalfNormal", sigma=0.25), bo.Prior("HalfNormal", sigma=0.5),
                     bo.Prior("HalfNormal", sigma=1.0)])""",
    """md:## The real published rows (cited)
Liu et al. 2022 (PMID 33349447) and the IPTW row of Smolle et al. 2023 (PMID 36980620) - the
two real metastasectomy estimates in the bundled table (rows from the same cohort are never pooled
together).""",
    """real = bo.datasets.osteosarcoma_studies()
real = real[real.row_id.isin(["liu2022_pm", "smolle2023_pm_iptw"])]
st_real = bo.StudyEstimates.from_hr_ci(real, hr="hr", lower="ci_low", upper="ci_high", study="row_id")
dt_real = bo.MetaAnalysis(st_real).fit(method="exact", draws=DRAWS, chains=CHAINS, random_seed=1)
bo.plots.forest(dt_real, st_real)
bo.summarize.hazard_ratios(dt_real, include_new=True)""",
]

BRIDGE = [
    """md:# 4. A cohort analysis informed by a meta-analysis (robust MAP prior)

**Both data sets are SIMULATED**: the Liu-like cohort (`liu2022_cohort()`) and the
metastasectomy rows of the Ning-calibrated study table (`ning2026_simulated_studies()`).
In a real analysis the cohort's own published study must be removed from the meta-analysis
first - otherwise its patients are counted twice.

The meta-analytic-predictive (MAP) prior is the posterior predictive distribution of a *new*
study's log-HR, `p(theta_new | studies)`, approximated by a normal mixture and made robust with a
20% vague component `N(0, 2^2)` (Schmidli et al. 2014).""",
    SETUP,
    """from bayes_osteo.bridge import map_prior, prior_data_conflict

studies = bo.datasets.ning2026_simulated_studies().query("factor == 'metastasectomy' and endpoint == 'PRS'")
st = bo.StudyEstimates(studies["log_hr"], studies["se"], study=studies["study"])
ma = bo.MetaAnalysis(st)
map_plain = map_prior(ma, robust_weight=0)      # the MAP prior itself
prior = map_prior(ma, robust_weight=0.2)        # robustified: 20% on N(0, 2^2)
prior""",
    """md:## The cohort under a vague and under the MAP prior""",
    """df = bo.datasets.liu2022_cohort()
sd = bo.SurvivalData.from_frame(df, duration="months", event="death", treatment="metastasectomy",
                                covariates=df.attrs["confounders"])
fit_kw = dict(draws=DRAWS, tune=TUNE, chains=CHAINS, progressbar=False)
dt_vague = bo.CoxModel(sd).fit(random_seed=1, **fit_kw)
cox_map = bo.CoxModel(sd, priors={"treatment_log_hr": prior})
dt_map = cox_map.fit(random_seed=2, **fit_kw)
rows = {"vague prior": bo.summarize.hazard_ratios(dt_vague).loc["metastasectomy"],
        "MAP prior": bo.summarize.hazard_ratios(dt_map).loc["metastasectomy"]}
pd.DataFrame(rows).T[["hr_median", "ci_low", "ci_high", "p_hr_lt_1"]]""",
    """md:## Prior-data conflict
Box's prior-predictive p-value of the cohort's own estimate under the MAP prior (small = conflict),
and how much weight the robust component keeps after seeing the cohort.""",
    """prior_data_conflict(map_plain, dt_vague, coord="metastasectomy", robust_weight=0.2)""",
    """fig, ax = plt.subplots(figsize=(6, 4))
bo.plots.prior_posterior(dt_map, "log_hr", prior, coords={"covariate": "metastasectomy"},
                         ax=ax, hr_scale=True, label="log HR of metastasectomy");""",
    """md:## The same analysis as a one-command spec
`models/meta_informed_cohort.toml` runs this analysis from the command line:
`bayes-osteo run models/meta_informed_cohort.toml --out reports/meta_informed_cohort` writes the
posterior, summaries, figures and an HTML report (and `bo.run_spec(path)` returns an object that
renders as that report in a notebook).""",
]


def main():
    for name, cells in (("01_cohort_cox", COHORT), ("02_meta_analysis", META), ("03_propensity", PROPENSITY),
                        ("04_meta_informed_cohort", BRIDGE)):
        nbf.write(nb(cells), HERE / f"{name}.ipynb")
        print("wrote", HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
