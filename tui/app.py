# One file (≈620 lines) on purpose: the App class alone (its bindings, thread workers and message handlers); each widget is in tui/components/, the data in tui.data.
"""`engine tui`: filter, browse, compare and play the collection from the keyboard.

Every store call runs in a thread worker that only posts messages (ResultsReady,
DetailReady, SimilarReady, ExplainReady, ...); the ``on_`` handlers own the state. Stale
workers of a group are cancelled (``exclusive=True``) and their messages dropped by
generation (or, for an explanation, by its request).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Iterable

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane
from textual.worker import get_current_worker

from tui.actions import ACTIONS
from tui.components.detail_pane import DetailPane
from tui.components.explain_pane import ExplainPane
from tui.components.export_screen import ConfirmScreen, ExportScreen
from tui.components.filter_panel import FilterPanel
from tui.components.help_screen import HelpScreen
from tui.components.results_table import ResultsTable
from tui.components.similarity_pane import SimilarityPane
from tui.data import (
    PAGE_SIZE, SORTABLE, PANE_SPACES, BadSQLError, Catalog, Explained, Filters, Page, ResultRow,
    Similar, TrackDetail, TuiError,
)
from tui.marks import MarkRole, Marks
from tui.player import Player

# Changes closer together than this are coalesced into one query (leading + trailing edge).
DEBOUNCE_S = 0.1
# How often the app looks whether the store has changed (a build committing new tracks):
# a stat() of the file; when it has, the list is queried again (the cursor stays put).
STORE_POLL_S = 2.0
NEIGHBOURS = 10


class EngineApp(App):
    """The TUI over one store (``store_dir``; None: the default store)."""

    CSS_PATH = "app.tcss"
    TITLE = "engine"
    BINDINGS = [Binding(a.key, a.action, a.title, show=a.show) for a in ACTIONS]

    # -- messages from workers -----------------------------------------------------------
    class ResultsReady(Message):
        def __init__(self, page: Page, generation: int, append: bool, seeded_from: str | None,
                     why: dict[int, str] | None = None) -> None:
            self.page, self.generation, self.append, self.seeded_from = page, generation, append, seeded_from
            self.why = why or {}  # track id -> why it is in a list made by example
            super().__init__()

    class QueryFailed(Message):
        def __init__(self, error: str, generation: int, sql: bool) -> None:
            self.error, self.generation, self.sql = error, generation, sql
            super().__init__()

    class DetailReady(Message):
        def __init__(self, detail: TrackDetail | None, error: str = "") -> None:
            self.detail, self.error = detail, error
            super().__init__()

    class SimilarReady(Message):
        def __init__(self, result: Similar, restricted: bool) -> None:
            self.result, self.restricted = result, restricted
            super().__init__()

    class ExplainReady(Message):
        def __init__(self, result: Explained, request: tuple[int, str | None], track: str) -> None:
            self.result, self.request, self.track = result, request, track
            super().__init__()

    class StylesReady(Message):
        def __init__(self, names: list[str]) -> None:
            self.names = names
            super().__init__()

    class ExportExists(Message):
        """The export's target is an existing playlist: ask before overwriting it."""

        def __init__(self, target: str, rows: list[ResultRow]) -> None:
            self.target, self.rows = target, rows
            super().__init__()

    class Notice(Message):
        def __init__(self, text: str, error: bool = False) -> None:
            self.text, self.error = text, error
            super().__init__()

    def __init__(self, store_dir: Path | str | None = None, *, debounce: float = DEBOUNCE_S,
                 catalog: Catalog | None = None, player: Player | None = None) -> None:
        super().__init__()
        self.catalog = catalog or Catalog(store_dir)
        self.player = player or Player()
        self.debounce = debounce
        self.filters = Filters()
        self.sort, self.descending = "artist", False
        self.generation = 0
        self.seeded_from: str | None = None  # title of a list made by example
        self.marks = Marks()  # seeds and tracks to avoid (tui.marks), shown in the list
        self.why: dict[int, str] = {}  # why each track of a list made by example is there
        self.restrict_similar = False
        self.explain_head: str | None = None  # None: index.tcav.default_head
        self._explain_request: tuple[int, str | None] | None = None  # (track, head) asked last
        self.shown_generation = 0
        self.results_shown = asyncio.Event()  # set each time the list is redrawn (bench, tests)
        self._last_fire = 0.0
        self._shown_track: int | None = None
        self._timer = None
        self._panes_timer = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield FilterPanel(id="filters")
            with Vertical(id="right"):
                yield ResultsTable(id="results")
                with TabbedContent(id="bottom", initial="tab-detail"):
                    with TabPane("Detail", id="tab-detail"):
                        yield DetailPane(id="detail")
                    with TabPane("Similar", id="tab-similar"):
                        yield SimilarityPane(id="similar")
                    with TabPane("Explain", id="tab-explain"):
                        yield ExplainPane(id="explain")
        yield Footer()

    def on_mount(self) -> None:
        # Kept, not queried: App.query_one searches the active screen, a modal may be on top.
        self.panel = self.query_one(FilterPanel)
        self.table = self.query_one(ResultsTable)
        self.table.marks = self.marks
        self.detail_pane = self.query_one(DetailPane)
        self.similar_pane = self.query_one(SimilarityPane)
        self.explain_pane = self.query_one(ExplainPane)
        self.tabs = self.query_one(TabbedContent)
        self.sub_title = str(self.catalog.directory)
        self.detail_pane.show(None)
        self.table.focus()
        self.load_styles()
        self.run_query()
        self._store_version = self.catalog.version()
        self.set_interval(STORE_POLL_S, self._check_store)

    def _check_store(self) -> None:
        version = self.catalog.version()
        if version != self._store_version:
            self._store_version = version
            if not self.seeded_from:
                self.action_refresh()

    def action_refresh(self) -> None:
        """Query again (a build may have committed tracks since): list, styles, panes."""
        self.run_query()
        self.load_styles()
        if self.table.selected is not None:
            self._load_selection_panes()

    def on_unmount(self) -> None:
        self.player.stop()

    # -- workers (thread; they only post messages) ------------------------------------
    def run_query(self, offset: int = 0) -> None:
        """Fetch the first page for the current filters and sort (or, with ``offset``, the next)."""
        if offset:
            self._page_worker(self.generation, self.filters, self.sort, self.descending, offset,
                              self.table.total)
        else:
            self.generation += 1
            self._query_worker(self.generation, self.filters, self.sort, self.descending)

    @work(thread=True, exclusive=True, group="results")
    def _query_worker(self, generation: int, filters: Filters, sort: str, descending: bool) -> None:
        self._fetch(generation, filters, sort, descending, 0)

    @work(thread=True, exclusive=True, group="page")
    def _page_worker(self, generation: int, filters: Filters, sort: str, descending: bool,
                     offset: int, total: int) -> None:
        self._fetch(generation, filters, sort, descending, offset, total)

    def _fetch(self, generation: int, filters: Filters, sort: str, descending: bool, offset: int,
               total: int | None = None) -> None:
        worker = get_current_worker()
        try:
            page = self.catalog.page(filters, sort, descending, offset, PAGE_SIZE, total=total)
        except (BadSQLError, TuiError) as exc:
            if not worker.is_cancelled:
                self.post_message(self.QueryFailed(str(exc), generation, isinstance(exc, BadSQLError)))
            return
        if not worker.is_cancelled:
            self.post_message(self.ResultsReady(page, generation, offset > 0, None))

    def run_list(self, kind: str, cursor: ResultRow | None) -> None:
        """Replace the list by one made from the marks (else the cursor's track): ``more``
        like the seeds, a ``path`` to the cursor's track, a ``radio``."""
        from tui.data import combined_where
        from tui.lists import ListRequest

        seeds = tuple(self.marks.of(MarkRole.SEED))
        if not seeds and cursor is not None and kind != "path":
            seeds = (cursor.track_id,)
        where = combined_where(self.filters) if self.restrict_similar else None
        request = ListRequest(kind, seeds, tuple(self.marks.of(MarkRole.AVOID)),
                              cursor.track_id if cursor is not None else None, where)
        self.generation += 1
        self._list_worker(self.generation, request)

    @work(thread=True, exclusive=True, group="results")
    def _list_worker(self, generation: int, request) -> None:
        from engine.errors import EngineError

        worker = get_current_worker()
        try:
            made, rows = self.catalog.make_list(request)
        except EngineError as exc:
            self.post_message(self.Notice(str(exc).split("\n")[0], error=True))
            return
        if not worker.is_cancelled:
            self.post_message(self.ResultsReady(Page(rows, len(rows)), generation, False, made.title, made.why))

    @work(thread=True, exclusive=True, group="detail")
    def load_detail(self, track_id: int) -> None:
        try:
            detail = self.catalog.detail(track_id)
        except Exception as exc:  # noqa: BLE001 - shown in the pane, never a crash
            self.post_message(self.DetailReady(None, str(exc)))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(self.DetailReady(detail))

    @work(thread=True, exclusive=True, group="similar")
    def load_similar(self, track_id: int, restricted: bool) -> None:
        worker = get_current_worker()
        for space in PANE_SPACES:
            if worker.is_cancelled:
                return
            result = self.catalog.similar(track_id, space, NEIGHBOURS,
                                          self.filters if restricted else None)
            if not worker.is_cancelled:
                self.post_message(self.SimilarReady(result, restricted))

    @work(thread=True, exclusive=True, group="explain")
    def load_explanation(self, track_id: int, head: str | None, track: str) -> None:
        """Seconds of work (the concepts' directions are learned per call): a newer request
        cancels this one; a cancelled one still waiting for the previous one skips it, and
        a result that arrives late is dropped (on_engine_app_explain_ready)."""
        worker = get_current_worker()
        try:
            result = self.catalog.explain(track_id, head, lambda: worker.is_cancelled)
        except Exception as exc:  # noqa: BLE001 - shown in the pane, never a crash
            result = Explained(track_id, head, error=f"cannot explain: {exc}".split("\n")[0])
        if result is not None and not worker.is_cancelled:
            self.post_message(self.ExplainReady(result, (track_id, head), track))

    @work(thread=True, group="styles")
    def load_styles(self) -> None:
        try:
            self.post_message(self.StylesReady(self.catalog.styles()))
        except Exception:  # noqa: BLE001 - completion is a nicety
            pass

    @work(thread=True, exclusive=True, group="player")
    def play(self, path: str) -> None:
        outcome = self.player.play(path)
        self.post_message(self.Notice(outcome.message, error=not outcome.ok))

    @work(thread=True, group="export")
    def export(self, target: str, rows: list[ResultRow] | None, force: bool = False) -> None:
        from index.playlist import PlaylistExistsError, write_m3u8
        from engine.errors import EngineError

        try:
            if rows is None:
                rows = self.catalog.playlist(self.filters, self.sort, self.descending)
            tracks = [r.summary() for r in rows]
            written = write_m3u8(tracks, target, force=force, store_dir=self.catalog.directory)
        except PlaylistExistsError:
            self.post_message(self.ExportExists(target, rows))
            return
        except EngineError as exc:
            self.post_message(self.Notice(str(exc), error=True))
            return
        for line in written.skipped:
            self.post_message(self.Notice(line, error=True))
        self.post_message(self.Notice(f"wrote {written.count} tracks to {written.path}"))

    async def settle(self) -> None:
        """Wait until no worker runs and their messages are handled (tests, bench)."""
        for _ in range(20):
            workers = [w for w in self.workers if not w.is_finished]
            if not workers:
                break
            await asyncio.gather(*(w.wait() for w in workers), return_exceptions=True)
            await asyncio.sleep(0)
        await asyncio.sleep(0)

    # -- handlers: they own the state -------------------------------------------------
    @on(FilterPanel.Changed)
    def _filters_changed(self, event: FilterPanel.Changed) -> None:
        self.filters = event.filters
        self.seeded_from = None
        self._schedule_query()

    def _schedule_query(self) -> None:
        """Query now if the last one started long enough ago, else once the pause ends."""
        if self.debounce <= 0:
            self.run_query()
            return
        if self._timer is not None:
            return  # a trailing query is pending; it will read the latest filters
        wait = self._last_fire + self.debounce - time.monotonic()
        if wait <= 0:
            self._fire()
        else:
            self._timer = self.set_timer(wait, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._last_fire = time.monotonic()
        self.run_query()

    def on_engine_app_results_ready(self, event: ResultsReady) -> None:
        if event.generation != self.generation:
            return  # a newer query is on its way
        self.panel.sql_error = None
        table = self.table
        self.seeded_from = event.seeded_from
        if not event.append:
            self.why = event.why
        if event.append:
            table.put_rows(event.page.offset, event.page.rows)
        else:
            ranked = event.seeded_from or event.page.sort == "relevance"
            table.show_rows(event.page.rows, event.page.total,
                            sort=None if ranked else self.sort, descending=self.descending)
        self._update_title()
        self.shown_generation = event.generation
        self.results_shown.set()

    def on_engine_app_query_failed(self, event: QueryFailed) -> None:
        if event.generation != self.generation:
            return
        self.table.page_failed()
        if event.sql:
            self.panel.sql_error = event.error
        else:
            self.notify(event.error, severity="error")
        self.shown_generation = event.generation
        self.results_shown.set()

    def _update_title(self) -> None:
        table = self.table
        marked = self.marks.summary()
        table.border_subtitle = f"marked: {marked} · m: more like · g: path · o: radio" if marked else ""
        if self.seeded_from:
            table.border_title = f"{self.seeded_from} · b: back"
        elif self.filters.text:
            table.border_title = f"{table.total:,} best matches for {self.filters.text!r}"
        else:
            arrow = "▼" if self.descending else "▲"
            table.border_title = f"{table.total:,} tracks · by {self.sort} {arrow}"

    @on(ResultsTable.Highlighted)
    def _highlighted(self, event: ResultsTable.Highlighted) -> None:
        if event.row is None:
            self._shown_track = None
            self.detail_pane.show(None)
            self.similar_pane.clear()
            self.explain_pane.clear()
            self._explain_request = None
            return
        if event.row.track_id == self._shown_track:
            # Same track after a re-query: only neighbours restricted to the filter change.
            if self.restrict_similar and self.tabs.active == "tab-similar":
                self._refresh_similar()
            return
        self._shown_track = event.row.track_id
        self._schedule_selection_panes()

    def _schedule_selection_panes(self) -> None:
        """Load the detail (and similar) panes once the cursor has rested for the debounce
        time, not on every step of a held arrow key: that cut the event loop's CPU per
        step from ≈31 to ≈19 ms (bench/tui_speed.py), so scrolling keeps up with key repeat."""
        if self.debounce <= 0:
            self._load_selection_panes()
            return
        if self._panes_timer is not None:
            self._panes_timer.stop()
        self._panes_timer = self.set_timer(self.debounce, self._load_selection_panes)

    def _load_selection_panes(self) -> None:
        self._panes_timer = None
        row = self.table.selected
        if row is None:
            return
        self.load_detail(row.track_id)
        if self.tabs.active == "tab-similar":
            self._refresh_similar()
        elif self.tabs.active == "tab-explain":
            self._refresh_explain()

    @on(ResultsTable.SortRequested)
    def _sort_requested(self, event: ResultsTable.SortRequested) -> None:
        if self.seeded_from:
            return
        if event.column == self.sort:
            self.descending = not self.descending
        else:
            self.sort, self.descending = event.column, False
        self.run_query()

    @on(ResultsTable.NeedMore)
    def _need_more(self, event: ResultsTable.NeedMore) -> None:
        if not self.seeded_from:
            self.run_query(event.offset)

    @on(TabbedContent.TabActivated)
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-similar":
            self._refresh_similar()
        elif event.pane.id == "tab-explain":
            self._refresh_explain()

    def on_engine_app_detail_ready(self, event: DetailReady) -> None:
        why = self.why.get(event.detail.track_id) if event.detail is not None and self.seeded_from else None
        self.detail_pane.show(event.detail, event.error, why=why)

    def on_engine_app_similar_ready(self, event: SimilarReady) -> None:
        self.similar_pane.show(event.result, event.restricted)

    def on_engine_app_explain_ready(self, event: ExplainReady) -> None:
        if event.request == self._explain_request:  # else the cursor or the head has moved on
            self.explain_pane.show(event.result, event.track)
            if event.result.error:
                self._explain_request = None  # coming back to the tab tries again

    def on_explain_pane_head_chosen(self, event: ExplainPane.HeadChosen) -> None:
        self.explain_head = event.head
        self._refresh_explain()

    def on_engine_app_styles_ready(self, event: StylesReady) -> None:
        self.panel.set_styles(event.names)

    def on_engine_app_export_exists(self, event: ExportExists) -> None:
        def done(overwrite: bool | None) -> None:
            if overwrite:
                self.export(event.target, event.rows, force=True)

        self.push_screen(ConfirmScreen(f"{Path(event.target).expanduser()} exists. Overwrite it?"), done)

    def on_engine_app_notice(self, event: Notice) -> None:
        self.notify(event.text, severity="error" if event.error else "information",
                    timeout=8 if event.error else 4)

    def _refresh_similar(self) -> None:
        row = self.table.selected
        if row is None:
            return
        self.similar_pane.loading(self.restrict_similar)
        self.load_similar(row.track_id, self.restrict_similar)

    def _refresh_explain(self) -> None:
        """Explain the selection with the chosen head, unless that is already shown or on
        its way (coming back to the tab does not start seconds of work again)."""
        row = self.table.selected
        if row is None:
            return
        request = (row.track_id, self.explain_head)
        if request == self._explain_request:
            return
        self._explain_request = request
        track = row.summary().label
        self.explain_pane.loading(track, self.explain_head)
        self.load_explanation(row.track_id, self.explain_head, track)

    # -- actions (registered in tui.actions) ---------------------------------------
    def _selected(self) -> ResultRow | None:
        row = self.table.selected
        if row is None:
            self.notify("no track selected", severity="warning")
        return row

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_focus_search(self) -> None:
        self.panel.display = True
        self.panel.query_one("#search").focus()

    def action_focus_filters(self) -> None:
        self.panel.display = True
        self.panel.query_one("#tempo").focus()

    def action_toggle_filters(self) -> None:
        self.panel.display = not self.panel.display
        if not self.panel.display:
            self.table.focus()

    def action_focus_results(self) -> None:
        self.table.focus()

    def action_play(self) -> None:
        if row := self._selected():
            self.play(row.file_path)

    def action_stop(self) -> None:
        self.notify("stopped" if self.player.stop() else "nothing is playing")

    def _mark(self, role: MarkRole) -> None:
        if row := self._selected():
            now = self.marks.toggle(row.track_id, role)
            self.table.refresh_marks()
            self._update_title()
            label = f"{row.artist or ''} – {row.title or ''}".strip(" –") or Path(row.path).name
            self.notify(f"{label}: {now.word}" if now else f"{label}: unmarked")

    def action_mark_seed(self) -> None:
        self._mark(MarkRole.SEED)

    def action_mark_avoid(self) -> None:
        self._mark(MarkRole.AVOID)

    def action_clear_marks(self) -> None:
        self.marks.clear()
        self.table.refresh_marks()
        self._update_title()

    def action_more_like_this(self) -> None:
        row = self.table.selected
        if self.marks.of(MarkRole.SEED) or self._selected():
            self.run_list("more", row)

    def action_song_path(self) -> None:
        if not self.marks.of(MarkRole.SEED):
            self.notify("mark the first track of the path as a seed (a), then select its last", severity="warning")
            return
        if row := self._selected():
            self.run_list("path", row)

    def action_radio(self) -> None:
        row = self.table.selected
        if self.marks.of(MarkRole.SEED) or self._selected():
            self.run_list("radio", row)

    def action_learn_tag(self) -> None:
        if not self.marks.of(MarkRole.SEED):
            self.notify("mark the tracks of the tag as seeds (a), and some that are not with avoid (z)",
                        severity="warning")
            return
        self.run_list("tag", self.table.selected)

    def action_back_to_filter(self) -> None:
        if self.seeded_from:
            self.seeded_from = None
            self.run_query()

    def action_show_similar(self) -> None:
        self.tabs.active = "tab-similar"

    def action_show_explain(self) -> None:
        self.tabs.active = "tab-explain"

    def action_show_detail(self) -> None:
        self.tabs.active = "tab-detail"

    def action_toggle_restrict(self) -> None:
        self.restrict_similar = not self.restrict_similar
        self._shown_track = None
        self.notify("similar tracks: " + ("within the filter" if self.restrict_similar else "whole store"))
        if self.tabs.active == "tab-similar":
            self._refresh_similar()

    def action_sort_next(self) -> None:
        i = SORTABLE.index(self.sort)
        self.post_message(ResultsTable.SortRequested(SORTABLE[(i + 1) % len(SORTABLE)]))

    def action_sort_reverse(self) -> None:
        self.post_message(ResultsTable.SortRequested(self.sort))

    def action_export(self) -> None:
        table = self.table
        rows = list(table.order) if self.seeded_from else None

        def done(path: str | None) -> None:
            if path:
                self.export(path, rows)

        self.push_screen(ExportScreen(table.total), done)

    def action_copy_path(self) -> None:
        if row := self._selected():
            self.copy_to_clipboard(row.path)
            self.notify(f"copied {row.path}")

    def action_clear_filters(self) -> None:
        self.panel.clear()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for a in ACTIONS:
            if a.action not in {"quit", "help", "focus_results"}:
                yield SystemCommand(a.title, a.help, getattr(self, f"action_{a.action}"))


def run(store_dir: Path | str | None = None) -> int:
    """Run the app; returns its exit status (non-zero after a crash).

    Textual prints a crash (e.g. a stylesheet it cannot read) and sets ``return_code``
    to 1 instead of raising, so the caller must pass it on for a crash to exit non-zero.
    """
    app = EngineApp(store_dir)
    app.run()
    return app.return_code or 0
