"""bayes_osteo: Bayesian survival modelling for cohorts and meta-analyses of hazard ratios.

Public API only; see DESIGN.md for the contract. The bundled Liu-like cohort is SIMULATED.
"""

from . import datasets, plots, priors, report, simulate, spec, summarize
from .base import BayesModel, load, save
from .bridge import (
    combine,
    map_prior,
    prior_data_conflict,
    prior_sensitivity,
    robust_weight_posterior,
)
from .cox import CoxModel, kaplan_meier, logrank
from .data import DataValidationError, StudyEstimates, SurvivalData
from .ipd import reconstruct_ipd
from .ipd_model import IPDMetaAnalysis, ipd_meta
from .meta import MetaAnalysis
from .priors import NormalMixture, Prior, prior_from_hr_interval
from .propensity import PropensityScore
from .propensity_methods import propensity_analysis, treatment_effect_table
from .spec import SpecError, load_spec, run_spec

__version__ = "0.1.0"

__all__ = [
    "BayesModel",
    "combine",
    "map_prior",
    "prior_data_conflict",
    "prior_sensitivity",
    "robust_weight_posterior",
    "CoxModel",
    "DataValidationError",
    "IPDMetaAnalysis",
    "MetaAnalysis",
    "NormalMixture",
    "Prior",
    "PropensityScore",
    "StudyEstimates",
    "SpecError",
    "SurvivalData",
    "datasets",
    "ipd_meta",
    "kaplan_meier",
    "load",
    "load_spec",
    "logrank",
    "plots",
    "prior_from_hr_interval",
    "propensity_analysis",
    "reconstruct_ipd",
    "priors",
    "report",
    "run_spec",
    "save",
    "simulate",
    "spec",
    "summarize",
    "treatment_effect_table",
]
