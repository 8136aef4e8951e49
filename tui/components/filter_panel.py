"""The filter panel: search words, ranges, key, voice, style and a free SQL WHERE box.

Posts :class:`FilterPanel.Changed` with a :class:`tui.data.Filters` whenever a valid
value changes; a range that cannot be read is marked and reported inline instead. The
app sets :attr:`sql_error` after checking the SQL box (attributes down, messages up).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, Select, Static

from tui.data import KEYS, PROFILES, Filters, TuiError, parse_range

# (id, label, placeholder) of the range inputs, with the Filters field each sets.
RANGES = (
    ("tempo", "BPM", "e.g. 120-130"),
    ("danceability", "Dance", "0-3, e.g. 1.5-"),
    ("arousal", "Arousal", "1-9, e.g. 5-9"),
    ("valence", "Valence", "1-9, e.g. <4"),
)


class FilterPanel(VerticalScroll):
    """Every filter; Tab moves between them."""

    class Changed(Message):
        def __init__(self, filters: Filters) -> None:
            self.filters = filters
            super().__init__()

    sql_error: reactive[str | None] = reactive(None)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._filters = Filters()
        self._range_errors: dict[str, str] = {}
        self._error_text = ""

    @property
    def filters(self) -> Filters:
        return self._filters

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label("Search", classes="label")
            yield Input(placeholder="e.g. calm piano", id="search", compact=True)
        for field, label, placeholder in RANGES:
            with Horizontal(classes="row"):
                yield Label(label, classes="label")
                yield Input(placeholder=placeholder, id=field, compact=True, classes="range")
        with Horizontal(classes="row"):
            yield Label("Key", classes="label")
            yield Select([(k, k) for k in KEYS], prompt="any", id="key", compact=True)
        with Horizontal(classes="row"):
            yield Label("Scale", classes="label")
            yield Select([("major", "major"), ("minor", "minor")], prompt="any", id="scale",
                         compact=True)
        with Horizontal(classes="row"):
            yield Label("Profile", classes="label")
            yield Select([(p, p) for p in PROFILES], value="temperley", allow_blank=False,
                         id="profile", compact=True)
        with Horizontal(classes="row"):
            yield Label("Voice", classes="label")
            yield Select([("with voice", True), ("instrumental", False)], prompt="any",
                         id="voice", compact=True)
        with Horizontal(classes="row"):
            yield Label("Style", classes="label")
            yield Input(placeholder="e.g. Techno", id="style", compact=True)
        with Horizontal(classes="row"):
            yield Label("Min act.", classes="label")
            yield Input("0.1", placeholder="0-1", id="style-min", compact=True, classes="range")
        yield Label("SQL WHERE", classes="label sql-label")
        yield Input(placeholder="e.g. year < 2000", id="sql", compact=True)
        yield Static("", id="filter-error")

    def set_styles(self, names: list[str]) -> None:
        """Style names for completion (the store's, most common first)."""
        self.query_one("#style", Input).suggester = SuggestFromList(names, case_sensitive=False)

    def clear(self) -> None:
        for inp in self.query(Input):
            inp.value = "0.1" if inp.id == "style-min" else ""
        for sel in self.query(Select):
            if sel.id == "profile":
                sel.value = "temperley"
            else:
                sel.clear()

    def watch_sql_error(self, error: str | None) -> None:
        self.query_one("#sql", Input).set_class(bool(error), "-invalid")
        self._show_errors()

    def _show_errors(self) -> None:
        lines = list(self._range_errors.values())
        if self.sql_error:
            lines.append(self.sql_error)
        text = "\n".join(lines)
        if text == self._error_text:
            return  # an update re-lays out the screen: not on every keystroke
        self._error_text = text
        box = self.query_one("#filter-error", Static)
        box.update(text)
        box.display = bool(lines)

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Input.Changed | Select.Changed) -> None:
        event.stop()
        self._read()

    def _read(self) -> None:
        values: dict = {}
        self._range_errors.clear()
        for field, label, _ in RANGES:
            inp = self.query_one(f"#{field}", Input)
            try:
                values[field] = parse_range(inp.value)
                inp.remove_class("-invalid")
            except TuiError as exc:
                self._range_errors[field] = f"{label}: {exc}"
                inp.add_class("-invalid")
        minimum = self.query_one("#style-min", Input)
        try:
            values["style_min"] = float(minimum.value or 0)
            minimum.remove_class("-invalid")
        except ValueError:
            self._range_errors["style_min"] = "Min act.: type a number 0-1, e.g. 0.2"
            minimum.add_class("-invalid")

        def sel(name: str):
            v = self.query_one(f"#{name}", Select).value
            return None if v is Select.NULL else v

        self._show_errors()
        if self._range_errors:
            return
        filters = Filters(
            key=sel("key"), scale=sel("scale"), profile=sel("profile") or "temperley",
            voice=sel("voice"), style=self.query_one("#style", Input).value.strip() or None,
            where=self.query_one("#sql", Input).value,
            text=self.query_one("#search", Input).value.strip(), **values)
        if filters != self._filters:
            self._filters = filters
            self.post_message(self.Changed(filters))
