"""Training side. Keep this package import torch-free; submodules import torch themselves."""
