"""CG, MINRES and Lanczos against dense solves, eigh, scipy and Krylov-space optimality."""

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch

from taylorch.linalg import LinearOperator, cg, lanczos, minres

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def with_spectrum(eigenvalues, seed=0):
    """Symmetric matrix with the given eigenvalues and a random eigenbasis."""
    n = eigenvalues.shape[-1]
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen(seed), dtype=F64))
    a = (q * eigenvalues) @ q.T
    return ((a + a.T) / 2).to(eigenvalues.dtype)


def spd(n, cond=100.0, seed=0, dtype=F64):
    return with_spectrum(torch.logspace(0, np.log10(cond), n, dtype=F64), seed).to(dtype)


def indefinite(n, seed=0):
    lam = torch.linspace(-4, 5, n, dtype=F64)
    lam = torch.where(lam.abs() < 0.5, torch.sign(lam) * 0.5 + (lam == 0) * 0.5, lam)
    return with_spectrum(lam, seed)


def rhs(*shape, seed=1, dtype=F64):
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


def krylov_basis(a, b, k):
    cols = [b]
    for _ in range(k - 1):
        cols.append(a @ cols[-1])
    return torch.linalg.qr(torch.stack(cols, 1))[0]


# ----------------------------------------------------------------------------- CG


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-3)])
def test_cg_matches_dense_solve(dtype, tol):
    a, b = spd(40, dtype=dtype), rhs(40, dtype=dtype)
    res = cg(a, b, rtol=tol / 10)
    assert res.converged.item() and res.x.dtype == dtype and res.x.shape == (40,)
    want = torch.linalg.solve(a.double(), b.double())
    assert (res.x.double() - want).norm() <= tol * want.norm() * 100
    assert res.residual_norm <= tol / 10 * b.norm() * 1.0001


@pytest.mark.parametrize("form", ["dense", "operator", "callable"])
def test_cg_accepts_every_operator_form(form):
    a, b = spd(20), rhs(20)
    op = {
        "dense": a,
        "operator": LinearOperator.from_dense(a),
        "callable": lambda v: a @ v,
    }[form]
    res = cg(op, b, rtol=1e-12)
    torch.testing.assert_close(res.x, torch.linalg.solve(a, b), rtol=1e-9, atol=1e-9)


def test_cg_converges_in_at_most_n_iterations_in_float64():
    a, b = spd(12, cond=10.0), rhs(12)
    res = cg(a, b, rtol=1e-12, max_iter=1000)
    assert res.converged.item() and res.n_iter.item() <= 12


def test_cg_iterates_equal_scipy_iterates_with_and_without_preconditioner():
    a, b = spd(30, cond=1e3), rhs(30)
    m = torch.diag(1 / torch.diag(a) * torch.linspace(0.5, 2, 30, dtype=F64))
    for mine_m, sp_m in [(None, None), (m, m.numpy())]:
        for k in (1, 4, 9):
            mine = cg(a, b, M=mine_m, rtol=1e-15, max_iter=k)
            ref, _ = sla.cg(a.numpy(), b.numpy(), M=sp_m, rtol=1e-15, maxiter=k)
            assert mine.n_iter.item() == k and not mine.converged.item()
            np.testing.assert_allclose(mine.x.numpy(), ref, rtol=1e-9, atol=1e-12)


def test_cg_iterate_minimizes_the_a_norm_error_over_the_krylov_space():
    a, b = spd(25, cond=1e3), rhs(25)
    k = 6
    q = krylov_basis(a, b, k)
    # x_k = argmin over span(Q) of (x - x*)^T A (x - x*): Q^T A Q y = Q^T b.
    want = q @ torch.linalg.solve(q.T @ a @ q, q.T @ b)
    torch.testing.assert_close(cg(a, b, max_iter=k, rtol=1e-15).x, want, rtol=1e-8, atol=1e-10)


