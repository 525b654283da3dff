"""odpm: acquisition service for ODPM-96 optical channel performance monitors."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("odpm")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
