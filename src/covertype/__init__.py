"""covertype: an MLOps platform for the Forest Cover Type problem."""

__version__ = "0.1.0"
