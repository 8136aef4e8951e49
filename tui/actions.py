"""The app's actions, in one registry: it feeds the key bindings, the footer, the help
screen and the command palette, so they can never disagree. No textual here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    key: str  # Textual key name(s), comma-separated
    action: str  # app action name (without 'action_')
    title: str  # short, for the footer and palette
    help: str  # one line, for the help screen and palette
    show: bool = True  # shown in the footer


ACTIONS: tuple[Action, ...] = (
    Action("f1,question_mark", "help", "Help", "Show this help screen"),
    Action("slash", "focus_filters", "Filters", "Move to the filter panel (Esc leaves it)"),
    Action("ctrl+f", "focus_search", "Search", "Type search words: the list is ranked by what they say",
           show=False),
    Action("t", "toggle_filters", "Hide filters", "Show or hide the filter panel (more room for the list)",
           show=False),
    Action("escape", "focus_results", "Results", "Move to the results list", show=False),
    Action("p", "play", "Play", "Play the selected track with the external player"),
    Action("x", "stop", "Stop", "Stop playback", show=False),
    Action("a", "mark_seed", "Seed", "Mark the selected track as a seed (again: unmark it)"),
    Action("z", "mark_avoid", "Avoid", "Mark the selected track as one to avoid (again: unmark it)",
           show=False),
    Action("u", "clear_marks", "Clear marks", "Take every seed and avoid mark off", show=False),
    Action("m", "more_like_this", "More like",
           "Replace the list by the tracks most like the seeds (else the selection), unlike the avoided"),
    Action("g", "song_path", "Path",
           "A song path from the first seed, through the other seeds, to the selected track", show=False),
    Action("o", "radio", "Radio", "A radio list that continues from the seeds (else the selection)",
           show=False),
    Action("l", "learn_tag", "Learn tag",
           "Learn a tag from the seeds (positive) and avoided tracks (negative); list the collection by its score",
           show=False),
    Action("b", "back_to_filter", "Back", "Back from a list made by example to the filter results",
           show=False),
    Action("n", "show_similar", "Similar", "Show the 10 nearest tracks in effnet and musicnn"),
    Action("c", "show_explain", "Explain", "Show the concepts that push the selected track's top class",
           show=False),
    Action("d", "show_detail", "Detail", "Show every descriptor of the selected track", show=False),
    Action("v", "toggle_restrict", "Restrict",
           "Similar tracks and lists by example: toggle restricting them to the filter",
           show=False),
    Action("s", "sort_next", "Sort", "Sort by the next column (or click a column header)"),
    Action("r", "sort_reverse", "Reverse", "Reverse the sort order", show=False),
    Action("e", "export", "Export", "Export the current list to an M3U8 playlist"),
    Action("y", "copy_path", "Copy path", "Copy the selected track's path to the clipboard",
           show=False),
    Action("ctrl+l", "clear_filters", "Clear", "Clear every filter", show=False),
    Action("f5,ctrl+r", "refresh", "Refresh", "Query again: shows what a running build has added "
           "(done by itself every few seconds while the store changes)", show=False),
    Action("ctrl+q", "quit", "Quit", "Quit", show=False),
)
