"""The installed version, read from the package metadata (pyproject.toml is its one source)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hamgrad")
except PackageNotFoundError:  # a source tree used without `pip install -e .`
    __version__ = "0+unknown"
