"""Networks of units (Pearlmutter 1994): any wiring, feed-forward or recurrent, with the
R-operator carried through forward and back.

Units 0..n−1; `edges` (src, dst) pairs; the parameters are one weight per edge, in the given
order, then one bias per non-input unit, ascending unit id. Input units hold the data
(yᵢ = xᵢ); every other unit has xᵢ = Σ_{(j,i)} w_{ji} y_j + bᵢ, with yᵢ = σ(xᵢ) for hidden units
and yᵢ = xᵢ for output units. The loss reads the output units' y, in the order `outputs` lists.

Acyclic wiring is a feed-forward net, evaluated level by level (a unit's level is its longest
path from the inputs), with the rules, per unit and per sample,
    forward    xᵢ = Σⱼ wⱼᵢ yⱼ + bᵢ                     yᵢ = σ(xᵢ)
    backward   ∂E/∂yⱼ = eⱼ + Σᵢ wⱼᵢ ∂E/∂xᵢ              ∂E/∂xⱼ = σ'(xⱼ) ∂E/∂yⱼ
               (eⱼ = ∂ℓ/∂yⱼ for an output unit)        ∂E/∂wⱼᵢ = yⱼ ∂E/∂xᵢ,  ∂E/∂bᵢ = ∂E/∂xᵢ
    R-forward  R{xᵢ} = Σⱼ (wⱼᵢ R{yⱼ} + vⱼᵢ yⱼ) + v_bᵢ   R{yᵢ} = σ'(xᵢ) R{xᵢ}
    R-backward R{∂E/∂yⱼ} = (B R{y})ⱼ + Σᵢ (wⱼᵢ R{∂E/∂xᵢ} + vⱼᵢ ∂E/∂xᵢ)
               R{∂E/∂xⱼ} = σ'(xⱼ) R{∂E/∂yⱼ} + σ''(xⱼ) R{xⱼ} ∂E/∂yⱼ
               R{∂E/∂wⱼᵢ} = yⱼ R{∂E/∂xᵢ} + R{yⱼ} ∂E/∂xᵢ,  R{∂E/∂bᵢ} = R{∂E/∂xᵢ}
(B = ∂²ℓ/∂y² over the outputs; for a separable loss this is Pearlmutter's e'ᵢ R{yᵢ}).

Cyclic wiring is a recurrent net (Almeida–Pineda): with the inputs clamped, the state relaxes to
the fixed point y = F(y) = f(Wᵀy + b); the same rules, each relaxed to its own fixed point
instead of swept once: the adjoint zᵢ = ∂E/∂xᵢ relaxes to z = f'(x) ⊙ (e + W z), R{y} to
R{y} = f'(x) ⊙ (Wᵀ R{y} + Vᵀ y + v_b), and R{z} to
R{z} = f'(x) ⊙ (B R{y} + W R{z} + V z) + f''(x) ⊙ R{x} ⊙ (e + W z). All four relaxations iterate
the same linear map (the forward's Jacobian or its transpose), so they converge at the same rate
— geometric, with ratio the spectral radius of diag(f'(x)) Wᵀ — and results are exact to `tol`.
"""

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from ._checks import finite_array
from .layers import activation as _activation


class RelaxationError(RuntimeError):
    """A recurrent net's relaxation did not reach its tolerance within its iteration budget."""


