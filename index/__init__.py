"""DuckDB store, FAISS indexes, queries and playlists."""
