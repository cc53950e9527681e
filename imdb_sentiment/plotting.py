"""Figures drawn without a display and written whole: the setup shared by the ``eval`` report's
and the drift report's figures.

Matplotlib is the ``plots`` extra: it is imported only when a figure is drawn, and without it
:func:`pyplot` raises :class:`MissingExtraError`, so a report can go on without figures.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from imdb_sentiment.atomic import write_bytes
from imdb_sentiment.errors import MissingExtraError

DPI = 110


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, so figures draw on a server without a display."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError("matplotlib", "plots") from None
    matplotlib.use("Agg", force=True)
    # Matplotlib's font cache and tight_layout chatter are not the user's problem.
    warnings.filterwarnings("ignore", module="matplotlib")
    import matplotlib.pyplot as plt

    return plt


def save_png(plt: Any, fig: Any, path: Path, dpi: int = DPI) -> Path:
    """Lay out ``fig``, write it to ``path`` as a PNG in one rename (a reader, such as a report
    viewer refreshing, never sees half a file) and free it."""
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    write_bytes(path, buffer.getvalue())
    return path