class UnitNetwork:
    """A network of units with arbitrary wiring (module docstring)."""

    layered = False        # its own gradient and products (see curvlab.problem.MODEL_PROTOCOL)

    def __init__(
        self, n_units, edges, inputs, outputs, activation="tanh", tol=1e-12, max_iter=5000
    ):
        n = int(n_units)
        if n < 2:
            raise ValueError(f"a unit network needs at least 2 units, got {n_units}")
        self.n_units = n
        self.inputs, self.outputs = self._units("inputs", inputs), self._units("outputs", outputs)
        if set(self.inputs) & set(self.outputs):
            raise ValueError(
                f"units {sorted(set(self.inputs) & set(self.outputs))} are both inputs and "
                "outputs; an output unit must be computed from others"
            )
        edges = [tuple(int(u) for u in e) for e in edges]
        seen = set()
        for k, (src, dst) in enumerate(edges):
            for u in (src, dst):
                if not 0 <= u < n:
                    raise ValueError(f"edge {k} ({src}, {dst}) names unit {u}, outside 0..{n - 1}")
            if dst in self.inputs:
                raise ValueError(
                    f"edge {k} ({src}, {dst}) goes into input unit {dst}; inputs hold the data"
                )
            if (src, dst) in seen:
                raise ValueError(f"edge {k} ({src}, {dst}) is listed twice")
            seen.add((src, dst))
        self.edges = edges
        self.src = np.array([e[0] for e in edges], dtype=int)
        self.dst = np.array([e[1] for e in edges], dtype=int)
        self.computed = np.array([u for u in range(n) if u not in self.inputs], dtype=int)
        self.hidden = np.array([u for u in self.computed if u not in self.outputs], dtype=int)
        self.act = _activation(activation)
        self.tol, self.max_iter = float(tol), int(max_iter)
        # f' and f'' per unit: σ for hidden units, the identity for outputs (and inputs, unused)
        self.is_hidden = np.zeros(n, dtype=bool)
        self.is_hidden[self.hidden] = True
        self.levels = self._levels()  # None for a recurrent net
        self.recurrent = self.levels is None
        # the forward pass's fixed matrices: W = onehot_srcᵀ diag(w) onehot_dst, b_full = b S
        self.onehot_src, self.onehot_dst = np.eye(n)[self.src], np.eye(n)[self.dst]
        self.select_computed = np.eye(n)[self.computed]
        self.level_masks = [] if self.recurrent else [np.isin(np.arange(n), lv).astype(float)
                                                       for lv in self.levels]

    def _units(self, name, units):
        units = [int(u) for u in np.atleast_1d(units)]
        if not units:
            raise ValueError(f"{name} must list at least one unit")
        bad = [u for u in units if not 0 <= u < self.n_units]
        if bad:
            raise ValueError(f"{name} name units {bad}, outside 0..{self.n_units - 1}")
        if len(set(units)) != len(units):
            raise ValueError(f"{name} list a unit twice: {units}")
        return units

    def _levels(self):
        """Units grouped by longest path from the inputs, or None when the wiring has a cycle."""
        indeg = {u: 0 for u in self.computed}
        for d in self.dst:
            indeg[int(d)] += 1
        level = {u: 0 for u in self.inputs}
        ready = list(self.inputs) + [u for u in self.computed if indeg[u] == 0]
        for u in ready:
            level.setdefault(u, 1)
        order = list(ready)
        k = 0
        while k < len(order):
            u = order[k]
            k += 1
            for e in np.flatnonzero(self.src == u):
                v = int(self.dst[e])
                level[v] = max(level.get(v, 1), level[u] + 1)
                indeg[v] -= 1
                if indeg[v] == 0:
                    order.append(v)
        if any(indeg[u] > 0 for u in self.computed):
            return None
        depth = max(level[u] for u in self.computed)
        return [
            np.array(sorted(u for u in self.computed if level[u] == d), dtype=int)
            for d in range(1, depth + 1)
            if any(level[u] == d for u in self.computed)
        ]

    # layout ---------------------------------------------------------------------------------
    @property
    def n_params(self):
        return len(self.edges) + len(self.computed)

    @property
    def n_in(self):
        return len(self.inputs)

    @property
    def n_out(self):
        return len(self.outputs)

    @property
    def input_shape(self):
        return (self.n_in,)

    @property
    def out_shape(self):
        return (self.n_out,)

    def layer_slices(self):
        """The weights, then the biases (the two parameter groups)."""
        E = len(self.edges)
        return [slice(0, E), slice(E, self.n_params)]

    def split(self, w):
        """(edge weights (E,), biases of the computed units (n − n_in,))."""
        E = len(self.edges)
        return w[:E], w[E:]

    def weight_matrix(self, w_edges):
        """W (n, n) with W[j, i] = w_{ji} for each edge j → i (numpy, not autograd)."""
        W = np.zeros((self.n_units, self.n_units))
        np.add.at(W, (self.src, self.dst), w_edges)
        return W

    def init(self, seed=0):
        """Weights N(0, 1/fan-in) (fan-in: the unit's incoming edges), zero biases."""
        rng = np.random.default_rng(seed)
        fan = np.bincount(self.dst, minlength=self.n_units)[self.dst]
        return np.concatenate(
            [rng.standard_normal(len(self.edges)) / np.sqrt(fan), np.zeros(len(self.computed))]
        )

    def check_params(self, w):
        w = finite_array("w", w, ndim=1)
        if w.shape[0] != self.n_params:
            raise ValueError(
                f"w has {w.shape[0]} entries but {self!r} has {self.n_params} parameters "
                f"({len(self.edges)} edge weights, then {len(self.computed)} biases)"
            )
        return w

    def check_inputs(self, X):
        X = finite_array("X", X)
        if X.ndim == 1 and self.n_in == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[1] != self.n_in:
            raise ValueError(
                f"X must have shape (N, {self.n_in}), one column per input unit {self.inputs}; "
                f"got {X.shape}"
            )
        return X

    def prepare(self, X):
        return X

    # the forward map, differentiable by autograd ------------------------------------------------
    def _f(self, x):
        """Units' outputs from their net inputs: σ on hidden units, identity elsewhere."""
        return anp.where(self.is_hidden, self.act.f(x), x)

    def forward(self, w, X):
        """Outputs (N, K); autograd-differentiable in w for feed-forward nets (a recurrent net
        relaxes with its values and is differentiated by the relaxation rules, `problem.grad`)."""
        we, b = self.split(w)
        return propagate(self, we, b, X)[1][..., self.outputs]

    def point(self, problem, w):
        """The problem at w under the engine Point's names (`grad()`, `hv(V)`, `gv_rop(V)`)."""
        return UnitPoint(problem, w)

    def __repr__(self):
        kind = "recurrent" if self.recurrent else "feed-forward"
        return (
            f"UnitNetwork({self.n_units} units, {len(self.edges)} edges, {kind}, "
            f"inputs={self.inputs}, outputs={self.outputs}, activation={self.act.name!r})"
        )


