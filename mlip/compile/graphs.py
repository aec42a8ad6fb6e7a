"""CUDA graphs of the fixed-shape MD step: captured once, replayed while the input shapes stay the same.

A step of the ``.pt2`` contract (:mod:`mlip.compile.step`) has no host sync and no data-dependent shape,
so with a fixed-capacity padded edge set (:meth:`mlip.data.neighbors.SkinNeighborList.padded`) its
inputs keep their shapes between neighbour-list rebuilds, and across rebuilds until the list outgrows
its capacity. :class:`StaticStep` runs such a step on static input buffers: every call copies the new
inputs (positions, and the edges, which change only at a rebuild) into the buffers and replays the
captured graph; a call with other shapes (a grown capacity, a dropped replica) sets up new buffers and
captures again. The capture follows PyTorch's recipe for graphs with a backward pass: warm-up calls on a
side stream (autotuning, lazily built constant tables, the autograd engine's streams), then one call
under ``torch.cuda.graph``, which records the forward and the ``autograd.grad`` backward of the step.

Limitations: anything in the step that reads a device value on the host (``.item()``, ``nonzero``) or
allocates pinned memory fails the capture (:class:`CaptureError`); AOTInductor packages are captured
through their single-threaded runner (``run_single_threaded``). Not yet run on a GPU:
``benchmarks/gpu_check.py`` is the check (replay equals eager, and the time per step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlip.compile.model import CompiledModel, Step, StepModel
from mlip.compile.step import ForceStep
from mlip.errors import RunFailedError, UserInputError
from mlip.models.base import Potential
from mlip.models.model import EquivariantModel


class CaptureError(RunFailedError):
    """The step could not be captured as a CUDA graph (an op synchronises with the host)."""


class StaticStep:
    """``step`` on static input buffers, replayed as a CUDA graph (see the module docstring).

    Args:
        step: a function of the ``.pt2`` contract (``(positions, species, edge_index, edge_shifts,
            energy_mask) -> (energy, atom_energies, forces, atom_virial)``).
        capture: capture ``step`` as a CUDA graph (the inputs must be on a CUDA device). ``False`` runs
            the same bookkeeping (buffers, copy-in, set-up on a new shape, copy-out) with a plain call of
            ``step`` on the buffers in place of the replay: the CPU reference of the graphed path.
        warmup: calls on a side stream before a capture.

    Attributes:
        captures: buffer set-ups (each a capture when ``capture``): the first call and every call whose
            input shapes, dtypes or device differ from the buffers'.
        replays: calls (each a replay of the captured graph when ``capture``).

    Each call returns copies of the outputs: the graph's own output tensors are overwritten by the next
    replay.
    """

    def __init__(self, step: Step, capture: bool = True, warmup: int = 3) -> None:
        self.step = step
        self.capture = capture
        self.warmup = warmup
        self.captures = 0
        self.replays = 0
        self._inputs: tuple[torch.Tensor, ...] = ()
        self._outputs: tuple[torch.Tensor, ...] = ()
        self._graph: torch.cuda.CUDAGraph | None = None

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self._fits(inputs):
            self._set_up(inputs)
        for buffer, value in zip(self._inputs, inputs, strict=True):
            buffer.copy_(value)
        if self._graph is not None:
            self._graph.replay()
        else:
            self._outputs = tuple(self.step(*self._inputs))
        self.replays += 1
        return tuple(t.clone() for t in self._outputs)

    def _fits(self, inputs: Sequence[torch.Tensor]) -> bool:
        return len(inputs) == len(self._inputs) and all(
            b.shape == t.shape and b.dtype == t.dtype and b.device == t.device
            for b, t in zip(self._inputs, inputs, strict=True)
        )

    def _set_up(self, inputs: Sequence[torch.Tensor]) -> None:
        """New buffers holding ``inputs`` and, with ``capture``, the step captured on them."""
        self._graph, self._outputs = None, ()  # the previous graph and its memory pool go
        self._inputs = tuple(t.detach().clone() for t in inputs)
        self.captures += 1
        if not self.capture:
            return
        device = self._inputs[0].device
        if device.type != "cuda":
            raise UserInputError(f"a CUDA graph needs inputs on a CUDA device, got {device}")
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.step(*self._inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                outputs = tuple(self.step(*self._inputs))
        except RuntimeError as exc:
            reason = str(exc).splitlines()[0]
            raise CaptureError(
                f"CUDA graph capture of the step failed ({reason}); run without --cuda-graph"
            ) from exc
        self._graph, self._outputs = graph, outputs


def cuda_graph(potential: Potential, capture: bool = True) -> StepModel:
    """``potential`` (an eager :class:`~mlip.models.model.EquivariantModel` through its
    :class:`~mlip.compile.step.ForceStep`, or a :class:`~mlip.compile.CompiledModel` through its
    single-threaded runner) as a :class:`~mlip.compile.model.StepModel` whose step is a
    :class:`StaticStep` (``capture=False``: its CPU reference, no graph). The eager model is used as it
    is (dtype, device, backend, mode: call ``eval()`` first). Give it a padded edge set
    (:class:`~mlip.md.ForceField` and :class:`~mlip.calculator.MLIPCalculator` do) so that it is captured
    once per edge capacity, not once per call.

    Raises :class:`~mlip.errors.UserInputError` when ``capture`` and the model is not on a CUDA device,
    and for other potentials (a committee)."""
    if isinstance(potential, CompiledModel):
        device = potential.device
        step: Step = CompiledModel(potential.path, device, single_threaded=True).step
    elif isinstance(potential, EquivariantModel):
        device = next(potential.parameters()).device
        step = ForceStep(potential)
    else:
        raise UserInputError(
            f"a CUDA graph takes an mlip model or a .pt2 package, not a {type(potential).__name__}"
        )
    if capture and device.type != "cuda":
        raise UserInputError(f"a CUDA graph needs a CUDA device; the model is on {device.type}")
    static = StaticStep(step, capture=capture)
    return StepModel(
        static, potential.species, potential.cutoff, potential.dtype, device, potential.name, True
    )
