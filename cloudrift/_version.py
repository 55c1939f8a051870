"""The single source of cloudrift's version (read by the build backend and at runtime)."""

__version__ = "0.1.0"
