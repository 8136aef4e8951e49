"""The nearest tracks of the selection in effnet and musicnn, side by side."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, Static

from tui.data import PANE_SPACES, Similar, format_value


_COLUMNS = (("#", 2), ("sim", 6), ("artist – title", 36), ("bpm", 3), ("style", 16))  # sim: centred cosines go below 0


class SimilarityPane(Horizontal):
    """Two lists, one per embedding space; a space without embeddings explains itself."""

    def compose(self) -> ComposeResult:
        for space in PANE_SPACES:
            with Vertical(classes="space", id=f"space-{space}"):
                yield Label(space, classes="space-title", id=f"title-{space}")
                table = DataTable(cursor_type="row", zebra_stripes=True, id=f"similar-{space}")
                # Fixed widths: measured ones change from one neighbour list to the next
                # and are only known once the table has been idle.
                for label, width in _COLUMNS:
                    table.add_column(label, width=width)
                yield table
                yield Static("", classes="space-error", id=f"error-{space}")

    def loading(self, restricted: bool) -> None:
        for space in PANE_SPACES:
            self.query_one(f"#title-{space}", Label).update(
                f"{space} · …" + (" (within filter)" if restricted else ""))

    def show(self, result: Similar, restricted: bool = False) -> None:
        table = self.query_one(f"#similar-{result.space}", DataTable)
        error = self.query_one(f"#error-{result.space}", Static)
        title = self.query_one(f"#title-{result.space}", Label)
        table.clear()
        scope = " (within filter)" if restricted else ""
        if result.error:
            title.update(f"{result.space}: unavailable")
            error.update(result.error)
            error.display, table.display = True, False
            return
        error.display, table.display = False, True
        title.update(f"{result.space} · {len(result.neighbours)} nearest{scope}")
        for n in result.neighbours:
            # Text, not str: a DataTable reads str cells as markup ("[feat. x]" would vanish).
            table.add_row(str(n.rank), f"{n.similarity:.3f}", Text(format_value(n.label)),
                          format_value(n.bpm, 0), Text(format_value(n.top_style)),
                          key=str(n.track_id))

    def clear(self, message: str = "") -> None:
        for space in PANE_SPACES:
            self.query_one(f"#similar-{space}", DataTable).clear()
            self.query_one(f"#title-{space}", Label).update(space)
