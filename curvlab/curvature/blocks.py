"""Exact per-layer Hessian and GGN blocks (Botev, Ritter & Barber 2017), and the whole dense
Hessian and GGN built block by block from them.

Per sample, the Hessian with respect to layer l's pre-activations s_l (all T_l locations,
D_l = T_l n_l numbers) obeys the recursion
    H_a(L-1) = Cᵀ B C,                 C = ∂z/∂a_{L-1} (the pooling / Flatten after the last layer)
    H_l      = diag(f'_l) H_a(l) diag(f'_l) + diag(f''_l ⊙ ∂ℓ/∂a_l),
    H_a(l-1) = C_lᵀ H_l C_l,           C_l = ∂s_l/∂a_{l-1} (W_l after φ and the layers between)
(the GGN drops the f'' term; max-pool is linear given its selection, so it adds none). For an
MLP, C_l = W_l and H_a(L-1) = B. Since s_l = W̄_l ā_l at every location, the layer's block in
the row-major flat layout is (1/N) Σₙ Σ_{t,t'} H_{l,n}[(t,i),(t',i')] ā_{l,n,t}[j] ā_{l,n,t'}[j']
— for Dense layers (T = 1) the sum of Kronecker products (1/N) Σₙ H_{l,n} ⊗ āₙāₙᵀ, which K-FAC,
KFLR and KFRA approximate by one Kronecker product. With weight sharing (Conv2d) it is not a sum
of Kronecker products: the locations couple (Bulatov's point). The same per-sample H_l give the
off-diagonal blocks (`dense_from_layers`).
"""

import numpy as np
from tqdm.auto import tqdm

from .. import engine
from .._checks import check_dense
from ..layers import PIECEWISE_LINEAR
from ..problem import require_problem
from ._dense import _CHUNK_BYTES, chunk_size, gram_of_seeds


def sandwich_down(pt, l, H):
    """C_lᵀ H C_l per sample, H (N, D, D) over s_l (over z for l = L) -> (N, D_a, D_a) over
    a_{l-1}: rows then columns of H pulled back through W_l, φ and the layers between."""
    model, tr = pt.problem.model, pt.tr
    L = len(model.layers)
    simple = not tr.links[l] and (l == L or model.layers[l].whole_input)
    W = model.layers[l].weight(pt.Wbars[l]) if l < L else None
    if simple:                                                      # MLP: Wᵀ H W (or H at the top)
        return H if W is None else W.T @ H @ W
    N, D = H.shape[:2]
    shape = (model.layers[l].T, model.layers[l].n_out) if l < L else (D,)

    def pull(G):                                   # rows G (Q, N, D) -> rows G C (Q, N, D_a)
        G = G.reshape(G.shape[:2] + shape)
        return engine.down(model, tr, l, G if W is None else G @ W).reshape(G.shape[0], N, -1)
    HC = pull(H.transpose(1, 0, 2))                                  # [q, n, a] = (H C)ₙ[q, a]
    return np.ascontiguousarray(pull(HC.transpose(2, 1, 0)).transpose(1, 0, 2))


def pre_activation_hessians(pt, exact=True, top=None, down_to=0):
    """Per-sample H_l (N, D_l, D_l) for every layer l ≥ down_to (None below), D_l = T_l n_l in
    (location, unit) order; exact=False gives the GGN's G_l. top: the output curvature to start
    from (default B = ∂²ℓ/∂z²; the true Fisher passes E[∇ℓ∇ℓᵀ])."""
    model, N = pt.problem.model, pt.N
    L = len(model.layers)
    Hs = [None] * L
    H = sandwich_down(pt, L, pt.B if top is None else top)
    for l in reversed(range(down_to, L)):
        fp = pt.tr.fp[l].reshape(N, -1)
        H = fp[:, :, None] * H * fp[:, None, :]
        if exact and model.layers[l].act.name not in PIECEWISE_LINEAR:
            d2 = (pt.tr.fpp[l] * pt.grads_a[l]).reshape(N, -1)
            np.einsum("nii->ni", H)[...] += d2                     # a view of the diagonals
        Hs[l] = H
        if l > down_to:
            H = sandwich_down(pt, l, H)
    return Hs


def strided_block(out, rows, cols, shape):
    """The sub-block out[rows, cols] as a *view* of the given shape (never a copy)."""
    view = out[rows, cols].reshape(shape)
    if not np.shares_memory(view, out):                    # reshape copied: writes would be lost
        raise AssertionError("internal error: block view is a copy")
    return view


def _store(target, value, add):
    if add:
        target += value
    else:
        target[...] = value


