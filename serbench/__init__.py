"""serbench: speech emotion recognition benchmarks under hyperparameter optimisation.

Importing this package is cheap (no torch): plugins import ``hookimpl`` from here.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from serbench.plugin.hookspecs import hookimpl

try:
    __version__ = _version("serbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["hookimpl", "__version__", "load_model"]


def __getattr__(name: str):
    """``serbench.load_model``: imported on first use, so ``import serbench`` stays cheap."""
    if name == "load_model":
        from serbench.deploy import load_model

        return load_model
    raise AttributeError(f"module 'serbench' has no attribute {name!r}")
