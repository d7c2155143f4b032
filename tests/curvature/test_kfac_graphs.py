"""The K-FAC family beyond chains: residual blocks, Dense layers shared over positions, cl.Function.

Oracles: the exact type-2 statistics of DESIGN.md ("Modern architectures"), written here from
autograd's jacobian of an independent plain forward — Jₙ,ₜ = ∂zₙ/∂sₙ,ₜ over all of sample n's
outputs and Bₙ its whole output Hessian:
    expand  A = (1/(N·T)) Σₙ Σₜ āₙ,ₜ āₙ,ₜᵀ,   S = (1/N) Σₙ Σₜ Jₙ,ₜᵀ Bₙ Jₙ,ₜ
    reduce  A = (1/N) Σₙ ā̃ₙ ā̃ₙᵀ,             S = (1/N) Σₙ (Σₜ Jₙ,ₜ)ᵀ Bₙ (Σₜ Jₙ,ₜ)
and the identities: for one sample at one position each S ⊗ A is the exact GGN block; a layer
without Kronecker structure keeps its exact GGN block; EKFAC is at least as close to the GGN
as KFLR; KFRA (a chain recursion) still refuses by name.
"""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import hessian, jacobian

import curvlab as cl


def rel(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-300)


def ce_hessian(z):
    """Cross-entropy's Hessian in the logits z (..., K): diag(p) − p pᵀ per row."""
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("...i,ij->...ij", p, np.eye(z.shape[-1])) - p[..., :, None] * p[..., None, :]


def block_diag(blocks):
    n = sum(b.shape[0] for b in blocks)
    out = np.zeros((n, n))
    o = 0
    for b in blocks:
        out[o:o + len(b), o:o + len(b)] = b
        o += len(b)
    return out


def augment(a):
    return np.concatenate([a, np.ones(a.shape[:-1] + (1,))], -1)


# a sequence model: Dense(D, H, tanh) shared over T positions, then either MeanPool and one
# loss per sequence (positions mix after the shared layer) or Dense(H, K) at every position
D, H, K, T, N = 3, 4, 3, 3, 4


def sequence_problem(head, seed=0):
    rng = np.random.default_rng(seed)
    if head == "meanpool":
        mods = [cl.Dense(D, H, "tanh"), cl.MeanPool(), cl.Dense(H, K)]
        y = rng.integers(0, K, N)
    else:
        mods = [cl.Dense(D, H, "tanh"), cl.Dense(H, K)]
        y = rng.integers(0, K, (N, T))
    model = cl.Sequential(mods, input_shape=(T, D))
    X = rng.standard_normal((N, T, D))
    problem = cl.Problem(model, "cross_entropy", X, y)
    return problem, model.init(seed) + 0.3 * rng.standard_normal(model.n_params)


def plain_split(w):
    W1 = w[: H * (D + 1)].reshape(H, D + 1)
    W2 = w[H * (D + 1):].reshape(K, H + 1)
    return W1, W2


def exact_statistics(problem, w, head):
    """[(A, S) expand, (A, S) reduce] of the shared first layer, from the definitions."""
    W1, W2 = plain_split(w)
    X = problem.X

    def z_of_s(s):                                      # one sample's outputs from its s (T, H)
        a = anp.tanh(s)
        if head == "meanpool":
            return anp.dot(anp.mean(a, 0), W2[:, :H].T) + W2[:, H]
        return (anp.dot(a, W2[:, :H].T) + W2[:, H]).ravel()

    abar = augment(X)                                                 # (N, T, D+1)
    S_exp, S_red = np.zeros((H, H)), np.zeros((H, H))
    for n in range(N):
        s = abar[n] @ W1.T
        J = jacobian(z_of_s)(s)                                       # (K', T, H)
        z = z_of_s(s)
        B = ce_hessian(z) if head == "meanpool" else block_diag(list(ce_hessian(z.reshape(T, K))))
        for t in range(T):
            S_exp += J[:, t].T @ B @ J[:, t] / N
        Js = J.sum(1)
        S_red += Js.T @ B @ Js / N
    flat = abar.reshape(-1, D + 1)
    A_exp = flat.T @ flat / (N * T)
    mean = abar.mean(1)
    A_red = mean.T @ mean / N
    return {"expand": (A_exp, S_exp), "reduce": (A_red, S_red)}