def khatri_rao_into(block, A, abar_l, abar_m, cap=None, add=False):
    """block[i, j, i', j'] = Σₙ Aₙ[i, i'] ā_{l,n}[j] ā_{m,n}[j'], i.e. Σₙ Aₙ ⊗ ā_{l,n} ā_{m,n}ᵀ
    (one location per sample; `add` accumulates instead of assigning).

    One matrix product with inner dimension N: A as ((i, i'), n) times the row-wise Khatri-Rao
    product (n, (j, j')), then a permuted copy into `block` (n_l, m_l+1, n_m, m_m+1).
    Cost N·n_l·n_m·(m_l+1)·(m_m+1) multiply-adds; working memory at most one chunk of rows
    (at most `cap` bytes, if given).
    """
    N, n_l, n_m = A.shape
    a_l, a_m = abar_l.shape[1], abar_m.shape[1]
    KR = (abar_l[:, :, None] * abar_m[:, None, :]).reshape(N, a_l * a_m)
    step = chunk_size(8 * n_m * a_l * a_m, n_l, cap)
    for i0 in range(0, n_l, step):
        Ai = A[:, i0:i0 + step].reshape(N, -1)
        R = (Ai.T @ KR).reshape(-1, n_m, a_l, a_m)                   # (i, i', j, j')
        _store(block[i0:i0 + step], R.transpose(0, 2, 1, 3), add)


def times_patches(H, abar):
    """Σ_{t'} H[(t,i),(t',i')] ā[t',j'] per sample: H (N, D, T·n) -> (N, D, n·(m+1)), i.e. H
    times ∂s/∂W̄ (each parameter (i', j') of a shared-weight layer moves s[t', i'] by ā[t', j'])."""
    N, D = H.shape[:2]
    _, T, m1 = abar.shape
    n = H.shape[2] // T
    HU = H.reshape(N, D, T, n).transpose(0, 3, 1, 2) @ abar[:, None]       # (N, i', D, j')
    return HU.transpose(0, 2, 1, 3).reshape(N, D, n * m1)


def patches_times(abar, Y, n):
    """Σₙ Σ_t ā[n,t,j] Y[n,(t,i),p] -> (n, m+1, p): one product with inner dimension N·T."""
    N, T, m1 = abar.shape
    R = abar.reshape(N * T, m1).T @ Y.reshape(N * T, -1)                    # (j, (i, p))
    return R.reshape(m1, n, -1).transpose(1, 0, 2)


def shared_diagonal_block(H, abar):
    """Σₙ Σ_{t,t'} Hₙ[(t,i),(t',i')] ā[t,j] ā[t',j'] for a layer with T locations: (P_l, P_l)."""
    N, T, m1 = abar.shape
    n = H.shape[1] // T
    return patches_times(abar, times_patches(H, abar), n).reshape(n * m1, n * m1)


def _layer_block(H, abar):
    """Σₙ Σ_{t,t'} Hₙ[(t,i),(t',i')] ā[t,j] ā[t',j'] (not averaged): the layer's diagonal block."""
    N, T, m1 = abar.shape
    if T > 1:
        return shared_diagonal_block(H, abar)
    n = H.shape[1]
    out = np.empty((n * m1, n * m1))
    khatri_rao_into(out.reshape(n, m1, n, m1), H, abar[:, 0], abar[:, 0])
    return out


def sample_chunks(pt, per_sample_bytes):
    """Sub-points of pt on consecutive chunks of samples whose per-sample working arrays stay
    under the chunk budget (all samples at once when they fit)."""
    step = chunk_size(per_sample_bytes, pt.N)
    if step >= pt.N:
        return [pt]
    return [pt.problem.subset(np.arange(n0, min(n0 + step, pt.N))).point(pt.w)
            for n0 in range(0, pt.N, step)]


def _per_sample_bytes(model, routes=None, R=0):
    """Bytes per sample of the working arrays of a dense build: the H_l of the layers that need
    them and the products that carry them down a layer, and the Jacobian rows of the Gram
    columns (R per sample). routes: see `column_routes` (default: every column from the H_l).
    (Shared-weight columns push their parameter directions in chunks of their own.)"""
    routes = routes or ["block"] * len(model.layers)
    D = model.widths
    first = min((m for m, r in enumerate(routes) if r == "block"), default=len(D))
    Dh = D[first:]
    below = D[max(first - 1, 0):]
    total = sum(d * d for d in Dh) + 3 * max((a * b for a in Dh for b in below), default=0)
    if "gram" in routes:
        total += R * (model.n_params + 2 * sum(D))
    return 8 * max(total, 1)


