"""mace-torch models in: map a mace-torch ``MACE`` / ``ScaleShiftMACE`` (e3nn weights) onto our ``mace``.

:func:`from_mace` reads the hyperparameters off the module, checks that every feature it uses has an
equivalent here (anything else is a :class:`MACEConversionError` naming it), builds our model in float64
and copies the weights: embeddings, radial MLPs, linear maps and element-dependent skips one to one, the
symmetric-contraction weights projected from mace-torch's coupling basis onto ours (exact: both span the
same equivariant polynomials; the projection residual is checked), one head of a multi-head model.
A cuEquivariance-accelerated model is first turned back into its e3nn form by mace-torch's own converter
(needs cuequivariance-torch; its CPU fallback suffices). E0s, scale/shift, ``avg_num_neighbors``, the
radial basis and the ZBL pair term come along; the result is float64 (``.to(torch.float32)`` to train).

mace-torch files are whole pickled modules: :func:`load_mace_file` needs mace-torch installed and
``trust=True``, because unpickling runs code named by the file.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlip.errors import UserInputError
from mlip.layers.symmetric_contraction import symmetric_basis

if TYPE_CHECKING:
    from mlip.models.mace import MACE

SUPPORTED_INTERACTION = "RealAgnosticResidualInteractionBlock"


class MACEConversionError(UserInputError):
    """The mace-torch model uses a feature our ``mace`` cannot represent (the message names it)."""


def load_mace_file(path: str | Path, trust: bool = False, device: str = "cpu") -> torch.nn.Module:
    """Unpickle a mace-torch model file (``torch.save`` of the whole module).

    Unpickling executes code the file names, so it happens only with ``trust=True``: pass it for files
    you made or got from a source you trust. Needs mace-torch importable (its classes are in the pickle).
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    if not trust:
        raise UserInputError(
            f"{path}: mace-torch model files are pickled Python objects and loading one runs code from it; "
            "pass --trust (trust=True) only for a file from a source you trust"
        )
    try:
        import mace.modules  # noqa: F401
    except ImportError as exc:
        raise UserInputError(
            f"{path}: reading a mace-torch model needs mace-torch (pip install 'mlip-torch[mace]'): {exc}"
        ) from exc
    try:
        module = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # the unpickler raises anything the file's classes raise
        raise UserInputError(
            f"{path}: not a readable mace-torch model ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(module, torch.nn.Module):
        raise UserInputError(f"{path}: holds a {type(module).__name__}, not a mace-torch model module")
    return module


def mace_inputs(
    data: dict[str, torch.Tensor], atomic_numbers: list[int], head: int = 0
) -> dict[str, torch.Tensor]:
    """mace-torch's input dict for a batched ``AtomicData`` with a neighbour list (same edges), in the
    dtype of ``data``'s positions; ``atomic_numbers`` is the mace-torch model's element order, ``head``
    the index of the head to evaluate."""
    from mlip.data import keys as K
    from mlip.models.base import as_batch

    data = as_batch(data)
    table = {z: i for i, z in enumerate(atomic_numbers)}
    index = torch.tensor([table[int(z)] for z in data[K.ATOMIC_NUMBERS]], device=data[K.POSITIONS].device)
    dtype = data[K.POSITIONS].dtype
    cell = data[K.CELL].to(dtype).reshape(-1, 3, 3)
    src = data[K.EDGE_INDEX][0]
    unit_shifts = data[K.CELL_SHIFTS].to(dtype)
    return {
        "positions": data[K.POSITIONS],
        "node_attrs": torch.nn.functional.one_hot(index, len(atomic_numbers)).to(dtype),
        "edge_index": data[K.EDGE_INDEX],
        "shifts": torch.einsum("ei,eij->ej", unit_shifts, cell[data[K.BATCH][src]]),
        "unit_shifts": unit_shifts,
        "cell": cell.reshape(-1, 3),
        "batch": data[K.BATCH],
        "ptr": data[K.PTR],
        "head": torch.full((cell.shape[0],), head, dtype=torch.int64, device=cell.device),
    }


def from_mace(module: torch.nn.Module, head: str | None = None) -> MACE:
    """Our ``mace`` (float64) with the weights of mace-torch model ``module``, for head ``head``.

    ``head`` names one head of a multi-head model (``module.heads``); it may be left out for a single
    head. Raises :class:`MACEConversionError` naming the first feature that has no equivalent.
    """
    from mlip.models.registry import create

    kind = type(module).__name__
    if kind not in ("MACE", "ScaleShiftMACE"):
        raise _fail(f"model class {kind} (only MACE and ScaleShiftMACE convert)")
    if _uses_cueq(module):
        module = _cueq_to_e3nn(module)
    hp, head_index = _hyperparameters(module, head)
    ours = create("mace", dtype=torch.float64, **hp)
    with torch.no_grad():
        _copy_weights(module, ours, head_index, len(_heads(module)))
    return ours


def _uses_cueq(module: torch.nn.Module) -> bool:
    config = getattr(module.interactions[0], "cueq_config", None)
    return config is not None and bool(getattr(config, "enabled", False))


def _cueq_to_e3nn(module: torch.nn.Module) -> torch.nn.Module:
    """The e3nn form of a cuEquivariance-accelerated mace-torch model, by mace-torch's own converter."""
    from mace.cli.convert_cueq_e3nn import run

    previous = torch.get_default_dtype()  # the converter sets the default dtype to the model's
    try:
        return run(module, device="cpu", return_model=True)
    except Exception as exc:  # its failures come from any layer of mace-torch / cuequivariance
        raise _fail(f"cuEquivariance layers that mace-torch's converter could not undo ({exc})") from exc
    finally:
        torch.set_default_dtype(previous)


def _heads(module: torch.nn.Module) -> list[str]:
    return list(getattr(module, "heads", None) or ["Default"])


def _fail(feature: str) -> MACEConversionError:
    return MACEConversionError(f"mace-torch model uses {feature}, which mlip's mace cannot represent")


def _hyperparameters(module: torch.nn.Module, head: str | None) -> tuple[dict[str, Any], int]:
    """Our config fields for ``module`` and the index of ``head``; checks every feature on the way."""
    heads = _heads(module)
    if head is None:
        if len(heads) > 1:
            raise MACEConversionError(f"the model has heads {heads}: choose one (head=... / --head)")
        head_index = 0
    elif head not in heads:
        raise MACEConversionError(f"no head {head!r} in the model; its heads are {heads}")
    else:
        head_index = heads.index(head)
    for flag in ("use_so3", "use_agnostic_product", "use_last_readout_only", "lammps_mliap"):
        if getattr(module, flag, False):
            raise _fail(f"{flag}=True")
    if hasattr(module, "joint_embedding"):
        raise _fail("embedding_specs (joint embedding of extra inputs)")
    if getattr(module, "edge_irreps", None) is not None:
        raise _fail("edge_irreps (a separate edge feature width)")
    for t, layer in enumerate(module.interactions):
        if type(layer).__name__ != SUPPORTED_INTERACTION:
            raise _fail(
                f"interaction block {type(layer).__name__} in layer {t} (only {SUPPORTED_INTERACTION})"
            )
    radial = module.radial_embedding
    if type(radial.bessel_fn).__name__ != "BesselBasis":
        raise _fail(f"radial basis {type(radial.bessel_fn).__name__} (only BesselBasis)")
    if hasattr(radial, "distance_transform"):
        raise _fail(f"distance_transform {type(radial.distance_transform).__name__}")
    if not getattr(radial, "apply_cutoff", True):
        raise _fail("apply_cutoff=False")
    r_max = float(module.r_max)
    num_bessel = radial.bessel_fn.bessel_weights.numel()
    default = math.pi / r_max * torch.arange(1, num_bessel + 1, dtype=torch.float64)
    if not torch.allclose(
        radial.bessel_fn.bessel_weights.detach().double().cpu(), default, rtol=1e-6, atol=0
    ):
        raise _fail("trained Bessel frequencies (trainable radial basis)")

    num_layers = len(module.interactions)
    first = module.interactions[0]
    hidden = str(module.interactions[1].node_feats_irreps) if num_layers > 1 else str(first.hidden_irreps)
    last_target = str(module.products[-1].linear.irreps_out)
    if last_target != str(first.node_feats_irreps):
        raise _fail(f"keep_last_layer_irreps (last layer outputs {last_target})")
    averages = {float(layer.avg_num_neighbors) for layer in module.interactions}
    if len(averages) != 1:
        raise _fail(f"different avg_num_neighbors per layer {sorted(averages)}")
    correlations = {_correlation(p) for p in module.products}
    if len(correlations) != 1:
        raise _fail(f"different correlation per layer {sorted(correlations)}")
    radial_mlps = {tuple(layer.radial_MLP) for layer in module.interactions}
    if len(radial_mlps) != 1:
        raise _fail("different radial_MLP per layer")
    for t, layer in enumerate(module.interactions):
        for act in _mlp_activations(layer.conv_tp_weights):
            if act is not None and getattr(act, "f", act) is not torch.nn.functional.silu:
                raise _fail(f"a radial MLP activation other than silu in layer {t}")

    readouts = module.readouts
    for t, readout in enumerate(readouts[:-1] if num_layers > 1 else readouts):
        if type(readout).__name__ != "LinearReadoutBlock":
            raise _fail(f"readout {type(readout).__name__} after layer {t}")
    hp: dict[str, Any] = {}
    if num_layers > 1:
        last = readouts[-1]
        if type(last).__name__ != "NonLinearReadoutBlock":
            raise _fail(f"readout {type(last).__name__} after the last layer (readout_cls)")
        gates = [getattr(a, "f", a) for a in last.non_linearity.acts]
        if any(g is not torch.nn.functional.silu for g in gates):
            raise _fail(f"readout gate {gates} (only silu)")
        mlp = last.hidden_irreps
        hp["mlp_irreps"] = f"{mlp.num_irreps // len(heads)}x0e"
    else:
        hp["last_readout"] = "linear"

    e0 = torch.atleast_2d(module.atomic_energies_fn.atomic_energies.detach().double().cpu())
    if e0.shape[0] != len(heads):  # [heads, species]
        e0 = e0.T
    hp.update(
        species=[int(z) for z in module.atomic_numbers],
        r_max=r_max,
        e0s=e0[head_index].tolist(),
        avg_num_neighbors=averages.pop(),
        num_interactions=num_layers,
        hidden_irreps=hidden,
        max_ell=int(first.edge_attrs_irreps.lmax),
        correlation=correlations.pop(),
        num_bessel=num_bessel,
        num_polynomial_cutoff=int(radial.cutoff_fn.p),
        radial_mlp=list(radial_mlps.pop()),
        product="cg",
        sc_basis="reduced",
        pair_repulsion=hasattr(module, "pair_repulsion"),  # mace-torch's own test in its forward
    )
    if hasattr(module, "scale_shift"):
        scale = torch.atleast_1d(module.scale_shift.scale.detach().double().cpu())
        shift = torch.atleast_1d(module.scale_shift.shift.detach().double().cpu())
        hp["scale"] = float(scale[head_index if scale.numel() > 1 else 0])
        hp["shift"] = float(shift[head_index if shift.numel() > 1 else 0])
    if hp["pair_repulsion"]:
        _check_zbl(module.pair_repulsion_fn)
    return hp, head_index


def _mlp_activations(mlp: torch.nn.Module) -> list[Any]:
    return [getattr(m, "act", None) for m in mlp.children() if hasattr(m, "weight")]


def _activation_ratio(act: Any, ours: float) -> float:
    """e3nn's normalisation constant of ``act`` (``normalize2mom.cst``) over ours; 1 for no activation."""
    if act is None:
        return 1.0
    return float(getattr(act, "cst", 1.0)) / ours


def _correlation(product: torch.nn.Module) -> int:
    return int(product.symmetric_contractions.contractions[0].correlation)


def _check_zbl(zbl: torch.nn.Module) -> None:
    from ase.data import covalent_radii

    from mlip.layers import zbl as ours

    c = zbl.c.detach().double().cpu()
    if not torch.allclose(c, torch.tensor(ours._C, dtype=torch.float64), rtol=1e-6, atol=0):
        raise _fail(f"ZBL screening coefficients {c.tolist()} (other than the universal ones)")
    radii = zbl.covalent_radii.detach().double().cpu()
    if not torch.allclose(radii, torch.as_tensor(covalent_radii, dtype=torch.float64), rtol=1e-6, atol=0):
        raise _fail("a ZBL covalent-radius table other than ASE's")


def _e3nn_paths(e3nn_module: torch.nn.Module) -> dict[tuple[int, int], torch.Tensor]:
    """Flat weights of an e3nn ``Linear`` / one-hot ``FullyConnectedTensorProduct`` per instruction:
    ``{(input block, output block): [mul_in, (num_species,) mul_out]}`` (float64, CPU)."""
    flat = e3nn_module.weight.detach().to("cpu", torch.float64)
    out, offset = {}, 0
    for ins in e3nn_module.instructions:
        numel = math.prod(ins.path_shape)
        key = (ins.i_in, ins.i_out) if hasattr(ins, "i_in") else (ins.i_in1, ins.i_out)
        out[key] = flat[offset : offset + numel].reshape(ins.path_shape)
        offset += numel
    if offset != flat.numel():
        raise MACEConversionError(f"unexpected weight layout in {type(e3nn_module).__name__}")
    return out


def _linear_paths(linear: torch.nn.Module) -> list[tuple[int, int]]:
    """(input block, output block) of each weight of our :class:`~mlip.layers.Linear`, in order."""
    return [
        (i, j)
        for j, (_, ir_out) in enumerate(linear.irreps_out)
        for i, (_, ir_in) in enumerate(linear.irreps_in)
        if ir_in == ir_out
    ]


def _copy_linear(ours: torch.nn.Module, theirs: torch.nn.Module, where: str) -> None:
    """Copy an e3nn ``Linear`` (or one-hot ``FullyConnectedTensorProduct``) into our ``Linear``."""
    in_theirs = getattr(theirs, "irreps_in", None) or theirs.irreps_in1
    if str(ours.irreps_in) != str(in_theirs) or str(ours.irreps_out) != str(theirs.irreps_out):
        raise MACEConversionError(
            f"{where}: irreps {in_theirs} -> {theirs.irreps_out} do not match ours "
            f"{ours.irreps_in} -> {ours.irreps_out}"
        )
    paths = _e3nn_paths(theirs)
    for p, key in enumerate(_linear_paths(ours)):
        ours.weights[p].copy_(paths[key].reshape(ours.weights[p].shape))


def _copy_contraction(ours: torch.nn.Module, theirs: torch.nn.Module, where: str) -> None:
    """Project mace-torch's symmetric-contraction weights onto our reduced basis.

    For output irrep ``L`` and degree ν, mace-torch's ``U_ν [2L+1, d, ..., d, K']`` and our orthonormal
    reduced basis ``B [2L+1, d^ν, K]`` span the same symmetric equivariant maps, so after symmetrising
    ``U`` over its ν input indices, ``U_sym = B T`` with ``T = Bᵀ U_sym`` and ``w_ours = T w_theirs``.
    """
    irreps_in = str(ours.irreps_in)
    weights = iter(ours.weights)
    for (_, ir_out), contraction in zip(ours.irreps_out, theirs.contractions, strict=True):
        nu_max = contraction.correlation
        mace_weights = {nu_max: contraction.weights_max}
        for i, w in enumerate(contraction.weights):
            mace_weights[nu_max - 1 - i] = w
        for nu in range(1, nu_max + 1):
            basis = symmetric_basis(irreps_in, str(ir_out), nu, True)
            if basis.shape[-1] == 0:
                continue
            u = contraction.U_tensors(nu).detach()
            tolerance = 1e3 * torch.finfo(u.dtype).eps  # U is stored in the model's dtype
            u = u.to("cpu", torch.float64)
            u = u.reshape(ir_out.dim, *u.shape[-nu - 1 :])  # L = 0 has no leading M axis
            perms = _permutations(nu)
            u_sym = sum(u.permute(0, *p, nu + 1) for p in perms) / len(perms)
            u_sym = u_sym.reshape(-1, u.shape[-1])
            b = basis.reshape(-1, basis.shape[-1])
            t = b.T @ u_sym
            residual = (u_sym - b @ t).abs().max().item() if u_sym.numel() else 0.0
            if residual > tolerance * max(1.0, u_sym.abs().max().item()):
                raise MACEConversionError(
                    f"{where}: mace-torch's coupling basis for {ir_out} at degree {nu} is not in ours "
                    f"(residual {residual:.2e})"
                )
            w = mace_weights[nu].detach().to("cpu", torch.float64)  # [species, K', channels]
            target = next(weights)
            target.copy_(torch.einsum("kp,epc->ekc", t, w))
    if next(weights, None) is not None:
        raise MACEConversionError(f"{where}: fewer contraction weights in the mace-torch model than ours")


def _permutations(nu: int) -> list[tuple[int, ...]]:
    return list(itertools.permutations(range(1, nu + 1)))


def _copy_weights(module: torch.nn.Module, ours: torch.nn.Module, head: int, num_heads: int) -> None:
    emb = module.node_embedding.linear.weight.detach().to("cpu", torch.float64)
    ours.embedding.weight.copy_(emb.reshape(ours.embedding.weight.shape))
    num_layers = len(ours.interactions)
    for t, (layer, theirs, product) in enumerate(
        zip(ours.interactions, module.interactions, module.products, strict=True)
    ):
        where = f"layer {t}"
        _copy_linear(layer.skip, theirs.skip_tp, f"{where} skip_tp")
        _copy_linear(layer.conv.linear_up, theirs.linear_up, f"{where} linear_up")
        mlp = [m for m in theirs.conv_tp_weights.children() if hasattr(m, "weight")]
        if len(mlp) != len(layer.conv.radial.weights):
            raise MACEConversionError(f"{where}: radial MLP depth differs")
        # e3nn estimates the activation's normalisation by sampling, we integrate it: the ratio goes into
        # the next layer's weights, so the function is mace-torch's exactly
        ratio = 1.0
        for w_ours, m in zip(layer.conv.radial.weights, mlp, strict=True):
            w_ours.copy_(m.weight.detach().to("cpu", torch.float64) * ratio)
            ratio = _activation_ratio(getattr(m, "act", None), layer.conv.radial.act.scale)
        _copy_linear(layer.conv.linear_out, theirs.linear, f"{where} linear")
        _copy_contraction(layer.product, product.symmetric_contractions, f"{where} product")
        _copy_linear(layer.linear_product, product.linear, f"{where} product linear")
    for t, (readout, theirs) in enumerate(zip(ours.readouts, module.readouts, strict=True)):
        if t < num_layers - 1 or not ours.mlp_readout:
            w = _e3nn_paths(theirs.linear)[(0, 0)]  # [mul_in, heads]
            readout.weights[0].copy_(w[:, head : head + 1])
            continue
        hidden = ours.readout_out.irreps_in.dim
        w1 = _e3nn_paths(theirs.linear_1)[(0, 0)]  # [mul_in, heads * hidden]
        readout.weights[0].copy_(w1[:, head * hidden : (head + 1) * hidden])
        w2 = _e3nn_paths(theirs.linear_2)[(0, 0)]  # [heads * hidden, heads], normalised by sqrt(heads*hidden)
        ratio = _activation_ratio(theirs.non_linearity.acts[0], ours.readout_act.scale)
        w2 = w2[head * hidden : (head + 1) * hidden, head : head + 1] * (ratio / num_heads**0.5)
        ours.readout_out.weights[0].copy_(w2)
    if ours.pair is not None:
        ours.pair.a_exp.copy_(module.pair_repulsion_fn.a_exp.detach().double().cpu())
        ours.pair.a_prefactor.copy_(module.pair_repulsion_fn.a_prefactor.detach().double().cpu())