def test_jacobi_preconditioner_cuts_iterations_on_badly_scaled_matrix():
    d = torch.logspace(-3, 3, 60, dtype=F64)
    a = d.sqrt()[:, None] * spd(60, cond=5.0) * d.sqrt()
    b = rhs(60)
    plain = cg(a, b, rtol=1e-8, max_iter=600)
    pre = cg(a, b, M=torch.diag(1 / torch.diag(a)), rtol=1e-8, max_iter=600)
    assert pre.converged.item()
    assert pre.n_iter.item() * 3 < plain.n_iter.item()
    want = torch.linalg.solve(a, b)
    assert (pre.x - want).norm() <= 1e-5 * want.norm()


def test_cg_accepts_a_preconditioner_as_operator_or_callable():
    a, b = spd(20, cond=1e4), rhs(20)
    m = torch.linalg.inv(a) + 1e-6 * torch.eye(20, dtype=F64)
    m = (m + m.T) / 2
    for form in (LinearOperator.from_dense(m), lambda v: m @ v):
        res = cg(a, b, M=form, rtol=1e-12)
        torch.testing.assert_close(res.x, torch.linalg.solve(a, b), rtol=1e-9, atol=1e-9)
        assert res.n_iter.item() <= 6


@pytest.mark.parametrize("form", ["dense", "callable", "shared"])
def test_batched_cg_equals_a_loop_over_systems(form):
    bsz, n = 5, 15
    mats = torch.stack([spd(n, cond=10.0 ** (i / 2 + 1), seed=i) for i in range(bsz)])
    if form == "shared":
        mats = mats[:1].expand(bsz, n, n)
    b = rhs(bsz, n)
    op = {
        "dense": mats,
        "callable": lambda x: torch.einsum("bij,bj->bi", mats, x),
        "shared": LinearOperator.from_dense(mats[0]),
    }[form]
    batch = cg(op, b, rtol=1e-10)
    assert batch.x.shape == (bsz, n) and batch.converged.shape == (bsz,)
    for i in range(bsz):
        one = cg(mats[i], b[i], rtol=1e-10)
        # Same iterations up to rounding (which may move the stop by one step).
        torch.testing.assert_close(batch.x[i], one.x, rtol=1e-8, atol=1e-10)
        assert abs(batch.n_iter[i] - one.n_iter) <= 1
        assert batch.converged[i] and one.converged


def test_batched_cg_stops_each_system_on_its_own():
    n = 10
    mats = torch.stack([torch.eye(n, dtype=F64) * 3, spd(n, cond=1e3)])
    res = cg(mats, rhs(2, n), rtol=1e-10)
    assert res.n_iter[0] == 1 and res.n_iter[1] > 5
    assert res.converged.all()


def test_cg_x0_is_the_start():
    a, b = spd(10), rhs(10)
    exact = torch.linalg.solve(a, b)
    res = cg(a, b, x0=exact, rtol=1e-8)
    assert res.n_iter.item() == 0 and res.converged.item()
    torch.testing.assert_close(res.x, exact)
    near = cg(a, b, x0=exact + 1e-3 * rhs(10, seed=5), rtol=1e-12)
    torch.testing.assert_close(near.x, exact, rtol=1e-9, atol=1e-9)


def test_negative_curvature_stop_returns_direction_and_iterate():
    a = indefinite(20)
    vecs = torch.linalg.eigh(a).eigenvectors
    # b along a negative eigenvector: the very first direction has p^T A p < 0.
    first = cg(a, vecs[:, 0], stop_on_negative_curvature=True)
    assert first.negative_curvature.item() and not first.converged.item()
    assert first.n_iter.item() == 1
    torch.testing.assert_close(first.direction, vecs[:, 0])
    torch.testing.assert_close(first.x, torch.zeros(20, dtype=F64))
    # A general b: the direction has non-positive curvature, and x is the CG
    # iterate reached before it (its residual is the reported one).
    b = rhs(20)
    res = cg(a, b, stop_on_negative_curvature=True)
    d = res.direction
    assert res.negative_curvature.item() and d @ a @ d <= 0 and d.norm() > 0
    torch.testing.assert_close((b - a @ res.x).norm(), res.residual_norm, rtol=1e-8, atol=1e-12)
    k = res.n_iter.item() - 1
    torch.testing.assert_close(res.x, cg(a, b, max_iter=k, rtol=1e-15).x)


