"""The one walk over a layered model, and every pass built from it.

A model (`cl.Sequential`) is a program of steps: its layers in order, with a Residual's block
between a FORK (remember x) and a JOIN (add it back); `model.steps` pairs each step with the
index l of its parameters θ_l (None without). `walk` goes through that program forwards and
`walk_back` backwards, and every pass below is one of the two asking each layer for one of its
rules (`curvlab.layers`) — no pass knows a layer kind:

    run        the forward map, differentiable by autograd (Problem.loss, model.forward)
    forward    the forward trace: each step's output and state (`Trace`)
    backward   backprop of output seeds (Q, N, K): the program in reverse, a JOIN handing its
               cotangent to both the block and the skip and the FORK adding them up; each layer
               with parameters leaves a record (δ = ∂ℓ/∂s for Dense and conv layers)
    rforward   Pearlmutter's R-forward for Q directions V: R y from R x and V, step by step
    rbackward  the R-backward: R{∂ℓ/∂x} and R{∂ℓ/∂θ} with the second-order terms, the exact H V
               (`rbackward_fused`: with the ordinary backprop in the same walk, for a one-shot
               H V that keeps no backprop)
    run_batched  the forward map at G parameter vectors at once (the landscape's grids)

Backward passes carry a leading axis of Q seeds (directions, output units or samples), so a
whole family of backprops is a handful of large matrix products. Steps before the first layer
with parameters do not depend on w: backward passes stop there and the R-forward starts there.
Nothing here averages over samples; callers divide by N.

Samples are independent unless a layer couples them (`model.couples_samples`: train-mode
BatchNorm normalises with the batch's statistics). A backward pass of Q seeds over the N
samples is then still exact — each seed is one cotangent of the whole batch's outputs, and
Σₙ ∂ℓ/∂θ, J v, Jᵀ u, H v are the batch's — but the per-sample split of a gradient is not:
`jacobian_rows` and what is built from per-sample gradients refuse (`require_independent`),
and `Point.rows` gives the batch's rows Jₙᵀ s (Jₙ = ∂zₙ/∂w of the whole batch) by one seed per
sample, which the GGN, true Fisher, their diagonals and the NTK use.

For chains (`model.is_chain`: Dense and conv layers with pooling and Flatten between them) the
classic notation of Botev et al. and Lin's notes holds: layer l's augmented patches ā_l
(N, T_l, m_l + 1), pre-activations s_l = ā_l W̄_lᵀ, a_l = f(s_l), and the parameter-free
layers between a_{l-1} and layer l's input in `links[l]`; `up(l, ·)` carries a tangent of
a_{l-1} through them and the patch map φ of layer l, `down(l, ·)` is its adjoint (l = L: up to
z and back). The chain algorithms (curvature.blocks, KFRA) use these.
"""

import copy
import operator

import numpy as np

from ._checks import memory_budget
from .layers import FORK, JOIN


def _add(a, b):
    """a + b, None standing for zero (a tangent that does not depend on w)."""
    if a is None:
        return b
    return a if b is None else a + b


def couples(model):
    """Whether the model couples its samples (`couples_samples`: train-mode BatchNorm), so a
    sample's outputs depend on the whole batch."""
    return bool(getattr(model, "couples_samples", False))


def require_independent(model, what):
    """Refuse, by name, a per-sample quantity (per-sample gradients or Jacobian rows, the
    empirical and Monte-Carlo Fishers, stored per-sample Jacobians, ...) on a model that
    couples its samples."""
    if couples(model):
        from .layers.norm import coupled_error
        layers = ", ".join(dict.fromkeys(repr(s) for s, _ in model.steps
                                         if getattr(s, "couples_samples", False)))
        raise coupled_error(what, layers)


def walk(model, x, visit, start=0, stop=None, stack=()):
    """The one walk: x through the program's steps start..stop-1 — a FORK remembers x, a JOIN
    adds the remembered x back, a layer step is x -> visit(i, step, l, x) (l: its parameters'
    index, None without). x may be None (zero). Returns x, or (x, stack) when stopped early."""
    stack = list(stack)
    steps = model.steps
    end = len(steps) if stop is None else stop
    for i in range(start, end):
        step, l = steps[i]
        if step is FORK:
            stack.append(x)
        elif step is JOIN:
            x = _add(x, stack.pop())
        else:
            x = visit(i, step, l, x)
    return x if stop is None else (x, stack)