def _blocks(problem, w, exact, name):
    pt = require_problem(problem, name).point(w)
    model = pt.problem.model
    if not model.is_chain:
        return generic_blocks(name, pt, exact)
    for layer in model.layers:
        check_dense(
            f"{name} block", layer.size, alternative="cl.kflr(problem, w) (Kronecker factors)"
        )
    blocks = [0.0] * len(model.layers)
    for c in sample_chunks(pt, _per_sample_bytes(model)):
        for l, (H, ab) in enumerate(zip(pre_activation_hessians(c, exact), c.tr.abar)):
            blocks[l] = blocks[l] + _layer_block(H, ab)
    for Bl in blocks:
        Bl /= pt.N
        Bl[np.diag_indices_from(Bl)] += pt.l2
    return blocks


def hessian_blocks(problem, w):
    """Exact per-layer diagonal Hessian blocks [(size_l, size_l)] by the Botev recursion."""
    return _blocks(problem, w, True, "hessian_blocks")


def ggn_blocks(problem, w):
    """Exact per-layer diagonal GGN blocks, by the same recursion without the f'' term."""
    return _blocks(problem, w, False, "ggn_blocks")


def column_routes(model, exact, R):
    """How each column of blocks (all l ≥ m) of a dense build is made, per layer m:
    'gram' — the Gram product of the per-sample Jacobian rows Jₙᵀ Cₙ (R per sample, B = CCᵀ),
    when layer m shares its weights over more locations than R: its per-sample blocks,
    (T·n)², would outgrow the R rows. The Hessian takes it only when every activation is
    piecewise linear: then H = GGN + the terms where a layer's W̄ meets its input.
    'block' — from the per-sample pre-activation Hessians H_l of Botev's recursion."""
    pl = all(layer.act.name in PIECEWISE_LINEAR for layer in model.layers)
    return ["gram" if layer.T > R and (pl or not exact) else "block" for layer in model.layers]


class _Sink:
    """Where a column's blocks (l, m) go: written into `out`, assigned for the first chunk of
    samples and added for later ones; the upper blocks are mirrored at the end."""

    def __init__(self, out, slices, add):
        self.out, self.sl, self.add = out, slices, add

    def get(self, l, m, shape):
        return strided_block(self.out, self.sl[l], self.sl[m], shape)

    def put(self, l, m, value):
        _store(self.get(l, m, value.shape), value, self.add)


def dense_from_layers(name, pt, exact, progress=None, top=None):
    """The whole (P, P) Hessian (exact=True) or GGN (exact=False; with `top`, a function of a
    point giving the factor F of the output curvature F Fᵀ to use instead of B = ∂²ℓ/∂z², e.g.
    the output Fisher's), exactly symmetric, λI added.

    Block (l, m) is (1/N) Σₙ (∂s_l/∂W̄_l)ᵀ H_l (∂s_l/∂W̄_m), plus, for the Hessian with l > m,
    the term where W̄_l meets its input: (1/N) Σₙ Σ_t δ_{l,t} ⊗ ∂ā_{l,t}/∂W̄_m (see hessian.py).
    Blocks l ≥ m are built a column (all l ≥ m) at a time and mirrored, each column one of
    three ways:
    - layer m Dense (so every later layer is Dense): the n_m pre-activation directions of s_m
      are pushed forward, T_{l←m} = ∂s_l/∂s_m, and W̄_m enters through the Khatri-Rao product
      with ā_m — one matrix product with inner dimension N per block;
    - layer m with shared weights (Conv2d): its P_m parameter directions are pushed forward
      (the R-operator with Q = P_m unit directions, few because the weights are shared), and
      each block is one matrix product with inner dimension N·T_l;
    - or, where `column_routes` says so, the Gram product of the Jacobian rows (the shared
      layer's input terms added as above).
    Samples are taken in chunks when their per-sample arrays would not fit the working budget.
    """
    model = pt.problem.model
    if not model.is_chain:
        return generic_dense(name, pt, exact, top, progress)
    P, L = model.n_params, len(model.layers)
    factor = (lambda c: c.problem.lossfn.sqrt_hessian(c.tr.z, c.problem.y)) if top is None else top
    sl = model.layer_slices()
    R = model.n_out  # columns of B's factor (K for every loss here)
    routes = column_routes(model, exact, R)
    lowest = min((m for m, r in enumerate(routes) if r == "block"), default=L)
    per_sample = _per_sample_bytes(model, routes, R)
    # Working blocks get a quarter of the matrix, an eighth when the per-sample arrays (which
    # grow with N, not P) already take an eighth: the peak stays near twice the matrix.
    cap = 2 * P * P if pt.N * per_sample < P * P else P * P
    check_dense(name, P, extra_bytes=min(pt.N * per_sample, _CHUNK_BYTES) + min(_CHUNK_BYTES, cap))
    chunks = sample_chunks(pt, per_sample)
    out = np.zeros((P, P)) if len(chunks) > 1 else np.empty((P, P))
    sink = _Sink(out, sl, len(chunks) > 1)
    pairs = [(l, m) for m in range(L) for l in range(m, L)]
    show = (
        progress if progress is not None else pt.N * P * P * max(l.T for l in model.layers) > 1e11
    )
    bar = tqdm(total=len(pairs) * len(chunks), desc=name, disable=not show, leave=False)
    for c in chunks:
        F = factor(c) if top is not None or "gram" in routes else None
        Hs, rows = None, None
        if lowest < L:
            Hs = pre_activation_hessians(
                c, exact, None if top is None else F @ F.transpose(0, 2, 1), lowest
            )
            for H in Hs[lowest:]:
                H /= pt.N  # fresh arrays: scaled in place
        if "gram" in routes:  # Jacobian rows Jₙᵀ Cₙ, scaled by 1/√N
            rows = engine.jacobian_rows(c.tr, c.backward(F.transpose(2, 0, 1) / np.sqrt(pt.N)))
            rows = rows.reshape(-1, P)
        for m in range(L):
            if model.layers[m].whole_input:
                _dense_column(sink, c, Hs, m, exact, cap, pt.N)
            else:
                _shared_column(sink, c, Hs if routes[m] == "block" else None, m, exact, pt.N, rows)
            bar.update(L - m)
    bar.close()
    for l, m in pairs:
        if l > m:
            _mirror(out, sl[l], sl[m])
    _symmetrise_diagonal_blocks(out, sl)
    out[np.diag_indices(P)] += pt.l2
    return out


