"""Face-verification models. ``create_model(name, op=..., input_size=..., embedding_dim=512)``."""

from edgeconv.models.registry import create_model, is_model, list_models, register_model

__all__ = ["create_model", "is_model", "list_models", "register_model"]
