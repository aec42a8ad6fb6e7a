"""``mace``: the MACE architecture (Batatia et al. 2022), equal in structure and parameter count to
mace-torch's ``MACE`` with ``RealAgnosticResidualInteractionBlock`` for the same hyperparameters.

Per layer: element-dependent skip ``Linear``, ``linear_up``, a channelwise (uvu) tensor-product
convolution of node features with the edge harmonics weighted by a radial MLP of the Bessel basis,
``linear`` / ``avg_num_neighbors``, the product basis (``product="cg"``: symmetric contraction;
``product="gaunt"``: powers on the spherical grid), ``linear`` + skip. Readouts: linear after every
layer but the last, a gated MLP after the last.
"""

from __future__ import annotations

import dataclasses

import torch

from mlip.data.atomic_data import AtomicData
from mlip.layers.activations import normalized_activation
from mlip.layers.chunking import checkpointed_rows
from mlip.layers.conv import EdgeConvolution, Edges
from mlip.layers.grid_product import GridProductBasis
from mlip.layers.linear import Linear
from mlip.layers.radial import BesselEnvelope, RadialMLP
from mlip.layers.symmetric_contraction import SymmetricContraction
from mlip.layers.zbl import ZBLRepulsion
from mlip.models.model import EquivariantModel, ModelConfig
from mlip.o3 import Irreps
from mlip.o3.layouts import from_channels, to_channels


@dataclasses.dataclass
class MACEConfig(ModelConfig):
    """MACE hyperparameters (names as mace-torch's ``MACE``).

    hidden_irreps: node features between layers, one multiplicity for all irreps (``"128x0e+128x1o"``).
    max_ell: highest degree of the edge harmonics. correlation: body order of the product basis - 1.
    num_bessel, num_polynomial_cutoff: radial basis size and envelope power.
    radial_mlp: hidden widths of the radial MLP. mlp_irreps: hidden scalars of the last readout.
    product: ``"cg"`` (symmetric contraction) or ``"gaunt"`` (grid product basis).
    sc_basis: ``"reduced"`` or ``"paths"`` (see :class:`~mlip.layers.SymmetricContraction`).
    last_readout: ``"mlp"`` (gated MLP after the last layer) or ``"linear"`` (as mace-torch builds
        one-interaction models).
    pair_repulsion: add the ZBL pair term (:class:`~mlip.layers.zbl.ZBLRepulsion`) to the learned energy.
    """

    num_interactions: int = 2
    hidden_irreps: str = "128x0e+128x1o"
    max_ell: int = 3
    correlation: int = 3
    num_bessel: int = 8
    num_polynomial_cutoff: int = 5
    radial_mlp: list[int] = dataclasses.field(default_factory=lambda: [64, 64, 64])
    mlp_irreps: str = "16x0e"
    product: str = "cg"
    sc_basis: str = "reduced"
    last_readout: str = "mlp"
    pair_repulsion: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        hidden = Irreps(self.hidden_irreps)
        if len({mul for mul, _ in hidden}) != 1 or hidden[0].ir.l != 0:
            raise ValueError(f"hidden_irreps must start with scalars and share one multiplicity: {hidden}")
        if self.product not in ("cg", "gaunt"):
            raise ValueError(f"product must be 'cg' or 'gaunt', got {self.product!r}")
        if self.product == "gaunt" and any(ir.p != (-1) ** ir.l for _, ir in hidden):
            raise ValueError(f"product='gaunt' needs natural-parity hidden irreps, got {hidden}")
        if self.last_readout not in ("mlp", "linear"):
            raise ValueError(f"last_readout must be 'mlp' or 'linear', got {self.last_readout!r}")
        if self.num_interactions < 1 or self.correlation < 1:
            raise ValueError("num_interactions and correlation must be >= 1")