def _dense_column(sink, pt, Hs, m, exact, cap, N_total):
    """Blocks (l, m), l ≥ m, for a Dense layer m: every later layer is Dense too, so per sample
    T_{l←m} = W_l diag(f'_{l-1}) T_{l-1←m} is a small matrix product (T_{m←m} = I)."""
    model, tr = pt.problem.model, pt.tr
    ab = [a[:, 0] for a in tr.abar]  # one location: (N, m + 1)
    fp = [f[:, 0] for f in tr.fp]
    deltas = [d[:, 0] / N_total for d in pt.deltas] if exact else None
    T = None  # ∂s_l/∂s_m per sample; None while l = m
    for l in range(m, len(model.layers)):
        layer = model.layers[l]
        block = sink.get(l, m, layer.shape + model.layers[m].shape)
        if l == m:
            khatri_rao_into(block, Hs[m], ab[m], ab[m], cap, sink.add)
            continue
        W = layer.weight(pt.Wbars[l])
        D = None if T is None else fp[l - 1][:, :, None] * T  # ∂a_{l-1}/∂s_m
        T = W * fp[m][:, None, :] if D is None else W @ D
        khatri_rao_into(block, Hs[l] @ T, ab[l], ab[m], cap, sink.add)
        if exact and D is None:
            _add_input_term_diagonal(block, deltas[l], fp[m], ab[m])
        elif exact:
            _add_input_term(block, deltas[l], D, ab[m], cap)


def _shared_column(sink, pt, Hs, m, exact, N_total, rows=None):
    """Blocks (l, m), l ≥ m, for a layer m with shared weights. Main term: from the H_l, by
    pushing the P_m parameter directions forward (R s_l = ∂s_l/∂W̄_m per sample), or, with Hs
    None, from the Gram of the Jacobian rows. Input term (exact): from the same push,
    R ā_l = ∂ā_l/∂W̄_m. The directions are pushed a chunk at a time."""
    model, tr = pt.problem.model, pt.tr
    sl, L = model.layer_slices(), len(model.layers)
    layer_m = model.layers[m]
    Pm, N = layer_m.size, pt.N
    if Hs is None:  # the whole column's main term at once
        gram = rows[:, sl[m].start :].T @ rows[:, sl[m]]
        values = [
            gram[sl[l].start - sl[m].start : sl[l].stop - sl[m].start].reshape(
                model.layers[l].shape + (Pm,)
            )
            for l in range(m, L)
        ]
    else:
        values = [patches_times(tr.abar[m], times_patches(Hs[m], tr.abar[m]), layer_m.n_out)]
        values += [np.zeros(l.shape + (Pm,)) for l in model.layers[m + 1 :]]
    if m < L - 1 and (Hs is not None or exact):
        later = max(l.T * l.n_in + 2 * l.width for l in model.layers[m + 1 :])
        step = chunk_size(8 * N * (3 * layer_m.width + later + max(model.widths)), Pm)
        eye = np.eye(Pm).reshape((Pm,) + layer_m.shape)
        for p0 in range(0, Pm, step):
            cols = slice(p0, min(p0 + step, Pm))
            Rs = engine.times_abar(tr.abar[m], eye[cols])  # ∂s_m/∂W̄_m[cols]
            for l in range(m + 1, L):
                layer = model.layers[l]
                Rp = engine.up(model, tr, l, tr.fp[l - 1] * Rs)  # ∂ā_l/∂W̄_m
                Rs = Rp @ layer.weight(pt.Wbars[l]).T  # ∂s_l/∂W̄_m
                q = len(Rs)
                value = values[l - m][:, :, cols]
                if Hs is not None:  # H_l ∂s_l/∂W̄_m
                    HU = Hs[l] @ Rs.reshape(q, N, -1).transpose(1, 2, 0)
                    value += patches_times(tr.abar[l], HU, layer.n_out)
                if exact:  # Σ_t δ_{l,t} ⊗ ∂ā_{l,t}/∂W̄_m (not the bias column)
                    d = (pt.deltas[l] / N_total).reshape(-1, layer.n_out)  # (N·T, n_l)
                    value[:, : layer.n_in] += (d.T @ Rp.reshape(q, len(d), -1)).transpose(
                        1, 2, 0)
    for l in range(m, L):
        sink.put(l, m, values[l - m])


