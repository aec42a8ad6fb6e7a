"""DFT labelling: sample molecular configurations and label them with PySCF (the ``dft`` extra).

``sampling`` makes configurations (rdkit conformer, MMFF normal modes, classical thermal displacements),
``pyscf_labeler`` computes energies and forces, ``store`` reads and appends extxyz files resumably.
"""
