"""genzoo: the classic generative models, trained and measured as one reproducible DVC pipeline."""

__version__ = "0.1.0"