@pytest.mark.parametrize("head", ["meanpool", "per-position"])
@pytest.mark.parametrize("flavor", ["expand", "reduce"])
def test_kflr_of_a_layer_shared_over_positions_is_the_exact_type2_statistics(head, flavor):
    problem, w = sequence_problem(head)
    A, S = cl.kflr(problem, w, flavor=flavor).factors[0]
    A0, S0 = exact_statistics(problem, w, head)[flavor]
    assert rel(A, A0) < 1e-12 and rel(S, S0) < 1e-12
    # expand and reduce differ here (several positions), so the test can tell them apart: in A
    # always, in S when positions mix after the layer (with a loss at every position and no
    # mixing, the cross-position terms of reduce's S vanish)
    A1, S1 = exact_statistics(problem, w, head)["reduce" if flavor == "expand" else "expand"]
    assert rel(A, A1) > 1e-3
    assert (rel(S, S1) > 1e-3) == (head == "meanpool")


def test_kfac_samples_average_to_kflr_on_a_sequence_model():
    problem, w = sequence_problem("meanpool")
    exact = cl.kflr(problem, w).to_dense()
    sampled = np.mean([cl.kfac(problem, w, samples=40, seed=s).to_dense() for s in range(5)], 0)
    # S is linear in the sampled outer products: the sampled matrix converges to KFLR's
    assert rel(sampled, exact) < 0.15


def residual_problem(N, seed=1, with_function=False):
    rng = np.random.default_rng(seed)
    block = [cl.Dense(3, 3, "tanh")]
    if with_function:
        # a layer of the user's own: an elementwise scale and shift, no Kronecker structure
        block.append(cl.Function(lambda p, x: x * p[0] + p[1], (2, 3)))
    mods = [cl.Dense(2, 3, "tanh"), cl.Residual(block), cl.Dense(3, 2)]
    model = cl.Sequential(mods, input_shape=(2,))
    X = rng.standard_normal((N, 2))
    problem = cl.Problem(model, "cross_entropy", X, rng.integers(0, 2, N))
    return problem, model.init(seed) + 0.3 * rng.standard_normal(model.n_params)


def plain_residual_loss(problem, with_function):
    sizes = [3 * 3, 3 * 4] + ([6] if with_function else []) + [2 * 4]
    X, y = problem.X, problem.y

    def loss(w):
        parts, o = [], 0
        for n in sizes:
            parts.append(w[o:o + n])
            o += n
        W1 = anp.reshape(parts[0], (3, 3))
        W2 = anp.reshape(parts[1], (3, 4))
        W3 = anp.reshape(parts[-1], (2, 4))
        a = anp.tanh(anp.dot(X, W1[:, :2].T) + W1[:, 2])
        f = anp.tanh(anp.dot(a, W2[:, :3].T) + W2[:, 3])
        if with_function:
            p = anp.reshape(parts[2], (2, 3))
            f = f * p[0] + p[1]
        a = a + f
        z = anp.dot(a, W3[:, :3].T) + W3[:, 3]
        m = anp.max(z, 1, keepdims=True)
        logp = z - m - anp.log(anp.sum(anp.exp(z - m), 1, keepdims=True))
        return -anp.mean(logp[anp.arange(len(y)), y])

    return loss


def test_kflr_of_one_sample_is_the_exact_ggn_block_in_a_residual_net():
    problem, w = residual_problem(N=1)
    G = cl.ggn(problem, w)
    assert rel(G, hessian(plain_residual_loss(problem, False))(w)) > 1e-3      # not the Hessian
    for flavor in ("expand", "reduce"):
        K = cl.kflr(problem, w, flavor=flavor)
        for B, sl in zip(K.blocks(), problem.model.layer_slices()):
            assert rel(B, G[sl, sl]) < 1e-12


