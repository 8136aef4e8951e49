"""The TEMP views and macros of ``engine sql`` (``library``, ``style()``, ``in_key()`` ...).

Created on every read-only session (index.sql.SqlSession) and for user SQL fragments
(index.usersql); they live in the connection's memory, so a read-only store works.
Documented for users in README.md's "## SQL" section.
"""

from __future__ import annotations

from index.schema import KEY_PROFILES

# A track's title for display: its title tag, else its file name.
TITLE_SQL = "coalesce(nullif(trim(title), ''), regexp_replace(path, '^.*[/\\\\]', ''))"

# Body of the in_key table macro; {profile} is the profile expression. Macro parameters
# are named unlike any column they meet (key_name, key_profile, style_name, ...):
# DuckDB refuses the clash.
_IN_KEY = """
    WITH wanted AS (SELECT parse_key(key_name) AS w)
    SELECT l.* REPLACE (k.name AS key), k.strength AS key_strength
    FROM library l JOIN track_keys k USING (track_id), wanted
    WHERE k.profile = CASE WHEN lower({profile}) IN (%s)
                           THEN lower({profile})
                           ELSE error('unknown key profile ''' || {profile}
                                      || ''': use one of %s') END
      AND k.pitch_class = w.pitch_class AND (w.scale IS NULL OR k.scale = w.scale)""" % (
    ", ".join(f"'{p}'" for p in KEY_PROFILES), ", ".join(KEY_PROFILES))

