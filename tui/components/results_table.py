"""The results list: a line-API table fed one page at a time (sorting happens in SQL).

Why not Textual's DataTable: on each new page it re-measures every cell of every added row
and re-renders every cell through Rich (≈100 ms for a 200-row page on two cores), which
broke the 100 ms keystroke budget on its own. Here a row is one pre-formatted string of
columns (of one width per list), rendered as a single segment and cached, so a new page
costs a few milliseconds and only the visible lines are ever drawn. Cells are plain text:
a title such as "Song [feat. x]" is shown as written, never read as console markup, and
control characters from tags become spaces (:func:`tui.data.format_value`).

The list is virtual: it is as tall as the number of matching tracks, and holds only the
pages (:data:`tui.data.PAGE_SIZE` rows) that have been on screen. A line whose page is
not here yet shows '…' and the table asks for that page (``NeedMore``, one at a time),
so End jumps to the last of 100k tracks with one query, and the scrollbar is true.

The header stays on the first line; rows scroll under it. Keys: up/down, page up/down,
home/end; a click selects a row, a click on a heading sorts by that column.
"""

from __future__ import annotations

from typing import Iterable

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.text import shorten
from tui.data import PAGE_SIZE, RESULT_COLUMNS, ResultRow, format_value

# Rows above and below the visible ones whose page is fetched ahead of need.
PREFETCH_ROWS = 20
_DIGITS = {"bpm": 1, "lufs": 1}
# The widest each column gets (longer cells end in an ellipsis); room for the sort arrow.
COLUMN_WIDTHS = {"artist": 22, "title": 30, "album": 22, "bpm": 6, "key": 8, "lufs": 6,
                 "dance": 7, "voice": 7, "arousal": 9, "valence": 9, "top_style": 20}
# Text columns narrow to their longest cell in a list's first page, so that an 80-column
# terminal shows more than artist and title; the numbers have fixed formats.
_FITTED = ("artist", "title", "album", "top_style")
_NUMERIC = frozenset({"bpm", "lufs", "dance", "voice", "arousal", "valence"})
_PAD = 1  # blank cells either side of a column
MARK_WIDTH = 2  # the mark column (tui.marks glyph and a space) before the others


def fit(text: str, width: int, right: bool = False) -> str:
    """``text`` (without control characters: see tui.data.format_value) in exactly
    ``width`` terminal cells: cut with '…' or padded."""
    text = shorten(text, width)
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


def _cell(name: str, value) -> str:
    return format_value(value, _DIGITS.get(name, 2))


def fitted_widths(rows: Iterable[ResultRow]) -> dict[str, int]:
    """Column widths for a list starting with ``rows`` (see :data:`_FITTED`)."""
    widths = dict(COLUMN_WIDTHS)
    longest = {name: len(name) + 2 for name in _FITTED}  # the heading and its sort arrow
    index = {name: i for i, (name, _) in enumerate(RESULT_COLUMNS)}
    for row in rows:
        for name in _FITTED:
            longest[name] = max(longest[name], cell_len(_cell(name, row.values[index[name]])))
    for name in _FITTED:
        widths[name] = min(COLUMN_WIDTHS[name], longest[name])
    return widths


def format_row(values: tuple, widths: dict[str, int] = COLUMN_WIDTHS) -> str:
    """One table line for a row's values (in RESULT_COLUMNS order)."""
    gap = " " * _PAD
    return "".join(gap + fit(_cell(name, v), widths[name], name in _NUMERIC) + gap
                   for (name, _), v in zip(RESULT_COLUMNS, values))