def test_a_layer_without_kronecker_structure_keeps_its_exact_ggn_block():
    problem, w = residual_problem(N=5, with_function=True)
    G = cl.ggn(problem, w)
    # the GGN itself against autograd on the plain forward: the oracle for the blocks below
    L = plain_residual_loss(problem, True)
    J = jacobian(lambda v: problem.model.forward(v, problem.X))(w)            # (N, 2, P)
    z = problem.model.forward(w, problem.X)
    Bz = ce_hessian(z) / problem.N
    assert rel(G, np.einsum("nkp,nkl,nlq->pq", J, Bz, J)) < 1e-12
    assert abs(L(w) - problem.loss(w)) < 1e-13
    slices = problem.model.layer_slices()
    for name in ("kflr", "ekfac"):
        M = cl.matrix(problem, w, name)
        blocks = M.blocks()
        assert len(blocks) == len(slices)
        assert rel(blocks[2], G[slices[2], slices[2]]) < 1e-12          # the Function's block
        assert rel(blocks[1], G[slices[1], slices[1]]) > 1e-4           # a Dense: approximated
    # the exact block is one factor pair M ⊗ [1]
    A, S = cl.kflr(problem, w).factors[2]
    assert A.shape == (1, 1) and S.shape == (6, 6)


def test_ekfac_is_at_least_as_close_as_kflr_beyond_chains():
    for problem, w in (residual_problem(N=6, with_function=True), sequence_problem("meanpool"),
                       sequence_problem("per-position")):
        G = cl.ggn(problem, w)
        for flavor in ("expand", "reduce"):
            Kb = cl.kflr(problem, w, flavor=flavor).blocks()
            Eb = cl.ekfac(problem, w, flavor=flavor).blocks()
            for B_k, B_e, sl in zip(Kb, Eb, problem.model.layer_slices()):
                assert np.linalg.norm(B_e - G[sl, sl]) <= np.linalg.norm(B_k - G[sl, sl]) + 1e-12


def test_ekfac_diagonal_is_the_second_moment_in_kflr_eigenbasis():
    problem, w = sequence_problem("per-position")
    G = cl.ggn(problem, w)
    K = cl.kflr(problem, w, flavor="reduce")
    E = cl.ekfac(problem, w, flavor="reduce")
    for (lA, UA, lS, US), (QA, QS, s), B, sl in zip(K.eig(), E.factors, E.blocks(),
                                                   problem.model.layer_slices()):
        Q = np.kron(US, UA)
        assert rel(s.ravel(), np.diag(Q.T @ G[sl, sl] @ Q)) < 1e-11
        assert rel(B, (Q * s.ravel()) @ Q.T) < 1e-12


def test_kfra_still_refuses_beyond_chains_by_name():
    problem, w = residual_problem(N=2)
    with pytest.raises(ValueError, match=r"kfra is not supported yet on models with Residual"):
        cl.kfra(problem, w)


def torch_sequence_module(problem, w, head):
    """The sequence model in torch with curvlab's weights: outputs (N, K) after the mean over
    positions, or (N, K, T) (classes second, as CrossEntropyLoss wants) at every position."""
    import torch

    class Mean(torch.nn.Module):
        def forward(self, x):
            return x.mean(1)

    class ClassesSecond(torch.nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 1)

    W1, W2 = plain_split(w)
    l1 = torch.nn.Linear(D, H, dtype=torch.float64)
    l2 = torch.nn.Linear(H, K, dtype=torch.float64)
    with torch.no_grad():
        for lin, Wb in ((l1, W1), (l2, W2)):
            lin.weight.copy_(torch.as_tensor(Wb[:, :-1]))
            lin.bias.copy_(torch.as_tensor(Wb[:, -1]))
    if head == "meanpool":
        return torch.nn.Sequential(l1, torch.nn.Tanh(), Mean(), l2)
    return torch.nn.Sequential(l1, torch.nn.Tanh(), l2, ClassesSecond())


@pytest.mark.parametrize("head", ["meanpool", "per-position"])
def test_kflr_on_sequences_against_curvlinops_type2(head):
    """curvlinops' KFAC (type-2) with a summed loss is N × ours (our loss averages over the N
    sequences) wherever both define the same statistics: expand always here (no layer mixes
    positions before a per-position loss), reduce with one loss per sequence. With a loss at
    every position curvlinops' reduce is another matrix (it is not the formula above)."""
    import torch
    from curvlinops import KFACLinearOperator

    from curvlab.torch_bridge import from_torch_layout
    problem, w = sequence_problem(head)
    module = torch_sequence_module(problem, w, head)
    X, y = torch.as_tensor(problem.X), torch.as_tensor(problem.y)
    assert np.allclose(module(X).detach().numpy().reshape(N, -1) if head == "meanpool" else
                       module(X).detach().numpy().transpose(0, 2, 1), problem.outputs(w),
                       rtol=0, atol=1e-13)
    for flavor in ("expand", "reduce"):
        op = KFACLinearOperator(module, torch.nn.CrossEntropyLoss(reduction="sum"),
                                list(module.parameters()), [(X, y)], fisher_type="type-2",
                                kfac_approx=flavor, separate_weight_and_bias=False,
                                check_deterministic=False)
        theirs = from_torch_layout(op.to_scipy() @ np.eye(problem.n_params), problem.model)
        ours = cl.kflr(problem, w, flavor=flavor).to_dense()
        same = flavor == "expand" or head == "meanpool"
        assert (rel(theirs / problem.N, ours) < 1e-12) == same


