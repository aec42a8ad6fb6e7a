"""Units of the MD driver: eV, Å, fs, amu, K; velocities in Å/fs.

With masses in amu and velocities in Å/fs, ``m v^2`` is in amu Å^2 / fs^2, and
``1 amu Å^2/fs^2 = 1 / ase.units.fs^2 eV ≈ 103.6427 eV`` (ASE's time unit is ``Å sqrt(amu/eV)``, and
``1 fs = ase.units.fs`` of it). So kinetic energy is ``0.5 * m * v^2 * AMU_A2_FS2_TO_EV`` eV and the
acceleration of a force ``F`` (eV/Å) is ``F / (m * AMU_A2_FS2_TO_EV)`` Å/fs^2.
ASE momenta (``amu Å / ASE-time``) are ``m v / ase.units.fs`` with ``v`` in Å/fs.
"""

from ase import units as _ase_units

FS = float(_ase_units.fs)  # one femtosecond in ASE time units
AMU_A2_FS2_TO_EV = 1.0 / FS**2  # eV per amu Å^2 fs^-2 (≈ 103.6427)
KB = float(_ase_units.kB)  # Boltzmann constant, eV/K
EV_A3_TO_GPA = float(1.0 / _ase_units.GPa)  # eV/Å^3 in GPa (≈ 160.2177)
EV_TO_KJ_PER_MOL = float(_ase_units.mol / _ase_units.kJ)  # kJ/mol per eV (≈ 96.4853), for H5MD forces
