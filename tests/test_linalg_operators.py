"""LinearOperator: products, dense and scipy export, checked against the dense matrix."""

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch

from taylorch.linalg import LinearOperator, aslinearoperator


def random_matrix(m, n, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, n, generator=g, dtype=dtype)


def symmetric(n, dtype=torch.float64, seed=0):
    a = random_matrix(n, n, dtype, seed)
    return a + a.T


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_from_dense_products_match_the_matrix(dtype):
    a = random_matrix(5, 3, dtype)
    op = LinearOperator.from_dense(a)
    v, x = random_matrix(3, 1, dtype, 1)[:, 0], random_matrix(3, 4, dtype, 2)
    assert op.shape == (5, 3) and op.dtype == dtype and not op.symmetric
    torch.testing.assert_close(op @ v, a @ v)
    torch.testing.assert_close(op.matvec(v), a @ v)
    torch.testing.assert_close(op @ x, a @ x)
    torch.testing.assert_close(op.rows(x.T), x.T @ a.T)
    torch.testing.assert_close(op.to_dense(), a)


def test_default_matmat_multiplies_column_by_column():
    a = random_matrix(4, 4)
    op = LinearOperator(lambda v: a @ v, (4, 4), dtype=torch.float64)
    torch.testing.assert_close(op.to_dense(), a)


def test_vmapped_matmat_is_used():
    a = random_matrix(4, 4)
    calls = []

    def matmat(x):
        calls.append(x.shape)
        return a @ x

    op = LinearOperator(lambda v: a @ v, (4, 4), dtype=torch.float64, matmat=matmat)
    torch.testing.assert_close(op.to_dense(), a)
    assert calls == [(4, 4)]


def test_symmetry_is_detected_and_psd_implies_symmetric():
    assert LinearOperator.from_dense(symmetric(4)).symmetric
    assert not LinearOperator.from_dense(random_matrix(4, 4)).symmetric
    s = symmetric(4)
    op = LinearOperator(lambda v: s @ v, (4, 4), dtype=torch.float64, psd=True)
    assert op.symmetric and op.psd
    assert "psd" in repr(op)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_to_scipy_agrees_with_numpy(dtype):
    a = symmetric(6, dtype)
    sp = LinearOperator.from_dense(a).to_scipy()
    an = a.double().numpy()
    v, x = (
        np.random.default_rng(0).standard_normal(6),
        np.random.default_rng(1).standard_normal((6, 3)),
    )
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    assert sp.dtype == np.float64 and sp.shape == (6, 6)
    np.testing.assert_allclose(sp.matvec(v), an @ v, rtol=tol, atol=tol)
    np.testing.assert_allclose(sp.matvec(v[:, None])[:, 0], an @ v, rtol=tol, atol=tol)
    np.testing.assert_allclose(sp.matmat(x), an @ x, rtol=tol, atol=tol)
    np.testing.assert_allclose(sp.rmatvec(v), an.T @ v, rtol=tol, atol=tol)
    assert isinstance(sp @ v, np.ndarray)


def test_to_scipy_drives_scipy_eigsh():
    a = symmetric(20)
    top = sla.eigsh(LinearOperator.from_dense(a).to_scipy(), k=2, which="LA")[0]
    np.testing.assert_allclose(np.sort(top), torch.linalg.eigvalsh(a)[-2:].numpy(), rtol=1e-10)


def test_to_scipy_of_a_non_symmetric_operator_has_no_transpose():
    sp = LinearOperator.from_dense(random_matrix(3, 3)).to_scipy()
    with pytest.raises(NotImplementedError):
        sp.rmatvec(np.ones(3))


def test_aslinearoperator_forms():
    a = symmetric(3)
    op = LinearOperator.from_dense(a)
    assert aslinearoperator(op) is op
    torch.testing.assert_close(aslinearoperator(a).to_dense(), a)
    f = aslinearoperator(lambda v: 2 * v, n=3)
    assert f.shape == (3, 3) and f.dtype == torch.get_default_dtype()
    torch.testing.assert_close(f.to_dense(), 2 * torch.eye(3))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: LinearOperator(3, (2, 2), dtype=torch.float64), "matvec"),
        (lambda: LinearOperator(lambda v: v, (2,), dtype=torch.float64), "shape"),
        (lambda: LinearOperator(lambda v: v, (2, 0), dtype=torch.float64), "shape"),
        (lambda: LinearOperator(lambda v: v, (2, 2), dtype=torch.int64), "dtype"),
        (lambda: LinearOperator(lambda v: v, (2, 3), dtype=torch.float64, psd=True), "square"),
        (lambda: LinearOperator(lambda v: v, (2, 2), dtype=torch.float64, matmat=1), "matmat"),
        (lambda: LinearOperator.from_dense(np.eye(2)), "matrix"),
        (lambda: LinearOperator.from_dense(torch.ones(2, 2, 2)), "matrix"),
        (lambda: LinearOperator.from_dense(torch.eye(2)).matvec(torch.ones(3)), "v must"),
        (lambda: LinearOperator.from_dense(torch.eye(2)).matmat(torch.ones(3, 1)), "X must"),
        (
            lambda: LinearOperator.from_dense(torch.eye(2)).matvec(
                torch.ones(2, dtype=torch.cfloat)
            ),
            "v must have the operator's dtype",
        ),
        (
            lambda: LinearOperator.from_dense(torch.eye(2)) @ torch.ones(2, 1, dtype=torch.float64),
            "X must have the operator's dtype",
        ),
        (lambda: aslinearoperator(lambda v: v), "n must"),
        (lambda: aslinearoperator("A"), "operator"),
        (lambda: aslinearoperator(torch.ones(2, 3)), "square"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