# -- the rules, numpy, vectorised over samples (and directions) ------------------------------------


class UnitTrace:
    """x, y (N, n) at the forward pass or the fixed point; f', f'' per unit; the relaxation's
    iteration count (0 for a feed-forward net)."""

    def __init__(self, net, W, b_full, x, y, steps):
        self.W, self.b, self.x, self.y, self.steps = W, b_full, x, y, steps
        h = net.is_hidden
        self.fp = np.where(h, net.act.df(x), 1.0)
        self.fpp = np.where(h, net.act.d2f(x), 0.0)


def _full_bias(net, b):
    out = np.zeros(net.n_units)
    out[net.computed] = b
    return out


def propagate(net, we, b, X):
    """The one forward pass of a unit network: the units' net inputs x and outputs y
    (..., N, n) and the relaxation's iteration count — one sweep over the levels for a
    feed-forward net (autograd-differentiable in we, b), the relaxation to the fixed point
    y = F(y) for a recurrent one (numpy values). we, b may carry a leading axis of G weight
    sets (the perturbation estimates' batches)."""
    n = net.n_units
    W = anp.matmul(net.onehot_src.T * anp.expand_dims(we, -2), net.onehot_dst)   # W[j, i] = w_ji
    bf = anp.expand_dims(anp.dot(b, net.select_computed), -2)                      # (..., 1, n)
    y = np.zeros((X.shape[0], n))
    y[:, net.inputs] = X
    if net.recurrent:
        return _relax(net, getval(W), getval(bf), y)
    x = 0.0
    for mask in net.level_masks:
        xl = anp.matmul(y, W) + bf
        y = y * (1 - mask) + net._f(xl) * mask
        x = x * (1 - mask) + xl * mask
    return x, y, 0


def relax_state(net, we, b, X):
    """The fixed point y = F(y) of a recurrent net (inputs clamped): (y, x, steps)."""
    x, y, steps = propagate(net, we, b, X)
    return y, x, steps


def _relax(net, W, bf, y):
    """Iterate y <- F(y) = f(y W + b) on the computed units (inputs clamped) to the fixed point:
    (x, y, steps)."""
    comp = np.zeros(net.n_units, dtype=bool)
    comp[net.computed] = True
    y = np.broadcast_to(y, bf.shape[:-2] + y.shape).copy()
    for step in range(1, net.max_iter + 1):
        x = y @ W + bf
        new = np.where(comp, np.where(net.is_hidden, net.act.f(x), x), y)
        if np.max(np.abs(new - y)) <= net.tol * max(1.0, np.max(np.abs(new))):
            return new @ W + bf, new, step
        y = new
    if W.ndim > 2:
        raise RelaxationError(
            f"the recurrent net's state relaxation did not converge in {net.max_iter} "
            "steps for some of the weight sets; use smaller perturbations"
        )
    raise RelaxationError(_no_convergence(net, "state", W, x))


def _no_convergence(net, what, W, x):
    fp = np.where(net.is_hidden, net.act.df(x), 1.0)
    comp = net.computed
    rho = max(
        np.max(np.abs(np.linalg.eigvals((W * fp[n][None, :])[np.ix_(comp, comp)])))
        for n in range(len(x))
    )
    return (
        f"the recurrent net's {what} relaxation did not converge in {net.max_iter} steps to tol "
        f"{net.tol:g}: the spectral radius of its Jacobian diag(f'(x)) Wᵀ is {rho:.3g}"
        f"{' (≥ 1: no relaxation converges)' if rho >= 1 else ''}; scale the recurrent weights "
        "down, or raise max_iter"
    )


