"""Fine-tune, evaluate and serve transformer sentiment classifiers on IMDB movie reviews."""

from __future__ import annotations

__version__ = "0.1.0"

LABELS: tuple[str, str] = ("negative", "positive")
"""Label names by id: 0 = negative, 1 = positive, everywhere."""

__all__ = ["LABELS", "__version__"]
