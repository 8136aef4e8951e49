"""Marks on tracks: one role per track id (a seed, a track to avoid, ...), shown in the list.

One general mechanism: a role is a :class:`MarkRole` with the glyph the list shows and the
word the title uses; a track holds at most one role, and marking it again with the same
role takes the mark off. More roles (e.g. examples for user-trained tags) are more enum
members. No textual here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class MarkRole(Enum):
    """What a mark means; ``glyph`` is shown before the track in the list."""

    SEED = ("seed", "+")
    AVOID = ("avoid", "−")

    def __init__(self, word: str, glyph: str) -> None:
        self.word = word
        self.glyph = glyph


@dataclass
class Marks:
    """Marked tracks by id, in the order they were marked (the order seeds are used in)."""

    roles: dict[int, MarkRole] = field(default_factory=dict)

    def toggle(self, track_id: int, role: MarkRole) -> MarkRole | None:
        """Mark ``track_id`` with ``role``, or unmark it if it has that role; its new role."""
        tid = int(track_id)
        if self.roles.get(tid) is role:
            del self.roles[tid]
            return None
        self.roles.pop(tid, None)  # a new role goes to the end of the order
        self.roles[tid] = role
        return role

    def of(self, role: MarkRole) -> list[int]:
        """Track ids marked ``role``, in marking order."""
        return [t for t, r in self.roles.items() if r is role]

    def glyph(self, track_id: int) -> str:
        role = self.roles.get(int(track_id))
        return role.glyph if role else " "

    def clear(self) -> None:
        self.roles.clear()

    def summary(self) -> str:
        """'2 seeds · 1 avoid', or '' when nothing is marked."""
        parts = []
        for role in MarkRole:
            n = len(self.of(role))
            if n:
                parts.append(f"{n} {role.word}{'s' if n != 1 and role is MarkRole.SEED else ''}")
        return " · ".join(parts)
