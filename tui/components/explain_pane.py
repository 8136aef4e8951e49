"""The concepts that push a head's top class for the selected track (index.tcav):
"Classical (0.82): strings ↑↑, slow ↑, drums ↓", then every concept in a table, and a
choice of the head to explain."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Label, Select, Static

from tui.data import Explained, format_value

_COLUMNS = (("concept", 28), ("push", 4), ("at track", 9), ("TCAV", 5), ("p", 6), ("sig", 3))


class ExplainPane(Vertical):
    """Shows an :class:`tui.data.Explained`; set it with :meth:`show`. Choosing another
    head in its select posts :class:`ExplainPane.HeadChosen` (the app explains again)."""

    class HeadChosen(Message):
        def __init__(self, head: str) -> None:
            self.head = head
            super().__init__()

    def compose(self) -> ComposeResult:
        with Horizontal(id="explain-bar"):
            yield Label("head", classes="explain-label")
            yield Select([], prompt="default", id="explain-head", compact=True)
        # Text, never markup: concept names and error messages hold brackets.
        yield Static("", id="explain-summary")
        table = DataTable(cursor_type="row", zebra_stripes=True, id="explain-table")
        for label, width in _COLUMNS:
            table.add_column(label, width=width)
        yield table
        yield Static("", id="explain-note")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._heads: tuple[str, ...] = ()  # the select's options

    def on_mount(self) -> None:
        self.clear()

    def _summary(self, text: str, error: bool = False) -> None:
        summary = self.query_one("#explain-summary", Static)
        summary.update(Text(text))
        summary.set_class(error, "-error")

    def loading(self, track: str, head: str | None) -> None:
        """The computation has started (it takes seconds): say so, empty the table."""
        self._summary(f"{track}: explaining … ({head or 'default head'}; the concepts are learned from the store)")
        self.query_one("#explain-table", DataTable).clear()
        self.query_one("#explain-note", Static).update("")

    def show(self, result: Explained, track: str = "") -> None:
        self._set_heads(result.heads, result.head)
        table = self.query_one("#explain-table", DataTable)
        note = self.query_one("#explain-note", Static)
        table.clear()
        prefix = f"{track}: " if track else ""
        if result.error or result.explanation is None:
            self._summary(prefix + (result.error or "nothing to explain"), error=True)
            table.display = False
            note.update("")
            return
        table.display = True
        e = result.explanation
        self._summary(f"{prefix}{e.text()}")
        for effect, arrow in zip(e.effects, result.arrows):
            tested = e.testable  # else no share or p-value: too few tracks of the class
            table.add_row(Text(format_value(effect.concept)), arrow, f"{effect.at_track:+.3f}",
                          f"{effect.tcav:.2f}" if tested else "–", f"{effect.p_value:.3f}" if tested else "–",
                          "*" if effect.significant else "", key=effect.concept)
        note.update(Text(f"{e.head}: class {e.label!r}; at track = derivative along the concept here; "
                         f"TCAV = share of the {e.class_tracks} tracks of the class it pushes up; "
                         "* p < 0.05 against random directions"))

    def clear(self) -> None:
        self._summary("select a track to see the concepts behind its top class")
        self.query_one("#explain-table", DataTable).clear()
        self.query_one("#explain-note", Static).update("")

    def _set_heads(self, heads: tuple[str, ...], chosen: str | None) -> None:
        """Offer ``heads`` in the select, showing ``chosen``; the app's own change is not
        a choice, so it posts nothing."""
        select = self.query_one("#explain-head", Select)
        with self.prevent(Select.Changed):
            if heads and heads != self._heads:
                self._heads = heads
                select.set_options([(h, h) for h in heads])
            if chosen in heads and select.value != chosen:
                select.value = chosen

    @on(Select.Changed, "#explain-head")
    def _chosen(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is not Select.NULL:
            self.post_message(self.HeadChosen(str(event.value)))
