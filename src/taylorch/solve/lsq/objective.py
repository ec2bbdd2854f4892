"""The residual a least-squares or root-finding solver sees: the user's map wrapped once.

``ResidualObjective`` is an :class:`~taylorch.solve.objective.Objective` whose
value is the (robust) cost ``0.5 sum rho(r_i^2)`` of a residual map
``r: (B, n) -> (B, m)``, so every line search and every minimization oracle
works on it unchanged. On top it gives the residual itself, its dense
Jacobian, Jacobian-vector products and second directional derivatives, each
from **one** call of the user's function (traced once, then differentiated by
backward passes, or by ``torch.func.vjp`` under ``vmap`` for Jacobian rows),
so that ``nfev`` is exactly the number of calls. Counting, the
evaluation budget and the non-finite rule are the ``Objective``'s: a residual
or Jacobian that is not finite makes the cost ``+inf`` (and zeroes the
residual and Jacobian there), which every acceptance test rejects.

The problem's box ``lower <= x <= upper`` (``(B, n)`` tensors, or ``None``)
lives here too: it is part of the problem, not of the method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from torch.func import vjp, vmap

from taylorch import derivatives
from taylorch.solve.lsq.loss import Loss
from taylorch.solve.objective import Objective

__all__ = ["JacobianMode", "ResidualObjective"]

JacobianMode = Literal["auto", "forward", "reverse", "matrix-free"]
JACOBIAN_MODES = ("auto", "forward", "reverse", "matrix-free")


class ResidualObjective(Objective):
    """Batched, counted access to a residual map, its cost and its derivatives.

    Args:
        residual: unbatched ``(n,) -> (m,)``; batched ``(B, n) -> (B, m)``.
        args: extra positional arguments for ``residual``.
        batched, batch_size, device, max_fev: as for :class:`Objective`.
        loss: the robust loss (default: plain least squares).
        jac: how Jacobians are formed: ``"forward"`` (the ``n`` columns, for ``m >= n``),
            ``"reverse"`` (``m`` cotangents), ``"auto"`` (the cheaper, once ``m``
            is known), or ``"matrix-free"`` (products only, see :meth:`linearize`).
        lower, upper: the box, ``(B, n)`` each, or ``None`` for none.
        name: the function's argument name, for error messages.

    Counts: each method charges one evaluation (``nfev``); those that form
    first derivatives also charge ``njev``; Jacobian-vector products of the
    matrix-free path and second directional derivatives charge ``n_hvp``.
    """

    def __init__(
        self,
        residual: Callable[..., Tensor],
        args: tuple = (),
        *,
        batched: bool,
        batch_size: int,
        device: torch.device,
        max_fev: int | None = None,
        loss: Loss | None = None,
        jac: JacobianMode = "auto",
        lower: Tensor | None = None,
        upper: Tensor | None = None,
        name: str = "residual",
    ):
        super().__init__(
            residual, args, batched=batched, batch_size=batch_size, device=device, max_fev=max_fev
        )
        if jac not in JACOBIAN_MODES:
            raise ValueError(f"jac must be one of {', '.join(JACOBIAN_MODES)}; got {jac!r}")
        self.loss = loss if loss is not None else Loss()
        self.name = name
        self.jac = jac
        self.lower, self.upper = lower, upper
        self.size: int | None = None  # m, fixed by the first evaluation
        # Set by a method that asks for second directional derivatives (geodesic
        # acceleration): the residual's graph at the last two points evaluated with a
        # forward-mode Jacobian is kept, so r_vv there needs no call of the residual;
        # each problem's last two such points are remembered, so that in a batch it is
        # charged what it would pay alone (see second_directional).
        self.keep_graphs = False
        self._graphs: list[tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]] = []
        self._seen: Tensor | None = None  # (2, B, n): each problem's last two points

    @property
    def bounded(self) -> bool:
        return self.lower is not None

    # -- the residual as a batched map --------------------------------------------------
    def residual_map(self, x: Tensor) -> Tensor:
        """The residual as a map ``(B, n) -> (B, m)``, uncounted (for transforms to trace)."""
        if self.batched:
            out = self._user_fun(x, *self.args)
            derivatives.check_vector_output(out, x, batched=True, name=self.name)
        else:
            out = self._user_fun(x[0], *self.args)
            derivatives.check_vector_output(out, x[0], batched=False, name=self.name)
            out = out[None]
        if out.dtype != x.dtype:
            raise ValueError(f"{self.name} must return the dtype of x ({x.dtype}), got {out.dtype}")
        m = out.shape[-1]
        if self.size is None:
            if m == 0:
                raise ValueError(f"{self.name} must return at least one component, got m = 0")
            self.size = m
        elif m != self.size:
            raise ValueError(
                f"{self.name} returned {m} components, but {self.size} at an earlier point; "
                "the number of residuals must not change"
            )
        return out

    def fun(self, x: Tensor) -> Tensor:
        """The cost ``(B, n) -> (B,)``, so that the inherited oracles minimize it."""
        return self.loss.cost(self.residual_map(x))

    # -- counted oracles ----------------------------------------------------------------
    def residual(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(cost, r)`` with the raw residual ``r`` ``(B, m)``."""
        self._charge(mask, self.nfev)
        with torch.no_grad():
            r = self.residual_map(x.detach())
        ok = torch.isfinite(r).all(dim=-1)
        return self._cost(r, ok), torch.where(ok[:, None], r, torch.zeros_like(r))

    def residual_and_jacobian(
        self, x: Tensor, mask: Tensor | None = None, *, raw: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(cost, r_eff, J_eff)``: the loss-rescaled residual ``(B, m)`` and Jacobian ``(B, m, n)``.

        For the linear loss (or with ``raw=True``) these are ``r`` and ``J``. Cost:
        one call of the residual and backward passes vectorized over the ``n``
        columns (:func:`taylorch.derivatives.jacobian_columns`) or the ``m`` rows.
        """
        if self.jac == "matrix-free":
            raise ValueError(
                "this method needs dense Jacobians; it cannot run with jac='matrix-free'"
            )
        self._charge(mask, self.nfev)
        self._charge(mask, self.njev)
        r, jac = self._value_and_jacobian(x.detach())
        if self.keep_graphs and self._forward(x):  # the graph at x is kept (alone, too)
            self._remember(x, self.active if mask is None else mask & self.active)
        # A sum is finite iff every term is (barring overflow): one pass, no temporaries.
        ok = torch.isfinite(r.sum(dim=-1)) & torch.isfinite(jac.sum(dim=(-2, -1)))
        cost = self._cost(r, ok)
        if not bool(ok.all()):
            r = torch.where(ok[:, None], r, torch.zeros_like(r))
            jac = torch.where(ok[:, None, None], jac, torch.zeros_like(jac))
        if raw:
            return cost, r, jac
        r_eff, jac_eff, _ = self.loss.rescale(r, jac)
        return cost, r_eff, jac_eff

    def linearize(
        self, x: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
        """``(cost, r_eff, v -> J_eff v, u -> J_eff^T u)`` from one call, without forming ``J``.

        The residual is evaluated once with its autograd graph; ``J^T u`` is a
        backward pass through it and ``J v`` a backward pass through that one
        (the double-vjp trick), so products cost a few residual passes each and
        are charged as ``n_hvp``.
        """
        self._charge(mask, self.nfev)
        self._charge(mask, self.njev)
        charged = self.active.clone() if mask is None else mask & self.active
        with torch.enable_grad():
            xr, out, seed, pulled = derivatives.linearization(self.residual_map, x)
        r = out.detach()
        ok = torch.isfinite(r).all(dim=-1)
        cost = self._cost(r, ok)
        r = torch.where(ok[:, None], r, torch.zeros_like(r))
        r_eff, root_w = self.loss.effective(r)
        scale = torch.ones_like(r) if root_w is None else root_w
        rows = ok[:, None]

        def matvec(v: Tensor) -> Tensor:
            self.n_hvp.add_(charged.long())
            with torch.enable_grad():
                (jv,) = torch.autograd.grad(pulled, seed, v, retain_graph=True)
            return torch.where(rows, scale * jv.detach(), 0.0)

        def rmatvec(u: Tensor) -> Tensor:
            self.n_hvp.add_(charged.long())
            with torch.enable_grad():
                (ju,) = torch.autograd.grad(
                    out, xr, torch.where(rows, scale * u, 0.0), retain_graph=True
                )
            return ju.detach()

        return cost, r_eff, matvec, rmatvec

    def second_directional(self, x: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        """``d^2/dt^2 r(x + t v)`` at ``t = 0``, ``(B, m)``, by backward passes only.

        ``J v`` comes from the double-vjp trick (see
        :func:`taylorch.derivatives.linearization`) and stays a
        function of ``x``; its derivative along ``v`` is the same trick once
        more. Four backward passes through one call of the residual, exact:
        in torch 2.13 the forward-over-forward mode it replaces ran elementwise
        products through Python decompositions (a 5-parameter NIST model:
        2.2 ms against 0.34 ms; 10,000 exponential fits: 20 ms against 14 ms).
        Charged as one ``n_hvp``, and as one evaluation unless the residual's graph
        at ``x`` is kept from its Jacobian there (``keep_graphs``): then no call of
        the residual is made. Non-finite entries become zero.
        """
        kept = next((graph for point, graph in self._graphs if torch.equal(point, x)), None)
        if self._seen is None:
            self._charge(mask, self.nfev)
        else:  # charged to the problems that did not evaluate x themselves just before
            seen = (self._seen == x.detach()).all(dim=-1).any(dim=0)
            self._charge(~seen if mask is None else mask & ~seen, self.nfev)
        self._charge(mask, self.n_hvp)
        with torch.enable_grad():
            if kept is None:
                kept = derivatives.linearization(self.residual_map, x)
            xr, out, seed, pulled = kept
            (jv,) = torch.autograd.grad(
                pulled, seed, v.detach(), create_graph=True, retain_graph=True
            )
            if not jv.requires_grad:  # J does not depend on x: the residual is affine
                return torch.zeros_like(out)
            seed2 = torch.zeros_like(jv, requires_grad=True)
            (dual,) = torch.autograd.grad(
                jv, xr, seed2, create_graph=True, retain_graph=True, allow_unused=True
            )
            if dual is None or not dual.requires_grad:
                return torch.zeros_like(out)
            (rvv,) = torch.autograd.grad(dual, seed2, v.detach(), retain_graph=True)
        return torch.where(torch.isfinite(rvv), rvv, torch.zeros_like(rvv))

    # -- a sub-batch ----------------------------------------------------------------------
    def restrict(self, rows: Tensor, x: Tensor) -> ResidualObjective:
        """The problems ``rows`` (indices ``(b,)``) as a batch of their own.

        Each call of the restricted residual still evaluates the user's residual on
        the whole batch (it is one function of all ``B`` rows), with ``x`` ``(B, n)``
        in the rows not asked for, and keeps rows ``rows``; so a method's own work
        (factorizations, subproblems) scales with the problems still running. Counts
        start from this objective's and go back with :meth:`absorb`.
        """
        full = x.detach()

        def residual(xs: Tensor) -> Tensor:
            return self.residual_map(full.index_copy(0, rows, xs)).index_select(0, rows)

        sub = ResidualObjective(
            residual,
            batched=True,
            batch_size=rows.shape[0],
            device=x.device,
            max_fev=self.max_fev,
            loss=self.loss,
            jac=self.jac,
            lower=None if self.lower is None else self.lower[rows],
            upper=None if self.upper is None else self.upper[rows],
        )
        sub.size = self.size
        sub.keep_graphs = self.keep_graphs
        for name in ("nfev", "njev", "n_hvp"):
            getattr(sub, name).copy_(getattr(self, name)[rows])
        if self._seen is not None:
            sub._seen = self._seen[:, rows].clone()
        return sub

    def absorb(self, sub: ResidualObjective, rows: Tensor) -> None:
        """Take back the counts (and the points seen) of ``sub = self.restrict(rows, ...)``."""
        for name in ("nfev", "njev", "n_hvp"):
            getattr(self, name).index_copy_(0, rows, getattr(sub, name))
        if sub._seen is not None:
            if self._seen is None:
                self._seen = torch.full(
                    (2, *self.active.shape, sub._seen.shape[-1]),
                    torch.nan,
                    dtype=sub._seen.dtype,
                    device=sub._seen.device,
                )
            self._seen[:, rows] = sub._seen

    # -- helpers ------------------------------------------------------------------------
    def _remember(self, x: Tensor, rows: Tensor) -> None:
        """Push ``x`` onto the last two points of the problems in ``rows``."""
        x = x.detach()
        if self._seen is None:
            self._seen = torch.full((2, *x.shape), torch.nan, dtype=x.dtype, device=x.device)
        rows = rows[:, None]
        self._seen[1] = torch.where(rows, self._seen[0], self._seen[1])
        self._seen[0] = torch.where(rows, x, self._seen[0])

    def _cost(self, r: Tensor, ok: Tensor) -> Tensor:
        cost = self.loss.cost(r)
        return torch.where(ok & torch.isfinite(cost), cost, torch.full_like(cost, torch.inf))

    def _forward(self, x: Tensor) -> bool:
        """Whether Jacobians are formed by columns (forward), else by rows (reverse)."""
        if self.jac == "auto":
            # Before the first call m is unknown: least squares and root finding have m >= n.
            return self.size is None or self.size >= x.shape[-1]
        return self.jac == "forward"

    def _value_and_jacobian(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(r, J)`` from one traced call of the residual."""
        if self._forward(x):
            with torch.enable_grad():
                xr, out, seed, pulled = derivatives.linearization(self.residual_map, x)
                jac = derivatives.jacobian_columns(xr, out, seed, pulled)
            if self.keep_graphs:
                self._graphs = [(x.detach().clone(), (xr, out, seed, pulled)), *self._graphs][:2]
            return out.detach(), jac.detach()
        with torch.enable_grad():
            out, pullback = vjp(self.residual_map, x)
        m = out.shape[-1]
        basis = torch.eye(m, dtype=x.dtype, device=x.device)[:, None, :].expand(m, *out.shape)
        rows = vmap(pullback)(basis)[0]
        return out.detach(), rows.movedim(0, -2).detach()
