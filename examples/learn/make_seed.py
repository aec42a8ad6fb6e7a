"""Seed and test sets for examples/learn: thermal water configurations (normal modes at 300 K)
labelled with PySCF at PBE/STO-3G (the level of theory of learn.yaml's `dft` section)."""

from mlip.dft import sampling
from mlip.dft.executor import LocalExecutor
from mlip.dft.labelling import label_configurations
from mlip.dft.pyscf_labeler import DFTSettings

settings = DFTSettings(xc="PBE", basis="sto-3g", grid_level=1, conv_tol=1e-8)
frames = sampling.sample_molecule(sampling.molecule_from_smiles("O"), 40, 300.0, seed=1)
label_configurations(frames[:10], "seed.extxyz", settings, LocalExecutor(1, 1), progress=False)
label_configurations(frames[10:], "test.extxyz", settings, LocalExecutor(1, 1), progress=False)
print("wrote seed.extxyz (10 frames) and test.extxyz (30 frames)")