def trace(net, w, X):
    """The forward pass (feed-forward) or the relaxed fixed point (recurrent)."""
    we, b = net.split(w)
    x, y, steps = propagate(net, we, b, X)
    return UnitTrace(net, net.weight_matrix(we), _full_bias(net, b), x, y, steps)


def _sweep_back(net, tr, seed_y, extra_x=0.0, steps=None):
    """z = ∂E/∂x from the cotangents e on the units' outputs (..., N, n) and direct terms c on
    their net inputs: z = f' ⊙ (e + W z) + c — one reverse sweep over the levels, or its
    relaxation for a recurrent net. Returns (z, steps)."""
    extra = np.broadcast_to(extra_x, seed_y.shape)
    if not net.recurrent:
        gy = seed_y.copy()
        z = np.zeros_like(seed_y)
        for level in reversed(net.levels):
            gy[..., level] += z @ tr.W[level].T
            z[..., level] = tr.fp[..., level] * gy[..., level] + extra[..., level]
        return z, 0
    return _relax_linear(
        net, lambda z: tr.fp * (seed_y + z @ tr.W.T) + extra, seed_y, "adjoint", tr, steps
    )


def _sweep_forward(net, tr, seed_x, steps=None):
    """R{y} from the direct terms u (R{x} = Wᵀ R{y} + u): a forward sweep, or the relaxation
    R{y} = f' ⊙ (Wᵀ R{y} + u). Returns (R{y}, R{x}, steps)."""
    if not net.recurrent:
        Ry = np.zeros_like(seed_x)
        Rx = np.zeros_like(seed_x)
        for level in net.levels:
            Rx[..., level] = Ry @ tr.W[:, level] + seed_x[..., level]
            Ry[..., level] = tr.fp[..., level] * Rx[..., level]
        return Ry, Rx, 0
    Ry, k = _relax_linear(
        net, lambda r: tr.fp * (r @ tr.W + seed_x), seed_x, "R-forward", tr, steps
    )
    return Ry, Ry @ tr.W + seed_x, k


def _relax_linear(net, step, like, what, tr, steps=None):
    """Fixed point of r = step(r) from r = 0, to the net's tolerance (or exactly `steps`
    iterations, to watch it converge); input units stay 0."""
    r = np.zeros_like(like)
    mask = np.zeros(net.n_units)
    mask[net.computed] = 1.0
    for k in range(1, (steps or net.max_iter) + 1):
        new = step(r) * mask
        if steps is None and np.max(np.abs(new - r)) <= net.tol * max(1.0, np.max(np.abs(new))):
            return new, k
        r = new
    if steps is not None:
        return r, steps
    raise RelaxationError(_no_convergence(net, what, tr.W, tr.x))


def _output_seed(net, shape_like, out_values):
    """A cotangent (..., N, n) that is `out_values` (..., N, K) on the output units."""
    seed = np.zeros(shape_like)
    seed[..., net.outputs] = out_values
    return seed


def _param_grads(net, y, z):
    """Σₙ of ∂/∂w_{ji} = y_j z_i per edge and ∂/∂b_i = z_i per computed unit: (..., P)."""
    return np.concatenate(
        [(y[..., net.src] * z[..., net.dst]).sum(-2), z[..., net.computed].sum(-2)], axis=-1
    )


def gradient(problem, w):
    """∇L by backprop (feed-forward) or the adjoint relaxation (recurrent), plus λw."""
    net = problem.model
    w = problem.check(w)
    tr = trace(net, w, problem.X)
    e = problem.lossfn.dz(tr.y[:, net.outputs], problem.y)
    z, _ = _sweep_back(net, tr, _output_seed(net, tr.y.shape, e))
    return _param_grads(net, tr.y, z) / problem.N + problem.l2 * w


