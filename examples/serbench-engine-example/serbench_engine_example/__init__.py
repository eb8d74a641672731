"""An example third-party serbench engine package (see README.md)."""

__version__ = "0.1.0"
