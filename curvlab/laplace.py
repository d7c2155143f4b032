"""The Laplace approximation over any registered curvature kind (MacKay 1992; the conventions of
laplace-torch, Daxberger et al. 2021).

The posterior over the parameters is approximated at w (a MAP estimate) by N(w, Λ⁻¹) with

    Λ = s·C + δI,   s = N/σ² for "mse" (Gaussian likelihood with noise σ), s = N otherwise,

where C is the kind's matrix of the *data term* of the problem's mean loss (½‖z − y‖² per sample
for "mse"; the problem's own L2 term is not in C: it is the prior) and δ the prior precision,
a scalar (the prior is N(0, δ⁻¹I)). When `prior_precision` is not given, the problem's L2 is
taken as the prior: δ = N·l2 (cross-entropy, bce), N·l2/σ² (mse), so that w minimising the mean
loss + (l2/2)‖w‖² is the MAP of this model.

How Λ is held follows the kind's registered `structure` (never a list of kind names):
    dense       Λ as a (P, P) matrix, Cholesky-factored once per (s, δ)
    kronecker   per layer C_l = S_l ⊗ A_l, and Λ_l = (U_S ⊗ U_A) diag(s λ_S λ_Aᵀ + δ) (U_S ⊗ U_A)ᵀ
                from the factors' cached eigendecompositions: the prior is added exactly and no
                P × P (nor any layer-sized Kronecker product) is ever formed; a Dense layer's
                Jacobian rows δ_k ⊗ ā are not formed either: in that basis they are
                (U_Sᵀδ_k) ⊗ (U_Aᵀā), so J Λ⁻¹ Jᵀ costs K·n² + n·(m + 1) per point and layer
    diagonal    Λ = diag(s d + δ)
    blocks      per block, its eigendecomposition (blocks are small)

Quantities (laplace-torch's, after the mapping below):

    log p(D|w)  = −(NK/2) log(2πσ²) − Σₙ ‖zₙ − yₙ‖²/(2σ²)       for "mse",
                  −N × the mean data loss (= Σₙ ℓₙ)              otherwise;
    log p(D)   ≈ log p(D|w) − (δ/2)‖w‖² + (P/2) log δ − ½ log det Λ      (MacKay's evidence);
    predictive  the GLM (linearised network) f(x) ~ N(f(x, w), J(x) Λ⁻¹ J(x)ᵀ), J(x) = ∂f(x, w)/∂w:
                mean (M, K) and functional variance (M, K, K), *without* σ² (add σ²I for y);
                for classification also the probit approximation E[softmax(f)] ≈
                softmax(κ ⊙ f̄), κ_k = (1 + π/8 · var_kk)^(-1/2) (sigmoid per output for "bce"), or
                Monte-Carlo over the GLM's Gaussian.

Mapping to laplace-torch (checked to 1e-6 in tests/test_laplace.py): its loss is a *sum* over the
data (MSELoss(reduction="sum") × ½ for regression, CrossEntropyLoss(reduction="sum")), so its
curvature H = Σₙ Jₙᵀ Bₙ Jₙ = N·C, its `posterior_precision` H/σ² + δI = our Λ; its
`prior_precision` is our δ, its `sigma_noise` our σ (temperature 1, prior mean 0), and its
`log_marginal_likelihood` and `_glm_predictive_distribution` are ours. Its parameter vector is
torch's order (weight, then bias, per layer), a permutation of curvlab's flat layout
(`cl.torch_bridge.torch_order`): the scalars and functional quantities are invariant. Its "kron"
structure keeps W and b apart (curvlinops' separate_weight_and_bias=True), so its K-FAC is not
curvlab's joint [W | b] block. `subset="last_layer"` is its LLLaplace: the posterior over the
last Dense layer's W̄ = [W | b] only, with the features before it fixed.

Beware: `cl.laplace` (the function) and `curvlab.laplace` (this module) share a name once the
package exports the function; import from the module with `from curvlab.laplace import ...`.
"""

import numpy as np
import scipy.linalg
from tqdm.auto import tqdm

from . import engine
from ._checks import check_dense, choice, finite_array
from .curvature.base import BlockDiagonal, Dense
from .curvature.diagonal import Diagonal
from .curvature.kfac import KroneckerFactored
from .curvature.kinds import as_matrix, is_outside, matrix
from .curvature.registry import get
from .losses import BCE, MSE, CrossEntropy
from .nn import Dense as DenseLayer
from .nn import Sequential
from .problem import Problem, require_problem

