"""Textual terminal app over the store."""