def walk_back(model, g, visit, add=operator.add, stop=None):
    """The walk backwards, from the outputs down to the first layer with parameters (below it
    nothing depends on w; or down to step `stop`, when given): a JOIN hands its cotangent to
    both the block and the skip, the FORK adds the two back (`add`; pairs of cotangents add
    pairwise); a layer step is g -> visit(i, step, l, g, need_input), need_input False for the
    last step walked."""
    steps = model.steps
    first = model.first_param_step if stop is None else max(stop, model.first_param_step)
    stack = []
    for i in range(len(steps) - 1, first - 1, -1):
        step, l = steps[i]
        if step is JOIN:
            stack.append(g)
        elif step is FORK:
            g = add(g, stack.pop())
        else:
            g = visit(i, step, l, g, i > first)
    return g


def run(model, Wbars, x):
    """The forward map on internal-layout inputs x (N, ...): outputs (N, *out_shape).
    Differentiable by autograd in the W̄ (and x)."""
    return walk(model, x, lambda i, step, l, x: step.run(None if l is None else Wbars[l], x))


class Trace:
    """The forward trace of a model on N inputs: each step's state (`states`, in program
    order), the outputs z (N, K) (flattened per sample), and per layer with parameters its
    state (`layer_states`); for Dense and conv layers the lists `abar`, `s`, `fp`, `fpp`, and
    for chains `links[l]`, the (layer, state) pairs of the steps before layer l."""

    def __init__(self, model, Wbars, states, z):
        self.model, self.Wbars, self.states, self.z = model, Wbars, states, z
        self.layer_states = [states[i] for i, (_, l) in enumerate(model.steps) if l is not None]

    def _affine(self, name):
        return [getattr(st, name, None) for st in self.layer_states]

    @property
    def abar(self):
        return self._affine("abar")

    @property
    def s(self):
        return self._affine("s")

    @property
    def fp(self):
        return self._affine("fp")

    @property
    def fpp(self):
        return self._affine("fpp")

    @property
    def links(self):
        out = [[]]
        for (step, l), st in zip(self.model.steps, self.states):
            if l is not None:
                out.append([])
            else:
                out[-1].append((step, st))
        return out

    def _replace(self, **fields):
        """A copy with some fields replaced; `abar=[...]` replaces the first layers' patches
        (for per-layer Jacobian rows of a layer's own ā)."""
        new = copy.copy(self)
        abar = fields.pop("abar", None)
        if abar is not None:
            new.layer_states = list(self.layer_states)
            for l, ab in enumerate(abar):
                st = copy.copy(new.layer_states[l])
                st.abar = ab
                new.layer_states[l] = st
        for k, v in fields.items():
            setattr(new, k, v)
        return new


def forward(model, Wbars, X):
    """Forward trace of the network on raw inputs X (N, *input_shape)."""
    states = [None] * len(model.steps)

    def visit(i, step, l, x):
        x, states[i] = step.trace(None if l is None else Wbars[l], x)
        return x

    z = walk(model, model.prepare(X), visit)
    return Trace(model, Wbars, states, z.reshape(z.shape[0], -1))


def _seed_shape(model, seed):
    return seed.reshape(seed.shape[:2] + model.out_shape)


def backprop(model, Wbars, tr, seed, keep=False):
    """Records per layer with parameters (each (Q, N, ...)) of output seeds (Q, N, K), and with
    keep=True the cotangent reaching each step's output (by step index; None elsewhere)."""
    recs = [None] * len(model.layers)
    gouts = [None] * len(model.steps) if keep else None

    def visit(i, step, l, g, need_input):
        if keep:
            gouts[i] = g
        g, rec = step.backprop(None if l is None else Wbars[l], tr.states[i], g, need_input)
        if l is not None:
            recs[l] = rec
        return g

    walk_back(model, _seed_shape(model, seed), visit)
    return recs, gouts


def backward(model, Wbars, tr, seed, with_a=False):
    """Records (δ_l (Q, N, T_l, n_l) for Dense and conv layers) for every layer from output
    seeds (Q, N, K): ordinary (linear) backprop. with_a: also the cotangents ∂ℓ/∂a_l at each
    layer's output, unfolded (for the Hessian's f'' terms)."""
    recs, gouts = backprop(model, Wbars, tr, seed, keep=with_a)
    if not with_a:
        return recs
    return recs, layer_cotangents(model, gouts)


