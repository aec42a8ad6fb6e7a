"""Training potentials from DFT data: typed config, losses, schedules, EMA, checkpoints, DDP, metrics.

``mlip train config.yaml`` runs :func:`mlip.train.trainer.train`; ``mlip eval`` uses
:mod:`mlip.train.metrics`.
"""
