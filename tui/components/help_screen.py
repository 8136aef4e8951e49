"""Key help, generated from the action registry (tui.actions)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.actions import ACTIONS

_NAMES = {"question_mark": "?", "slash": "/", "escape": "Esc"}


def key_label(key: str) -> str:
    return " ".join(_NAMES.get(k, k) for k in key.split(","))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape,q,f1,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for a in ACTIONS:
            table.add_row(key_label(a.key), a.help)
        table.add_row("", "")
        table.add_row("↑ ↓ PgUp PgDn", "move in the list; Home / End: its first / last track")
        table.add_row("mouse", "click a row to select it, a header to sort; Ctrl+P: command palette")
        table.add_row("ranges", "120-130, >120, <130, 128; SQL: any WHERE over tracks, "
                      "e.g. style('Techno') > 0.3")
        with VerticalScroll(id="help-dialog"):
            yield Static("Keys", classes="help-title")
            yield Static(table)