def _add_input_term(block, delta, D, abar_m, cap):
    """block[i, j, i', j'] += Σₙ δₙ[i] Dₙ[j, i'] ā_{m,n}[j'] over the input units j (not the
    bias): one product ((j, i'), n) × (n, (i, j')) per chunk of j."""
    N, n_in, n_m = D.shape
    KR = (delta[:, :, None] * abar_m[:, None, :]).reshape(N, -1)  # (n, (i, j'))
    n_l, a_m = delta.shape[1], abar_m.shape[1]
    inputs = block[:, :n_in]
    step = chunk_size(8 * n_m * n_l * a_m, n_in, cap)
    for j0 in range(0, n_in, step):
        R = D[:, j0 : j0 + step].reshape(N, -1).T @ KR  # ((j, i'), (i, j'))
        inputs[:, j0 : j0 + step] += R.reshape(-1, n_m, n_l, a_m).transpose(2, 0, 1, 3)


def _add_input_term_diagonal(block, delta, fp_m, abar_m):
    """The same for l = m + 1, where ∂a_m/∂s_m = diag(f'_m): only entries with j = i'."""
    N, n_m = fp_m.shape
    C = (fp_m[:, :, None] * delta[:, None, :]).reshape(N, -1).T @ abar_m  # ((j, i), j')
    C = C.reshape(n_m, delta.shape[1], -1).transpose(1, 0, 2)  # (i, j, j')
    diagonal = np.einsum("ijjk->ijk", block[:, :n_m])  # a writeable view of block[i, j, j, j']
    diagonal += C


def _mirror(out, rows, cols, tile=256):
    """out[cols, rows] = out[rows, cols]ᵀ, tile by tile (one whole-block assignment would make
    numpy copy the block first: source and target share a buffer)."""
    for r in range(rows.start, rows.stop, tile):
        r1 = min(r + tile, rows.stop)
        out[cols, r:r1] = out[r:r1, cols].T


def _symmetrise_diagonal_blocks(out, slices, tile=256):
    """Make each diagonal block exactly symmetric, (B + Bᵀ)/2 tile by tile in place: the
    products for (i, i') and (i', i) agree only to rounding on some BLAS builds."""
    for s in slices:
        B = out[s, s]
        for r in range(0, B.shape[0], tile):
            for c in range(r, B.shape[0], tile):
                upper, lower = B[r : r + tile, c : c + tile], B[c : c + tile, r : r + tile]
                mean = 0.5 * (upper + lower.T)
                upper[...] = mean
                lower[...] = mean.T


# every other model: from the engine's products -------------------------------------------------
# A model that is not a chain (Residual, MeanPool, a Dense shared over positions, cl.Function,
# sequence outputs) has no per-layer recursion here: its Hessian comes from pre-activation
# tangents where it can (`structured_hessian`, below) and otherwise column by column from
# Pearlmutter's H V (P directions, pushed through the net a block at a time), its GGN and true
# Fisher as the Gram matrix of per-sample Jacobian rows Jₙᵀ Cₙ (R backprops, R the columns of
# the output curvature's factor C). All exact; H V columns cost about P gradients, the Gram
# about R, instead of the chain's N·P²/2 multiply-adds.

# Directions per batched H V: the gain of a batch is fewer, larger products, its cost arrays
# that outgrow the caches. Measured in CPU time on the bench's transformer and residual MLP
# (P ≈ 5,000; bench/architectures.py), ms per Hessian column at Q directions per batch:
# Q = 1: 3.0 / 2.6, Q = 8: 1.75 / 1.4, Q = 16: 1.65 / 1.4, Q = 40: 2.45 / 1.95 (the old
# 256 MiB budget gave 40). The estimate below (4 arrays per step's output per direction) is
# about 5 MiB per direction on both: 64 MiB gives 11-14.
_BATCH_BYTES = 64 * 2**20