def layer_cotangents(model, gouts):
    """The cotangents at each layer's output, (location, unit) shaped for Dense and conv
    layers (their `unfold`)."""
    out = []
    for (step, l), g in zip(model.steps, gouts):
        if l is not None:
            unfold = getattr(step, "unfold", None)
            out.append(g if unfold is None or g is None else unfold(g))
    return out


def weight_grads(tr, deltas):
    """Σ_n ∂ℓ/∂θ of the seeds behind the records, per layer, in the flat layout: (P, Q)."""
    parts = [layer.param_grads(Wb, st, d) for layer, Wb, st, d in
             zip(tr.model.layers, tr.Wbars, tr.layer_states, deltas)]
    return np.concatenate(parts, axis=1).T


def jacobian_rows(tr, deltas):
    """Per-sample rows Jₙᵀ s_{q,n} in the flat layout, (Q, N, P) (for a list of the first
    layers' records, those layers' columns), each layer's written in place. Per-sample rows
    exist only when the samples are independent (`Point.rows` gives the batch's rows always)."""
    require_independent(tr.model, "per-sample Jacobian rows")
    Q, N = deltas[0].shape[:2]
    layers = tr.model.layers
    widths = [d.shape[-1] * ab.shape[-1] if ab is not None else layer.size
              for layer, d, ab in zip(layers, deltas, tr.abar)]
    out = np.empty((Q, N, sum(widths)))
    o = 0
    for layer, Wb, st, d, width in zip(layers, tr.Wbars, tr.layer_states, deltas, widths):
        layer.param_rows(Wb, st, d, out=out[:, :, o : o + width])
        o += width
    return out


def split_directions(model, V):
    """Flat directions (P, Q) -> per layer V_l of shape (Q, *shape_l)."""
    Q = V.shape[1]
    return [V[sl].T.reshape((Q,) + layer.shape)
            for sl, layer in zip(model.layer_slices(), model.layers)]


def times_abar(ab, V):
    """ā V_lᵀ for Q directions: (N, T, m+1) x (Q, n, m+1) -> (Q, N, T, n)."""
    N, T, m1 = ab.shape
    Q, n, _ = V.shape
    return (ab.reshape(N * T, m1) @ V.transpose(0, 2, 1)).reshape(Q, N, T, n)


def rforward(model, Wbars, tr, Vs, first=0):
    """The R-forward pass for Q directions: each step's R-state (by step index) and R z = J v
    (Q, N, K). Tangents start at the first layer with parameters (None, zero, before it).

    first: the directions of layers l < first are zero (the caller's promise, e.g. a block of
    Hessian columns of later layers). Such a layer still leaves its R-state (the R-backward
    reads it), but a zero tangent leaves it as None, not as an array of zeros: the steps up
    to layer `first` then skip their products with R x (adding nothing; the result is the
    same)."""
    rstates = [None] * len(model.steps)

    def visit(i, step, l, Rx):
        if l is None and Rx is None:
            return None
        Ry, rstates[i] = step.rforward(None if l is None else Wbars[l], tr.states[i], Rx,
                                       None if l is None else Vs[l])
        return None if Rx is None and l is not None and l < first else Ry

    Rz = walk(model, None, visit)
    return rstates, Rz.reshape(Rz.shape[:2] + (-1,))


def rbackward(model, Wbars, tr, recs, gouts, rstates, Vs, Rseed):
    """Exact R{∂ℓ/∂θ} (summed over samples) for Q directions, flat (P, Q).

    recs, gouts: the ordinary backprop of ∂ℓ/∂z (`backprop(..., keep=True)`, without the seed
    axis); rstates from `rforward`, used up: a layer may form its terms in its R-state's arrays,
    and each step's entry is dropped once read (its memory serves the steps below);
    Rseed = R{∂ℓ/∂z} = B R z (Q, N, K).
    """
    out = [None] * len(model.layers)

    def visit(i, step, l, Rg, need_input):
        Rg, o = step.rbackward(None if l is None else Wbars[l], tr.states[i], _take(rstates, i),
                               None if l is None else recs[l], gouts[i], Rg,
                               None if l is None else Vs[l], need_input)
        if l is not None:
            out[l] = o
        return Rg

    walk_back(model, _seed_shape(model, Rseed), visit)
    return np.concatenate(out, axis=1).T


