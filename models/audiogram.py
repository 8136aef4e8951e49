"""Audiograms: a listener's hearing thresholds at the 8 audiometric frequencies.

One fact lives here: the frequencies (:data:`AUDIOGRAM_HZ`, the Clarity / Cadenza
challenges' 8 frequencies, which HAAQI-Net also takes), and how thresholds are written,
checked and classed. Used by the listener profiles, the HAAQI teacher
(:mod:`engine.haaqi`), the student model (:mod:`models.hearing`) and the training data
(``bench/haaqi``); here in ``models``, the lowest of them. Pure Python, no numpy at import.

Thresholds are in dB HL (hearing level: 0 = the normal-hearing reference, higher =
worse), as an audiologist writes them: ``20,20,25,30,40,50,60,65`` for 250, 500, 1k, 2k,
3k, 4k, 6k, 8k Hz.

Classes (:func:`degree`, :func:`shape`) follow the WHO's grades of the pure-tone average
PTA = mean(500, 1k, 2k, 4k Hz) (World report on hearing, 2021): normal < 20 dB, mild
20-35, moderate 35-50, moderately severe 50-65, severe 65-80, profound >= 80; "sloping"
when the mean of 4k and 6k Hz exceeds the mean of 250 and 500 Hz by 20 dB or more, else
"flat".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from models.errors import EngineError

__all__ = [
    "AUDIOGRAM_HZ",
    "MIN_DB_HL",
    "MAX_DB_HL",
    "DEGREES",
    "Audiogram",
    "AudiogramError",
    "parse_audiogram",
    "STANDARD_AUDIOGRAMS",
    "EXAMPLE_AUDIOGRAMS",
]

#: Hz, the audiometric frequencies every audiogram here has, in this order.
AUDIOGRAM_HZ: tuple[int, ...] = (250, 500, 1000, 2000, 3000, 4000, 6000, 8000)

#: dB HL, the range an audiometer measures (anything outside is a typing error).
MIN_DB_HL = -10.0
MAX_DB_HL = 120.0

#: WHO grades: (name, PTA from which it applies), mildest first.
DEGREES: tuple[tuple[str, float], ...] = (
    ("normal", -math.inf),
    ("mild", 20.0),
    ("moderate", 35.0),
    ("moderately severe", 50.0),
    ("severe", 65.0),
    ("profound", 80.0),
)
_SLOPING_DB = 20.0


class AudiogramError(EngineError):
    """An audiogram that cannot be read: the message quotes the value and the rule."""


@dataclass(frozen=True)
class Audiogram:
    """Hearing thresholds of one ear (or the better ear), dB HL at :data:`AUDIOGRAM_HZ`.

    Parameters
    ----------
    thresholds : tuple of 8 float
        dB HL at 250, 500, 1000, 2000, 3000, 4000, 6000, 8000 Hz, each within
        [-10, 120].
    """

    thresholds: tuple[float, ...]

    def __post_init__(self) -> None:
        values = tuple(float(v) for v in self.thresholds)
        if len(values) != len(AUDIOGRAM_HZ):
            raise AudiogramError(
                f"an audiogram has {len(AUDIOGRAM_HZ)} thresholds (dB HL at "
                f"{', '.join(_hz(f) for f in AUDIOGRAM_HZ)} Hz), got {len(values)}"
            )
        for f, v in zip(AUDIOGRAM_HZ, values):
            if not (MIN_DB_HL <= v <= MAX_DB_HL):  # also refuses NaN
                raise AudiogramError(
                    f"threshold {v:g} dB HL at {_hz(f)} Hz is outside {MIN_DB_HL:g}..{MAX_DB_HL:g} dB HL"
                )
        object.__setattr__(self, "thresholds", values)

    @property
    def pta(self) -> float:
        """Pure-tone average of 500, 1k, 2k and 4k Hz, dB HL."""
        t = dict(zip(AUDIOGRAM_HZ, self.thresholds))
        return (t[500] + t[1000] + t[2000] + t[4000]) / 4.0

    @property
    def degree(self) -> str:
        """WHO grade of :attr:`pta`: normal, mild, moderate, moderately severe, severe, profound."""
        name = DEGREES[0][0]
        for grade, start in DEGREES:
            if self.pta >= start:
                name = grade
        return name

    @property
    def shape(self) -> str:
        """'sloping' when 4-6 kHz is 20 dB or more worse than 250-500 Hz, else 'flat'."""
        t = dict(zip(AUDIOGRAM_HZ, self.thresholds))
        rise = (t[4000] + t[6000]) / 2.0 - (t[250] + t[500]) / 2.0
        return "sloping" if rise >= _SLOPING_DB else "flat"

    @property
    def label(self) -> str:
        """'normal', or degree and shape, e.g. 'moderate sloping'."""
        return "normal" if self.degree == "normal" else f"{self.degree} {self.shape}"

    def text(self) -> str:
        """The thresholds as ``parse_audiogram`` reads them: '20,20,25,30,40,50,60,65'."""
        return ",".join(f"{v:g}" for v in self.thresholds)


def _hz(f: int) -> str:
    return f"{f // 1000}k" if f >= 1000 else str(f)


_SEPARATORS = re.compile(r"[,;\s]+")


def parse_audiogram(text: str) -> Audiogram:
    """Read '20,20,25,30,40,50,60,65' (commas, semicolons or spaces) as an audiogram.

    Raises
    ------
    AudiogramError
        With the offending text, for anything but 8 numbers within [-10, 120] dB HL.
    """
    parts = [p for p in _SEPARATORS.split(str(text).strip()) if p]
    values = []
    for p in parts:
        try:
            values.append(float(p))
        except ValueError:
            raise AudiogramError(
                f"cannot read {p!r} in audiogram {text!r} as a number: write 8 thresholds in "
                "dB HL at 250,500,1k,2k,3k,4k,6k,8k Hz, e.g. 20,20,25,30,40,50,60,65"
            ) from None
    return Audiogram(tuple(values))


def _named(table: dict[str, tuple[float, ...]]) -> dict[str, Audiogram]:
    return {name: Audiogram(levels) for name, levels in table.items()}


# The standard audiograms of Bisgaard, Vlaming & Dahlquist (2010), "Standard audiograms
# for the IEC 60118-15 measurement procedure", Trends in Amplification 14(2): N1-N7 flat
# and moderately sloping, S1-S3 steep sloping, from near-normal to profound. Published at
# 250, 375, 500, 750, 1k, 1.5k, 2k, 3k, 4k, 6k Hz; 8 kHz repeats 6 kHz.
STANDARD_AUDIOGRAMS: dict[str, Audiogram] = _named({
    "N1": (10, 10, 10, 15, 20, 30, 40, 40),
    "N2": (20, 20, 25, 35, 40, 45, 50, 50),
    "N3": (35, 35, 40, 50, 55, 60, 65, 65),
    "N4": (55, 55, 55, 65, 70, 75, 80, 80),
    "N5": (65, 70, 75, 80, 80, 80, 80, 80),
    "N6": (75, 80, 85, 90, 95, 100, 100, 100),
    "N7": (90, 95, 105, 105, 105, 105, 105, 105),
    "S1": (10, 10, 10, 15, 30, 55, 70, 70),
    "S2": (20, 20, 25, 55, 75, 95, 95, 95),
    "S3": (30, 35, 60, 75, 80, 80, 85, 85),
})

# Listener audiograms quoted in the Clarity and Cadenza challenge documentation and in
# pyclarity's tests (same 8 frequencies).
EXAMPLE_AUDIOGRAMS: dict[str, Audiogram] = _named({
    "normal": (0, 0, 0, 0, 0, 0, 0, 0),
    "clarity_L0001": (10, 10, 20, 30, 40, 55, 55, 60),
    "cadenza_L0001_left": (45, 45, 35, 45, 60, 65, 70, 65),
    "cadenza_L0001_right": (40, 40, 45, 45, 60, 65, 80, 80),
    "pyclarity_music_listener": (20, 30, 35, 45, 50, 60, 65, 60),
    "pyclarity_listener_14": (20, 35, 40, 50, 60, 65, 75, 70),
})
