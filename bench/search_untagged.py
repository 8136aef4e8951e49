"""Can `engine search` find instruments no tag names? The fixes tried, on seven such queries.

    python -m bench.search_untagged [--store bench/out/search-store]

On the store of bench/search_corpus.py, for the seven instruments of the rendered clips
that no tag model here names (brass, organ, oboe, clarinet, bassoon, banjo, harmonica)
and the six that MTT tags, it prints the sentence-model-only MAP (the mode those
queries use) for:

* the learned space's weight beside the nearest names (``index.search.LEARNED_WEIGHT``)
  crossed with the softmax temperature over the near names (``NAME_SHARPNESS``);
* expanding an instrument to the tags of its family (keyboards, woodwinds, plucked
  strings), ranked with tags only.

A change is worth taking only if it lifts the seven untagged queries above chance and
keeps the tagged ones at MAP >= 0.9 (docs/search.md says what was found).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np

from bench.search_accuracy import (
    QUERIES, WITH_TAG, WITHOUT_TAG, average_precision, chance_ap, corpus_store_and_truth,
)

# Instrument families by the usual orchestral / organological grouping, mapped onto
# MTT's tags (no family has a tag for brass or for free reeds such as the harmonica).
FAMILIES = {
    "organ": "piano harpsichord synth",  # keyboards
    "oboe": "flute", "clarinet": "flute", "bassoon": "flute",  # woodwinds
    "banjo": "guitar classical guitar harp sitar",  # plucked strings
}
WHERE = "path LIKE '%/rendered/%'"


def main() -> None:
    import index.search as search

    store, truth = corpus_store_and_truth(__doc__.splitlines()[0])
    rel = {q: {f for f, r in truth.items() if is_rel(r["instruments"], r["drums"] == "1")}
           for q, is_rel in QUERIES.items()}
    chance = np.mean([chance_ap(len(truth), len(rel[q]), 4000) for q in WITHOUT_TAG])

    def ap_of(s, query: str, relevant: set[str], mode: str) -> float:
        try:
            hits = s.search(query, k=len(truth), where=WHERE, mode=mode).hits
        except search.NoMatchError:
            return float("nan")
        return average_precision([Path(h.path).name in relevant for h in hits], len(relevant))

    lines = [f"chance, untagged: {chance:.2f}", "",
             "| learned weight | temperature | MAP tagged | MAP untagged | " + " | ".join(WITHOUT_TAG) + " |",
             "|---|---|---|---|" + "---|" * len(WITHOUT_TAG)]
    saved = search.LEARNED_WEIGHT, search.NAME_SHARPNESS
    with search.TextSearcher(store) as s:
        try:
            for weight, temp in itertools.product((0.0, 0.25, 0.5, 1.0, 2.0, 100.0), (0.05, 0.2)):
                search.LEARNED_WEIGHT, search.NAME_SHARPNESS = weight, temp
                aps = {q: ap_of(s, q, rel[q], "text") for q in WITH_TAG + WITHOUT_TAG}
                lines.append(f"| {weight:g} | {temp:g} | {np.nanmean([aps[q] for q in WITH_TAG]):.2f} | "
                             f"{np.nanmean([aps[q] for q in WITHOUT_TAG]):.2f} | "
                             + " | ".join(f"{aps[q]:.2f}" for q in WITHOUT_TAG) + " |")
        finally:
            search.LEARNED_WEIGHT, search.NAME_SHARPNESS = saved
        lines += ["", "| instrument | family's tags | AP (tags only) | chance |", "|---|---|---|---|"]
        for inst, tags in FAMILIES.items():
            lines.append(f"| {inst} | {tags} | {ap_of(s, tags, rel[inst], 'tags'):.2f} | "
                         f"{chance_ap(len(truth), len(rel[inst]), 4000):.2f} |")
    lines.append(f"\n(load average {os.getloadavg()[0]:.1f}; 26 rendered clips)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
