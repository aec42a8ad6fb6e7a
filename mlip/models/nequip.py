"""``nequip``: the NequIP architecture (Batzner et al. 2022): species embedding, a stack of
convolutions (linear, uvu tensor product of node features with edge harmonics weighted by a radial MLP
of the enveloped Bessel basis, linear) with a species-dependent self-connection, gate nonlinearities and
residual updates, then a linear readout to per-atom energies.
"""

from __future__ import annotations

import dataclasses

import torch

from mlip.data.atomic_data import AtomicData
from mlip.kernels import uvu_instructions
from mlip.layers.conv import EdgeConvolution, Edges
from mlip.layers.gate import Gate
from mlip.layers.linear import Linear
from mlip.layers.radial import BesselEnvelope, RadialMLP
from mlip.models.model import EquivariantModel, ModelConfig
from mlip.o3 import Irrep, Irreps


@dataclasses.dataclass
class NequIPConfig(ModelConfig):
    """NequIP hyperparameters.

    num_layers: convolutions. num_features: multiplicity of every hidden irrep. lmax: highest degree of
    features and edge harmonics. parity: features of both parities (``0e+0o+1o+1e+...``) or natural parity
    only. num_bessel, polynomial_p: radial basis and envelope power. radial_mlp: hidden widths.
    readout_features: hidden scalars of the readout.
    """

    num_layers: int = 4
    num_features: int = 32
    lmax: int = 2
    parity: bool = True
    num_bessel: int = 8
    polynomial_p: int = 6
    radial_mlp: list[int] = dataclasses.field(default_factory=lambda: [64, 64])
    readout_features: int = 16


def hidden_irreps(config: NequIPConfig) -> Irreps:
    parities = (1, -1) if config.parity else (None,)
    irreps = []
    for l in range(config.lmax + 1):
        for p in parities:
            irreps.append((config.num_features, Irrep(l, (-1) ** l if p is None else p)))
    return Irreps(irreps)


class Convolution(torch.nn.Module):
    """One NequIP layer ``h -> h'`` (irreps ``irreps_in -> irreps_out``) with gate and residual."""

    def __init__(
        self, config: NequIPConfig, irreps_in: Irreps, target: Irreps, sh_irreps: Irreps, num_species: int
    ) -> None:
        super().__init__()
        irreps_mid, _ = uvu_instructions(irreps_in, sh_irreps, target)
        reachable = {ir for _, ir in irreps_mid}
        scalars = Irreps([(mul, ir) for mul, ir in target if ir.l == 0 and ir in reachable])
        gated = Irreps([(mul, ir) for mul, ir in target if ir.l > 0 and ir in reachable])
        self.gate = Gate(scalars, gated)
        self.irreps_in, self.irreps_out = irreps_in, self.gate.irreps_out
        self.conv = EdgeConvolution(
            irreps_in,
            sh_irreps,
            target,
            self.gate.irreps_in,
            lambda width: RadialMLP([config.num_bessel, *config.radial_mlp, width]),
            config.avg_num_neighbors,
        )
        self.self_connection = Linear(irreps_in, self.gate.irreps_in, num_species=num_species)
        self.residual = self.irreps_in == self.irreps_out

    def forward(self, h: torch.Tensor, species: torch.Tensor, edges: Edges) -> torch.Tensor:
        out = self.gate(self.conv(h, edges) + self.self_connection(h, species))
        return h + out if self.residual else out


class NequIP(EquivariantModel):
    """NequIP; see :class:`NequIPConfig`. Build with ``mlip.models.create("nequip", species=[...])``."""

    name = "nequip"
    config_class = NequIPConfig
    # files before the shared EdgeConvolution held its linears and radial MLP in the layer itself
    legacy_keys = (
        (r"^(layers\.\d+)\.linear_1\.", r"\1.conv.linear_up."),
        (r"^(layers\.\d+)\.radial\.", r"\1.conv.radial."),
        (r"^(layers\.\d+)\.linear_2\.", r"\1.conv.linear_out."),
    )

    def __init__(self, config: NequIPConfig) -> None:
        super().__init__(config)
        num_species = len(config.species)
        sh_irreps = Irreps.spherical_harmonics(config.lmax)
        radial_basis = BesselEnvelope(config.r_max, config.num_bessel, config.polynomial_p)
        self.init_embeddings(config.num_features, config.lmax, radial_basis)
        target = hidden_irreps(config)
        irreps = Irreps(f"{config.num_features}x0e")
        layers = []
        for _ in range(config.num_layers):
            layers.append(Convolution(config, irreps, target, sh_irreps, num_species))
            irreps = layers[-1].irreps_out
        self.layers = torch.nn.ModuleList(layers)
        self.readout_1 = Linear(irreps, f"{config.readout_features}x0e")
        self.readout_2 = Linear(f"{config.readout_features}x0e", "0e")

    def node_energies(
        self, data: AtomicData, species: torch.Tensor, edge_vectors: torch.Tensor
    ) -> torch.Tensor:
        h, edges = self.embed(data, species, edge_vectors)
        for layer in self.layers:
            h = layer(h, species, edges)
        return self.readout_2(self.readout_1(h)).squeeze(-1)
