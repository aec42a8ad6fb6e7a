"""``gridnet``: a grid-native equivariant potential built around the package's sphere kernels.

Ideas from Facet and EquiformerV3: spline radial functions (one matmul per edge), a channelwise
tensor-product convolution with the edge harmonics, and node updates as gated products of spherical
functions on a grid (:class:`~mlip.layers.s2.SphericalGLU`: a Gaunt product, or SwiGLU on the sphere).

Per layer ``t``: ``m = Linear(tp_conv(Linear(h), Y(r̂), Spline(r))) / avg_num_neighbors``;
``h ← h + m + skip_s(h)``; ``h ← h + Out(GLU(h))``; energy readout ``Linear(h_scalars)`` summed over
layers, the last through a SiLU MLP. Features are ``C x (0e+1o+...+L)`` (natural parity). Smooth at the
cutoff: the spline radial vanishes with two derivatives at ``r_max``.
"""

from __future__ import annotations

import dataclasses

import torch

from mlip.data import keys as K
from mlip.data.atomic_data import AtomicData
from mlip.kernels import ConvGraph, TensorProduct, uvu_instructions
from mlip.layers.activations import normalized_activation
from mlip.layers.conv import edge_convolution
from mlip.layers.embedding import SpeciesEmbedding
from mlip.layers.linear import Linear
from mlip.layers.radial import SplineRadial
from mlip.layers.s2 import PerDegreeLinear, SphericalGLU
from mlip.models.mace import from_channels, to_channels
from mlip.models.model import EquivariantModel, ModelConfig
from mlip.models.registry import register
from mlip.o3 import Irreps, spherical_harmonics


@dataclasses.dataclass
class GridNetConfig(ModelConfig):
    """gridnet hyperparameters.

    num_layers: message-passing layers. channels: multiplicity of every degree. lmax: highest feature
    degree (also of the edge harmonics). num_splines: cubic B-splines of the radial functions.
    mixing: ``"gaunt"`` (exactly equivariant) or ``"swiglu"`` (S² SwiGLU, approximately equivariant).
    readout_features: hidden scalars of the last readout.
    """

    num_layers: int = 3
    channels: int = 64
    lmax: int = 2
    num_splines: int = 16
    mixing: str = "gaunt"
    readout_features: int = 16


class GridLayer(torch.nn.Module):
    """Convolution and spherical mixing of one layer; ``forward`` returns the new features (e3nn layout)."""

    def __init__(self, config: GridNetConfig, irreps_in: Irreps, hidden: Irreps, num_species: int) -> None:
        super().__init__()
        sh_irreps = Irreps.spherical_harmonics(config.lmax)
        self.hidden, self.lmax = hidden, config.lmax
        self.linear_up = Linear(irreps_in, irreps_in)
        irreps_mid, instructions = uvu_instructions(irreps_in, sh_irreps, hidden)
        self.conv = TensorProduct(
            irreps_in,
            sh_irreps,
            irreps_mid,
            instructions,
            shared_weights=False,
            internal_weights=False,
            backend=config.backend,
        )
        self.radial = SplineRadial(config.r_max, config.num_splines, self.conv.weight_numel)
        self.linear_msg = Linear(irreps_mid, hidden)
        self.skip = Linear(irreps_in, hidden, num_species=num_species)
        self.glu = SphericalGLU(config.lmax, config.channels, config.mixing)
        self.out = PerDegreeLinear(config.lmax, config.channels, config.channels)
        self.inv_avg_neighbors = 1.0 / config.avg_num_neighbors

    def forward(
        self,
        h: torch.Tensor,
        species: torch.Tensor,
        sh: torch.Tensor,
        r: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        graph: ConvGraph | None = None,
    ) -> torch.Tensor:
        msg = edge_convolution(
            self.linear_up(h), sh, r, src, dst, self.radial, self.conv, not self.training, graph=graph
        )
        h = self.linear_msg(msg) * self.inv_avg_neighbors + self.skip(h, species)
        packed = to_channels(h, self.hidden).transpose(1, 2)  # [N, (L+1)^2, C]
        packed = packed + self.out(self.glu(packed))
        return from_channels(packed.transpose(1, 2), self.hidden)


@register
class GridNet(EquivariantModel):
    """gridnet; see :class:`GridNetConfig`. Build with ``mlip.models.create("gridnet", species=[...])``."""

    name = "gridnet"
    config_class = GridNetConfig

    def __init__(self, config: GridNetConfig) -> None:
        super().__init__(config)
        num_species, c = len(config.species), config.channels
        self.lmax = config.lmax
        hidden = Irreps([(c, (l, (-1) ** l)) for l in range(config.lmax + 1)])
        self.embedding = SpeciesEmbedding(num_species, c)
        irreps = Irreps(f"{c}x0e")
        self.layers = torch.nn.ModuleList()
        for _ in range(config.num_layers):
            self.layers.append(GridLayer(config, irreps, hidden, num_species))
            irreps = hidden
        self.readouts = torch.nn.ModuleList([Linear(f"{c}x0e", "0e") for _ in range(config.num_layers - 1)])
        self.readout_hidden = Linear(f"{c}x0e", f"{config.readout_features}x0e")
        self.readout_act = normalized_activation("silu")
        self.readout_out = Linear(f"{config.readout_features}x0e", "0e")

    def node_energies(
        self, data: AtomicData, species: torch.Tensor, edge_vectors: torch.Tensor
    ) -> torch.Tensor:
        src, dst = data[K.EDGE_INDEX][0], data[K.EDGE_INDEX][1]
        graph = ConvGraph(src, dst, species.shape[0])  # edges sorted once, for every layer
        sh = spherical_harmonics(self.lmax, edge_vectors, normalize=True, normalization="component")
        r = edge_vectors.norm(dim=-1)
        h = self.embedding(species)
        c = self.config.channels
        energy = h.new_zeros(h.shape[0])
        for t, layer in enumerate(self.layers):
            h = layer(h, species, sh, r, src, dst, graph)
            if t < len(self.readouts):
                energy = energy + self.readouts[t](h[:, :c]).squeeze(-1)
        return energy + self.readout_out(self.readout_act(self.readout_hidden(h[:, :c]))).squeeze(-1)
