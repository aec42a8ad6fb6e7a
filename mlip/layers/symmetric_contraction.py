"""MACE's symmetric contraction: per-element polynomials of degree 1..ν in the node features.

For node ``b`` of element ``e`` and channel ``c`` the output irrep ``L`` is
``out[b, c, M] = Σ_ν Σ_k w_ν[e, k, c] Σ_{i1≤…≤iν} U_ν[M, (i1..iν), k] x[b, c, i1] ⋯ x[b, c, iν]``,
with ``U_ν`` a basis of the O(3)-equivariant maps from the symmetric power ``Sym^ν(V)`` to ``L``
(``V`` the coupling irreps, e.g. ``0e+1o+2e+3o``). The space is intrinsic, so the number of weights per
(element, channel) equals mace-torch's for the same irreps and correlation.

Evaluation works on monomials: the products ``x_i1 ⋯ x_iν`` with ``i1 ≤ … ≤ iν`` allowed by parity are
formed once per node and channel, one GEMM maps them to the ``(M, k)`` basis, and the element weights
are gathered per node (no one-hot matmul).
"""

from __future__ import annotations

import functools
import itertools

import torch

from mlip.o3 import Irrep, Irreps, IrrepsLike, cached_constant, wigner_3j


def _coupled(irreps: list[Irrep], nu: int) -> dict[Irrep, list[torch.Tensor]]:
    """Equivariant tensors ``[2L+1, d, ..., d]`` (ν input indices) for each reachable output irrep."""
    dim = sum(ir.dim for ir in irreps)
    offsets = [sum(ir.dim for ir in irreps[:i]) for i in range(len(irreps))]
    if nu == 1:
        out: dict[Irrep, list[torch.Tensor]] = {}
        for ir, off in zip(irreps, offsets, strict=True):
            t = torch.zeros(ir.dim, dim, dtype=torch.float64)
            t[:, off : off + ir.dim] = torch.eye(ir.dim, dtype=torch.float64)
            out.setdefault(ir, []).append(t)
        return out
    out = {}
    for ir_mid, tensors in _coupled(irreps, nu - 1).items():
        for ir, off in zip(irreps, offsets, strict=True):
            for ir_out in ir_mid * ir:
                c = wigner_3j(ir_mid.l, ir.l, ir_out.l, dtype=torch.float64)
                for t in tensors:
                    # t[J, i1..i(ν-1)] ⊗ x[ir block] -> [M, i1..i(ν-1), iν]
                    block = torch.einsum("jm,j...->m...", c.reshape(ir_mid.dim, -1), t)
                    block = block.reshape(ir.dim, ir_out.dim, *t.shape[1:]).movedim(0, -1)
                    full = torch.zeros(*block.shape[:-1], dim, dtype=torch.float64)
                    full[..., off : off + ir.dim] = block
                    out.setdefault(ir_out, []).append(full)
    return out


@functools.cache
def symmetric_basis(irreps_in: str, irrep_out: str, nu: int, reduced: bool = True) -> torch.Tensor:
    """Basis ``[2L+1, d^ν, K]`` (float64) of the equivariant maps ``V^⊗ν -> L`` contracted with ``x^⊗ν``.

    ``irreps_in`` lists each coupling irrep once (``"0e+1o+2e+3o"``); ``K`` may be 0. ``reduced``: an
    orthonormal basis of the symmetric maps (the intrinsic dimension; mace-torch with cuequivariance's
    reduced CG). Otherwise one tensor per ordered coupling path ``((l1 l2) J l3) -> L`` with e3nn's
    component normalization: redundant after contraction with ``x^⊗ν`` but the parameter count of
    mace-torch's own ``U_matrix_real``.
    """
    irreps = [ir for _, ir in Irreps(irreps_in)]
    out_ir = Irrep.parse(irrep_out)
    dim = sum(ir.dim for ir in irreps)
    tensors = _coupled(irreps, nu).get(out_ir, [])
    if not tensors:
        return torch.zeros(out_ir.dim, dim**nu, 0, dtype=torch.float64)
    if not reduced:
        return torch.stack([t.reshape(out_ir.dim, -1) * out_ir.dim**0.5 for t in tensors], dim=-1)
    perms = list(itertools.permutations(range(1, nu + 1)))
    sym = [sum(t.permute(0, *p) for p in perms) / len(perms) for t in tensors]
    mat = torch.stack([s.reshape(-1) for s in sym])  # [paths, (2L+1) d^ν]
    u, s, vh = torch.linalg.svd(mat, full_matrices=False)
    rank = int((s > 1e-9 * s[0]).sum())
    return vh[:rank].T.reshape(out_ir.dim, dim**nu, rank)


