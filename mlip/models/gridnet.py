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

from mlip.data.atomic_data import AtomicData
from mlip.layers.activations import normalized_activation
from mlip.layers.conv import EdgeConvolution, Edges
from mlip.layers.linear import Linear
from mlip.layers.radial import SplineRadial
from mlip.layers.s2 import PerDegreeLinear, SphericalGLU
from mlip.models.model import EquivariantModel, ModelConfig
from mlip.o3 import Irreps
from mlip.o3.layouts import channels_to_grid, from_channels, grid_to_channels, to_channels


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
        self.hidden = hidden
        self.conv = EdgeConvolution(
            irreps_in,
            sh_irreps,
            hidden,
            hidden,
            lambda width: SplineRadial(config.r_max, config.num_splines, width),
            config.avg_num_neighbors,
        )
        self.skip = Linear(irreps_in, hidden, num_species=num_species)
        self.glu = SphericalGLU(config.lmax, config.channels, config.mixing)
        self.out = PerDegreeLinear(config.lmax, config.channels, config.channels)

    def forward(self, h: torch.Tensor, species: torch.Tensor, edges: Edges) -> torch.Tensor:
        h = self.conv(h, edges) + self.skip(h, species)
        packed = channels_to_grid(to_channels(h, self.hidden))  # [N, (L+1)^2, C]
        packed = packed + self.out(self.glu(packed))
        return from_channels(grid_to_channels(packed), self.hidden)


class GridNet(EquivariantModel):
    """gridnet; see :class:`GridNetConfig`. Build with ``mlip.models.create("gridnet", species=[...])``."""

    name = "gridnet"
    config_class = GridNetConfig
    # files before the shared EdgeConvolution held its linears and radial splines in the layer itself
    legacy_keys = (
        (r"^(layers\.\d+)\.(linear_up|radial)\.", r"\1.conv.\2."),
        (r"^(layers\.\d+)\.linear_msg\.", r"\1.conv.linear_out."),
    )

    def __init__(self, config: GridNetConfig) -> None:
        super().__init__(config)
        num_species, c = len(config.species), config.channels
        hidden = Irreps([(c, (l, (-1) ** l)) for l in range(config.lmax + 1)])
        self.init_embeddings(c, config.lmax, None)  # the spline radial functions take r itself
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
        h, edges = self.embed(data, species, edge_vectors)
        c = self.config.channels
        energy = h.new_zeros(h.shape[0])
        for t, layer in enumerate(self.layers):
            h = layer(h, species, edges)
            if t < len(self.readouts):
                energy = energy + self.readouts[t](h[:, :c]).squeeze(-1)
        return energy + self.readout_out(self.readout_act(self.readout_hidden(h[:, :c]))).squeeze(-1)
