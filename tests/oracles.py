"""Independent references, built only from autograd's generic operators on Problem.loss and
model.forward — never from curvlab's engine — for tiny nets."""

import itertools

import numpy as np
from autograd import hessian, jacobian


def H(problem, w):
    return hessian(problem.loss)(w)


def output_jacobian(problem, w):
    """(N, K, P)."""
    return jacobian(lambda v: problem.model.forward(v, problem.X))(w)


def output_hessians(problem, w):
    """B_n = ∂²ℓ/∂z² at each sample, by autograd: (N, K, K)."""
    z = problem.model.forward(w, problem.X)
    f = problem.lossfn.value
    return np.stack([hessian(lambda zn: f(zn[None], problem.y[n:n + 1])[0])(z[n])
                     for n in range(problem.N)])


def _l2(problem, M):
    return M + problem.l2 * np.eye(M.shape[0])


def GGN(problem, w):
    J = output_jacobian(problem, w)
    B = output_hessians(problem, w)
    return _l2(problem, np.einsum("nkp,nkj,njq->pq", J, B, J) / problem.N)


def per_sample_grads(problem, w, y=None):
    """∇ℓ_n(w) at labels y (default: the data), (N, P), without the L2 term."""
    y = problem.y if y is None else y
    per = lambda v: problem.lossfn.value(problem.model.forward(v, problem.X), y)
    return jacobian(per)(w)


def label_distribution(problem, w):
    """Every target vector with its probability under p(y|z), per sample (discrete losses)."""
    z = np.asarray(problem.model.forward(w, problem.X))
    if problem.lossfn.name == "cross_entropy":
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return [(np.full(problem.N, c), p[:, c]) for c in range(z.shape[1])]
    s = 1 / (1 + np.exp(-z))
    out = []
    for bits in itertools.product([0.0, 1.0], repeat=z.shape[1]):
        b = np.broadcast_to(np.array(bits), z.shape)
        out.append((b, np.prod(np.where(b == 1, s, 1 - s), axis=1)))
    return out


def true_fisher(problem, w):
    """(1/N) Σ_n E_y[∇ℓ ∇ℓᵀ] by enumerating every label (CE, BCE); Gaussian: E[εεᵀ] = I."""
    if problem.lossfn.name == "mse":
        J = output_jacobian(problem, w)
        return _l2(problem, np.einsum("nkp,nkq->pq", J, J) / problem.N)
    F = 0.0
    for y, prob in label_distribution(problem, w):
        G = per_sample_grads(problem, w, y)
        F = F + np.einsum("n,np,nq->pq", prob, G, G)
    return _l2(problem, F / problem.N)


def empirical_fisher(problem, w):
    G = per_sample_grads(problem, w)
    return _l2(problem, G.T @ G / problem.N)


def blocks(M, model):
    return [M[sl, sl] for sl in model.layer_slices()]


def rel(a, b):
    """max |a − b| / max |b|: the relative error every oracle test reports."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))
