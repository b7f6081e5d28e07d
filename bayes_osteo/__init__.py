"""bayes_osteo: Bayesian survival modelling for cohorts and meta-analyses of hazard ratios.

Public API only; see DESIGN.md for the contract. The bundled Liu-like cohort is SIMULATED.
"""

from . import datasets, priors, summarize
from .base import BayesModel, load, save
from .data import DataValidationError, StudyEstimates, SurvivalData
from .priors import NormalMixture, Prior, prior_from_hr_interval

__version__ = "0.1.0"

__all__ = [
    "BayesModel",
    "DataValidationError",
    "NormalMixture",
    "Prior",
    "StudyEstimates",
    "SurvivalData",
    "datasets",
    "load",
    "prior_from_hr_interval",
    "priors",
    "save",
    "summarize",
]
