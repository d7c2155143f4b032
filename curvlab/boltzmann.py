"""Boltzmann machines, exactly, by enumerating every state (Pearlmutter 1994, section 5).

States s ∈ {0, 1}ⁿ, energy E(s) = Σ_{i<j} w_ij s_i s_j, P(s) ∝ exp(−E(s)/T); w is the upper
triangle, row-major (w_01, w_02, …, w_12, …). `visible` lists the visible units (default all);
`on_unit=k` clamps unit k to 1, so its weights act as the other units' biases.

    correlations   p_ij = ⟨s_i s_j⟩ (p_ii = ⟨s_i⟩)
    r_correlations R{p_ij} = (1/T)(p_ij ⟨D⟩ − ⟨s_i s_j D⟩),  D = Σ_{i<j} v_ij s_i s_j
                   (the derivative of p_ij along w + r v: d/dr ⟨f⟩ = −(1/T)(⟨fD⟩ − ⟨f⟩⟨D⟩))
    objective      G = KL(data ‖ model over the visible units) = −mean log P(v) + const, hidden
                   units summed out; ∇G = (p⁺ − p⁻)/T with p⁺ the correlations with the visible
                   units clamped to each data vector (averaged over the data) and p⁻ the free ones;
                   Hv = (R{p⁺} − R{p⁻})/T.
Exact enumeration costs 2ⁿ states: refused above MAX_UNITS units.
"""

import itertools

import autograd.numpy as anp
import numpy as np

from ._checks import finite_array, flat_vector

MAX_UNITS = 20


