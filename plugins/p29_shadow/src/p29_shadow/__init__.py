"""P3.1 allocation target shadow proposer, a ``quantum_governor`` plugin (SPEC 4.1)."""

__version__ = "0.1.0"
