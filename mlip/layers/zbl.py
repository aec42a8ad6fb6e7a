"""Ziegler-Biersack-Littmark (ZBL) screened nuclear repulsion, the pair term of MACE's ``pair_repulsion``.

Per edge ``i <- j``: ``V(r) = k_e Z_i Z_j / r · φ(r / a) · u(r / r_c)`` with the universal screening
``φ(x) = Σ_k c_k exp(-d_k x)``, screening length ``a = a_prefactor · a_0 / (Z_i^a_exp + Z_j^a_exp)``, and
the C² polynomial envelope ``u`` of :class:`~mlip.layers.radial.PolynomialEnvelope` cut at the sum of
the two covalent radii ``r_c`` (ASE's table). Each directed edge adds half its pair energy to its
receiving atom, so a symmetric neighbour list counts every pair once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlip.layers.radial import PolynomialEnvelope

_K_E = 14.3996  # e² / (4π ε0), eV·Å
_A0 = 0.529  # Bohr radius, Å
_C = (0.1818, 0.5099, 0.2802, 0.02817)
_D = (3.2, 0.9423, 0.4028, 0.2016)


class ZBLRepulsion(torch.nn.Module):
    """Per-atom ZBL energies (eV).

    Args: ``species`` atomic numbers of the model (species index order); ``p`` the envelope power.
    ``a_exp`` and ``a_prefactor`` are buffers saved with the model (defaults: mace-torch's values).

    Forward: edge lengths ``[E]`` (Å), species index ``[N]``, ``src`` and ``dst`` ``[E]`` -> ``[N]``.
    """

    def __init__(self, species: Sequence[int], p: int = 5, a_exp: float = 0.300, a_prefactor: float = 0.4543):
        super().__init__()
        from ase.data import covalent_radii

        z = torch.tensor([float(s) for s in species], dtype=torch.float64)
        self.register_buffer("z", z, persistent=False)
        self.register_buffer("radii", torch.as_tensor(covalent_radii[list(species)]), persistent=False)
        self.register_buffer("a_exp", torch.tensor(float(a_exp), dtype=torch.float64))
        self.register_buffer("a_prefactor", torch.tensor(float(a_prefactor), dtype=torch.float64))
        self.envelope = PolynomialEnvelope(1.0, p)

    def forward(
        self, r: torch.Tensor, species: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
    ) -> torch.Tensor:
        z = self.z.to(r.dtype)[species]
        zi, zj = z[dst], z[src]
        a = self.a_prefactor.to(r.dtype) * _A0 / (zi ** self.a_exp.to(r.dtype) + zj ** self.a_exp.to(r.dtype))
        x = r / a
        phi = sum(c * torch.exp(-d * x) for c, d in zip(_C, _D, strict=True))
        cut = self.radii.to(r.dtype)[species]
        envelope = self.envelope(r / (cut[dst] + cut[src]))
        v = 0.5 * _K_E * zi * zj / r * phi * envelope
        return v.new_zeros(species.shape[0]).index_add(0, dst, v)
