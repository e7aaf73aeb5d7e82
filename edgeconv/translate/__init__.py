"""Unsupervised image-to-image translation (UNIT, Liu et al., NeurIPS 2017): torch side.

``edgeconv.translate.unit``: the model (two VAE-GANs with shared latent space: encoders share
their last layers, generators their first) and its losses. The trainer, CLI, export and the
device-side ``unlock --translate`` are still to come (issue #12).
"""