def _direction_chunk_bytes(pt):
    """Working bytes of one direction's R-passes: about four arrays per step's output."""
    model = pt.problem.model
    per_sample = sum(int(np.prod(s.out_shape)) for s, _ in model.steps
                     if hasattr(s, "out_shape")) + sum(model.widths)
    per_sample += sum(layer.T * getattr(layer, "n_in", 0) for layer in model.layers)
    return 8 * pt.N * 4 * max(per_sample, 1)


def _direction_chunk(pt, cap=None):
    """Directions per batched H V: as many as keep the R-passes' arrays (about four per step's
    output per direction) within _BATCH_BYTES, at least one."""
    cap = _BATCH_BYTES if cap is None else min(cap, _BATCH_BYTES)
    return chunk_size(_direction_chunk_bytes(pt), pt.problem.model.n_params, cap)


def hessian_columns(pt, cols, into=None):
    """Columns `cols` (indices) of the Hessian, plus λ on the diagonal, by batched H V:
    (P, len(cols)) (written into `into` when given)."""
    P = pt.problem.n_params
    out = np.empty((P, len(cols))) if into is None else into
    step = _direction_chunk(pt, 8 * P * max(len(cols), 1))
    starts = [sl.start for sl in pt.problem.model.layer_slices()]
    for c0 in range(0, len(cols), step):
        idx = cols[c0:c0 + step]
        E = np.zeros((P, len(idx)))
        E[idx, np.arange(len(idx))] = 1.0
        # the chunk's directions are zero below its first column's layer: the R-forward
        # carries no tangent through the layers before it
        first = int(np.searchsorted(starts, np.min(idx), side="right")) - 1
        out[:, c0:c0 + len(idx)] = pt.hv(E, first)
    return out


def generic_dense(name, pt, exact, top=None, progress=None):
    """The (P, P) Hessian (exact) or GGN / true Fisher (`top`) of any layered model, exactly
    symmetric, λI included (see the section's comment)."""
    P = pt.problem.n_params
    check_dense(name, P, extra_bytes=min(_CHUNK_BYTES, 8 * P * P))
    if exact:
        if engine.couples(pt.problem.model):     # no per-sample split: H V columns only
            M = hessian_columns(pt, np.arange(P))
        else:
            return structured_hessian(pt, name, progress)
    else:
        F = pt.problem.lossfn.sqrt_hessian(pt.tr.z, pt.problem.y) if top is None else top(pt)
        M = gram_of_seeds(name, pt, np.ascontiguousarray(F.transpose(2, 0, 1)))
    M += M.T
    M *= 0.5
    return M


# the Hessian of a model with independent samples: columns from pre-activation tangents ------
# A column of H for W̄_m[i, j] of an Affine layer m is the H V of V = e_i e_jᵀ, whose R-forward
# starts as R s_m = ā_m[:, :, j] e_iᵀ: per sample n and location t, the unit tangent of
# s_m[n, t, i] weighted by ā_m[n, t, j]. Everything above s_m is linear in that tangent, so
# with the samples independent, one R-pass of the T_m·n_m unit tangents of s_m (each set at
# every sample at once) gives every column of layer m: for a later Affine layer l ≥ m,
#     H[W̄_l, W̄_m[i, j]] = (1/N) Σₙ Σ_t ā_m[n, t, j] R{∂ℓ/∂W̄_l}ₙ(e_{t,i}),
#     R{∂ℓ/∂W̄_l}ₙ = Σ_{t'} R δ_{l,n,t'} ā_{l,n,t'}ᵀ + δ_{l,n,t'} [R ā_{l,n,t'}; 0]ᵀ,
# one matrix product with inner dimension N·T_m per block (the term δ_m V_W of layer m's own
# R-backward reaches only layers below m, whose blocks are the mirror's; within a layer of
# several blocks, attention's O meets ō, which Q, K, V move: see `preact_columns`). T_m·n_m
# directions instead of n_m·(m_m + 1): on the bench's residual MLP 170 R-passes instead of
# 5,226 H V columns, and the N·P_l·P_m products of Botev's chain build. The same for attention
# (four blocks, Q, K, V on x̄ and O on ō) and Embedding (one-hot patches, its table transposed).
# Layers without these rules (norms, Function), those whose tangents would cost more than half
# their H V columns or whose rows Y (N·T·P_l numbers per unit) outgrow the working budget, and
# every layer of a model that couples its samples give their columns whole by H V, mirrored.

_RULES = ("injection_blocks", "rforward_preact", "rbackward_rows", "rows_from")


