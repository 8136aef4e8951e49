"""The errors of queries over the store: track resolution (index.tracks), user SQL
(index.usersql) and k-NN search (index.query) share this root, so a caller catches
:class:`QueryError` once for all three."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from models.errors import EngineError

if TYPE_CHECKING:
    from index.tracks import TrackSummary


class QueryError(EngineError):
    """A query cannot run; the message says why and what to do."""


class UnknownTrackError(QueryError):
    pass


class AmbiguousTrackError(QueryError):
    """The text matches several tracks; ``candidates`` holds (up to 10 of) them."""

    def __init__(self, text: str, candidates: Sequence["TrackSummary"], total: int):
        self.text = text
        self.candidates = tuple(candidates)
        self.total = total
        lines = [f"{text!r} matches {total} tracks; give more of the path or title, or a track id:"]
        lines += [f"  {c.track_id:>6}  {c.path}" for c in self.candidates]
        if total > len(self.candidates):
            lines.append(f"  … and {total - len(self.candidates)} more")
        super().__init__("\n".join(lines))


class UnknownSpaceError(QueryError):
    pass


class MissingEmbeddingsError(QueryError):
    pass


class BadSQLError(QueryError):
    pass