class ResultsTable(ScrollView, can_focus=True):
    """Shows :class:`tui.data.ResultRow` s; posts Highlighted, SortRequested and NeedMore."""

    COMPONENT_CLASSES = {"results--header", "results--even-row", "results--cursor"}
    # DataTable's look, from theme variables, so light and dark themes both work.
    DEFAULT_CSS = """
    ResultsTable {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .results--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        & > .results--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .results--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .results--even-row {
            background: $surface-lighten-1 50%;
        }
        &:dark > .results--even-row {
            background: $surface-darken-1 40%;
        }
        & > .results--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor_to(0)", "First", show=False),
        Binding("end", "cursor_to(-1)", "Last", show=False),
    ]

    class Highlighted(Message):
        def __init__(self, row: ResultRow | None) -> None:
            self.row = row
            super().__init__()

    class SortRequested(Message):
        def __init__(self, column: str) -> None:
            self.column = column
            super().__init__()

    class NeedMore(Message):
        """Rows ``offset`` .. ``offset + PAGE_SIZE`` are (nearly) on screen but not here."""

        def __init__(self, offset: int) -> None:
            self.offset = offset
            super().__init__()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.total = 0  # rows in the list (matching tracks); the table is this tall
        self.cursor_row = 0
        self._rows: dict[int, ResultRow] = {}  # row index → row, for the pages fetched
        self._lines: dict[int, str] = {}  # row index → the row formatted
        self._pending: int | None = None  # offset of the page asked for, not yet here
        self._header = ""
        # (row, under the cursor) → (full-width line, its style for the blank past the end)
        self._strips: dict[tuple[int, bool], tuple[Strip, Style]] = {}
        self._widths = dict(COLUMN_WIDTHS)
        self._width = MARK_WIDTH + sum(w + 2 * _PAD for w in COLUMN_WIDTHS.values())
        self.marks = None  # an object with glyph(track_id) -> one cell (tui.marks.Marks)
        self._set_header(None, False)

    # -- data -------------------------------------------------------------------------
    @property
    def order(self) -> list[ResultRow]:
        """The rows fetched so far, in list order (all of them for a short list)."""
        return [self._rows[i] for i in sorted(self._rows)]

    @property
    def row_count(self) -> int:
        """How many rows are here (fetched); ``total`` is how many the list has."""
        return len(self._rows)

    @property
    def selected(self) -> ResultRow | None:
        return self._rows.get(self.cursor_row)

    def show_rows(self, rows: tuple[ResultRow, ...], total: int, *,
                  sort: str | None = None, descending: bool = False) -> None:
        """A new list: its first rows and its length. Keeps the cursor on the same track
        when that track is among ``rows``."""
        keep = self.selected.track_id if self.selected else None
        self._rows = dict(enumerate(rows))
        self._widths = fitted_widths(rows)
        self._width = MARK_WIDTH + sum(w + 2 * _PAD for w in self._widths.values())
        self._lines = {i: format_row(r.values, self._widths) for i, r in self._rows.items()}
        self._pending = None
        self.total = max(total, len(rows))
        self._set_header(sort, descending)
        self._strips.clear()
        self.virtual_size = Size(self._width, self.total + 1)
        self.cursor_row = next((i for i, r in self._rows.items() if r.track_id == keep), 0)
        self._scroll_to_cursor()
        self.post_message(self.Highlighted(self.selected))
        self.refresh()
        self._fetch_visible()

    def put_rows(self, offset: int, rows: tuple[ResultRow, ...]) -> None:
        """Rows ``offset``.. of the current list (a page asked for with NeedMore)."""
        if self._pending == offset:
            self._pending = None
        cursor_was_missing = self.cursor_row not in self._rows
        for i, row in enumerate(rows, offset):
            if i < self.total:
                self._rows[i] = row
                self._lines[i] = format_row(row.values, self._widths)
        self._strips.clear()
        if cursor_was_missing and self.cursor_row in self._rows:
            self.post_message(self.Highlighted(self.selected))
        self.refresh()
        self._fetch_visible()

    def refresh_marks(self) -> None:
        """Redraw the mark column (a track was marked or unmarked)."""
        self._strips.clear()
        self.refresh()

    def page_failed(self) -> None:
        """The page asked for will not come (its query failed); ask again on next scroll."""
        self._pending = None

    def _set_header(self, sort: str | None, descending: bool) -> None:
        gap = " " * _PAD
        self._header = " " * MARK_WIDTH + "".join(
            gap + fit(name + ((" ▼" if descending else " ▲") if name == sort else ""),
                      self._widths[name], name in _NUMERIC) + gap
            for name, _ in RESULT_COLUMNS)

    def _fetch_visible(self) -> None:
        """Ask for the first missing page around the visible rows (one request at a time)."""
        if self._pending is not None or len(self._rows) >= self.total:
            return
        top = round(self.scroll_offset.y)
        visible = range(top, min(self.total, top + self._visible_rows))
        around = range(max(0, top - PREFETCH_ROWS),
                       min(self.total, top + self._visible_rows + PREFETCH_ROWS))
        # the cursor's row first, then what is on screen, then the margin around it
        wanted = [self.cursor_row] if self.cursor_row < self.total else []
        missing = next((i for rows in (wanted, visible, around) for i in rows
                        if i not in self._rows), None)
        if missing is not None:
            self._pending = missing // PAGE_SIZE * PAGE_SIZE
            self.post_message(self.NeedMore(self._pending))

    # -- cursor -------------------------------------------------------------------------
    def move_cursor(self, row: int) -> None:
        """Put the cursor on ``row`` (clamped) and keep it in view."""
        if not self.total:
            return
        row = max(0, min(self.total - 1, row))
        if row == self.cursor_row:
            return
        old, top = self.cursor_row, round(self.scroll_offset.y)
        self.cursor_row = row
        self._scroll_to_cursor()
        if round(self.scroll_offset.y) == top:  # no scroll: only the two lines change
            width = self.size.width
            self.refresh(*(Region(0, r - top + 1, width, 1) for r in (old, row)))
        else:
            self.refresh()
        self.post_message(self.Highlighted(self.selected))
        self._fetch_visible()

    @property
    def _visible_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)  # less the header

    def _scroll_to_cursor(self) -> None:
        top, visible = round(self.scroll_offset.y), self._visible_rows
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False, immediate=True)

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * self._visible_rows)

    def action_cursor_to(self, row: int) -> None:
        self.move_cursor(self.total - 1 if row < 0 else row)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._fetch_visible()  # wheel and scrollbar too

    def on_resize(self) -> None:
        self._fetch_visible()

    # -- mouse --------------------------------------------------------------------------
    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = self._column_at(offset.x + round(self.scroll_offset.x) - MARK_WIDTH)
            if column:
                self.post_message(self.SortRequested(column))
            return
        row = round(self.scroll_offset.y) + offset.y - 1
        if row < self.total:
            self.move_cursor(row)

    def _column_at(self, x: int) -> str | None:
        if x < 0:  # the mark column
            return None
        for name, _ in RESULT_COLUMNS:
            x -= self._widths[name] + 2 * _PAD
            if x < 0:
                return name
        return None

    # -- rendering ------------------------------------------------------------------------
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # theme or focus changed the styles

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = (round(v) for v in self.scroll_offset)
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("results--header")
            return Strip([Segment(self._header, style)]).crop_extend(scroll_x, scroll_x + width, style)
        row = scroll_y + y - 1
        if row >= self.total:
            return Strip.blank(width, base)
        cursor = row == self.cursor_row
        cached = self._strips.get((row, cursor))
        if cached is None:
            style = base
            if row % 2:
                style += self.get_component_rich_style("results--even-row")
            if cursor:
                style += self.get_component_rich_style("results--cursor")
            line = self._lines.get(row)
            if line is None:  # its page is on its way
                line = fit(" …", self._width)
            else:
                glyph = self.marks.glyph(self._rows[row].track_id) if self.marks is not None else " "
                line = glyph + " " * (MARK_WIDTH - 1) + line
            cached = self._strips[(row, cursor)] = (
                Strip([Segment(line, style)], self._width), style)
        strip, style = cached
        return strip.crop_extend(scroll_x, scroll_x + width, style)