def _injected(layer, record, unit_bytes=0):
    """Whether a layer's columns come from its pre-activations: it has the rules, at most half
    as many unit tangents (its record's numbers per sample, T·n summed over its blocks) as
    parameters (the block products cost extra), and one unit's working arrays (`unit_bytes`)
    fit the batch budget."""
    return (all(hasattr(layer, r) for r in _RULES) and 2 * int(np.prod(record)) <= layer.size
            and unit_bytes <= _BATCH_BYTES)


def _widest_from(model, m):
    """The most parameters of a layer l ≥ m: a bound on the later layers' P_l, for one unit's
    rows Y (both the route's budget check and the chunks use it)."""
    return max(layer.size for layer in model.layers[m:])


def _unit_bytes(pt, T, each, widest):
    """Working bytes of one unit's R-passes (`each` directions) and rows Y (N·T·P_l numbers)."""
    return each * _direction_chunk_bytes(pt) + 8 * pt.N * T * widest


def _per_position(model, lossfn, m):
    """Whether layer m's positions stay apart up to the loss: it and every step after it act
    on each position alone (`positionwise`) and the loss is one per position (B block-diagonal
    over them, `PerPosition`). Then its unit tangents set at every position at once separate
    like samples: n_m R-passes instead of T_m·n_m, the positions counted as samples."""
    from ..layers import FORK, JOIN
    from ..losses import PerPosition
    if not (isinstance(lossfn, PerPosition) and getattr(model.layers[m], "T", 1) > 1):
        return False
    after = model.steps[engine.step_of(model, m):]
    return all(s in (FORK, JOIN) or getattr(s, "positionwise", False) for s, _ in after)


def structured_routes(pt):
    """(the layers whose columns come from pre-activation tangents, per layer whether its
    positions stay apart (`_per_position`)) for `structured_hessian` at a point."""
    model, recs = pt.problem.model, pt.backprop[0]
    L = len(model.layers)
    apart = [_per_position(model, pt.problem.lossfn, l) for l in range(L)]
    injected = []
    for l, layer in enumerate(model.layers):
        record = recs[l].shape[1:]
        T = record[0] if len(record) > 1 else 1
        unit = _unit_bytes(pt, T, 1 if apart[l] else T, _widest_from(model, l))
        if _injected(layer, record[-1:] if apart[l] else record, unit):
            injected.append(l)
    return injected, apart


def structured_hessian(pt, name="hessian", progress=None):
    """The exact (P, P) Hessian of a model with independent samples, exactly symmetric, λI
    added: the columns of layers with pre-activation rules by `preact_columns`, the others'
    by H V (the section's comment). Cost: Σ_m T_m n_m (n_m where the positions stay apart)
    + Σ_other P_k R-passes and Σ_{l ≥ m} N T_m P_l P_m multiply-adds."""
    model = pt.problem.model
    engine.require_independent(model, "the structured Hessian")
    P, sl = model.n_params, model.layer_slices()
    injected, apart = structured_routes(pt)
    out = np.empty((P, P))
    show = progress if progress is not None else P > 3000
    bar = tqdm(total=P, desc=name, disable=not show, leave=False)
    for k, layer in enumerate(model.layers):
        if k in injected:
            continue
        hessian_columns(pt, np.arange(sl[k].start, sl[k].stop), into=out[:, sl[k]])
        _mirror(out, slice(0, P), sl[k])                   # rows = columns, tile by tile
        bar.update(layer.size)
    buffer = None
    for m in injected:
        buffer = preact_columns(pt, m, out, [l for l in injected if l >= m], apart[m], buffer)
        bar.update(model.layers[m].size)
    bar.close()
    # blocks (l, m ≠ l) were written with their mirrors; the diagonal blocks' two halves
    # come from different products
    _symmetrise_diagonal_blocks(out, sl)
    for m in injected:
        out[sl[m], sl[m]][np.diag_indices(model.layers[m].size)] += pt.l2
    return out


