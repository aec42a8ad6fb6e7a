"""Compiled, deployable models: the sync-free energy+forces+virial step of a model exported and compiled
ahead of time into one AOTInductor ``.pt2`` package (``mlip compile``), loaded back as a
:class:`CompiledModel` (``mlip.models.load`` accepts the ``.pt2``) or from C++ (LAMMPS).

:func:`compile_package` writes a package; :func:`export_step` is the trace alone (no compilation).
"""

from mlip.compile.model import CompiledModel
from mlip.compile.package import PackageError, compile_package, read_metadata
from mlip.compile.step import ForceStep, export_step

__all__ = ["CompiledModel", "ForceStep", "PackageError", "compile_package", "export_step", "read_metadata"]
