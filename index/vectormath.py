"""Vectors as the indexes hold them: centred on the collection's centre and L2-normalised.

Pure numpy, no FAISS: index.vectors (the index files), index.compressed, index.query
and index.textspace prepare vectors the same way through these functions.
"""

from __future__ import annotations

import numpy as np

# The centre is the mean shrunk by n / (n + CENTRE_PRIOR): a handful of tracks' mean is
# mostly those tracks (in a 5-track store holding a clip and its MP3, full centring took
# their cosine from 0.992 to 0.862, half as much kept 0.973); from ~50 tracks the shrunk
# centre ranks as the mean does (same-album P@10 0.294 at 0.9 of the mean and at all of it).
CENTRE_PRIOR = 5


def centre_of(x: np.ndarray) -> np.ndarray:
    """The centre ``[d]`` (float32) of a collection ``x`` ``[n, d]``: its mean vector, shrunk
    towards zero by n / (n + CENTRE_PRIOR) (summed in float64 by blocks)."""
    return centre_of_blocks((x[start:start + 65536] for start in range(0, len(x), 65536)), x.shape[1])


def centre_of_blocks(blocks, dim: int) -> np.ndarray:
    """:func:`centre_of` a collection given as ``[m, dim]`` blocks (streamed: a compressed
    index's vectors are never all in memory)."""
    total = np.zeros(dim, np.float64)
    n = 0
    for x in blocks:
        total += np.asarray(x).sum(0, dtype=np.float64)
        n += len(x)
    return (total / (n + CENTRE_PRIOR)).astype(np.float32)


def prepare(x: np.ndarray, centre: np.ndarray | tuple | None, *, inplace: bool = False) -> np.ndarray:
    """Vectors as an index holds them: ``centre`` subtracted, rows L2-normalised.

    Parameters
    ----------
    x : numpy.ndarray
        ``[n, d]`` (or ``[d]``) track-mean embeddings as stored in DuckDB.
    centre : array-like ``[d]`` or None
        The index's centre (:attr:`IndexInfo.centre`); None only normalises.
    inplace : bool
        Reuse ``x`` when it is a float32 C-ordered array (GBs at 1M tracks).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if centre is not None:
        c = np.asarray(centre, dtype=np.float32)
        if inplace:
            x -= c
        else:
            x = x - c
            inplace = True
    return normalise(x, inplace=inplace)


def normalise(x: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """Rows scaled to unit length (float32, C order); ``inplace`` reuses ``x`` when it can.

    Norms come from ``einsum`` rather than ``np.linalg.norm``, which squares into a
    temporary as large as ``x`` (5 GB for 1M x 1280) and takes 10x longer.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("...i,...i->...", x, x))[..., None]
    np.maximum(norms, np.float32(1e-12), out=norms)
    if inplace:
        x /= norms
        return x
    return x / norms
