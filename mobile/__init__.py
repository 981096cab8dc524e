"""resflex.mobile — resolution-switchable models, multi-resolution training and the runtime selector."""

__version__ = "0.1.0"
