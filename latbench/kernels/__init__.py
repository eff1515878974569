"""Kernel decomposition: the kernels a runtime executes after operator fusion, and per-kernel regressors."""
