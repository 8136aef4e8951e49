"""Every descriptor of one track, its top styles and tags, quality columns and the
predicted quality for each listener profile."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widget import Widget

from tui.data import QUALITY_COLUMNS, TrackDetail, format_value

_HIDDEN = {"track_id", "path", "file_size", "mtime_ns", "content_hash", "has_musicnn", "has_effnet",
           "band_levels"}
_HIDDEN_WHEN_EMPTY = {"no_output_reason"}  # shown only for the few tracks a model cannot take


def _grid(title: str) -> Table:
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.title = title
    t.title_justify = "left"
    t.title_style = "bold"
    return t


# Below this width the sections are stacked instead of side by side.
WIDE = 110


class DetailPane(Widget):
    """Shows a :class:`tui.data.TrackDetail`; set it with :meth:`show`. Lays itself out
    for its width (sections side by side when wide, stacked when narrow)."""

    DEFAULT_CSS = "DetailPane { height: auto; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._detail: TrackDetail | None = None
        self._message = ""
        self._why: str | None = None

    def show(self, detail: TrackDetail | None, message: str = "", *, why: str | None = None) -> None:
        """Show ``detail``; ``why`` says why the track is in a list made by example."""
        self._detail, self._message, self._why = detail, message, why
        self.refresh(layout=True)

    def render(self):
        detail = self._detail
        if detail is None:
            return Text(self._message or "No track selected.", style="dim")
        fields = dict(detail.fields)
        descriptors, quality = _grid("Descriptors"), _grid("Quality")
        for name, value in detail.fields:
            if name in _HIDDEN or (name in _HIDDEN_WHEN_EMPTY and value is None):
                continue
            # Text, not str: Rich reads str cells as markup ("[feat. x]" would vanish).
            (quality if name in QUALITY_COLUMNS else descriptors).add_row(name, Text(format_value(value, 2)))
        styles = _grid("Top styles")
        for style, act in detail.styles:
            styles.add_row(Text(format_value(style)), f"{act:.3f}")
        tags = _grid("Tags")
        for source, tag, act in detail.tags:
            tags.add_row(Text(format_value(tag)), f"{act:.2f} {source}")
        # Predicted HAAQI per listener profile (engine listener add), 0-1.
        for name, haaqi in detail.listeners:
            quality.add_row(Text(f"haaqi {name}"), Text(format_value(haaqi, 3)))
        parts = [descriptors, styles]
        if detail.tags:
            parts.append(tags)
        if quality.row_count:
            parts.append(quality)
        out = Table.grid()
        out.add_row(Text(format_value(fields.get("path", detail.path)), style="bold"))
        if self._why:
            out.add_row(Text("Why here: " + format_value(self._why)))
        if self.size.width >= WIDE:
            layout = Table.grid(padding=(0, 3))
            for _ in parts:
                layout.add_column(vertical="top")
            layout.add_row(*parts)
            out.add_row(layout)
        else:
            for part in parts:
                out.add_row(part)
        return out
