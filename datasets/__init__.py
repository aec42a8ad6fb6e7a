"""Dataset loaders (rMD17, QM9, OC20, extxyz, ASE db) and the HDF5 cache."""
