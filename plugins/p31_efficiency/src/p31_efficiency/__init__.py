"""P3.1 governor downsize hint, a ``quantum_governor`` plugin (SPEC 3.3)."""

__version__ = "0.1.0"
