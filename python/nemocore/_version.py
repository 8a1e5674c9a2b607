from importlib import metadata

try:
    __version__: str = metadata.version("nemocore")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
