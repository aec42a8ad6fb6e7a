"""Tuning policy of the generated kernels: how paths split into sections, and block-size candidates.

The figures behind these choices (registers and spills per candidate on sm_90) come from
``benchmarks/kernel_resources.py``; its record is in ``benchmarks/notes/``.
"""

from __future__ import annotations

import os

from mlip.kernels.tensor_product.descriptor import TPDescriptor
from mlip.kernels.tensor_product.triton._layout import Component, live, next_pow2, umax

MAX_LIVE = 8  # accumulated [BE, BU] tiles per section (16 spilled registers on mace-large)
FUSED_BU = 32  # channel tile of the fused gradient kernel
FUSED_PATHS = 4  # paths per section of the fused gradient kernels (8: mace-large fp64 spilled)


def autotuning() -> bool:
    """Autotune block sizes: compiled Triton only, unless ``MLIP_TP_AUTOTUNE=0``."""
    return os.environ.get("TRITON_INTERPRET") != "1" and os.environ.get("MLIP_TP_AUTOTUNE", "1") != "0"


def path_chunks(desc: TPDescriptor, role: str) -> list[tuple[int, ...]]:
    """Path groups with at most ``MAX_LIVE`` accumulated components each (or one block, if larger), taking
    the paths in order of the block they accumulate into: the paths of a block share one group, so no
    accumulated component spans two sections (and there are fewer sections)."""
    chunks: list[list[int]] = []
    accumulated: set[Component] = set()
    for p in sorted(range(len(desc.instructions)), key=lambda p: min(live(desc, role, p))[:2]):
        comps = live(desc, role, p)
        if chunks and (comps <= accumulated or len(accumulated | comps) <= MAX_LIVE):
            chunks[-1].append(p)
            accumulated |= comps
        else:
            chunks.append([p])
            accumulated = set(comps)
    return [tuple(c) for c in chunks]


def block_configs(desc: TPDescriptor, tune: bool) -> list[tuple[int, int, int]]:
    """Block-size candidates ``(BE, BU, num_warps)`` for the autotuner, ``BU`` clipped to the channel
    count; the first one only when not tuning (interpreter, or ``MLIP_TP_AUTOTUNE=0``). Chosen so that the
    mace-large kernels do not spill registers in fp32 or fp64 on sm_90 (larger tiles such as
    ``(16, 64, 4)`` spilled)."""
    channels = next_pow2(umax(desc))
    configs = []
    for be, bu, warps in ((8, 32, 4), (8, 32, 8), (16, 32, 8)):
        candidate = (be, min(bu, channels), warps)
        if candidate not in configs:
            configs.append(candidate)
    return configs if tune else configs[:1]


def fused_tile(desc: TPDescriptor) -> int:
    """Channel tile ``BU`` of the fused gradient kernels: :data:`FUSED_BU`, clipped to the channels."""
    return min(FUSED_BU, next_pow2(umax(desc)))


def fused_chunks(desc: TPDescriptor) -> tuple[tuple[int, ...], ...]:
    """Sections of the fused gradient kernels: ``FUSED_PATHS`` paths each, in order of their ``x`` block.
    Each section holds its own accumulators and loads, so registers stay bounded (one section per ``x``
    block spilled heavily on mace-large in fp64); a block's ``x`` gradient may span sections (later ones
    add to what earlier ones stored)."""
    paths = sorted(range(len(desc.instructions)), key=lambda p: desc.instructions[p].i_in1)
    return tuple(tuple(paths[n : n + FUSED_PATHS]) for n in range(0, len(paths), FUSED_PATHS))


def fused_block_configs(tune: bool) -> list[tuple[int, int]]:
    """``(BE, num_warps)`` candidates of the fused gradient kernel, spill-free on mace-large like
    :func:`block_configs`. Its channel tile is fixed (:func:`fused_tile`) because the number of ``y``
    partials depends on it."""
    configs = [(8, 8), (16, 8), (8, 4)]
    return configs if tune else configs[:1]