class Interaction(torch.nn.Module):
    """One MACE layer: skip, convolution and product basis; ``forward`` returns new node features."""

    def __init__(
        self,
        config: MACEConfig,
        irreps_in: Irreps,
        irreps_out: Irreps,
        sh_irreps: Irreps,
        num_species: int,
    ) -> None:
        super().__init__()
        channels = Irreps(config.hidden_irreps)[0].mul
        self.irreps_in, self.irreps_out = irreps_in, irreps_out
        self.target = Irreps([(channels, ir) for _, ir in sh_irreps])  # 128x0e+128x1o+128x2e+128x3o
        self.skip = Linear(irreps_in, irreps_out, num_species=num_species)
        self.conv = EdgeConvolution(
            irreps_in,
            sh_irreps,
            self.target,
            self.target,
            lambda width: RadialMLP([config.num_bessel, *config.radial_mlp, width]),
            config.avg_num_neighbors,
        )
        if config.product == "cg":
            self.product: torch.nn.Module = SymmetricContraction(
                "+".join(str(ir) for _, ir in self.target),
                "+".join(str(ir) for _, ir in irreps_out),
                config.correlation,
                channels,
                num_species,
                basis=config.sc_basis,
            )
        else:
            self.product = GridProductBasis(
                self.target.lmax, irreps_out.lmax, config.correlation, channels, num_species
            )
        self.linear_product = Linear(irreps_out, irreps_out)

    def forward(self, h: torch.Tensor, species: torch.Tensor, edges: Edges) -> torch.Tensor:
        skip = self.skip(h, species)
        features = to_channels(self.conv(h, edges), self.target)
        if self.training:  # training differentiates forces: plain autograd, no recomputation
            prod = self.product(features, species)
        else:
            if isinstance(features.shape[0], torch.SymInt):  # traced: channels-last in memory ([N, d, C]),
                # so the product basis's compiled loops read it along C (vector loads); eagerly the
                # product basis copies its own rows
                features = features.transpose(1, 2).contiguous().transpose(1, 2)
            prod = checkpointed_rows(self.product, features, species)
        return self.linear_product(from_channels(prod, self.irreps_out)) + skip


class MACE(EquivariantModel):
    """MACE; see :class:`MACEConfig`. Build with ``mlip.models.create("mace", species=[...], ...)``."""

    name = "mace"
    config_class = MACEConfig
    # files before the shared EdgeConvolution held its linears and radial MLP in the layer itself
    legacy_keys = (
        (r"^(interactions\.\d+)\.(linear_up|radial)\.", r"\1.conv.\2."),
        (r"^(interactions\.\d+)\.linear\.", r"\1.conv.linear_out."),
    )

    def __init__(self, config: MACEConfig) -> None:
        super().__init__(config)
        hidden = Irreps(config.hidden_irreps)
        channels, num_species = hidden[0].mul, len(config.species)
        sh_irreps = Irreps.spherical_harmonics(config.max_ell)
        radial_basis = BesselEnvelope(config.r_max, config.num_bessel, config.num_polynomial_cutoff)
        self.init_embeddings(channels, config.max_ell, radial_basis)
        scalars = Irreps([(channels, hidden[0].ir)])
        layers, readouts = [], []
        irreps_in = scalars
        for t in range(config.num_interactions):
            last = t == config.num_interactions - 1
            irreps_out = scalars if last else hidden
            layers.append(Interaction(config, irreps_in, irreps_out, sh_irreps, num_species))
            mlp = last and config.last_readout == "mlp"
            readouts.append(Linear(irreps_out, config.mlp_irreps) if mlp else Linear(irreps_out, "0e"))
            irreps_in = irreps_out
        self.interactions = torch.nn.ModuleList(layers)
        self.readouts = torch.nn.ModuleList(readouts)
        self.mlp_readout = config.last_readout == "mlp"
        if self.mlp_readout:
            self.readout_act = normalized_activation("silu")
            self.readout_out = Linear(config.mlp_irreps, "0e")
        self.pair = (
            ZBLRepulsion(config.species, config.num_polynomial_cutoff) if config.pair_repulsion else None
        )

    def node_energies(
        self, data: AtomicData, species: torch.Tensor, edge_vectors: torch.Tensor
    ) -> torch.Tensor:
        h, edges = self.embed(data, species, edge_vectors)
        energy = h.new_zeros(h.shape[0])
        if self.pair is not None:
            energy = energy + self.pair(edge_vectors.norm(dim=-1), species, edges.src, edges.dst)
        last = len(self.interactions) - 1
        for t, (layer, readout) in enumerate(zip(self.interactions, self.readouts, strict=True)):
            h = layer(h, species, edges)
            if t < last or not self.mlp_readout:
                energy = energy + readout(h).squeeze(-1)
            else:
                energy = energy + self.readout_out(self.readout_act(readout(h))).squeeze(-1)
        return energy
