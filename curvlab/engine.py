"""The layer-wise passes every curvature quantity is built from, in one place.

Notation (Botev et al. 2017; Lin's notes), for layer l = 0..L-1 and a batch of N samples:
    ā_l  (N, m_l + 1)   augmented input [a_{l-1}, 1]   (ā_0 = [X, 1])
    s_l  (N, n_l)        pre-activation  s_l = ā_l W̄_lᵀ
    a_l  = f(s_l),  f'_l = f'(s_l),  f''_l = f''(s_l)   (identity for the last layer: z = s_{L-1})
Backward passes carry a leading axis of Q "seeds" (directions, output units or samples), so a
whole family of backprops is a handful of large matrix products:
    δ_{L-1} = seed (Q, N, K),   δ_{l-1} = (δ_l W_l) ⊙ f'_{l-1},   ∂/∂W̄_l = δ_lᵀ ā_l.
The R-operator (Pearlmutter) pushes Q directions V = {V_l} forward,
    R s_l = ā_l V_lᵀ + R a_{l-1} W_lᵀ,   R a_l = f'_l ⊙ R s_l,
and back, with the two extra terms that make it the exact Hessian product:
    R δ_{l-1} = (R δ_l W_l + δ_l V_l) ⊙ f'_{l-1} + (δ_l W_l) ⊙ f''_{l-1} ⊙ R s_{l-1}.
Nothing here averages over samples; callers divide by N.
"""

from collections import namedtuple

import numpy as np

Trace = namedtuple("Trace", "abar s fp fpp z")


def forward(model, Wbars, X):
    """Forward trace of the network on X: augmented inputs, pre-activations, f', f'', outputs."""
    abar, s, fp, fpp = [], [], [], []
    a = X
    ones = np.ones((X.shape[0], 1))
    for layer, Wb in zip(model.layers, Wbars):
        ab = np.hstack([a, ones])
        si = ab @ Wb.T
        abar.append(ab)
        s.append(si)
        fp.append(layer.act.df(si))
        fpp.append(layer.act.d2f(si))
        a = layer.act.f(si)
    return Trace(abar, s, fp, fpp, a)


def backward(Wbars, tr, seed):
    """δ_l for every layer from output seeds (Q, N, K): ordinary (linear) backprop."""
    deltas = [None] * len(Wbars)
    d = seed * tr.fp[-1]
    for l in reversed(range(len(Wbars))):
        deltas[l] = d
        if l:
            d = (d @ Wbars[l][:, :-1]) * tr.fp[l - 1]
    return deltas


def weight_grads(tr, deltas):
    """Σ_n δ_{l,n} ā_{l,n}ᵀ per layer, flattened into the flat layout: (P, Q)."""
    Q = deltas[0].shape[0]
    return np.concatenate([(d.transpose(0, 2, 1) @ ab).reshape(Q, -1)
                           for d, ab in zip(deltas, tr.abar)], axis=1).T


def jacobian_rows(tr, deltas):
    """Per-sample rows δ_{l,n} ⊗ ā_{l,n} in the flat layout: (Q, N, P)."""
    Q, N = deltas[0].shape[:2]
    return np.concatenate([(d[:, :, :, None] * ab[None, :, None, :]).reshape(Q, N, -1)
                           for d, ab in zip(deltas, tr.abar)], axis=2)


def split_directions(model, V):
    """Flat directions (P, Q) -> per-layer V_l of shape (Q, n_l, m_l + 1)."""
    Q = V.shape[1]
    return [V[sl].T.reshape((Q,) + layer.shape) for sl, layer in zip(model.layer_slices(), model.layers)]


def rforward(Wbars, tr, Vs):
    """R s_l for Q directions: list of (Q, N, n_l); the last one is J v, the output JVP."""
    Rs = []
    for l, (Wb, V) in enumerate(zip(Wbars, Vs)):
        r = tr.abar[l] @ V.transpose(0, 2, 1)
        if l:
            r = r + (tr.fp[l - 1] * Rs[-1]) @ Wb[:, :-1].T
        Rs.append(r)
    return Rs


def rbackward(Wbars, tr, deltas, Rs, Vs, Rseed):
    """Exact R{∂ℓ/∂W̄_l} (summed over samples) for Q directions, flat (P, Q).

    deltas: the ordinary per-sample backprop δ_l (N, n_l) of ∂ℓ/∂z; Rseed = R{∂ℓ/∂z} = B R z.
    """
    L = len(Wbars)
    out = [None] * L
    Rd = Rseed * tr.fp[-1]
    for l in reversed(range(L)):
        G = Rd.transpose(0, 2, 1) @ tr.abar[l]
        if l:
            Ra_in = tr.fp[l - 1] * Rs[l - 1]                     # R ā_l without its constant 1
            G[:, :, :-1] += deltas[l].T @ Ra_in                  # δ_lᵀ R ā_l
            W = Wbars[l][:, :-1]
            dW = deltas[l] @ W                                   # ∂ℓ/∂a_{l-1}
            Rd = (Rd @ W + deltas[l] @ Vs[l][:, :, :-1]) * tr.fp[l - 1] \
                + dW * tr.fpp[l - 1] * Rs[l - 1]
        out[l] = G.reshape(G.shape[0], -1)
    return np.concatenate(out, axis=1).T
