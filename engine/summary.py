"""What ``engine build`` reports: the counts of one run and the words of its summary line.

Kept apart from engine.build (which imports numpy, PyAV, DuckDB) so that
``engine build --help`` can define the words without loading any of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The summary line's words, in its order, and what each counts (shown by `engine build --help`).
SUMMARY_WORDS: tuple[tuple[str, str], ...] = (
    ("analysed", "files new to the store, analysed in full"),
    ("updated", "tracks analysed again: their file changed, or models or measures added "
                "since then fill in what they lacked"),
    ("unchanged", "tracks already complete, nothing to do (also files touched without a "
                  "content change, and tracks a model cannot take, e.g. too short)"),
    ("moved", "the same content found at a new path: the analysis is kept"),
    ("deleted", "tracks whose file is gone, removed from the store"),
    ("failed", "files that could not be analysed, recorded with the reason (table `failures`; "
               "not retried until the file changes or --retry-failed)"),
    ("skipped", "found by the scan but not audio or not a readable file, recorded with the "
                "reason (table `failures`); shown only when there are some"),
)

# Words left out of the line while their count is 0 (rare cases that would only add noise).
OPTIONAL_WORDS = frozenset({"skipped"})


@dataclass
class BuildSummary:
    """Counts of one build; attribute names are the words of :data:`SUMMARY_WORDS`."""

    found: int = 0
    analysed: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    skipped_failures: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """``analysed 3, updated 0, unchanged 40, moved 0, deleted 0, failed 1 in 12.0 s``."""
        out = [
            ", ".join(f"{word} {getattr(self, word)}" for word, _ in SUMMARY_WORDS
                      if getattr(self, word) or word not in OPTIONAL_WORDS)
            + (f" (+{self.skipped_failures} earlier failures skipped; --retry-failed retries them)"
               if self.skipped_failures else "")
            + f" in {self.seconds:.1f} s"
        ]
        if self.interrupted:
            out.append("interrupted: run the same command again to resume")
        return out


def summary_help(width: int = 78) -> str:
    """The words as a help paragraph (click keeps the lines after a \\b line as they are)."""
    import textwrap

    pad = max(len(w) for w, _ in SUMMARY_WORDS) + 4
    lines = ["\b", "The summary line counts:"]
    for word, meaning in SUMMARY_WORDS:
        lines += textwrap.wrap(meaning, width, initial_indent=f"  {word:<{pad - 2}}",
                               subsequent_indent=" " * pad)
    return "\n".join(lines)
