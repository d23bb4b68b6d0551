"""EquiLab engine: data, augmentation, SSL methods, training, embedding stores, metrics and retrieval.

The Streamlit app in ``app/`` only imports from here; nothing here imports Streamlit.
"""

__version__ = "0.1.0"
