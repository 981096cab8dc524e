"""resflex.mobile — resolution-switchable models, multi-resolution training and the runtime selector."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`resflex.mobile.switchable` without importing torch for torch-free modules (the selector, the bundle I/O)."""
    if name == "switchable":
        from .models import switchable

        return switchable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