# -- attention's Q, K, V, O and the embedding as Kronecker blocks -------------------------------

Vt, d, heads, Tt, Nt = 5, 4, 2, 3, 3


def transformer_problem(seed=3):
    rng = np.random.default_rng(seed)
    mods = [cl.Embedding(Vt, d), cl.Residual([cl.SelfAttention(d, heads=heads, causal=True)]),
            cl.Dense(d, Vt)]
    model = cl.Sequential(mods, input_shape=(Tt,))
    X = rng.integers(0, Vt, (Nt, Tt))
    X[0, :2] = X[1, 0] = 2                                     # repeated tokens: counts > 1
    problem = cl.Problem(model, "cross_entropy", X, rng.integers(0, Vt, (Nt, Tt)))
    return problem, model.init(seed) + 0.4 * rng.standard_normal(model.n_params)


def transformer_statistics(problem, w, flavor):
    """[(A, S, transposed)] per block — embedding, Q, K, V, O, the last Dense — from the type-2
    definitions, J by autograd on a plain forward with perturbations ε added to each block's
    outputs (the embedding's rows, q, k, v, the attention output, the logits)."""
    sizes = [Vt * d] + [d * (d + 1)] * 4 + [Vt * (d + 1)]
    cuts = np.cumsum([0] + sizes)
    E = w[:cuts[1]].reshape(Vt, d)
    Wq, Wk, Wv, Wo = (w[cuts[i]:cuts[i + 1]].reshape(d, d + 1) for i in range(1, 5))
    Wd = w[cuts[5]:].reshape(Vt, d + 1)
    dh = d // heads
    mask = np.triu(np.ones((Tt, Tt), bool), 1)

    def aff(x, W):
        return anp.dot(x, W[:, :-1].T) + W[:, -1]

    def parts(tokens):
        x = E[tokens]
        q, k, v = aff(x, Wq), aff(x, Wk), aff(x, Wv)
        return x, q, k, v

    def z_of(eps, tokens):
        """eps: (6, T, max width): perturbations of the six blocks' outputs."""
        x = E[tokens] + eps[0, :, :d]
        q, k, v = aff(x, Wq) + eps[1, :, :d], aff(x, Wk) + eps[2, :, :d], aff(x, Wv) + eps[3, :, :d]
        heads_out = []
        for h in range(heads):
            sl = slice(h * dh, (h + 1) * dh)
            s = anp.dot(q[:, sl], k[:, sl].T) / np.sqrt(dh)
            s = anp.where(mask, -np.inf, s)
            a = anp.exp(s - anp.max(s, 1, keepdims=True))
            a = a / anp.sum(a, 1, keepdims=True)
            heads_out.append(anp.dot(a, v[:, sl]))
        o = anp.concatenate(heads_out, 1)
        y = x + aff(o, Wo) + eps[4, :, :d]
        return (aff(y, Wd) + eps[5, :, :Vt]).ravel()

    def merged_o(tokens):
        x, q, k, v = parts(tokens)
        out = []
        for h in range(heads):
            sl = slice(h * dh, (h + 1) * dh)
            s = np.where(mask, -np.inf, q[:, sl] @ k[:, sl].T / np.sqrt(dh))
            a = np.exp(s - s.max(1, keepdims=True))
            out.append((a / a.sum(1, keepdims=True)) @ v[:, sl])
        return np.concatenate(out, 1)

    width = max(d, Vt)
    S = [np.zeros((d, d))] * 5 + [np.zeros((Vt, Vt))]
    S = [s.copy() for s in S]
    inputs = [[] for _ in range(6)]
    for n in range(Nt):
        tokens = problem.X[n]
        zn = z_of(np.zeros((6, Tt, width)), tokens)
        J = jacobian(z_of)(np.zeros((6, Tt, width)), tokens)          # (T·V, 6, T, width)
        B = block_diag(list(ce_hessian(zn.reshape(Tt, Vt))))
        x = E[tokens]
        xb, ob = augment(x), augment(merged_o(tokens))
        y = x + ob @ Wo.T
        blocks_in = [np.eye(Vt)[tokens], xb, xb, xb, ob, augment(y)]
        for b in range(6):
            n_out = Vt if b == 5 else d
            Jb = J[:, b, :, :n_out]                                      # (T·V, T, n_out)
            if flavor == "expand":
                S[b] += sum(Jb[:, t].T @ B @ Jb[:, t] for t in range(Tt)) / Nt
            else:
                S[b] += Jb.sum(1).T @ B @ Jb.sum(1) / Nt
            inputs[b].append(blocks_in[b])
    out = []
    for b in range(6):
        a = np.array(inputs[b])                                          # (N, T, m)
        if flavor == "expand":
            flat = a.reshape(-1, a.shape[-1])
            A = flat.T @ flat / (Nt * Tt)
        else:
            A = a.mean(1).T @ a.mean(1) / Nt
        out.append((A, S[b], b == 0))
    return out


