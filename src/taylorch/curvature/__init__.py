"""Curvature of models and operators: Hessian, GGN and empirical-Fisher operators, estimators."""

from taylorch.curvature.estimators import (
    SpectralDensity,
    hutchinson_diag,
    hutchinson_trace,
    spectral_density,
    top_eigenvalues,
)
from taylorch.curvature.operators import (
    empirical_fisher_operator,
    ggn_operator,
    hessian_operator,
    per_sample_gradients,
)

__all__ = [
    "SpectralDensity",
    "empirical_fisher_operator",
    "ggn_operator",
    "hessian_operator",
    "hutchinson_diag",
    "hutchinson_trace",
    "per_sample_gradients",
    "spectral_density",
    "top_eigenvalues",
]
