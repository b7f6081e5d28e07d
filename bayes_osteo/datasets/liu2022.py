"""SIMULATED cohort modelled on Liu et al. 2022 (work in progress)."""

def liu2022_cohort():
    raise NotImplementedError("being written")

def simulate_liu2022_cohort(*a, **k):
    raise NotImplementedError("being written")
