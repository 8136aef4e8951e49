"""Numbers as the report shows them to people: thousands spaced, true minus signs, '–' for unknown.

Shared by :mod:`index.report_figures` (labels on plots) and :mod:`index.report_html`
(the page's text and tables); the TSV tables (:mod:`index.report_tables`) write plain numbers.
"""

from __future__ import annotations


def fmt(x: float | int | None, digits: int = 1) -> str:
    """An int with its thousands spaced (17 300), a float with ``digits`` decimals."""
    if x is None:
        return "–"
    if isinstance(x, int):
        text = f"{x:,}"
    else:
        text = f"{x:,.{digits}f}"
        if float(text.replace(",", "")) == 0:
            text = text.lstrip("-")
    return text.replace(",", "\u202f").replace("-", "\u2212")


def smart(x: float | None) -> str:
    """A measured value with as many digits as its size deserves: 17 300, 49.1, 4.81, 0.0013."""
    if x is None:
        return "–"
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 1:
        return fmt(x, 0 if a >= 1000 else 1 if a >= 10 else 2)
    return f"{x:.2g}".replace("-", "\u2212")


def count(n: int, word: str, plural: str | None = None) -> str:
    """'1 track', '2 tracks', '1 000 tracks'."""
    return f"{fmt(n)} {word if n == 1 else plural or word + 's'}"


def pct(k: int, n: int, digits: int = 1) -> str:
    """``k`` of ``n`` as a percentage ('12.5 %'); '–' when ``n`` is 0."""
    return "–" if not n else f"{100.0 * k / n:.{digits}f}\u00a0%"


def num(x: float | None, digits: int) -> str:
    """A float with ``digits`` decimals and no thousands separator (plot titles)."""
    return "–" if x is None else f"{x:.{digits}f}".replace("-", "\u2212")