@functools.cache
def _monomial_basis(irreps_in: str, irrep_out: str, nu: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Monomials ``[m, ν]`` (sorted index tuples with a non-zero row) and coefficients ``[m, 2L+1, K]``.

    The coefficient of ``x_i1 ⋯ x_iν`` sums the reduced basis over the distinct orderings of the tuple,
    so ``Σ_mono coeff · mono`` equals the full contraction over ``d^ν`` indices.
    """
    basis = symmetric_basis(irreps_in, irrep_out, nu, True)
    dim_out, _, k = basis.shape
    dim = sum(ir.dim for _, ir in Irreps(irreps_in))
    basis = basis.reshape(dim_out, *([dim] * nu), k)
    rows, coeffs = [], []
    for tup in itertools.combinations_with_replacement(range(dim), nu):
        row = sum(basis[(slice(None), *perm)] for perm in set(itertools.permutations(tup)))
        if row.abs().max() < 1e-12:
            continue
        rows.append(tup)
        coeffs.append(row)
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, nu), torch.stack(coeffs)


@functools.cache
def _paths_to_reduced(irreps_in: str, irrep_out: str, nu: int) -> torch.Tensor:
    """``[K_reduced, K_paths]``: path-basis weights expressed in the reduced basis (exact on ``x^⊗ν``)."""
    dim = sum(ir.dim for _, ir in Irreps(irreps_in))
    reduced = symmetric_basis(irreps_in, irrep_out, nu, True)
    paths = symmetric_basis(irreps_in, irrep_out, nu, False)
    perms = list(itertools.permutations(range(1, nu + 1)))
    shape = (paths.shape[0], *([dim] * nu), paths.shape[-1])
    sym = sum(paths.reshape(shape).permute(0, *p, nu + 1) for p in perms) / len(perms)
    # the reduced basis is orthonormal and spans the symmetrized paths
    return torch.einsum("ak,ap->kp", reduced.reshape(-1, reduced.shape[-1]), sym.reshape(-1, shape[-1]))


class SymmetricContraction(torch.nn.Module):
    """Per-element symmetric polynomial of node features, MACE eq. 10-11.

    Args:
        irreps_in: coupling irreps, each once (``"0e+1o+2e+3o"``); features ``x`` are ``[N, C, d]``.
        irreps_out: output irreps, each once (``"0e+1o"``); output ``[N, C, d_out]``.
        correlation: maximal degree ν.
        num_channels: ``C``.
        num_elements: number of species (weights ``[num_elements, K, C]`` per ν and output irrep).
        basis: ``"reduced"`` (one weight per independent symmetric coupling) or ``"paths"`` (one per
            ordered coupling path, mace-torch's parametrization without cuequivariance; mapped onto the
            reduced basis at run time, so both cost the same).

    Forward: ``x`` ``[N, C, d]`` and ``species`` ``[N]`` int64 (index into the species list).
    """

    def __init__(
        self,
        irreps_in: IrrepsLike,
        irreps_out: IrrepsLike,
        correlation: int,
        num_channels: int,
        num_elements: int,
        basis: str = "reduced",
    ) -> None:
        super().__init__()
        if basis not in ("reduced", "paths"):
            raise ValueError(f"basis must be 'reduced' or 'paths', got {basis!r}")
        self.irreps_in = Irreps(irreps_in)
        self.irreps_out = Irreps(irreps_out)
        self.correlation = correlation
        self.basis = basis
        self._terms: list[tuple[int, str]] = []  # (nu, irrep_out) of each weight tensor
        weights = []
        for _, ir_out in self.irreps_out:
            for nu in range(1, correlation + 1):
                k = symmetric_basis(str(self.irreps_in), str(ir_out), nu, basis == "reduced").shape[-1]
                if k == 0:
                    continue
                self._terms.append((nu, str(ir_out)))
                weights.append(torch.nn.Parameter(torch.randn(num_elements, k, num_channels) / k))
        self.weights = torch.nn.ParameterList(weights)

    def _tables(
        self, nu: int, ir_out: str, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = (str(self.irreps_in), ir_out, nu)
        idx = cached_constant(("sc_idx", *key), lambda: _monomial_basis(*key)[0].double(), device=x.device)
        coeff = cached_constant(("sc_coeff", *key), lambda: _monomial_basis(*key)[1], x.dtype, x.device)
        if self.basis == "reduced":
            to_reduced = torch.ones(0)
        else:
            to_reduced = cached_constant(
                ("sc_paths", *key), lambda: _paths_to_reduced(*key), x.dtype, x.device
            )
        return idx.long(), coeff, to_reduced

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        n, c, _ = x.shape
        outs: dict[str, torch.Tensor] = {}
        for (nu, ir_out), w in zip(self._terms, self.weights, strict=True):
            idx, coeff, to_reduced = self._tables(nu, ir_out, x)
            if self.basis == "paths":
                w = torch.einsum("kp,epc->ekc", to_reduced, w)
            mono = x[:, :, idx[:, 0]]
            for j in range(1, nu):
                mono = mono * x[:, :, idx[:, j]]
            proj = (mono.reshape(n * c, -1) @ coeff.reshape(coeff.shape[0], -1)).reshape(n, c, -1, w.shape[1])
            term = torch.einsum("ncmk,nkc->ncm", proj, w[species])
            outs[ir_out] = outs[ir_out] + term if ir_out in outs else term
        return torch.cat([outs[str(ir)] for _, ir in self.irreps_out], dim=-1)