def test_negative_curvature_is_flagged_per_system():
    n = 12
    mats = torch.stack([spd(n), indefinite(n), spd(n, seed=3)])
    res = cg(mats, rhs(3, n), stop_on_negative_curvature=True, rtol=1e-10)
    assert res.negative_curvature.tolist() == [False, True, False]
    assert res.converged.tolist() == [True, False, True]
    assert (res.direction[0] == 0).all() and res.direction[1].norm() > 0


def test_cg_rejects_indefinite_a_without_the_stop_option():
    with pytest.raises(ValueError, match="A must be positive definite"):
        cg(indefinite(10), rhs(10))
    with pytest.raises(ValueError, match=r"A must be positive definite.*\[1\]"):
        cg(lambda x: x * torch.tensor([[1.0], [-1.0]], dtype=F64), rhs(2, 4))


# ----------------------------------------------------------------------------- MINRES


def test_minres_solves_indefinite_systems():
    a, b = indefinite(40), rhs(40)
    res = minres(a, b, rtol=1e-12)
    assert res.converged.item()
    torch.testing.assert_close(res.x, torch.linalg.solve(a, b), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close((b - a @ res.x).norm(), res.residual_norm, rtol=1e-3, atol=1e-11)


def test_minres_iterate_minimizes_the_residual_over_the_krylov_space():
    a, b = indefinite(30), rhs(30)
    for k in (1, 3, 7):
        q = krylov_basis(a, b, k)
        y = torch.linalg.lstsq(a @ q, b[:, None]).solution[:, 0]
        res = minres(a, b, max_iter=k, rtol=1e-15)
        assert res.n_iter.item() == k
        torch.testing.assert_close(res.x, q @ y, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(res.residual_norm, (b - a @ q @ y).norm(), rtol=1e-8, atol=0)


def test_minres_matches_scipy_with_a_preconditioner():
    a, b = indefinite(30, seed=4), rhs(30)
    m = torch.diag(1 / (1 + torch.diag(a).abs()))
    mine = minres(a, b, M=m, rtol=1e-12)
    ref, info = sla.minres(a.numpy(), b.numpy(), M=m.numpy(), rtol=1e-13)
    assert info == 0 and mine.converged.item()
    np.testing.assert_allclose(mine.x.numpy(), ref, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(mine.x, torch.linalg.solve(a, b), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("batched", [False, True])
def test_minres_stops_at_the_least_residual_of_a_singular_inconsistent_system(batched):
    # b has a part in the null space of A: min ||b - A x|| = 1, at x = A^+ b. Lanczos
    # exhausts the Krylov space after four steps with T_4 singular; dividing by the
    # zero pivot sent |x| to 1e16 with a reported residual of 2e-3 (true: 2.6).
    a = torch.diag(torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0], dtype=F64))
    b = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0], dtype=F64)
    if batched:  # next to a consistent system, which converges
        consistent = b * torch.tensor([1.0, 1, 1, 0, 0], dtype=F64)
        res = minres(lambda v: v @ a, torch.stack([b, consistent]), rtol=1e-10)
        assert res.converged.tolist() == [False, True]
        torch.testing.assert_close(a @ res.x[1], consistent)
        x, converged, residual_norm = res.x[0], res.converged[0], res.residual_norm[0]
    else:
        res = minres(a, b, rtol=1e-10)
        x, converged, residual_norm = res.x, res.converged, res.residual_norm
    assert not bool(converged)
    true_residual = (b - a @ x).norm()
    torch.testing.assert_close(true_residual, torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(residual_norm, true_residual)
    torch.testing.assert_close(a @ x, a @ torch.linalg.pinv(a) @ b)


def test_minres_on_spd_matches_cg_solution():
    a, b = spd(20), rhs(20)
    torch.testing.assert_close(minres(a, b, rtol=1e-12).x, cg(a, b, rtol=1e-12).x)


def test_batched_minres_equals_a_loop():
    bsz, n = 4, 16
    mats = torch.stack([indefinite(n, seed=i) * (i + 1) for i in range(bsz)])
    lam = torch.linspace(-2, 3, n, dtype=F64)
    mats[0] = torch.diag(torch.where(lam.abs() > 0.3, lam, 1.0))
    b = rhs(bsz, n)
    batch = minres(lambda x: torch.einsum("bij,bj->bi", mats, x), b, rtol=1e-11)
    for i in range(bsz):
        one = minres(mats[i], b[i], rtol=1e-11)
        torch.testing.assert_close(batch.x[i], one.x, rtol=1e-8, atol=1e-10)
        assert abs(batch.n_iter[i] - one.n_iter) <= 1 and one.converged
    torch.testing.assert_close(batch.x, torch.linalg.solve(mats, b), rtol=1e-8, atol=1e-9)


def test_minres_stops_at_once_on_an_invariant_subspace():
    a = torch.diag(torch.tensor([2.0, -3.0, 5.0, 7.0], dtype=F64))
    b = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=F64)
    res = minres(a, b, rtol=1e-14)
    assert res.converged.item() and res.n_iter.item() == 2
    torch.testing.assert_close(res.x, torch.tensor([0.5, -1 / 3, 0, 0], dtype=F64))


