"""The quality score's terms: which measures it weighs, on what scale, from where a
defect starts to cost to where it ruins the track, and how much.

engine/quality.py computes the score from them (its docstring explains and measures each
term); they live here, in the lowest layer that reads them, because the report
(index/report.py) names the same onset and ruin levels.
"""

from __future__ import annotations

import math

#: (measure, scale, value at p=0, value at p=1, weight): see engine/quality.py's docstring.
SCORE_TERMS: tuple[tuple[str, str, float, float, float], ...] = (
    ("bandwidth_hz", "log", 18000.0, 3000.0, 0.7),
    ("snr_db", "linear", 30.0, 0.0, 0.7),
    ("clicks_per_min", "log", 30.0, 1000.0, 0.6),
    ("clipping_share", "log", 0.005, 0.1, 0.6),
    ("hum_db", "linear", 12.0, 30.0, 0.6),
    ("dropouts", "halving", 0.0, math.inf, 0.6),
    ("dc_offset", "linear", 0.02, 0.2, 0.2),
)
