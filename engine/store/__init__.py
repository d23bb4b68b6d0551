"""Embedding stores: building (embedding a dataset), the on-disk format, FAISS index, projections."""
