"""The package version, in a module of its own: pyproject.toml reads it, and run records name it
without importing the package's public API (which would make an import cycle)."""

__version__ = "0.1.0"