def rbackward_fused(model, Wbars, tr, dz, rstates, Vs, Rseed):
    """`rbackward` with the ordinary backprop of dz = ∂ℓ/∂z (N, K) done in the same walk: each
    step backpropagates (g, R g) together, so its cotangent and record live only while the
    step runs instead of for the whole pass (a one-shot H V keeps no backprop: less memory,
    fewer fresh pages). Same rules, same result; rstates used up as in `rbackward`."""
    out = [None] * len(model.layers)

    def visit(i, step, l, gRg, need_input):
        g, Rg = gRg
        W, st = None if l is None else Wbars[l], tr.states[i]
        gin, rec = step.backprop(W, st, g, need_input)
        Rg, o = step.rbackward(W, st, _take(rstates, i), None if rec is None else rec[0], g[0],
                               Rg, None if l is None else Vs[l], need_input)
        if l is not None:
            out[l] = o
        return gin, Rg

    walk_back(model, (_seed_shape(model, dz[None]), _seed_shape(model, Rseed)), visit,
              add=lambda a, b: (a[0] + b[0], a[1] + b[1]))
    return np.concatenate(out, axis=1).T


def step_of(model, l):
    """The program index of layer l's step."""
    return next(i for i, (_, k) in enumerate(model.steps) if k == l)


def rforward_from(model, Wbars, tr, m, Rs, Vs):
    """The R-forward of Q tangents injected at layer m's pre-activations, Rs (Q, N, *record)
    in the space of its record (the layer's `rforward_preact`), with no parameter direction
    above it (Vs[l]: None for the layers that take it, zeros for the others). Nothing below
    layer m is walked.
    Returns the R-states (by step index) and R z (Q, N, K), as `rforward`."""
    rstates = [None] * len(model.steps)
    start = step_of(model, m)

    def visit(i, step, l, Rx):
        if i < start or (l is None and Rx is None):
            return None
        if i == start:
            Ry, rstates[i] = step.rforward_preact(Wbars[m], tr.states[i], Rs)
        else:
            Ry, rstates[i] = step.rforward(None if l is None else Wbars[l], tr.states[i], Rx,
                                           None if l is None else Vs[l])
        return Ry

    Rz = walk(model, None, visit)
    return rstates, Rz.reshape(Rz.shape[:2] + (-1,))


def rbackward_rows(model, Wbars, tr, recs, gouts, rstates, Vs, Rseed, m, keep):
    """The R-backward of `rforward_from`'s tangents, from the outputs down to layer m: for each
    layer l in `keep` (l ≥ m, with the rule), by layer index, what its per-sample R{∂ℓ/∂θ} is
    made of (`rbackward_rows`: (R δ, R ā) for an Affine layer; its `rows_from` reads it); the
    other layers' R{∂ℓ/∂θ} are not kept (their blocks come from elsewhere)."""
    rows = {}

    def visit(i, step, l, Rg, need_input):
        W, rst = None if l is None else Wbars[l], _take(rstates, i)
        if l in keep:
            Rg, rows[l] = step.rbackward_rows(W, tr.states[i], rst, recs[l], gouts[i], Rg,
                                              need_input)
            return Rg
        Rg, _ = step.rbackward(W, tr.states[i], rst, None if l is None else recs[l], gouts[i],
                               Rg, None if l is None else Vs[l], need_input)
        return Rg

    walk_back(model, _seed_shape(model, Rseed), visit, stop=step_of(model, m))
    return rows


def _take(items, i):
    """items[i], dropping the list's reference (so the caller's is the last)."""
    item, items[i] = items[i], None
    return item


# the chain view (model.is_chain) ---------------------------------------------------------------

def up(model, tr, l, da):
    """Tangent of a_{l-1} (..., T, n) -> tangent of layer l's patches (..., T_l, m_l), or of the
    outputs z (..., K) for l = L. Linear: pooling uses the forward pass's selections."""
    x = model.layers[l - 1].fold(da)
    for mod, st in tr.links[l]:
        x = mod.push(st, x)
    return x if l == len(model.layers) else model.layers[l].patches(x)


def down(model, tr, l, g):
    """The adjoint of `up`: a cotangent of layer l's patches (or of z, l = L) -> of a_{l-1}."""
    x = g if l == len(model.layers) else model.layers[l].patches_T(g)
    for mod, st in reversed(tr.links[l]):
        x = mod.pull(st, x)
    return model.layers[l - 1].unfold(x)


# many parameter vectors at once ----------------------------------------------------------------