# ----------------------------------------------------------------------------- Lanczos


def test_lanczos_with_n_steps_recovers_the_whole_spectrum():
    a = indefinite(25)
    res = lanczos(a, 25, generator=gen(0))
    torch.testing.assert_close(res.ritz_values, torch.linalg.eigvalsh(a), rtol=1e-10, atol=1e-10)


def test_lanczos_extreme_ritz_values_converge_first():
    lam = torch.cat(
        [torch.tensor([-8.0, -6.0]), torch.linspace(-1, 1, 196), torch.tensor([9.0, 12.0])]
    )
    a = with_spectrum(lam.double())
    res = lanczos(a, 40, generator=gen(1))
    exact = torch.linalg.eigvalsh(a)
    torch.testing.assert_close(
        res.ritz_values[[0, 1, -2, -1]], exact[[0, 1, -2, -1]], rtol=1e-10, atol=0
    )
    assert exact[0] - 1e-12 <= res.ritz_values.min() and res.ritz_values.max() <= exact[-1] + 1e-12
    y, theta = res.ritz_vectors[:, -1], res.ritz_values[-1]
    assert (a @ y - theta * y).norm() < 1e-6


def test_lanczos_basis_is_orthonormal_and_tridiagonalizes():
    a = spd(30, cond=1e4)
    res = lanczos(a, 12, generator=gen(2))
    q = res.basis
    torch.testing.assert_close(q.T @ q, torch.eye(12, dtype=F64), rtol=0, atol=1e-12)
    t = torch.diag(res.alphas) + torch.diag(res.betas, 1) + torch.diag(res.betas, -1)
    torch.testing.assert_close(q.T @ a @ q, t, rtol=0, atol=1e-10)


def test_lanczos_restarts_after_an_invariant_subspace():
    a = with_spectrum(torch.tensor([1.0, 1, 1, 2, 2, 2, 5, 5], dtype=F64))
    res = lanczos(a, 6, generator=gen(3))
    assert (res.betas == 0).any()
    torch.testing.assert_close(res.basis.T @ res.basis, torch.eye(6, dtype=F64), rtol=0, atol=1e-12)
    for lam in (1.0, 2.0, 5.0):
        assert (res.ritz_values - lam).abs().min() < 1e-10


def test_lanczos_without_reorthogonalization_still_finds_extremes():
    a = with_spectrum(torch.cat([torch.linspace(0, 1, 99), torch.tensor([3.0])]).double())
    res = lanczos(a, 30, reorthogonalize=False, generator=gen(4))
    torch.testing.assert_close(
        res.ritz_values[-1], torch.tensor(3.0, dtype=F64), rtol=1e-10, atol=0
    )


