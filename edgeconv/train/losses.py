"""AM-Softmax (additive margin softmax, Wang et al. 2018): the published training loss.

``logits = s * (cos(theta_j) - m * [j == y])`` with ``cos(theta_j)`` the cosine between the
L2-normalised embedding and the L2-normalised weight of class ``j``. The paper's public scripts
use ``s = 32``, ``m = 0.35``. The class weights are the only parameters (no bias); they are
part of the training state, not of the exported model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

DEFAULT_SCALE = 32.0
DEFAULT_MARGIN = 0.35


class AMSoftmax(nn.Module):
    """Additive-margin softmax head + cross-entropy.

    ``forward(embeddings, labels)`` returns ``(loss, cosine)``; ``cosine`` (N, classes) is the
    margin-free cosine similarity, handy for training accuracy.
    """

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = DEFAULT_SCALE,
                 margin: float = DEFAULT_MARGIN):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"AM-Softmax needs at least 2 classes, got {num_classes}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.embedding_dim = int(embedding_dim)
        self.num_classes = int(num_classes)
        self.scale = float(scale)
        self.margin = float(margin)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)

    def extra_repr(self) -> str:
        return (f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, "
                f"scale={self.scale}, margin={self.margin}")

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor):
        cos = self.cosine(embeddings)
        margin = torch.zeros_like(cos).scatter_(1, labels.view(-1, 1), self.margin)
        loss = F.cross_entropy(self.scale * (cos - margin), labels)
        return loss, cos.detach()


class TrainModule(nn.Module):
    """Backbone + loss head in one module, so one DistributedDataParallel wraps both.

    Models with an autoencoder (``op="filtergen"``) add its reconstruction loss (binary cross
    entropy on [0, 1] images, as in "Learning to generate filters") times ``recon_weight``.
    """

    def __init__(self, model: nn.Module, head: AMSoftmax, recon_weight: float = 1.0):
        super().__init__()
        self.model = model
        self.head = head
        self.recon_weight = float(recon_weight)

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        loss, cos = self.head(self.model(images), labels)
        if self.recon_weight and getattr(self.model, "autoencoder", None) is not None:
            loss = loss + self.recon_weight * self.model.reconstruction_loss(images)
        return loss, cos
