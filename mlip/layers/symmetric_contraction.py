"""MACE's symmetric contraction: per-element polynomials of degree 1..ν in the node features.

For node ``b`` of element ``e`` and channel ``c`` the output irrep ``L`` is
``out[b, c, M] = Σ_ν Σ_k w_ν[e, k, c] Σ_{i1≤…≤iν} U_ν[M, (i1..iν), k] x[b, c, i1] ⋯ x[b, c, iν]``,
with ``U_ν`` a basis of the O(3)-equivariant maps from the symmetric power ``Sym^ν(V)`` to ``L``
(``V`` the coupling irreps, e.g. ``0e+1o+2e+3o``). The space is intrinsic, so the number of weights per
(element, channel) equals mace-torch's for the same irreps and correlation.

Evaluation works on monomials: the products ``x_i1 ⋯ x_iν`` with ``i1 ≤ … ≤ iν`` allowed by parity are
formed once per node and channel, one GEMM maps them to the ``(M, k)`` basis, and the element weights
are gathered per node (no one-hot matmul). The monomials are rows ``[num_monomials, N, C]``, so in a trace
with symbolic sizes (the compiled step, whose loops Inductor writes) their products run along the channels
of a channels-last input in vector loads (mace passes its ``[N, C, d]`` features with ``[N, d, C]``
memory); flattening ``N`` and ``C`` into one index would turn every load into a gather.
"""

from __future__ import annotations

import functools
import itertools

import torch

from mlip.kernels import matmul
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


def _monomial_coefficients(irreps_in: str, irrep_out: str, nu: int) -> dict[tuple[int, ...], torch.Tensor]:
    """Coefficient ``[2L+1, K]`` of each monomial ``x_i1 ⋯ x_iν`` (sorted index tuple) with a non-zero one.

    It sums the reduced basis over the distinct orderings of the tuple, so ``Σ_mono coeff · mono``
    equals the full contraction over ``d^ν`` indices.
    """
    basis = symmetric_basis(irreps_in, irrep_out, nu, True)
    dim_out, _, k = basis.shape
    dim = sum(ir.dim for _, ir in Irreps(irreps_in))
    basis = basis.reshape(dim_out, *([dim] * nu), k)
    out = {}
    for tup in itertools.combinations_with_replacement(range(dim), nu):
        row = sum(basis[(slice(None), *perm)] for perm in set(itertools.permutations(tup)))
        if row.abs().max() > 1e-12:
            out[tup] = row
    return out


