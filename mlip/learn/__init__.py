"""Active learning: choose the configurations a committee is least sure of and label them.

:mod:`mlip.learn.selection` picks the most uncertain, mutually distinct frames.
"""
