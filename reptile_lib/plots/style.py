"""One look for every figure of the book: a seaborn theme, the column width, at most two panels a row.

Every chapter calls :func:`use_book_style` once; the plotting functions of ``reptile_lib.plots``
lay their panels out with :func:`panels` and put their legends outside the data with
:func:`legend_below`. Figures are 7 inches wide at 150 dpi (1,050 pixels), a little more than the
book's text column, so the browser shrinks rather than enlarges them and text stays sharp.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

COLUMN_WIDTH = 7.0   # inches
DPI = 150            # pixels per inch of the PNGs the notebooks embed
PANEL_HEIGHT = 3.0   # inches per row of panels


def use_book_style() -> None:
    """Set the book's seaborn theme and resolution (call once per chapter, before any figure)."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.85, palette="colorblind",
                  rc={"figure.dpi": DPI, "savefig.dpi": DPI, "figure.figsize": (COLUMN_WIDTH, 3.4),
                      "axes.titlesize": 10, "legend.fontsize": 8, "legend.frameon": False,
                      "lines.linewidth": 1.5, "grid.linewidth": 0.6})
    try:  # the notebook's inline backend embeds PNGs at the figure's dpi, cropped to the drawing
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:  # outside a notebook nothing is embedded
        pass


def panels(n: int, height: float = PANEL_HEIGHT, *, sharex: bool = False, sharey: bool = False,
           width: float = COLUMN_WIDTH) -> tuple[Any, list]:
    """A figure of ``n`` axes, at most two per row, ``width`` inches wide; unused grid cells removed."""
    import matplotlib.pyplot as plt

    if n < 1:
        raise ValueError(f"panels(n): n must be at least 1, got {n}")
    ncols = min(n, 2)
    nrows = math.ceil(n / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False,
                             sharex=sharex, sharey=sharey)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def legend_below(fig: Any, axes: Sequence[Any] | None = None, ncol: int | None = None,
                 handles: Sequence[Any] | None = None) -> Any:
    """One legend for all ``axes`` (duplicate labels once), centred under the figure, off the data.

    ``handles``: these entries, in this order (their labels), instead of those collected from ``axes``."""
    axes = list(axes) if axes is not None else list(fig.axes)
    collected, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab and not lab.startswith("_") and lab not in labels:
                collected.append(h)
                labels.append(lab)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if handles is not None:
        collected, labels = list(handles), [h.get_label() for h in handles]
    handles = collected
    fig.tight_layout()
    if not labels:
        return None
    ncol = ncol or min(3, len(labels))
    return fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol)