@pytest.mark.parametrize("flavor", ["expand", "reduce"])
def test_kflr_of_attention_and_embedding_is_the_exact_type2_statistics(flavor):
    problem, w = transformer_problem()
    K = cl.kflr(problem, w, flavor=flavor)
    assert len(K.factors) == 6                         # embedding, Q, K, V, O, Dense
    for (A, S), (A0, S0, transposed) in zip(K.factors, transformer_statistics(problem, w, flavor)):
        if transposed:                                  # the (V, d) table: the block is A ⊗ S
            A, S = S, A
        # (reduce: the key block's S vanishes — adding one vector to every key leaves the softmax
        # unchanged, so Σₜ Jₙ,ₜ = 0 — hence an absolute floor)
        assert np.linalg.norm(A - A0) < 1e-11 * max(np.linalg.norm(A0), 1)
        assert np.linalg.norm(S - S0) < 1e-11 * max(np.linalg.norm(S0), 1)
    # the embedding's expand A is diagonal: the token counts over N·T
    A_emb = K.factors[0][1]
    counts = np.bincount(problem.X.ravel(), minlength=Vt) / problem.X.size
    if flavor == "expand":
        assert rel(A_emb, np.diag(counts)) < 1e-15
    # the Kronecker blocks tile the flat layout, four of them in the attention layer; blocks()
    # and layer_eigvalsh are per layer
    assert K.sizes == [Vt * d] + [d * (d + 1)] * 4 + [Vt * (d + 1)]
    layers = problem.model.layer_slices()
    assert [b.shape[0] for b in K.blocks()] == [sl.stop - sl.start for sl in layers]
    dense = K.to_dense()
    for l, (B, sl) in enumerate(zip(K.blocks(), layers)):
        assert np.array_equal(B, dense[sl, sl])
        assert rel(K.layer_eigvalsh(l), np.linalg.eigvalsh(B)) < 1e-12
    qk = layers[1].start + d * (d + 1)
    assert not dense[layers[1].start:qk, qk:layers[1].stop].any()     # Q and K: no cross terms


def test_ekfac_on_attention_is_at_least_as_close_as_kflr():
    problem, w = transformer_problem()
    G = cl.ggn(problem, w)
    cuts = np.cumsum([0] + [Vt * d] + [d * (d + 1)] * 4 + [Vt * (d + 1)])
    for flavor in ("expand", "reduce"):
        Kd = cl.kflr(problem, w, flavor=flavor).to_dense()
        Ed = cl.ekfac(problem, w, flavor=flavor).to_dense()
        for c0, c1 in zip(cuts[:-1], cuts[1:]):                   # block by Kronecker block
            Gb = G[c0:c1, c0:c1]
            assert np.linalg.norm(Ed[c0:c1, c0:c1] - Gb) <= \
                np.linalg.norm(Kd[c0:c1, c0:c1] - Gb) + 1e-12
    # spectra of a layer of several blocks, by the blocks' own structure
    E = cl.ekfac(problem, w)
    sl = problem.model.layer_slices()[1]
    assert rel(cl.spectrum(problem, w, "ekfac", layer=1),
               np.linalg.eigvalsh(E.to_dense()[sl, sl])) < 1e-10