def preact_columns(pt, m, out, later, apart=False, buffer=None):
    """Blocks (l, m) and (m, l) of the Hessian (no λ) into `out`, for every layer l in `later`
    (l ≥ m), from the R-passes of layer m's unit pre-activation tangents (the section's
    comment): per block of layer m's parameters (`injection_blocks`: patches ā (N, T, m+1),
    n units, layout (n, m+1) or transposed, offset, where its pre-activations sit in the
    record; in an order where a block's patches may depend on earlier blocks, never on later
    ones), a chunk of units (all T locations each) at a time. apart (`_per_position`): one
    tangent per unit set at every position, the N·T positions taken as samples. buffer: a
    flat array for the rows Y, reused if large enough; the one used is returned."""
    model, tr, N = pt.problem.model, pt.tr, pt.N
    layer, sl = model.layers[m], model.layer_slices()
    st = tr.layer_states[m]
    recs, gouts = pt.backprop
    record = recs[m].shape[1:]
    widest = _widest_from(model, m)
    for ab, n, transposed, offset, where in layer.injection_blocks(st):
        T, m1 = ab.shape[1:]
        S, each = (N * T, 1) if apart else (N, T)          # samples, directions per unit
        if apart:                                          # positions as samples: (n, t) rows
            abT = ab.reshape(N * T, m1)
        else:                                              # (t, n) rows
            abT = np.ascontiguousarray(ab.transpose(1, 0, 2)).reshape(T * N, m1)
        # per unit: its R-passes' arrays and its rows Y (N·T·P_l numbers either way)
        k = chunk_size(_unit_bytes(pt, T, each, widest), n, cap=_BATCH_BYTES)
        if buffer is None or buffer.size < k * T * N * widest:
            buffer = np.empty(k * T * N * widest)         # Y, reused (fresh pages are slow)
        start = sl[m].start + offset
        for i0 in range(0, n, k):
            kk = min(k, n - i0)
            q = np.arange(kk * each)
            R = np.zeros((len(q), N) + record)
            view = R if where is None else R[..., where, :]
            if apart:
                view[q, :, :, i0 + q] = 1.0                # direction q: e_{i0 + q} everywhere
            else:
                view[q, :, q % T, i0 + q // T] = 1.0       # direction q = (i, t): e_{t, i0 + i}
            # no parameter direction: None where the rule takes it, zeros elsewhere
            Vs = [None if hasattr(lay, "rbackward_rows") else np.zeros((len(q),) + lay.shape)
                  for lay in model.layers]
            rstates, Rz = engine.rforward_from(model, pt.Wbars, tr, m, R, Vs)
            del R, view                                   # the R-state holds it, used up below
            rows = engine.rbackward_rows(model, pt.Wbars, tr, recs, gouts, rstates, Vs,
                                         pt.Bu(Rz), m, later)
            if transposed:                                # parameter (j, i) at j·n + i
                at = (start + np.arange(m1)[:, None] * n + i0 + np.arange(kk)).T.ravel()
            else:                                         # parameter (i, j) at i·(m+1) + j
                at = slice(start + i0 * m1, start + (i0 + kk) * m1)
            for l in later:
                Y = buffer[: kk * T * N * model.layers[l].size].reshape(kk * each, S, -1)
                parts = [recs[l], *rows[l]]
                lst = tr.layer_states[l]
                if apart:                                 # Dense layers: fold T into N
                    lst = _Positions(lst.abar)
                    parts = [None if a is None else a.reshape(a.shape[:-3] + (S, 1, -1))
                             for a in parts]
                Y = model.layers[l].rows_from(lst, *parts, out=Y)
                # within layer m, only the blocks from this one on: an earlier block's rows
                # miss this block's δ V term (attention's O meets ō, which Q, K, V move)
                Y = Y[..., offset:] if l == m else Y
                block = abT.T @ Y.reshape(kk, T * N, -1)    # (i, j, p_l): Σ_{n,t} ā[n,t,j] Y
                block = block.reshape(kk * m1, -1)
                block /= N
                rows_l = slice(sl[l].start + (offset if l == m else 0), sl[l].stop)
                out[at, rows_l] = block
                out[rows_l, at] = block.T
    return buffer


class _Positions:
    """An Affine layer's state with its T positions taken as samples: ā (N·T, 1, m+1)."""

    def __init__(self, abar):
        N, T, m1 = abar.shape
        self.abar = abar.reshape(N * T, 1, m1)


def generic_blocks(name, pt, exact):
    """Exact per-layer diagonal blocks of the Hessian (its columns by H V, a layer at a time) or
    of the GGN (per-layer Gram of the Jacobian rows) of any layered model, λI included."""
    model = pt.problem.model
    slices = model.layer_slices()
    for layer in model.layers:
        check_dense(f"{name} block", layer.size, alternative="cl.ggnvp / cl.hvp (matrix-free)")
    if exact:
        blocks = [hessian_columns(pt, np.arange(sl.start, sl.stop))[sl] for sl in slices]
    else:
        seeds = pt.sqrt_seeds
        blocks = [np.zeros((layer.size, layer.size)) for layer in model.layers]
        step = chunk_size(8 * pt.N * (model.n_params + 2 * sum(model.widths)), len(seeds))
        for q0 in range(0, len(seeds), step):
            rows = pt.rows(seeds[q0:q0 + step])
            rows = rows.reshape(-1, model.n_params)
            for Bl, sl in zip(blocks, slices):
                Bl += rows[:, sl].T @ rows[:, sl]
        for Bl in blocks:
            Bl /= pt.N
            Bl[np.diag_indices_from(Bl)] += pt.l2
    return [0.5 * (Bl + Bl.T) for Bl in blocks]
