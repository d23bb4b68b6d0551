"""Shared infrastructure: the error family, atomic file io, path safety, distributed helpers."""
