"""The package version, on the bottom floor so that any room can state it without importing the
package root (which imports the API floor). pyproject.toml gives the same number to packaging."""

__version__ = "0.1.0"
