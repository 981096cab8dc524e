"""What every resflex plot shares: the matplotlib style (reproducible SVGs: fixed hash salt, text as text), the
image formats and the metadata that keeps saved files byte-stable (no creation dates). Used by `resflex simulate`
and `resflex report`; matplotlib is the `report` extra, imported only when plotting."""

from __future__ import annotations

IMAGE_FORMATS = ("png", "svg", "pdf")
SAVE_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {}}
_BASE_STYLE = {"axes.grid": True, "grid.alpha": 0.35, "svg.hashsalt": "resflex", "svg.fonttype": "none"}


def plot_style(font_size: float, dpi: int, **rc) -> dict:
    """matplotlib rc settings for a resflex figure: the common style, the font size and PNG resolution, and any
    other `rc` overrides (`matplotlib.rc_context(plot_style(...))`)."""
    return {"font.size": font_size, **_BASE_STYLE, "savefig.dpi": dpi, **rc}


def require_matplotlib(command: str):
    """The `matplotlib` module, or RuntimeError saying how to install it."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - only without the report extra
        raise RuntimeError(f"resflex {command} needs matplotlib for its plots; install it with: "
                           "pip install -e '.[report]'") from None
    return matplotlib
