"""The objective a solver sees: the user's function wrapped once.

``Objective`` presents every problem as a batch (an unbatched problem is a
batch of one), counts every evaluation per problem, enforces the evaluation
budget, and turns non-finite values into ``+inf`` so that every acceptance
test (Armijo, ratio of actual to predicted decrease) rejects them without a
special case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from taylorch import derivatives

__all__ = ["BudgetExhausted", "Objective"]


class BudgetExhausted(Exception):
    """Raised before an evaluation that would exceed ``max_fev`` for some problem."""

    def __init__(self, rows: Tensor):
        super().__init__("evaluation budget exhausted")
        self.rows = rows


class Objective:
    """Batched, counted access to ``fun`` and its derivatives.

    Args:
        fun: the user's function. Unbatched: ``(n,) -> ()``; batched: ``(B, n) -> (B,)``.
        args: extra positional arguments passed to ``fun``.
        batched: whether ``fun`` takes a batch.
        batch_size: ``B`` (1 when unbatched).
        max_fev: evaluation budget per problem, or ``None``.

    Every method takes ``x`` of shape ``(B, n)`` and an optional boolean ``mask``
    of shape ``(B,)``: the problems this evaluation serves, which are the ones
    charged for it (default: the problems still running, ``self.active``).
    """

    def __init__(
        self,
        fun: Callable[..., Tensor],
        args: tuple = (),
        *,
        batched: bool,
        batch_size: int,
        device: torch.device,
        max_fev: int | None = None,
    ):
        self._user_fun = fun
        self.args = args
        self.batched = batched
        self.max_fev = max_fev
        zeros = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.nfev, self.njev, self.n_hvp = zeros.clone(), zeros.clone(), zeros.clone()
        self.active = torch.ones(batch_size, dtype=torch.bool, device=device)
        self._second_order = False  # set once a solver asks for curvature
        self._graphs: list[_Graph] = []  # kept for the whole batch
        self._recent: list[Tensor] = []  # per problem: the points it evaluated last

    # -- the function as a batched map ------------------------------------------------
    def fun(self, x: Tensor) -> Tensor:
        """``fun`` as a map ``(B, n) -> (B,)``, uncounted (for oracles to differentiate)."""
        if self.batched:
            out = self._user_fun(x, *self.args)
            derivatives.check_scalar_output(out, x, batched=True)
            return out
        out = self._user_fun(x[0], *self.args)
        derivatives.check_scalar_output(out, x[0], batched=False)
        return out.reshape(1)

    def _charge(self, mask: Tensor | None, *counters: Tensor, amount: int = 1) -> None:
        """Add ``amount`` to each of ``counters`` on the rows served (checking the budget
        first when ``nfev`` is among them)."""
        rows = self.active if mask is None else mask & self.active
        if self.max_fev is not None and any(c is self.nfev for c in counters):
            over = rows & (self.nfev + amount > self.max_fev)
            if bool(over.any()):
                raise BudgetExhausted(over)
        charge = rows.long() if amount == 1 else rows.long() * amount
        for counter in counters:
            counter.add_(charge)

    # -- oracles -----------------------------------------------------------------------
    def value(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``f(x)`` for each problem; non-finite values become ``+inf``."""
        self._charge(mask, self.nfev)
        with torch.no_grad():
            f = self.fun(x.detach())
        return _finite_or_inf(f.detach())

    def value_and_grad(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(f, g)``; where either is not finite, ``f`` is ``+inf`` and ``g`` zero.

        Once the solver has asked for curvature, the gradient is built with its
        graph and kept, so that curvature at an accepted trial point costs no
        second evaluation.
        """
        self._charge(mask, self.nfev, self.njev)
        if self._second_order:
            self._remember(x, self.active if mask is None else mask)
            graph = self._build(x)
            return _mark_nonfinite(graph.f, graph.g.detach())
        f, g = derivatives.value_and_grad(self.fun, x, batched=True)
        return _mark_nonfinite(f, g)

    def hvp_at(
        self, x: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Callable[..., Tensor]]:
        """``(f, g, v -> H v)`` at ``x``: one graph, reused by every product.

        Each product is charged as one HVP to the problems in ``mask``; a product
        ``matvec(v, rows)`` only to those of them in ``rows`` (an inner loop whose
        problems finish at different times). At a point evaluated just before,
        the kept graph is reused and nothing is charged but the products.
        """
        graph = self._graph_at(x, mask)
        charged = self.active.clone() if mask is None else mask & self.active

        def matvec(v: Tensor, rows: Tensor | None = None) -> Tensor:
            self.n_hvp.add_((charged if rows is None else charged & rows).long())
            if not graph.g.requires_grad:  # the objective is at most linear
                return torch.zeros_like(v)
            with torch.enable_grad():
                (hv,) = torch.autograd.grad(
                    graph.g, graph.x, v, retain_graph=True, allow_unused=True
                )
            return torch.zeros_like(v) if hv is None else hv.detach()

        fv, gv = _mark_nonfinite(graph.f, graph.g.detach())
        return fv, gv, matvec

    def value_grad_hessian(
        self, x: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(f, g, H)`` with the dense Hessian ``(B, n, n)``.

        Charged as one evaluation and one gradient (none at a point evaluated
        just before) and ``n`` HVPs, which a problem pays once per point: the
        Hessian is kept with the point's graph (a Newton method's saddle test
        and its next step ask for the same one).
        """
        graph = self._graph_at(x, mask)
        rows = self.active if mask is None else mask & self.active
        if graph.hessian is None:
            graph.hessian = derivatives.hessian_from_gradient(graph.g, graph.x)
            graph.charged = torch.zeros_like(rows)
        self._charge(rows & ~graph.charged, self.n_hvp, amount=x.shape[-1])
        graph.charged = graph.charged | rows
        hess = graph.hessian
        f, g = _mark_nonfinite(graph.f, graph.g.detach())
        ok = torch.isfinite(hess).flatten(1).all(dim=1)
        f = torch.where(ok, f, torch.full_like(f, torch.inf))
        return f, g, torch.where(ok[:, None, None], hess, torch.zeros_like(hess))

    def expect_curvature(self) -> None:
        """Keep the graph of every gradient from now on (a second-order method calls this
        before its first evaluation): the curvature at a point already evaluated then costs
        no second call of ``fun``, at the start too."""
        self._second_order = True

    # -- the kept gradient graphs ------------------------------------------------------
    def _build(self, x: Tensor) -> _Graph:
        """Evaluate ``f`` and ``g`` with the graph of ``g``, and keep it (uncharged)."""
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            f = self.fun(xr)
            derivatives.check_differentiable(f)
            (g,) = torch.autograd.grad(f.sum(), xr, create_graph=True)
        graph = _Graph(point=x.detach().clone(), x=xr, f=f.detach(), g=g)
        self._graphs = [graph, *self._graphs][:_KEPT_GRAPHS]
        return graph

    def _graph_at(self, x: Tensor, mask: Tensor | None) -> _Graph:
        """The graph at ``x``: a kept one if ``x`` was evaluated just before, else a new one."""
        self._second_order = True
        # Charged to the problems that did not evaluate this point themselves just before:
        # what each would have paid alone, whatever the rest of the batch needed.
        seen = torch.zeros_like(self.active)
        for point in self._recent:
            seen |= (point == x).all(dim=-1)
        rows = ~seen if mask is None else mask & ~seen
        self._charge(rows, self.nfev, self.njev)
        self._remember(x, rows)
        for graph in self._graphs:
            if torch.equal(graph.point, x):
                return graph
        return self._build(x)

    def _remember(self, x: Tensor, rows: Tensor) -> None:
        """Push ``x`` onto the recent points of the problems in ``rows``."""
        if not self._recent:
            self._recent = [torch.full_like(x, torch.nan) for _ in range(_KEPT_GRAPHS)]
        keep = (rows & self.active)[:, None]
        for k in range(len(self._recent) - 1, 0, -1):
            self._recent[k] = torch.where(keep, self._recent[k - 1], self._recent[k])
        self._recent[0] = torch.where(keep, x.detach(), self._recent[0])


@dataclass
class _Graph:
    point: Tensor  # where it was built (a detached copy, to recognise the point again)
    x: Tensor  # the leaf that g was differentiated against
    f: Tensor
    g: Tensor  # with its graph (create_graph=True)
    hessian: Tensor | None = None  # once asked for
    charged: Tensor | None = None  # the problems that have paid for it


# The current iterate and the last trial point: a rejected trust-region step returns to
# the iterate, an accepted one moves to the trial point; both are then evaluated already.
_KEPT_GRAPHS = 2


def _finite_or_inf(f: Tensor) -> Tensor:
    return torch.where(torch.isfinite(f), f, torch.full_like(f, torch.inf))


def _mark_nonfinite(f: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    # One reduction instead of an elementwise test: the sum is finite iff every entry is
    # (short of overflow in the sum, a point no solver should step to anyway), and then
    # total - total is 0; for inf or NaN it is NaN.
    total = f + g.sum(dim=-1)
    ok = (total - total) == 0
    if bool(ok.all()):  # the usual case; spares a copy of g, costly for large n
        return f, g
    return torch.where(ok, f, torch.inf), torch.where(ok[:, None], g, 0.0)
