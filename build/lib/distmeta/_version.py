"""The package version, in a module of its own so that code inside the package can read it
without importing the package's top level (which reaches the API lazily)."""

__version__ = "0.1.0"
