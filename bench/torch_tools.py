"""PyTorch helpers shared by the benchmark scripts (models come over with cl.to_torch)."""

import numpy as np


def torch_order(p):
    """Positions of PyTorch's flat layout [W_1.ravel(), b_1, W_2.ravel(), ...] in curvlab's."""
    return np.concatenate([np.concatenate([I[:, :-1].ravel(), I[:, -1]])
                           for I in p.model.unflatten(np.arange(p.n_params))])


def torch_params(p, v):
    """A flat curvlab vector as PyTorch's per-parameter list [W_1, b_1, W_2, b_2, ...]."""
    import torch
    return [torch.as_tensor(np.ascontiguousarray(v[torch_order(p)][o:o + n])).reshape(s)
            for o, n, s in _slots(p)]


def _slots(p):
    o = 0
    for layer in p.model.layers:
        W = (layer.n_out,) + ((layer.c_in,) + layer.kernel if hasattr(layer, "kernel") else (layer.n_in,))
        for shape in (W, (layer.n_out,)):
            n = int(np.prod(shape))
            yield o, n, shape
            o += n


def flat_of(p, ts):
    """The inverse of torch_params: a per-parameter list back to curvlab's flat layout."""
    out = np.empty(p.n_params)
    out[torch_order(p)] = np.concatenate([t.detach().numpy().ravel() for t in ts])
    return out


def torch_func_hessian(net, lossf, tX, ty, p, w):
    """torch.func.hessian of the loss in PyTorch's layout, a function to call (to time it) that
    returns the Hessian permuted to curvlab's layout."""
    import torch
    names = [n for n, _ in net.named_parameters()]
    shapes = [q.shape for q in net.parameters()]

    def flat_loss(wf):
        ps, o = {}, 0
        for n, s in zip(names, shapes):
            ps[n] = wf[o:o + s.numel()].reshape(s)
            o += s.numel()
        return lossf(torch.func.functional_call(net, ps, (tX,)), ty)
    perm = torch_order(p)
    inv = np.argsort(perm)

    def hessian():
        Ht = torch.func.hessian(flat_loss)(torch.as_tensor(w[perm])).detach().numpy()
        return Ht[np.ix_(inv, inv)]
    return hessian