__all__ = ["Laplace", "laplace"]

SUBSETS = ("all", "last_layer")
LINKS = (None, "probit", "mc")
_CHUNK_BYTES = 64 * 2**20          # working memory of one chunk of test-point Jacobians


def _positive(name, x, fix):
    try:
        x = float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number > 0, got {x!r}") from None
    if not np.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {x:g}; {fix}")
    return x


def laplace(problem, w, kind="ggn", prior_precision=None, sigma_noise=None, subset="all",
            **options):
    """The Laplace approximation N(w, Λ⁻¹) of `problem` at w with the curvature `kind` (module
    docstring): a `Laplace` object.

    kind: a registered curvature kind (`cl.kind_table()`), or your own matrix C of the data
    term (a `Curvature` object, a (P, P) array, ... as `cl.matrix` accepts). prior_precision:
    δ > 0 (None: from the problem's L2). sigma_noise: σ > 0, required for "mse" and refused for
    the other losses. subset: "all" or "last_layer" (the last Dense layer's parameters, the
    features before it fixed). options: the kind's own (samples, seed, flavor, ...).
    """
    return Laplace(problem, w, kind, prior_precision, sigma_noise, subset, **options)


class Laplace:
    """A Laplace approximation (module docstring). Attributes: `kind`, `structure`, `subset`,
    `prior_precision` (δ), `sigma_noise` (σ, or None), `n_params` (P of the posterior: the
    last layer's for subset="last_layer"), `N`; `posterior_precision` (a curvature object of
    the kind's structure, the prior in its `.l2`); methods `log_likelihood`,
    `log_marginal_likelihood`, `predictive`, `sample`, `optimize_prior_precision`."""

    def __init__(self, problem, w, kind="ggn", prior_precision=None, sigma_noise=None,
                 subset="all", **options):
        problem = require_problem(problem, "laplace")
        self.problem = problem
        self.w = problem.check(w)
        self.subset = choice("subset", subset, set(SUBSETS))
        lossfn = problem.lossfn
        self.regression = isinstance(lossfn, MSE)
        self.N, self.K = problem.N, problem.n_outputs
        out_shape = tuple(getattr(problem.model, "out_shape", (self.K,)))
        if len(out_shape) != 1:
            raise ValueError(
                f"laplace takes models with vector outputs (N, K); this one's are sequences "
                f"{out_shape} (a loss at every position): their GLM predictive per position is "
                "not implemented — pool over positions (cl.MeanPool) or use cl.influence")
        if self.regression and sigma_noise is None:
            raise ValueError(
                "an 'mse' problem is a Gaussian likelihood y ~ N(f(x), σ²I): pass sigma_noise=σ "
                "> 0 (laplace-torch's sigma_noise; e.g. 1.0, then optimize_prior_precision() "
                "fits it)")
        if not self.regression and sigma_noise is not None:
            raise ValueError(
                f"sigma_noise is the noise of a Gaussian ('mse') likelihood; a "
                f"{lossfn.name!r} problem has none — drop sigma_noise")
        self._sigma = (None if sigma_noise is None else
                       _positive("sigma_noise", sigma_noise, "the noise σ of y ~ N(f(x), σ²I)"))
        if prior_precision is None:
            if problem.l2 <= 0:
                raise ValueError(
                    "no prior_precision given and the problem has no L2 term (l2 = 0), so the "
                    "prior would be flat (δ = 0) and Λ singular: pass prior_precision=δ > 0 "
                    "(e.g. 1.0), or build the problem with l2 > 0 (then δ = N·l2"
                    + (", /σ² for mse)" if self.regression else ")"))
            prior_precision = self.N * problem.l2 / (self._sigma ** 2 if self.regression else 1)
        self._delta = _positive("prior_precision", prior_precision,
                                "the prior is N(0, δ⁻¹I), so δ must be positive")

        # the problem the posterior is over: all parameters, or the last layer on fixed features
        data = Problem(problem.model, lossfn, problem.X, problem.y, l2=0.0)
        if self.subset == "last_layer":
            data, self._theta, self._slice = _last_layer(problem.model, self.w, data)
        else:
            self._theta, self._slice = self.w, slice(0, problem.n_params)
        self._data = data
        self.n_params = data.n_params
        self.kind = kind if isinstance(kind, str) else "yours"
        C = (as_matrix(kind, data.n_params, "your matrix", _slices(data)) if is_outside(kind)
             else matrix(data, self._theta, kind, **options))
        if getattr(C, "l2", 0.0):
            raise ValueError(f"{self.kind}: the matrix of the data term must carry no L2 term "
                             f"(its .l2 is {C.l2:g}); the prior is prior_precision")
        self.structure = get(kind).structure if isinstance(kind, str) else _structure_of(C)
        self._form = _form(self.structure, C, self.kind)
        layers = data.model.layers if data.layered else []
        if (layers and all(getattr(l, "T", 0) == 1 and hasattr(l, "n_in") for l in layers)
                and self.structure in ("kronecker", "diagonal")):
            # the rank-one paths need only each layer's backprops and inputs, never its rows
            self._form.one_location = True
            self._form.row_width = sum(l.n_out + l.n_in + 1 for l in layers)

        z = data.outputs(self._theta)
        if self.regression:
            self._sse = float(np.sum((z - data.y) ** 2))
        else:
            self._nll = float(np.sum(lossfn.value(z, data.y)))
        self._sqnorm = float(self._theta @ self._theta)
        self._form.factor(self._s(self._sigma), self._delta)    # refuse a Λ that is not PD now

    # hyperparameters ---------------------------------------------------------------------------
    @property
    def prior_precision(self):
        """δ, the prior's precision (the prior is N(0, δ⁻¹I))."""
        return self._delta

    @prior_precision.setter
    def prior_precision(self, value):
        self._delta = _positive("prior_precision", value, "the prior is N(0, δ⁻¹I)")

    @property
    def sigma_noise(self):
        """σ, the Gaussian likelihood's noise ("mse"), or None."""
        return self._sigma

    @sigma_noise.setter
    def sigma_noise(self, value):
        self._sigma = self._check_sigma(value)

    def _check_sigma(self, sigma):
        if sigma is None:
            return self._sigma
        if not self.regression:
            raise ValueError(f"sigma_noise is for 'mse' problems; a {self.problem.lossfn.name!r} "
                             "problem has no observation noise")
        return _positive("sigma_noise", sigma, "the noise σ of y ~ N(f(x), σ²I)")

    def _s(self, sigma):
        """The data term's scale s: N/σ² (mse) or N."""
        return self.N / sigma ** 2 if self.regression else float(self.N)

    # the posterior -----------------------------------------------------------------------------
    @property
    def posterior_precision(self):
        """Λ = s·C + δI at the current δ and σ, as a curvature object of the kind's structure:
        `Dense` (dense), `KroneckerFactored` with factors (A_l, s·S_l) and `.l2` = δ (kronecker:
        its solve and eigenvalues are exact, from the factors), `Diagonal` with `.d` = s·d and
        `.l2` = δ (diagonal), or a block-diagonal object with `.l2` = δ (blocks)."""
        return self._form.precision(self._s(self._sigma), self._delta)

    def log_likelihood(self, sigma_noise=None):
        """log p(D|w): −(NK/2) log(2πσ²) − Σ‖z − y‖²/(2σ²) for "mse", −Σₙ ℓₙ otherwise."""
        if not self.regression:
            self._check_sigma(sigma_noise)
            return -self._nll
        sigma = self._check_sigma(sigma_noise)
        return (-0.5 * self.N * self.K * np.log(2 * np.pi * sigma ** 2)
                - self._sse / (2 * sigma ** 2))

    def log_marginal_likelihood(self, prior_precision=None, sigma_noise=None):
        """MacKay's evidence log p(D|w) − (δ/2)‖w‖² + (P/2) log δ − ½ log det Λ at the current
        δ and σ or the given ones (which are not stored). prior_precision may be an array of
        δ (then an array of values, from C's eigenvalues, computed once)."""
        sigma = self._check_sigma(sigma_noise)
        if prior_precision is not None and np.ndim(prior_precision) > 0:
            deltas = finite_array("prior_precision", prior_precision)
            if np.any(deltas <= 0):
                raise ValueError("prior_precision must be > 0 everywhere (the prior is "
                                 "N(0, δ⁻¹I))")
            return np.array([self._lml_eig(d, sigma) for d in deltas.ravel()]).reshape(
                deltas.shape)
        delta = (self._delta if prior_precision is None else
                 _positive("prior_precision", prior_precision, "the prior is N(0, δ⁻¹I)"))
        s = self._s(sigma)
        return (self.log_likelihood(sigma) - 0.5 * delta * self._sqnorm
                + 0.5 * self.n_params * np.log(delta) - 0.5 * self._form.logdet(s, delta))

    def _lml_eig(self, delta, sigma):
        lam = self._form.eigenvalues()
        den = self._s(sigma) * lam + delta
        if den.min() <= 0:
            self._form.not_pd(den.min(), delta)
        return (self.log_likelihood(sigma) - 0.5 * delta * self._sqnorm
                + 0.5 * self.n_params * np.log(delta) - 0.5 * np.sum(np.log(den)))

    def optimize_prior_precision(self, sigma_noise=True):
        """Maximise the log marginal likelihood over δ — and, for "mse" with sigma_noise=True,
        over σ too — and store the optimum (returns self). For a fixed σ the optimum is the
        unique root of MacKay's condition δ‖w‖² = Σᵢ sλᵢ/(sλᵢ + δ) (λᵢ the eigenvalues of C),
        found by bracketing; σ by Brent's method on that profile."""
        from scipy.optimize import minimize_scalar  # here: ~0.2 s and ~10 MB at import
        lam = self._form.eigenvalues()
        scale = max(np.abs(lam).max(), 1e-300)
        if lam.min() < -1e-10 * scale:
            raise ValueError(
                f"kind {self.kind!r} has negative eigenvalues here (smallest {lam.min():.3g}): "
                "Λ = s·C + δI is not positive definite for small δ and the evidence has no "
                "meaningful optimum (the Hessian away from a minimum does this). Use kind='ggn' "
                "(positive semi-definite everywhere) or converge w first")
        if self._sqnorm == 0:
            raise ValueError("w = 0: the evidence grows without bound as δ → ∞; there is no "
                             "optimal prior precision")
        lam = np.clip(lam, 0.0, None)
        if not self.regression or not sigma_noise:
            self._delta = self._best_delta(lam, self._s(self._sigma))
            return self

        def profile(log_sigma):
            sigma = np.exp(log_sigma)
            delta = self._best_delta(lam, self._s(sigma))
            return -self._lml_eig(delta, sigma)

        t0 = np.log(self._sigma)
        res = minimize_scalar(profile, bracket=(t0 - 0.5, t0 + 0.5), method="brent",
                              options={"xtol": 1e-10})
        if not np.isfinite(res.x) or abs(res.x) > 50:
            raise RuntimeError(f"the evidence has no finite optimum in σ (reached σ = "
                               f"{np.exp(res.x):.3g}); check the data and the fit")
        self._sigma = float(np.exp(res.x))
        self._delta = self._best_delta(lam, self._s(self._sigma))
        return self

    def _best_delta(self, lam, s):
        """The root in t = log δ of g(t) = ½ Σ sλ/(sλ + δ) − ½ δ‖w‖² (strictly decreasing)."""
        from scipy.optimize import brentq  # here: ~0.2 s and ~10 MB at import
        g = lambda t: 0.5 * np.sum(s * lam / (s * lam + np.exp(t))) - 0.5 * np.exp(t) * self._sqnorm
        lo = hi = np.log(self._delta)
        for _ in range(200):
            if g(lo) > 0:
                break
            lo -= 2.0
        for _ in range(200):
            if g(hi) < 0:
                break
            hi += 2.0
        if not (g(lo) > 0 > g(hi)):
            raise RuntimeError("could not bracket the optimal prior precision (C may be zero: "
                               "then the evidence increases without bound as δ → 0)")
        return float(np.exp(brentq(g, lo, hi, xtol=1e-13, rtol=1e-14)))

    # predictions -------------------------------------------------------------------------------
    def predictive(self, X, link=None, samples=100, seed=0):
        """The GLM predictive at inputs X (M, ...).

        link=None: (mean (M, K), var (M, K, K)) — f(x, w) and J Λ⁻¹ Jᵀ, without σ² (add
        σ²I to var for the predictive of y under "mse"). For "cross_entropy" and "bce":
        link="probit" gives the probit approximation of E[softmax(f)] (E[sigmoid(f)]) and
        link="mc" the average over `samples` draws of f ~ N(mean, var) (seeded), (M, K)."""
        if link not in LINKS:
            raise ValueError(f"unknown link {link!r}; choose one of {LINKS}")
        if link is not None and not isinstance(self.problem.lossfn, (CrossEntropy, BCE)):
            raise ValueError(
                f"link={link!r} maps a classifier's logits to probabilities; a "
                f"{self.problem.lossfn.name!r} problem's predictive is (mean, var): use "
                "link=None (and add σ² to var's diagonal for y)")
        samples = int(samples)
        if link == "mc" and samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        mean, var = self._glm(X)
        if link is None:
            return mean, var
        squash = _softmax if isinstance(self.problem.lossfn, CrossEntropy) else _sigmoid
        if link == "probit":
            kappa = 1.0 / np.sqrt(1.0 + np.pi / 8.0 * np.einsum("mkk->mk", var))
            return squash(kappa * mean)
        lam, U = np.linalg.eigh(var)
        root = U * np.sqrt(np.clip(lam, 0.0, None))[:, None, :]          # var = root rootᵀ
        eps = np.random.default_rng(seed).standard_normal((samples,) + mean.shape)
        f = mean + np.einsum("mkj,smj->smk", root, eps)
        return squash(f).mean(0)

    def _glm(self, X):
        """(f(X, w), J Λ⁻¹ Jᵀ) over chunks of test points (each chunk's Jacobian rows within
        _CHUNK_BYTES for the widest block the structure needs at once)."""
        X = self.problem.model.check_inputs(X)
        s, delta = self._s(self._sigma), self._delta
        step = max(1, _CHUNK_BYTES // (8 * self.K * max(self._form.row_width, 1)))
        starts = range(0, X.shape[0], step)
        means, vars_ = [], []
        for m0 in tqdm(starts, desc="predictive", disable=len(starts) < 8, leave=False):
            z, parts = self._jacobians(X[m0:m0 + step])
            means.append(z)
            vars_.append(self._form.quadratic(parts, s, delta))
        return np.concatenate(means), np.concatenate(vars_)

    def _jacobians(self, X):
        """Outputs (M, K) and the Jacobian of the posterior's parameters at inputs X (of the
        original model) as one `_Part` per layer (backprops δ of the K output units and the
        layer's inputs ā: its rows are Σ_t δ_t ⊗ ā_t), or one part of explicit rows for a
        model without layers."""
        if self.subset == "last_layer":
            X = _features(self.problem.model, self.w, X)
        model = self._data.model
        if not model.layered:
            from autograd import jacobian
            J = np.asarray(jacobian(lambda v: model.forward(v, X))(self._theta))
            return np.asarray(model.forward(self._theta, X)), [_Part(rows=J.transpose(1, 0, 2))]
        Wbars = model.unflatten(self._theta)
        tr = engine.forward(model, Wbars, X)
        M = X.shape[0]
        seed = np.broadcast_to(np.eye(self.K)[:, None, :], (self.K, M, self.K))
        deltas = engine.backward(model, Wbars, tr, seed)
        states = getattr(tr, "layer_states", None)
        parts = []
        for l, (layer, d) in enumerate(zip(model.layers, deltas)):
            st = None if states is None else states[l]
            ab = tr.abar[l] if st is None else getattr(st, "abar", None)
            rows = None
            if st is not None and hasattr(layer, "param_rows"):    # the layer's own rows
                rows = (lambda layer=layer, Wb=Wbars[l], st=st, d=d:
                        layer.param_rows(Wb, st, d))
            parts.append(_Part(d, ab, make_rows=rows))
        return np.asarray(tr.z), parts

    def sample(self, n=1, seed=0):
        """n draws of the parameters from N(w, Λ⁻¹), shape (n, P) in the full flat layout (for
        subset="last_layer" only the last layer's entries vary), seeded."""
        n = int(n)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        eps = np.random.default_rng(seed).standard_normal((n, self.n_params))
        draws = self._theta + self._form.sample(eps, self._s(self._sigma), self._delta)
        out = np.tile(self.w, (n, 1))
        out[:, self._slice] = draws
        return out

    def __repr__(self):
        sigma = "" if self._sigma is None else f", σ={self._sigma:.4g}"
        return (f"Laplace({self.kind!r}, {self.structure}, subset={self.subset!r}, "
                f"P={self.n_params}, δ={self._delta:.4g}{sigma})")


# the subset ----------------------------------------------------------------------------------

def _slices(problem):
    return problem.model.layer_slices() if problem.layered else None


def _check_last_layer(model):
    if not isinstance(model, Sequential):
        raise TypeError(f"subset='last_layer' needs a layered model (cl.Sequential / cl.MLP); "
                        f"a {type(model).__name__} has no last layer to split off")
    last = model.layers[-1]
    after = model.links[-1]
    if not isinstance(last, DenseLayer) or getattr(last, "T", 1) != 1 or after:
        raise ValueError(
            "subset='last_layer' needs the model to end with a Dense layer on vectors whose "
            f"outputs are the model's (its last layer with parameters is {last!r}, followed by "
            f"{after or 'nothing'}); use subset='all'")
    return last


def _features(model, w, X):
    """The inputs of the last Dense layer (N, m): the features the last-layer posterior fixes."""
    last = model.layers[-1]
    return engine.forward(model, model.unflatten(w), X).abar[-1][:, 0, :last.n_in]


def _last_layer(model, w, data):
    """(the problem of the last layer on fixed features, its parameters, its slice)."""
    last = _check_last_layer(model)
    feats = _features(model, w, data.X)
    kw = {} if getattr(last, "bias", True) else {"bias": False}
    head = Sequential([DenseLayer(last.n_in, last.n_out, last.act.name, **kw)], (last.n_in,))
    sl = model.layer_slices()[-1]
    return Problem(head, data.lossfn, feats, data.y, l2=0.0), w[sl].copy(), sl


class _Part:
    """One layer's share of the test points' Jacobian: backprops d (K, M, T, n) of the K output
    units and inputs ab (M, T, m + 1) of an affine layer, whose rows (K, M, size) are
    Σ_t d_t ⊗ ab_t — made by the layer's own rule `make_rows` when given —, or the rows."""

    def __init__(self, d=None, ab=None, rows=None, make_rows=None):
        self.d, self.ab, self._rows, self._make = d, ab, rows, make_rows

    def rank_one(self, size):
        """One location of an affine layer with `size` parameters: row k is δ_k ⊗ ā."""
        return (self.ab is not None and np.ndim(self.d) == 4 and self.d.shape[2] == 1
                and self.d.shape[-1] * self.ab.shape[-1] == size)

    def rows(self):
        if self._rows is None:
            if self._make is not None:
                self._rows = self._make()
            else:
                K, M, T, n = self.d.shape
                if T == 1:
                    R = self.d[:, :, 0, :, None] * self.ab[None, :, 0, None, :]
                else:
                    R = np.matmul(self.d.transpose(0, 1, 3, 2), self.ab[None])
                self._rows = R.reshape(K, M, -1)
        return self._rows


# how Λ is held, by structure -----------------------------------------------------------------

def _structure_of(C):
    """The structure of a matrix given directly (a registered kind's comes from the registry)."""
    if isinstance(C, Diagonal):
        return "diagonal"
    if isinstance(C, KroneckerFactored):
        return "kronecker"
    if isinstance(C, BlockDiagonal):
        return "blocks"
    return "dense"


def _form(structure, C, name):
    if structure == "dense":
        return _DenseForm(C, name)
    required = {"kronecker": KroneckerFactored, "diagonal": Diagonal, "blocks": BlockDiagonal}
    if not isinstance(C, required[structure]):
        raise TypeError(f"kind {name!r} is registered with structure {structure!r} but built a "
                        f"{type(C).__name__}, not a {required[structure].__name__}")
    return _EigenForm(C, structure, name)


class _Form:
    """Λ = s·C + δI for one structure: factor (and refuse a Λ that is not PD), log det,
    J Λ⁻¹ Jᵀ for Jacobian rows, Λ^{-1/2} ε, C's eigenvalues, Λ as a curvature object."""

    def __init__(self, C, name):
        self.C, self.name = C, name

    def not_pd(self, lmin, delta):
        raise np.linalg.LinAlgError(
            f"the posterior precision Λ = s·C + δI of kind {self.name!r} is not positive "
            f"definite (smallest eigenvalue {lmin:.3g}, prior precision δ = {delta:.3g}): C has "
            "negative curvature here, as the Hessian does away from a minimum. Use kind='ggn' "
            "(positive semi-definite everywhere), converge w to a minimum, or raise "
            "prior_precision")


class _DenseForm(_Form):
    """Λ = s·M + δI as a dense matrix, factored Λ = UᵀU (Cholesky, in place, in LAPACK's own
    column-major order: no copy) for the last (s, δ) asked."""

    def __init__(self, C, name):
        super().__init__(C, name)
        self.M = C.to_dense()
        self._chol = (None, None)
        self._eig = None

    def factor(self, s, delta):
        key, U = self._chol
        if key != (s, delta):
            self._chol = (None, None)                  # free the old factor before the new one
            A = s * self.M
            A[np.diag_indices_from(A)] += delta
            try:                                       # Aᵀ = A is column-major: factored in place
                U = scipy.linalg.cholesky(A.T, lower=False, overwrite_a=True, check_finite=False)
            except np.linalg.LinAlgError:
                del A
                lmin = scipy.linalg.eigvalsh(s * self.M + delta * np.eye(len(self.M)))[0]
                self.not_pd(lmin, delta)
            self._chol = ((s, delta), U)
        return U

    def logdet(self, s, delta):
        return 2.0 * np.sum(np.log(np.diag(self.factor(s, delta))))

    @property
    def row_width(self):
        return len(self.M)

    def quadratic(self, parts, s, delta):
        U = self.factor(s, delta)
        R = np.concatenate([p.rows() for p in parts], axis=-1)              # (K, M, P)
        K, M, P = R.shape
        Z = scipy.linalg.solve_triangular(U, R.reshape(K * M, P).T, trans="T", lower=False,
                                          check_finite=False)             # U⁻ᵀ Jᵀ
        Zt = Z.reshape(P, K, M).transpose(2, 1, 0)                          # (M, K, P)
        return Zt @ Zt.transpose(0, 2, 1)

    def sample(self, eps, s, delta):
        U = self.factor(s, delta)                     # Λ⁻¹ = U⁻¹U⁻ᵀ: U⁻¹ε has that covariance
        return scipy.linalg.solve_triangular(U, eps.T, lower=False, check_finite=False).T

    def eigenvalues(self):
        if self._eig is None:
            self._eig = scipy.linalg.eigvalsh(self.M, check_finite=False)
        return self._eig

    def precision(self, s, delta):
        A = s * self.M
        A[np.diag_indices_from(A)] += delta
        return Dense(A, f"posterior precision ({self.name})", self.C.layer_slices)


class _EigenForm(_Form):
    """Per block l (a layer, or a BlockDiagonal's block): C_l's eigenvalues λ_l and its
    eigenbasis U_l, applied as rotations; Λ_l = U_l diag(s λ_l + δ) U_lᵀ."""

    def __init__(self, C, structure, name):
        super().__init__(C, name)
        self.structure = structure
        # per block of a block-diagonal C (finer than its layers for attention's Q, K, V, O)
        self.slices = getattr(C, "block_slices", None) or C.layer_slices or [slice(0, C.n_params)]
        self.row_width = max(sl.stop - sl.start for sl in self.slices)   # widest rows at once
        if structure == "kronecker":
            self.lam = [np.outer(lS, lA).ravel() for lA, _, lS, _ in C.eig()]
        elif structure == "diagonal":
            self.lam = [C.d[sl] for sl in self.slices]
        else:
            for sl in self.slices:
                check_dense(f"{name} block", sl.stop - sl.start,
                            alternative="a Kronecker or diagonal kind for layers this wide")
            self._bases = [C.block_eigh(l) for l in range(len(self.slices))]
            self.lam = [lam - C.l2 for lam, _ in self._bases]

    def rotate(self, l, X, inverse=False):
        """Uᵀ X (inverse: U X) for rows X (Q, size_l) of block l."""
        if self.structure == "diagonal":
            return X
        if self.structure == "kronecker":
            _, UA, _, US = self.C.eig()[l]
            Xm = X.reshape((X.shape[0],) + self.C.shapes[l])
            Y = US @ Xm @ UA.T if inverse else US.T @ Xm @ UA
            return Y.reshape(X.shape)
        U = self._bases[l][1]
        return X @ U.T if inverse else X @ U

    def _den(self, s, delta):
        """The eigenvalues s λ + δ of Λ per block (cached for the last (s, δ))."""
        key, den = getattr(self, "_den_cache", (None, None))
        if key != (s, delta):
            den = [s * lam + delta for lam in self.lam]
            lmin = min(d.min() for d in den)
            if lmin <= 0:
                self.not_pd(lmin, delta)
            self._den_cache = ((s, delta), den)
        return den

    def factor(self, s, delta):
        return self._den(s, delta)

    def logdet(self, s, delta):
        return float(sum(np.sum(np.log(d)) for d in self._den(s, delta)))

    one_location = False

    def quadratic(self, parts, s, delta):
        """Σ_l R_l U_l diag(1/(s λ_l + δ)) U_lᵀ R_lᵀ per test point. For a Dense layer of a
        Kronecker or diagonal C the rows δ_k ⊗ ā never need forming: in the eigenbasis
        (U_Sᵀδ_k) ⊗ (U_Aᵀā), so the sum is Σ_i a_ki a_k'i c_i with c = (U_Aᵀā)² D̃ᵀ, D̃ the
        inverse eigenvalues as an (n, m + 1) matrix (U = I for a diagonal)."""
        den = self._den(s, delta)
        fast = (self.structure in ("kronecker", "diagonal") and len(parts) == len(self.slices)
                and all(p.rank_one(len(lam)) for p, lam in zip(parts, self.lam)))
        if not fast and [p.rows().shape[-1] for p in parts] != [len(lam) for lam in self.lam]:
            R = np.concatenate([p.rows() for p in parts], axis=-1)           # re-split by block
            parts = [_Part(rows=R[..., sl]) for sl in self.slices]
        out = 0.0
        for l, p in enumerate(parts):
            if fast:
                a, b = p.d[:, :, 0, :], p.ab[:, 0, :]                          # (K, M, n), (M, m+1)
                if self.structure == "kronecker":
                    _, UA, _, US = self.C.eig()[l]
                    a, b = a @ US, b @ UA
                c = (b * b) @ (1.0 / den[l]).reshape(a.shape[-1], -1).T      # (M, n)
                At = a.transpose(1, 0, 2)                                     # (M, K, n)
                out = out + (At * c[:, None, :]) @ At.transpose(0, 2, 1)
                continue
            R = p.rows()
            K, M, Pl = R.shape
            Z = self.rotate(l, R.reshape(K * M, Pl)).reshape(K, M, Pl).transpose(1, 0, 2)
            out = out + (Z / den[l]) @ Z.transpose(0, 2, 1)
        return out

    def sample(self, eps, s, delta):
        den = self._den(s, delta)
        out = np.empty_like(eps)
        for l, sl in enumerate(self.slices):
            out[:, sl] = self.rotate(l, eps[:, sl] / np.sqrt(den[l]), inverse=True)
        return out

    def eigenvalues(self):
        return np.concatenate(self.lam)

    def precision(self, s, delta):
        name = f"posterior precision ({self.name})"
        C = self.C
        if self.structure == "kronecker":
            return KroneckerFactored([(A, s * S) for A, S in C.factors], delta, name,
                                     C.layer_slices)
        if self.structure == "diagonal":
            return Diagonal(s * C.d, delta, name, C.layer_slices)
        return _ScaledBlocks(C, s, delta, name)


class _ScaledBlocks(BlockDiagonal):
    """s·C + δI for a block-diagonal C (its own blocks, scaled; δ in `.l2`)."""

    def __init__(self, C, s, delta, name):
        self.base, self.s, self.l2, self.name = C, float(s), float(delta), name
        self._set_sizes(C.sizes, C.layer_slices)

    def _block_matmat(self, l, Vl):
        return self.s * self.base._block_matmat(l, Vl)

    def _block_solve(self, l, Vl, gamma):
        return self.base._block_solve(l, Vl, gamma / self.s) / self.s

    def _block_eigvalsh(self, l):
        return self.s * np.asarray(self.base._block_eigvalsh(l))

    def _block_dense(self, l):
        return self.s * self.base._block_dense(l)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z):
    return 0.5 * (np.tanh(0.5 * z) + 1.0)
