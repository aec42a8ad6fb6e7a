"""Bridges to other packages: mace-torch models in (:mod:`mlip.interop.mace`), torch-sim
(:mod:`mlip.interop.torch_sim`) and torch-geometric (:mod:`mlip.interop.pyg`)."""
