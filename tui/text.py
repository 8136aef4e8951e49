"""Text made safe and sized for a terminal cell: shared by the TUI's tables and the CLI's
(engine/cli/output.py). Rich only, no click, so the TUI's data layer stays free of the CLI."""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size

# C0 and C1 control characters and DEL, shown as spaces: tags are untrusted text, and an
# ESC printed to a terminal could drive it (Rich and Textual drop only BEL, BS, VT, FF, CR).
_CONTROLS = {c: " " for c in [*range(0x20), *range(0x7F, 0xA0)]}


def printable(text: str) -> str:
    """``text`` safe to show in a terminal: control characters become spaces."""
    return text.translate(_CONTROLS)


def shorten(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` terminal cells, ending in '…' when cut. Counted
    in cells, so wide (CJK) characters keep columns aligned."""
    return text if cell_len(text) <= width else set_cell_size(text, width - 1) + "…"
