"""A small linear operator: a matrix known only through its products.

Krylov solvers, eigenvalue estimators and curvature tools never need the
entries of a matrix, only ``v -> A v``. :class:`LinearOperator` wraps such a
product with the shape, dtype and device it works in, and two tags a solver
may use to pick a method (``symmetric``; ``psd`` for positive semidefinite,
which implies symmetric). It converts to a dense tensor (``n`` products) and
to a :class:`scipy.sparse.linalg.LinearOperator` for reference checks.

The idea follows lineax's operators (Rader et al., 2023) and scipy's
``LinearOperator``, kept to what taylorch needs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator as ScipyLinearOperator
from torch import Tensor

__all__ = ["LinearOperator", "aslinearoperator"]


class LinearOperator:
    """An ``(m, n)`` linear map given by its matrix-vector product.

    Args:
        matvec: maps a vector of shape ``(n,)`` to ``A v`` of shape ``(m,)``.
        shape: ``(m, n)``.
        dtype, device: what ``matvec`` takes and returns.
        matmat: optional block product, ``(n, k) -> (m, k)``; by default the
            columns are multiplied one at a time. Pass
            ``torch.func.vmap(matvec, in_dims=1, out_dims=1)`` when ``matvec``
            is vmappable, or ``A @ X`` for a matrix.
        symmetric: ``A == A^T`` (tag; not checked).
        psd: ``A`` is symmetric positive semidefinite (tag; implies ``symmetric``).

    ``A @ v`` dispatches on the shape of ``v``: ``(n,)`` to ``matvec``,
    ``(n, k)`` to ``matmat``. :meth:`rows` applies ``A`` to each row of a
    ``(B, n)`` tensor, the layout batched Krylov solvers use.

    Example:
        >>> A = LinearOperator.from_dense(torch.tensor([[2.0, 1.0], [1.0, 3.0]]))
        >>> A @ torch.tensor([1.0, 0.0])
        tensor([2., 1.])
    """

    def __init__(
        self,
        matvec: Callable[[Tensor], Tensor],
        shape: tuple[int, int],
        *,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
        matmat: Callable[[Tensor], Tensor] | None = None,
        symmetric: bool = False,
        psd: bool = False,
    ) -> None:
        if not callable(matvec):
            raise TypeError(f"matvec must be callable, got {type(matvec).__name__}")
        if matmat is not None and not callable(matmat):
            raise TypeError(f"matmat must be callable or None, got {type(matmat).__name__}")
        shape = tuple(shape)
        if len(shape) != 2 or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ValueError(f"shape must be two positive ints (m, n), got {shape}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        if (symmetric or psd) and shape[0] != shape[1]:
            raise ValueError(f"symmetric or psd operators must be square, got shape {shape}")
        self._matvec = matvec
        self._matmat = matmat
        self.shape: tuple[int, int] = shape
        self.dtype = dtype
        self.device = torch.device(device)
        self.psd = bool(psd)
        self.symmetric = bool(symmetric) or self.psd

    @classmethod
    def from_dense(
        cls, matrix: Tensor, *, symmetric: bool | None = None, psd: bool = False
    ) -> LinearOperator:
        """Wrap a dense ``(m, n)`` matrix. ``symmetric=None`` checks it (to rounding)."""
        if not isinstance(matrix, Tensor):
            raise TypeError(f"matrix must be a torch.Tensor, got {type(matrix).__name__}")
        if matrix.ndim != 2 or not matrix.is_floating_point():
            raise ValueError(
                f"matrix must be a 2-D floating tensor, got shape {tuple(matrix.shape)} "
                f"and dtype {matrix.dtype}"
            )
        if symmetric is None:
            symmetric = is_symmetric(matrix)
        return cls(
            lambda v: matrix @ v,
            tuple(matrix.shape),
            dtype=matrix.dtype,
            device=matrix.device,
            matmat=lambda x: matrix @ x,
            symmetric=symmetric,
            psd=psd,
        )

    def matvec(self, v: Tensor) -> Tensor:
        """``A v`` for ``v`` of shape ``(n,)``."""
        if v.shape != (self.shape[1],):
            raise ValueError(f"v must have shape ({self.shape[1]},), got {tuple(v.shape)}")
        self._check_dtype(v, "v")
        return self._matvec(v)

    def matmat(self, x: Tensor) -> Tensor:
        """``A X`` for ``X`` of shape ``(n, k)``."""
        if x.ndim != 2 or x.shape[0] != self.shape[1]:
            raise ValueError(f"X must have shape ({self.shape[1]}, k), got {tuple(x.shape)}")
        self._check_dtype(x, "X")
        if self._matmat is not None:
            return self._matmat(x)
        return torch.stack([self._matvec(c) for c in x.unbind(1)], dim=1)

    def _check_dtype(self, x: Tensor, name: str) -> None:
        # A product in another dtype would be cast silently (a complex vector loses its
        # imaginary part) or fail deep inside autograd.
        if x.dtype != self.dtype:
            raise ValueError(f"{name} must have the operator's dtype {self.dtype}, got {x.dtype}")

    def rows(self, x: Tensor) -> Tensor:
        """``A`` applied to each row: ``(B, n) -> (B, m)``, i.e. ``X A^T``."""
        return self.matmat(x.mT).mT

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v) if v.ndim == 1 else self.matmat(v)

    def to_dense(self, block_size: int = 64) -> Tensor:
        """The ``(m, n)`` matrix, from ``n`` products with the unit vectors.

        The products run ``block_size`` columns at a time: one block product over all
        ``n`` columns holds ``n`` copies of every intermediate of a product at once
        (for a 4,426-parameter network on 2,048 samples, 9.3 GB for a 78 MB Hessian).
        """
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive int, got {block_size!r}")
        n = self.shape[1]
        out = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        for start in range(0, n, block_size):
            stop = min(start + block_size, n)
            eye = torch.zeros(n, stop - start, dtype=self.dtype, device=self.device)
            eye[start:stop].fill_diagonal_(1.0)
            out[:, start:stop] = self.matmat(eye)
        return out

    def to_scipy(self) -> ScipyLinearOperator:
        """A scipy ``LinearOperator`` taking and returning float64 numpy arrays.

        The transpose product is available only for symmetric operators.
        """

        def to_torch(a: np.ndarray) -> Tensor:
            return torch.as_tensor(np.asarray(a), dtype=self.dtype, device=self.device)

        def to_numpy(t: Tensor) -> np.ndarray:
            return t.detach().to(device="cpu", dtype=torch.float64).numpy()

        def mv(v: np.ndarray) -> np.ndarray:
            return to_numpy(self.matvec(to_torch(v).reshape(-1)))

        def mm(x: np.ndarray) -> np.ndarray:
            return to_numpy(self.matmat(to_torch(x)))

        return ScipyLinearOperator(
            self.shape,
            matvec=mv,
            rmatvec=mv if self.symmetric else None,
            matmat=mm,
            rmatmat=mm if self.symmetric else None,
            dtype=np.float64,
        )

    def __repr__(self) -> str:
        tags = [t for t in ("symmetric", "psd") if getattr(self, t)]
        return (
            f"LinearOperator(shape={self.shape}, dtype={self.dtype}, device={self.device}"
            + (f", tags={tags}" if tags else "")
            + ")"
        )


def is_symmetric(matrix: Tensor) -> bool:
    """``||A - A^T||_max <= 100 eps ||A||_max``: symmetric up to rounding."""
    if matrix.shape[-1] != matrix.shape[-2]:
        return False
    scale = matrix.abs().amax().clamp_min(torch.finfo(matrix.dtype).tiny)
    tol = 100 * torch.finfo(matrix.dtype).eps * scale
    return bool(((matrix - matrix.mT).abs().amax() <= tol).all())


def aslinearoperator(
    a: LinearOperator | Tensor | Callable[[Tensor], Tensor], n: int | None = None
) -> LinearOperator:
    """Return ``a`` as a square :class:`LinearOperator`.

    ``a`` may be a LinearOperator (returned as is), a dense ``(n, n)`` tensor,
    or a callable ``(n,) -> (n,)`` together with ``n``; a callable is taken to
    work in the default dtype on the CPU (wrap it in :class:`LinearOperator`
    for anything else) and to be symmetric.
    """
    if isinstance(a, LinearOperator):
        op = a
    elif isinstance(a, Tensor):
        op = LinearOperator.from_dense(a)
    elif callable(a):
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int when the operator is a callable, got {n}")
        op = LinearOperator(a, (n, n), dtype=torch.get_default_dtype(), symmetric=True)
    else:
        raise TypeError(
            f"operator must be a LinearOperator, a tensor or a callable, got {type(a).__name__}"
        )
    if op.shape[0] != op.shape[1]:
        raise ValueError(f"operator must be square, got shape {op.shape}")
    return op
