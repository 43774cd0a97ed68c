"""How numbers and times are written into Redis: one definition each, for every writer.

Permits, decisions, live targets and proposals must agree on the text of an amount (a
reader compares them as strings, and a field that changed format looks like a change of
value), so every writer takes these functions from here. All return ASCII.
"""

from __future__ import annotations

from collections.abc import Sequence


def fmt_usd(value: float) -> str:
    """USD amounts: fixed point, at most 8 decimals, no trailing zeros (``"20914.75"``)."""
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def fmt_usd_column(values: Sequence[float]) -> list[str]:
    """``[fmt_usd(v) for v in values]``, without a Python call per value."""
    texts = [f"{value:.8f}".rstrip("0").rstrip(".") for value in values]
    if "-0" in texts:  # e.g. -0.0 or -1e-9; "" cannot occur ("0.0…" keeps its "0")
        texts = ["0" if text == "-0" else text for text in texts]
    return texts


def fmt_factor(value: float) -> str:
    """Factors, weights and fractions: six decimals (``"0.622500"``)."""
    return f"{value:.6f}"


def fmt_ts(value: float) -> str:
    """Timestamps: Unix seconds with millisecond precision (``"1700000000.123"``)."""
    return f"{value:.3f}"


def fmt4(value: float | None) -> str:
    """Efficiency values on permits and proposals: four decimals, empty when unknown."""
    return "" if value is None else f"{value:.4f}"