class BoltzmannMachine:
    """A Boltzmann machine of `n_units` binary units at temperature T (module docstring)."""

    def __init__(self, n_units, T=1.0, visible=None, on_unit=None):
        n = int(n_units)
        if n < 2:
            raise ValueError(f"a Boltzmann machine needs at least 2 units, got {n_units}")
        if n > MAX_UNITS:
            raise ValueError(
                f"{n} units are 2^{n} states to enumerate; exact enumeration is limited to "
                f"{MAX_UNITS} units (use fewer units, or sampling outside curvlab)"
            )
        self.n_units, self.T = n, float(T)
        if not self.T > 0:
            raise ValueError(f"temperature T must be > 0, got {T}")
        self.visible = (
            list(range(n)) if visible is None else sorted(int(u) for u in np.atleast_1d(visible))
        )
        if (
            not self.visible
            or any(not 0 <= u < n for u in self.visible)
            or len(set(self.visible)) != len(self.visible)
        ):
            raise ValueError(f"visible must list distinct units in 0..{n - 1}, got {visible}")
        self.on_unit = None if on_unit is None else int(on_unit)
        if self.on_unit is not None and not 0 <= self.on_unit < n:
            raise ValueError(f"on_unit must be a unit in 0..{n - 1}, got {on_unit}")
        if self.on_unit in self.visible:
            self.visible.remove(self.on_unit)  # always on: not part of the data
        states = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
        if self.on_unit is not None:
            states = states[states[:, self.on_unit] == 1]
        self.states = states  # (S, n)
        self.iu = np.triu_indices(n, 1)
        self.pairs = states[:, self.iu[0]] * states[:, self.iu[1]]  # (S, n(n−1)/2)

    @property
    def n_params(self):
        return self.n_units * (self.n_units - 1) // 2

    def init(self, seed=0, scale=0.5):
        return scale * np.random.default_rng(seed).standard_normal(self.n_params)

    def _check(self, w):
        return flat_vector("w", w, self.n_params) if not hasattr(w, "_value") else w

    def probabilities(self, w):
        """P(s) over the enumerated states (S,); autograd-differentiable in w."""
        logits = -anp.dot(self.pairs, w) / self.T
        logits = logits - anp.max(logits)
        p = anp.exp(logits)
        return p / anp.sum(p)

    def _moments(self, P):
        """(n, n) ⟨s_i s_j⟩ with ⟨s_i⟩ on the diagonal, for weights P over the states."""
        return (self.states * P[:, None]).T @ self.states

    def correlations(self, w):
        """p_ij = ⟨s_i s_j⟩ (p_ii = ⟨s_i⟩) under the free distribution, (n, n)."""
        return self._moments(self.probabilities(self._check(w)))

    def r_correlations(self, w, v):
        """R{p_ij} along the direction v: (1/T)(p_ij ⟨D⟩ − ⟨s_i s_j D⟩), (n, n)."""
        P = self.probabilities(self._check(w))
        D = self.pairs @ flat_vector("v", v, self.n_params)
        return (self._moments(P) * (P @ D) - self._moments(P * D)) / self.T

    # learning ---------------------------------------------------------------------------------
    def _data(self, data):
        data = finite_array("data", data)
        if data.ndim == 1:
            data = data[None]
        if data.ndim != 2 or data.shape[1] != len(self.visible):
            raise ValueError(
                f"data must have shape (M, {len(self.visible)}): one column per visible unit "
                f"{self.visible}; got {data.shape}"
            )
        if not np.all((data == 0) | (data == 1)):
            raise ValueError("data must hold 0/1 states of the visible units")
        match = np.all(self.states[None, :, self.visible] == data[:, None, :], axis=2)  # (M, S)
        return match

    def objective(self, w, data):
        """G = −(1/M) Σ_m log P(v_m) (hidden units summed out) — KL(data ‖ model) up to the data's
        entropy; autograd-differentiable in w."""
        match = self._data(data)
        logits = -anp.dot(self.pairs, w) / self.T
        top = anp.max(logits)
        lognorm = anp.log(anp.sum(anp.exp(logits - top))) + top
        logv = anp.log(anp.dot(match, anp.exp(logits - top))) + top  # (M,) log Σ_h
        return -anp.mean(logv - lognorm)

    def batch_objective(self, Ws, data):
        """G at many weight vectors Ws (M_w, n(n−1)/2) at once."""
        match = self._data(data)
        logits = -(self.pairs @ np.asarray(Ws, dtype=np.float64).T) / self.T  # (S, G)
        top = logits.max(0)
        e = np.exp(logits - top)
        return -np.mean(np.log(match @ e), axis=0) + np.log(e.sum(0))

    def _clamped(self, w, data, v=None):
        """p⁺ (and R{p⁺} along v), averaged over the data vectors."""
        match = self._data(data)
        P = self.probabilities(self._check(w))
        out_p, out_r = 0.0, 0.0
        D = None if v is None else self.pairs @ flat_vector("v", v, self.n_params)
        for m in match:  # P(h | v_m): renormalised on the match
            Pm = np.where(m, P, 0.0)
            Pm /= Pm.sum()
            out_p = out_p + self._moments(Pm)
            if D is not None:
                out_r = out_r + (self._moments(Pm) * (Pm @ D) - self._moments(Pm * D)) / self.T
        M = len(match)
        return out_p / M, (None if D is None else out_r / M)

    def _upper(self, C):
        return C[self.iu]

    def gradient(self, w, data):
        """∇G = (p⁺ − p⁻)/T over the weights (upper triangle)."""
        return self._upper(self._clamped(w, data)[0] - self.correlations(w)) / self.T

    def hvp(self, w, data, v):
        """The exact Hessian-vector product of G: (R{p⁺} − R{p⁻})/T."""
        return self._upper(self._clamped(w, data, v)[1] - self.r_correlations(w, v)) / self.T

    def as_objective(self, data):
        """G(w) as a cl.Objective (autograd-differentiable), for cl.hessian, cl.hvp, the optimisers
        and cl.perturbation."""
        from .problem import Objective

        self._data(data)
        return Objective(
            lambda w: self.objective(w, data),
            n_params=self.n_params,
            name="boltzmann KL",
            batch=lambda Ws: self.batch_objective(Ws, data),
        )

    def __repr__(self):
        return (
            f"BoltzmannMachine({self.n_units} units, T={self.T:g}, visible={self.visible}, "
            f"on_unit={self.on_unit})"
        )