# TEMP views and macros created on every session (documented in README.md, "## SQL").
# Macros cannot see the calling row, so per-track macros take the track_id.
VIEWS_AND_MACROS: tuple[str, ...] = (
    # Quick browsing: one row per track, the columns people look at first; an untagged
    # file's title is its file name.
    """CREATE OR REPLACE TEMP VIEW library AS
    SELECT track_id, artist,
           """ + TITLE_SQL + """ AS title,
           album, year, duration, bpm,
           key_temperley || ' ' || scale_temperley AS key,
           genre, top_style, danceable, voice, mirex_mood AS mood, arousal, valence,
           loudness_lufs, path
    FROM tracks""",
    # One row per track and key profile; pitch_class 0-11 makes enharmonics equal.
    """CREATE OR REPLACE TEMP MACRO pitch_class(k) AS
    ([0, 2, 4, 5, 7, 9, 11][list_position(['C', 'D', 'E', 'F', 'G', 'A', 'B'], upper(k[1]))]
     + CASE WHEN k[2:] IN ('#', '♯') THEN 1 WHEN k[2:] IN ('b', '♭') THEN 11
            WHEN k[2:] = '' THEN 0 END) % 12""",
    """CREATE OR REPLACE TEMP VIEW track_keys AS
    SELECT track_id, profile, key, scale, strength, key || ' ' || scale AS name,
           pitch_class(key) AS pitch_class
    FROM (
        """ + "\n        UNION ALL\n        ".join(
        f"SELECT track_id, '{p}' AS profile, key_{p} AS key, scale_{p} AS scale, "
        f"key_strength_{p} AS strength FROM tracks" for p in KEY_PROFILES) + """
    ) WHERE key IS NOT NULL""",
    # 'A minor', 'Am', 'F# major', 'Gb', 'bbm' -> struct(pitch_class, scale); scale NULL = any.
    """CREATE OR REPLACE TEMP MACRO parse_key(key_name) AS (
    WITH parts AS (SELECT regexp_extract(key_name, '^\\s*([A-Ga-g])\\s*(#|b|♯|♭)?\\s*([A-Za-z]*)\\s*$',
                                         ['tonic', 'accidental', 'mode']) AS p)
    SELECT CASE
        WHEN p.tonic = ''
             OR NOT (p.mode IN ('', 'M') OR lower(p.mode) IN ('m', 'min', 'minor', 'maj', 'major'))
        THEN error('cannot read the key ''' || key_name
                   || ''': write e.g. ''A minor'', ''F# major'', ''Bbm''')
        ELSE {'pitch_class': pitch_class(p.tonic || p.accidental),
              'scale': CASE WHEN p.mode = '' THEN NULL
                            WHEN p.mode = 'M' OR lower(p.mode) IN ('maj', 'major') THEN 'major'
                            ELSE 'minor' END}
    END FROM parts)""",
    # Library rows in a key under a profile (default temperley): FROM in_key('A minor', 'edma').
    # Their `key` column is the profile's key, the one asked about.
    "CREATE OR REPLACE TEMP MACRO in_key(key_name) AS TABLE " + _IN_KEY.format(profile="'temperley'")
    + ", (key_name, key_profile) AS TABLE " + _IN_KEY.format(profile="key_profile"),
    # Styles with their rank within the track (1 = the track's top_style). Ties go by the
    # model's label order, which is the insertion order (rowid), as the build's argmax does.
    """CREATE OR REPLACE TEMP VIEW track_styles AS
    SELECT track_id, genre, style, activation,
           row_number() OVER (PARTITION BY track_id ORDER BY activation DESC, rowid) AS rank
    FROM styles""",
    # The 3 names most like a misspelt one, quoted and comma-separated.
    """CREATE OR REPLACE TEMP MACRO closest_names(known_names, wanted_name) AS (
    SELECT string_agg('''' || n || '''', ', ')
    FROM (SELECT n FROM unnest(known_names) AS u(n)
          ORDER BY jaro_winkler_similarity(lower(n), lower(wanted_name)) DESC, n LIMIT 3))""",
    # Activation of a style for a track: ORDER BY style(track_id, 'Techno') DESC. The name
    # is a style ('Techno', any case) or 'Genre---Style'; an unknown name is an error that
    # suggests the closest names, unless the store has no styles at all (no EffNet
    # outputs yet): NULL then.
    """CREATE OR REPLACE TEMP MACRO style(id, style_name) AS coalesce(
        (SELECT max(s.activation) FROM styles s
         WHERE s.track_id = id
           AND (lower(s.style) = lower(style_name)
                OR lower(s.genre || '---' || s.style) = lower(style_name))),
        CASE WHEN EXISTS (SELECT 1 FROM styles s
                          WHERE lower(s.style) = lower(style_name)
                             OR lower(s.genre || '---' || s.style) = lower(style_name))
                  OR NOT EXISTS (SELECT 1 FROM styles)
             THEN NULL
             ELSE error('no style named ''' || style_name || ''' in the store; did you mean '
                        || closest_names((SELECT list(DISTINCT s.style) FROM styles s), style_name)
                        || '? List them all with: SELECT DISTINCT genre, style FROM styles ORDER BY ALL')
        END)""",
    # Activation of a tag for a track, from one source or (two arguments) the best of any.
    """CREATE OR REPLACE TEMP MACRO tag(id, tag_name) AS coalesce(
        (SELECT max(t.activation) FROM tags t
         WHERE t.track_id = id AND lower(t.tag) = lower(tag_name)),
        CASE WHEN EXISTS (SELECT 1 FROM tags t WHERE lower(t.tag) = lower(tag_name))
                  OR NOT EXISTS (SELECT 1 FROM tags) THEN NULL
             ELSE error('no tag named ''' || tag_name || ''' in the store; did you mean '
                        || closest_names((SELECT list(DISTINCT t.tag) FROM tags t), tag_name)
                        || '? List them all with: SELECT DISTINCT source, tag FROM tags ORDER BY ALL')
        END),
    (id, tag_source, tag_name) AS coalesce(
        (SELECT max(t.activation) FROM tags t
         WHERE t.track_id = id AND t.source = tag_source AND lower(t.tag) = lower(tag_name)),
        CASE WHEN EXISTS (SELECT 1 FROM tags t
                          WHERE t.source = tag_source AND lower(t.tag) = lower(tag_name))
                  OR NOT EXISTS (SELECT 1 FROM tags) THEN NULL
             ELSE error('no tag named ''' || tag_name || ''' from source ''' || tag_source
                        || ''' in the store; '
                        || coalesce('did you mean ' || closest_names((SELECT list(DISTINCT t.tag)
                                                                      FROM tags t WHERE t.source = tag_source),
                                                                     tag_name) || '?',
                                    'that source has none (sources: '
                                    || (SELECT string_agg(DISTINCT t.source, ', ' ORDER BY t.source) FROM tags t)
                                    || ').')
                        || ' List them all with: SELECT DISTINCT source, tag FROM tags ORDER BY ALL')
        END)""",
    # Predicted HAAQI (0-1) of a track for a listener profile (docs/hearing.md): NULL when
    # not scored yet; an unknown listener is an error that suggests the closest names.
    """CREATE OR REPLACE TEMP MACRO haaqi(id, listener_name) AS coalesce(
        (SELECT q.haaqi FROM listener_quality q WHERE q.track_id = id AND q.listener = listener_name),
        CASE WHEN EXISTS (SELECT 1 FROM listeners l WHERE l.name = listener_name) THEN NULL
             ELSE error('no listener named ''' || listener_name || ''' in the store; '
                        || coalesce('did you mean ' || closest_names((SELECT list(l.name) FROM listeners l),
                                                                     listener_name) || '?',
                                    'there are none yet: add one with engine listener add.')
                        || ' List them with: engine listener list') END)""",
    # How many tracks have each genre / top style (by their most activated style).
    """CREATE OR REPLACE TEMP VIEW genres AS
    SELECT genre, count(*) AS tracks FROM tracks WHERE genre IS NOT NULL GROUP BY genre""",
    """CREATE OR REPLACE TEMP VIEW top_styles AS
    SELECT genre, top_style AS style, count(*) AS tracks
    FROM tracks WHERE top_style IS NOT NULL GROUP BY genre, top_style""",
)

# Our own table macros, callable in FROM like table functions.
TABLE_MACROS = frozenset({"in_key"})


def create_views(con) -> None:
    """Create the TEMP views and macros of :data:`VIEWS_AND_MACROS` on ``con``.

    ``con`` must see the store's tables unqualified (``USE engine``). Temp objects live
    in the connection's memory, so this works on a read-only store.
    """
    for sql in VIEWS_AND_MACROS:
        con.execute(sql).fetchall()
