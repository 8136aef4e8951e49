"""The results list: a DataTable fed one page at a time (sorting happens in SQL)."""

from __future__ import annotations

from textual.message import Message
from textual.widgets import DataTable

from tui.data import RESULT_COLUMNS, ResultRow, format_value

# Rows left below the cursor when the next page is asked for.
PREFETCH_ROWS = 20
_DIGITS = {"bpm": 1, "lufs": 1}


class ResultsTable(DataTable):
    """Shows :class:`tui.data.ResultRow` s; posts Highlighted, SortRequested and NeedMore."""

    class Highlighted(Message):
        def __init__(self, row: ResultRow | None) -> None:
            self.row = row
            super().__init__()

    class SortRequested(Message):
        def __init__(self, column: str) -> None:
            self.column = column
            super().__init__()

    class NeedMore(Message):
        """The cursor is near the last loaded row and more rows match."""

        def __init__(self, offset: int) -> None:
            self.offset = offset
            super().__init__()

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_by_key: dict[str, ResultRow] = {}
        self.order: list[ResultRow] = []
        self.total = 0
        self._asked_for = -1

    def on_mount(self) -> None:
        for name, _ in RESULT_COLUMNS:
            self.add_column(name, key=name)

    def show_rows(self, rows: tuple[ResultRow, ...], total: int, *, append: bool = False,
                  sort: str | None = None, descending: bool = False) -> None:
        """Replace (or extend) the rows; keeps the cursor on the same track when it can."""
        keep = self.selected.track_id if (self.selected and not append) else None
        if not append:
            self.clear()
            self.rows_by_key.clear()
            self.order = []
            self._asked_for = -1
        self.total = total
        for r in rows:
            key = str(r.track_id)
            if key in self.rows_by_key:
                continue
            self.rows_by_key[key] = r
            self.order.append(r)
            self.add_row(*(self._cell(name, v) for (name, _), v in zip(RESULT_COLUMNS, r.values)),
                         key=key)
        for name, _ in RESULT_COLUMNS:
            arrow = (" ▼" if descending else " ▲") if name == sort else ""
            self.columns[name].label = name + arrow  # type: ignore[index]
        if not append:
            index = next((i for i, r in enumerate(self.order) if r.track_id == keep), 0)
            if self.order:
                self.move_cursor(row=index, animate=False)
            self.post_message(self.Highlighted(self.selected))
        self.refresh()

    @staticmethod
    def _cell(name: str, v) -> str:
        return format_value(v, _DIGITS.get(name, 2))

    @property
    def selected(self) -> ResultRow | None:
        if not self.order or not (0 <= self.cursor_row < len(self.order)):
            return None
        return self.order[self.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.Highlighted(self.rows_by_key.get(event.row_key.value)))
        loaded = len(self.order)
        if loaded < self.total and event.cursor_row >= loaded - PREFETCH_ROWS and self._asked_for != loaded:
            self._asked_for = loaded
            self.post_message(self.NeedMore(loaded))

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.post_message(self.SortRequested(str(event.column_key.value)))