def make_hvp(problem, w, steps=None):
    """Closure V (P, Q) -> H V by Pearlmutter's R{backprop} (feed-forward) or the R-relaxations
    (recurrent), plus λV. Cost: one forward/adjoint pass at w, then per block of directions one
    R-forward and one R-backward pass (or relaxation). steps: run each R-relaxation exactly this
    many iterations instead of to the tolerance (to watch Hv converge)."""
    net = problem.model
    w = problem.check(w)
    tr = trace(net, w, problem.X)
    N = problem.N
    zout = tr.y[:, net.outputs]
    e = _output_seed(net, tr.y.shape, problem.lossfn.dz(zout, problem.y))
    z, _ = _sweep_back(net, tr, e)
    gy = e + z @ tr.W.T  # ∂E/∂y per unit
    E = len(net.edges)

    def hv(V):
        Q = V.shape[1]
        ve, vb = V[:E].T, V[E:].T  # (Q, E), (Q, n_comp)
        Vmat = np.zeros((Q, net.n_units, net.n_units))
        np.add.at(Vmat, (slice(None), net.src, net.dst), ve)
        vbf = np.zeros((Q, net.n_units))
        vbf[:, net.computed] = vb
        direct = np.einsum("nj,qji->qni", tr.y, Vmat) + vbf[:, None, :]  # Σⱼ vⱼᵢ yⱼ + v_bᵢ
        Ry, Rx, _ = _sweep_forward(net, tr, direct, steps)
        Rout = problem.lossfn.hessian_product(zout, problem.y, Ry[..., net.outputs])
        Re = _output_seed(net, Ry.shape, Rout) + np.einsum("ni,qji->qnj", z, Vmat)  # + Σᵢ vⱼᵢ zᵢ
        Rz, _ = _sweep_back(net, tr, Re, tr.fpp * Rx * gy, steps)  # + σ''(x) R{x} ∂E/∂y
        edges = (tr.y[:, net.src] * Rz[..., net.dst] + Ry[..., net.src] * z[:, net.dst]).sum(1)
        out = np.concatenate([edges, Rz[..., net.computed].sum(1)], axis=1)  # R{∂E/∂b} = Σ R{z}
        return out.T / N + problem.l2 * V

    return hv


def make_ggnvp(problem, w):
    """Closure V (P, Q) -> G V: J V by an R-forward sweep (or relaxation), then the backward pass
    (or adjoint relaxation) of B J V — Lin's second way — plus λV."""
    net = problem.model
    w = problem.check(w)
    tr = trace(net, w, problem.X)
    zout = tr.y[:, net.outputs]
    E = len(net.edges)

    def gv(V):
        Q = V.shape[1]
        Vmat = np.zeros((Q, net.n_units, net.n_units))
        np.add.at(Vmat, (slice(None), net.src, net.dst), V[:E].T)
        vbf = np.zeros((Q, net.n_units))
        vbf[:, net.computed] = V[E:].T
        Ry, _, _ = _sweep_forward(net, tr, np.einsum("nj,qji->qni", tr.y, Vmat) + vbf[:, None, :])
        BJv = problem.lossfn.hessian_product(zout, problem.y, Ry[..., net.outputs])
        z, _ = _sweep_back(net, tr, _output_seed(net, Ry.shape, BJv))
        return _param_grads(net, tr.y, z).T / problem.N + problem.l2 * V

    return gv


def batch_losses(problem, Ws):
    """L at many parameter vectors Ws (G, P) at once (the perturbation estimates' ΔE): the
    forward sweep, or the relaxation, carried for all G weight sets together."""
    net = problem.model
    Ws = np.asarray(Ws, dtype=np.float64)
    E, G = len(net.edges), len(Ws)
    y = propagate(net, Ws[:, :E], Ws[:, E:], problem.X)[1]
    z = y[:, :, net.outputs].reshape(G * problem.N, -1)
    ys = np.tile(problem.y, (G,) + (1,) * (np.ndim(problem.y) - 1))
    losses = problem.lossfn.value(z, ys).reshape(G, problem.N).mean(1)
    return losses + 0.5 * problem.l2 * np.sum(Ws**2, axis=1) if problem.l2 else losses


class UnitPoint:
    """A unit network's Problem at w, under the names of the engine's `Point`: `grad()`, and
    the block products `hv(V)`, `gv_rop(V)` (= `gv_jacobian`), each built once. What needs a
    layered model's layers is refused by name."""

    def __init__(self, problem, w):
        self.problem, self.w = problem, problem.check(w)
        self.N, self.l2 = problem.N, problem.l2
        self._cache = {}

    def _made(self, key, make):
        if key not in self._cache:
            self._cache[key] = make(self.problem, self.w)
        return self._cache[key]

    def grad(self):
        return gradient(self.problem, self.w)

    def hv(self, V):
        return self._made("hv", make_hvp)(V)

    def gv_rop(self, V):
        return self._made("gv", make_ggnvp)(V)

    gv_jacobian = gv_rop

    def __getattr__(self, name):
        if name.startswith("_") or name in ("problem", "w", "N", "l2"):
            raise AttributeError(name)
        self.problem.require_layered("this")
