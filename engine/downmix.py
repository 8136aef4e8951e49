"""Multichannel to stereo: the ITU-R BS.775 downmix matrix for FFmpeg's channel names.

Front left and right 1, centre and surround/back 1/sqrt(2) to their side (centre to
both), LFE dropped, then the matrix is scaled so that each output's coefficients sum to
at most 1 (5.1: divided by 1 + 2/sqrt(2) = 2.414). That scaling is what FFmpeg does for
integer output, and it guarantees the downmix cannot exceed full scale (FFmpeg's float
path does not scale, and a 4-channel file at full scale reaches 2.2). The price is a
quieter downmix (5.1: -7.7 dB on the front channels) than a playback system would
produce, so loudness measured on multichannel files reads low. Channels whose position
is unspecified (e.g. 4-channel WAV/AIFF without a channel mask) are assumed to be in
FFmpeg's default order for their count (4: FL FR BL BR; 6: 5.1).
"""

from __future__ import annotations

import math

import numpy as np

# ITU-R BS.775 downmix: (left, right) coefficient for each FFmpeg channel name.
_H = 1 / math.sqrt(2)
_DOWNMIX = {
    "FL": (1.0, 0.0), "FR": (0.0, 1.0), "FC": (_H, _H), "LFE": (0.0, 0.0), "LFE2": (0.0, 0.0),
    "FLC": (1.0, 0.0), "FRC": (0.0, 1.0),
    "BL": (_H, 0.0), "BR": (0.0, _H), "SL": (_H, 0.0), "SR": (0.0, _H),
    "SDL": (_H, 0.0), "SDR": (0.0, _H), "WL": (_H, 0.0), "WR": (0.0, _H),
    "TFL": (_H, 0.0), "TFR": (0.0, _H), "TBL": (_H, 0.0), "TBR": (0.0, _H),
    "TSL": (_H, 0.0), "TSR": (0.0, _H),
    "BC": (0.5, 0.5), "TC": (0.5, 0.5), "TFC": (0.5, 0.5), "TBC": (0.5, 0.5),
}
# FFmpeg's default channel order by count, for files that do not say (e.g. 4-channel WAV
# without a channel mask reports "4 channels" with positions NONE).
_DEFAULT_ORDER = {
    3: ("FL", "FR", "FC"),
    4: ("FL", "FR", "BL", "BR"),
    5: ("FL", "FR", "FC", "BL", "BR"),
    6: ("FL", "FR", "FC", "LFE", "BL", "BR"),
    7: ("FL", "FR", "FC", "LFE", "BC", "SL", "SR"),
    8: ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}


def downmix_matrix(names: tuple[str, ...]) -> np.ndarray:
    """``[2, channels]`` float32 downmix matrix whose rows' absolute sums are <= 1."""
    if not any(n in _DOWNMIX for n in names):
        names = _DEFAULT_ORDER.get(len(names), names)
    # Positions still unknown go equally to both sides.
    m = np.array([_DOWNMIX.get(n, (0.5, 0.5)) for n in names], dtype=np.float64).T
    m /= max(1.0, np.abs(m).sum(axis=1).max())
    return m.astype(np.float32)