@functools.cache
def contraction_plan(irreps_in: str, irreps_out: str, correlation: int) -> dict[str, torch.Tensor]:
    """Index and coefficient tables of :class:`SymmetricContraction` (float64 / int64, CPU).

    Monomials are rows ``[degree 1 (all d) | degree 2 | degree 3 | ...]``; a degree-``ν`` monomial is a
    row of the degree-``ν-1`` block (``parent``, relative to that block) times a component (``factor``).
    ``coeff`` ``[Σ_out (2L+1) K_out, num_monomials]`` maps monomials to every output irrep's basis,
    ``K_out`` the reduced basis sizes of all degrees ``ν`` of that irrep, concatenated.
    """
    dim = sum(ir.dim for _, ir in Irreps(irreps_in))
    terms = [
        (ir_out, nu, _monomial_coefficients(irreps_in, str(ir_out), nu))
        for _, ir_out in Irreps(irreps_out)
        for nu in range(1, correlation + 1)
    ]
    needed: list[set[tuple[int, ...]]] = [set() for _ in range(correlation + 1)]
    for _, nu, coeffs in terms:
        needed[nu].update(coeffs)
    for nu in range(correlation, 2, -1):  # prefixes of higher monomials
        needed[nu - 1].update(t[:-1] for t in needed[nu])
    rows: dict[tuple[int, ...], int] = {(i,): i for i in range(dim)}
    tables: dict[str, torch.Tensor] = {}
    previous_start = 0
    for nu in range(2, correlation + 1):
        ordered = sorted(needed[nu])
        parents = [rows[t[:-1]] - previous_start for t in ordered]  # row in the degree ν-1 block
        tables[f"parent_{nu}"] = torch.tensor(parents, dtype=torch.int64)
        tables[f"factor_{nu}"] = torch.tensor([t[-1] for t in ordered], dtype=torch.int64)
        previous_start = len(rows)
        rows.update({t: previous_start + i for i, t in enumerate(ordered)})
    blocks = []
    for _, ir_out in Irreps(irreps_out):
        parts = [c for ir, _, c in terms if ir == ir_out]
        widths = [next(iter(c.values())).shape[1] if c else 0 for c in parts]
        block = torch.zeros(ir_out.dim, sum(widths), len(rows), dtype=torch.float64)
        offset = 0
        for coeffs, width in zip(parts, widths, strict=True):
            for tup, value in coeffs.items():
                block[:, offset : offset + width, rows[tup]] = value
            offset += width
        blocks.append(block.reshape(-1, len(rows)))
    tables["coeff"] = torch.cat(blocks)
    return tables


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
        missing = [str(ir) for _, ir in self.irreps_out if all(t[1] != str(ir) for t in self._terms)]
        if missing:
            raise ValueError(f"no symmetric coupling of {self.irreps_in} reaches {', '.join(missing)}")
        self.weights = torch.nn.ParameterList(weights)

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        n, c, d = x.shape
        plan = contraction_plan(str(self.irreps_in), str(self.irreps_out), self.correlation)
        key = ("symmetric_contraction", str(self.irreps_in), str(self.irreps_out), self.correlation)
        # components as rows [d, N, C]: gathers are row copies; eagerly one copy makes the rows contiguous,
        # traced the view is kept (Inductor reads the input itself; see the module docstring)
        xt = x.permute(2, 0, 1)
        xt = xt if isinstance(n, torch.SymInt) else xt.contiguous()
        monomials, previous = [xt], xt
        for nu in range(2, self.correlation + 1):
            parent = cached_constant(
                (*key, "parent", nu), lambda nu=nu: plan[f"parent_{nu}"].double(), torch.int64, x.device
            )
            factor = cached_constant(
                (*key, "factor", nu), lambda nu=nu: plan[f"factor_{nu}"].double(), torch.int64, x.device
            )
            previous = previous.index_select(0, parent) * xt.index_select(0, factor)
            monomials.append(previous)
        coeff = cached_constant((*key, "coeff"), lambda: plan["coeff"], x.dtype, x.device)
        projected = matmul(
            coeff, torch.cat(monomials).reshape(plan["coeff"].shape[1], n * c)
        )  # [Σ (2L+1) K, N C]
        outs, row = [], 0
        for (_, ir_out), w in zip(self.irreps_out, self._irrep_weights(), strict=True):
            k = w.shape[1]
            block = projected[row : row + ir_out.dim * k].reshape(ir_out.dim, k, n, c)
            row += ir_out.dim * k
            outs.append((block * w[species].permute(1, 0, 2)).sum(1))  # [2L+1, N, C]
        return torch.cat(outs).permute(1, 2, 0)

    def _irrep_weights(self) -> list[torch.Tensor]:
        """Per output irrep the weights ``[S, K, C]`` of all degrees (reduced basis), concatenated."""
        per_irrep: dict[str, list[torch.Tensor]] = {str(ir): [] for _, ir in self.irreps_out}
        for (nu, ir_out), w in zip(self._terms, self.weights, strict=True):
            if self.basis == "paths":
                key = (str(self.irreps_in), ir_out, nu)
                to_reduced = cached_constant(
                    ("sc_paths", *key), lambda key=key: _paths_to_reduced(*key), w.dtype, w.device
                )
                w = torch.einsum("kp,spc->skc", to_reduced, w)
            per_irrep[ir_out].append(w)
        return [torch.cat(ws, dim=1) for ws in per_irrep.values()]
