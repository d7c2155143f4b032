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


# -- an independent forward for layered nets with convolutions --------------------------------
# Written from the layers' settings alone (channels, kernel, stride, padding, pool size) in
# plain autograd.numpy, NCHW like torch: the convolution as a sum over kernel offsets of
# strided slices, pooling by reshape and max/mean. Nothing of curvlab's patches, pooling masks
# or engine is used.

import autograd.numpy as anp  # noqa: E402

PLAIN_ACTIVATIONS = {
    "tanh": anp.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + anp.exp(-x)),
    "relu": lambda x: anp.where(x > 0, x, 0.0),
    "softplus": lambda x: anp.log1p(anp.exp(x)),
    "identity": lambda x: x,
}


def _conv2d(x, W, b, stride, padding):
    (sh, sw), (ph, pw) = stride, padding
    x = anp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="constant")
    kh, kw = W.shape[2:]
    Ho, Wo = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    out = 0.0
    for i in range(kh):
        for j in range(kw):
            xs = x[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]
            out = out + anp.einsum("nchw,oc->nohw", xs, W[:, :, i, j])
    return out + b[None, :, None, None]


def _pool(x, k, reduce):
    N, C, H, W = x.shape
    return reduce(anp.reshape(x, (N, C, H // k[0], k[0], W // k[1], k[1])), axis=(3, 5))


def plain_forward(model, w, X):
    """The network of a curvlab model, from its layer settings only; X (N, C, H, W) or (N, D)."""
    x, o = X, 0
    for mod in model.modules:
        kind = type(mod).__name__
        if kind in ("Dense", "Conv2d"):
            n_out, width = mod.n_out, mod.n_in + 1
            Wb = anp.reshape(w[o:o + n_out * width], (n_out, width))
            o += n_out * width
            if kind == "Dense":
                s = anp.dot(x, Wb[:, :-1].T) + Wb[:, -1]
            else:
                Wt = anp.reshape(Wb[:, :-1], (n_out, mod.c_in) + mod.kernel)   # torch's weight
                s = _conv2d(x, Wt, Wb[:, -1], mod.stride, mod.padding)
            x = PLAIN_ACTIVATIONS[mod.act.name](s)
        elif kind == "MaxPool2d":
            x = _pool(x, mod.kernel, anp.max)
        elif kind == "AvgPool2d":
            x = _pool(x, mod.kernel, anp.mean)
        elif kind == "Flatten":
            x = anp.reshape(x, (x.shape[0], -1))
        else:
            raise TypeError(kind)
    return x


class Plain:
    """A stand-in for a Problem whose forward is `plain_forward`: the oracle functions above
    (H, GGN, true_fisher, ...) then use nothing of curvlab but the loss's value."""

    def __init__(self, problem):
        self.problem = problem
        self.X, self.y, self.N, self.l2 = problem.X, problem.y, problem.N, problem.l2
        self.lossfn = problem.lossfn

        class Model:
            def forward(self, w, X):
                return plain_forward(problem.model, w, X)

            def layer_slices(self):
                return problem.model.layer_slices()
        self.model = Model()

    def loss(self, w):
        z = plain_forward(self.problem.model, w, self.X)
        val = anp.mean(self.lossfn.value(z, self.y))
        return val + 0.5 * self.l2 * anp.sum(w * w) if self.l2 else val
