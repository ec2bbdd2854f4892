"""Training optimizers: ``torch.optim``-compatible, one module per family.

* first order: :class:`SPS` / :class:`PolyakMomentum` (Polyak step sizes),
  :class:`SLS` (Armijo line search), :class:`SMB` (model building), :class:`AdaBound`;
* orthogonalized: :class:`Muon` (AdamW for non-matrix parameters in the same optimizer);
* zeroth order: :class:`ZOSGD` (MeZO), :class:`ZOAdam`, :class:`ZOAdaMU`.

Optimizers that need the loss value take a closure; see :mod:`taylorch.optim.base`
for the one closure convention they all share.
"""

from taylorch.optim.adabound import AdaBound
from taylorch.optim.base import Optimizer
from taylorch.optim.line_search import SLS
from taylorch.optim.model_building import SMB
from taylorch.optim.muon import Muon, muon_param_groups
from taylorch.optim.polyak import SPS, PolyakMomentum
from taylorch.optim.zeroth_order import ZOSGD, ZOAdam, ZOAdaMU

__all__ = [
    "SLS",
    "SMB",
    "SPS",
    "ZOSGD",
    "AdaBound",
    "Muon",
    "Optimizer",
    "PolyakMomentum",
    "ZOAdaMU",
    "ZOAdam",
    "muon_param_groups",
]
