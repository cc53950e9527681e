"""Fine-tune, evaluate and serve transformer sentiment classifiers on IMDB movie reviews."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
