"""EquiLab Streamlit dashboard: router (main.py), shared plumbing (ui.py), thin pages (views/; not "pages/", which would turn on Streamlit's legacy multipage mode)."""