def test_batched_lanczos_equals_a_loop():
    a = indefinite(20)
    v0 = rhs(3, 20)
    batch = lanczos(lambda x: x @ a, 8, v0=v0)
    assert batch.ritz_vectors.shape == (3, 20, 8) and batch.betas.shape == (3, 7)
    for i in range(3):
        one = lanczos(a, 8, v0=v0[i])
        torch.testing.assert_close(batch.alphas[i], one.alphas)
        torch.testing.assert_close(batch.ritz_values[i], one.ritz_values)


def test_lanczos_generator_makes_it_reproducible():
    a = spd(15)
    one = lanczos(LinearOperator.from_dense(a), 5, generator=gen(7))
    two = lanczos(LinearOperator.from_dense(a), 5, generator=gen(7))
    torch.testing.assert_close(one.alphas, two.alphas, rtol=0, atol=0)


@pytest.mark.parametrize("solver", [cg, minres])
def test_zero_right_hand_side_is_solved_at_once(solver):
    res = solver(spd(6), torch.zeros(2, 6, dtype=F64))
    assert res.converged.all() and (res.n_iter == 0).all() and (res.x == 0).all()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("solver", [cg, minres])
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"b": torch.ones(2, 2, 2, dtype=F64)}, "b must have shape"),
        ({"b": torch.ones(4, dtype=torch.int64)}, "b must have a floating"),
        ({"b": torch.tensor([1.0, float("nan"), 0, 0], dtype=F64)}, "b must be finite"),
        ({"b": [1.0, 2.0]}, "b must be a torch.Tensor"),
        ({"A": torch.eye(3, dtype=F64)}, r"A must have shape \(4, 4\)"),
        ({"A": torch.eye(4)}, "A has dtype"),
        ({"A": torch.triu(torch.ones(4, 4, dtype=F64))}, "A must be symmetric"),
        ({"A": torch.eye(4, dtype=F64) * float("inf")}, "A must be finite"),
        ({"A": "eye"}, "A must be a LinearOperator"),
        ({"A": lambda v: v[:2]}, "A must map shape"),
        ({"A": lambda v: v * float("nan")}, "A returned non-finite"),
        ({"A": LinearOperator.from_dense(torch.eye(5, dtype=F64))}, "A must have shape"),
        ({"M": -torch.eye(4, dtype=F64)}, "M must be positive definite"),
        ({"M": torch.eye(2, dtype=F64)}, "M must have shape"),
        ({"x0": torch.ones(3, dtype=F64)}, "x0 must have the shape"),
        ({"x0": torch.full((4,), float("inf"), dtype=F64)}, "x0 must be finite"),
        ({"rtol": -1.0}, "rtol must be"),
        ({"rtol": 0.0, "atol": 0.0}, "rtol and atol"),
        ({"max_iter": -1}, "max_iter"),
        ({"max_iter": 2.5}, "max_iter"),
    ],
)
def test_krylov_solvers_reject_bad_input(solver, kwargs, match):
    args = {"A": torch.eye(4, dtype=F64) * 2, "b": torch.ones(4, dtype=F64)} | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        solver(args.pop("A"), args.pop("b"), **args)


def test_batched_dense_a_must_match_the_batch():
    with pytest.raises(ValueError, match="A must have shape"):
        cg(torch.eye(3, dtype=F64).expand(2, 3, 3), torch.ones(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="A must have shape"):
        cg(torch.eye(3, dtype=F64).expand(2, 3, 3), torch.ones(3, dtype=F64))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: lanczos(torch.eye(4, dtype=F64), 5), "k must"),
        (lambda: lanczos(torch.eye(4, dtype=F64), 0), "k must"),
        (lambda: lanczos(lambda v: v, 2), "v0 is required"),
        (
            lambda: lanczos(torch.eye(4, dtype=F64), 2, v0=torch.zeros(4, dtype=F64)),
            "v0 must be nonzero",
        ),
        (
            lambda: lanczos(torch.eye(4, dtype=F64), 2, v0=torch.ones(3, dtype=F64)),
            "A must have shape",
        ),
        (lambda: lanczos(torch.ones(4, 4, dtype=F64).triu(), 2), "A must be symmetric"),
    ],
)
def test_lanczos_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