def prefix(model, X):
    """The walk up to the first layer with parameters, which does not depend on w: (x, stack)
    there, from raw inputs X."""
    return walk(model, model.prepare(X), lambda i, step, l, x: step.run(None, x),
                stop=model.first_param_step)


def run_batched(model, params, x, stack, first=None, workspace=None):
    """The forward map at G parameter vectors at once, from the first layer with parameters on:
    params(l) gives W̄_l of the G points (G, *shape_l); x, stack from `prefix` (no G axis);
    first: the first layer's pre-activations (G, N, ...) when the caller computed them (the
    landscape's affine trick, `layer.finish`); workspace(i, shape): a reusable buffer for
    step i's output. Returns the outputs (G, N, K)."""

    def visit(i, step, l, x):
        if l is None:
            return step.run(None, x)
        theta = params(l)
        if first is not None and i == model.first_param_step:
            return step.finish(theta, first, biased=True)
        shape = step.buffer_shape(theta.shape[0], x) if workspace is not None else None
        return step.run(theta, x, out=None if shape is None else workspace(i, shape))

    z = walk(model, x, visit, start=model.first_param_step, stack=stack)
    return z.reshape(z.shape[:2] + (-1,))


class Point:
    """Everything about a layered Problem at w that curvature builds and products reuse — the
    layers' parameters, the forward trace, ∂ℓ/∂z, the backprop records, B and its square-root
    seeds — each computed once, on first use (`problem.point(w)` makes one). Products take
    blocks V (P, Q) and include λ."""

    def __init__(self, problem, w):
        self.problem, self.w = problem, problem.check(w)
        self.Wbars, self.tr = problem.trace(self.w)
        self.N, self.l2 = problem.N, problem.l2
        self._cache = {}

    def lazy(self, key, make):
        """The cached value under key, made by make() on first use."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def model(self):
        return self.problem.model

    def grad(self):
        """∇L(w) (P,) by one backward pass."""
        g = weight_grads(self.tr, self.backward(self.r[None]))[:, 0]
        return g / self.N + self.l2 * self.w

    @property
    def r(self):
        return self.lazy("r", lambda: self.problem.lossfn.dz(self.tr.z, self.problem.y))

    @property
    def backprop(self):
        """Per-sample backprop of ∂ℓ/∂z: (records per layer, cotangents at each step's output
        by step index), without the seed axis."""

        def make():
            recs, gouts = backprop(self.model, self.Wbars, self.tr, self.r[None], keep=True)
            return ([r[0] for r in recs], [None if g is None else g[0] for g in gouts])

        return self.lazy("backprop", make)

    @property
    def deltas(self):
        return self.backprop[0]

    @property
    def grads_a(self):
        """∂ℓ/∂a_l at each layer's output ((location, unit) shaped for Dense and conv)."""
        return self.lazy("grads_a", lambda: layer_cotangents(self.model, self.backprop[1]))

    @property
    def sqrt_seeds(self):
        """The columns of the factor C of B = C Cᵀ as output seeds (R, N, K): their backprops give
        the type-2 (exact-GGN) quantities."""
        return self.lazy(
            "sqrt_seeds",
            lambda: self.problem.lossfn.sqrt_hessian(self.tr.z, self.problem.y).transpose(2, 0, 1),
        )

    @property
    def B(self):
        return self.lazy("B", lambda: self.problem.lossfn.hessian(self.tr.z, self.problem.y))

    @property
    def D(self):
        """Lin's stored Jacobians ∂z/∂s_l for all samples and outputs: (K, N, T_l, n_l) per layer
        (for a Function layer ∂z/∂(its outputs)), N·K·Σ_l T_l n_l numbers in all."""

        def make():
            K = self.tr.z.shape[1]
            seed = np.broadcast_to(np.eye(K)[:, None, :], (K, self.N, K))
            return self.backward(seed)

        return self.lazy("D", make)

    def backward(self, seed, with_a=False):
        """Backprop of output seeds (Q, N, K): the records per layer."""
        return backward(self.model, self.Wbars, self.tr, seed, with_a)

    def rows(self, seeds):
        """The batch's Jacobian rows Jₙᵀ s_{q,n} (Q, N, P) of output seeds (Q, N, K), Jₙ = ∂zₙ/∂w.
        Independent samples: one backward pass, the layers' per-sample rows. Coupled samples
        (`couples`): each (q, n) its own seed, zero but at sample n, backpropagated through the
        whole batch and summed over it — Q·N seeds of N samples, in chunks."""
        if not couples(self.model):
            return jacobian_rows(self.tr, self.backward(seeds))
        Q, N, K = seeds.shape
        P = self.problem.n_params
        out = np.empty((Q, N, P))
        flat = out.reshape(Q * N, P)
        budget = min(256 * 2**20, memory_budget() // 4)          # one chunk's working memory
        step = int(max(1, min(Q * N, budget // (8 * N * (P + 2 * sum(self.model.widths))))))
        for i0 in range(0, Q * N, step):
            idx = np.arange(i0, min(i0 + step, Q * N))
            q, n = np.divmod(idx, N)
            local = np.zeros((len(idx), N, K))
            local[np.arange(len(idx)), n] = seeds[q, n]
            flat[idx] = weight_grads(self.tr, self.backward(local)).T
        return out

    def Bu(self, U):
        """B U for output directions U (Q, N, K), per sample, without forming B."""
        return self.problem.lossfn.hessian_product(self.tr.z, self.problem.y, U)

    def split(self, V):
        return split_directions(self.model, V)

    # products on blocks (P, Q) ---------------------------------------------------------------
    def jv(self, V):
        """J V: (Q, N, K) by one batched R-forward pass."""
        return rforward(self.model, self.Wbars, self.tr, self.split(V))[1]

    def jtu(self, U):
        """Σ_n J_nᵀ U_n for Q output cotangents U (Q, N, K): (P, Q)."""
        return weight_grads(self.tr, self.backward(U))

    def hv(self, V, first=0):
        """H V + λV for directions V (P, Q); first: V's rows of layers l < first are zero
        (`rforward`). The first product at a point backpropagates ∂ℓ/∂z inside its R-backward
        (`rbackward_fused`, nothing kept: a one-shot H V); a second one keeps that backprop
        (`backprop`) for itself and every later product."""
        Vs = self.split(V)
        model = self.model
        rstates, Rz = rforward(model, self.Wbars, self.tr, Vs, first)
        if "backprop" in self._cache or self._cache.get("hv_before"):
            recs, gouts = self.backprop
            HV = rbackward(model, self.Wbars, self.tr, recs, gouts, rstates, Vs, self.Bu(Rz))
        else:
            self._cache["hv_before"] = True
            HV = rbackward_fused(model, self.Wbars, self.tr, self.r, rstates, Vs, self.Bu(Rz))
        HV /= self.N
        if self.l2:
            HV += self.l2 * V
        return HV

    def gv_rop(self, V):
        """Lin (b): J v by the R-operator, then a backward pass with B J v in place of ∂ℓ/∂z."""
        BJv = self.Bu(self.jv(V))
        return self.jtu(BJv) / self.N + self.l2 * V

    def gv_jacobian(self, V):
        """Lin (a): reuse the stored ∂z/∂s_l; memory ∝ samples × outputs × units."""
        require_independent(self.model, "ggnvp(method='jacobian') (stored per-sample Jacobians)")
        Jv = 0.0
        model, tr = self.model, self.tr
        K, N = self.tr.z.shape[1], self.N
        for layer, Wb, st, D, Vl in zip(model.layers, self.Wbars, tr.layer_states, self.D,
                                        self.split(V)):
            U = layer.param_tangent(Wb, st, Vl)
            Jv = Jv + np.einsum("knr,qnr->qnk", D.reshape(K, N, -1), U.reshape(len(U), N, -1))
        u = self.Bu(Jv)
        recs = [np.einsum("qnk,knr->qnr", u, D.reshape(K, N, -1)).reshape((len(u),) + D.shape[1:])
                for D in self.D]
        return weight_grads(tr, recs) / self.N + self.l2 * V

    def fv_true(self, V):
        F = self.lazy("F", lambda: self.problem.lossfn.fisher_factor(self.tr.z))
        FJv = np.einsum("nkr,njr,qnj->qnk", F, F, self.jv(V))
        return self.jtu(FJv) / self.N + self.l2 * V

    def fv_empirical(self, V):
        require_independent(self.model, "the empirical Fisher (per-sample gradients)")
        G = self.lazy(
            "g_n", lambda: jacobian_rows(self.tr, self.backward(self.r[None]))[0]
        )  # (N, P)
        return G.T @ (G @ V) / self.N + self.l2 * V
