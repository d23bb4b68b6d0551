"""EquiLab Streamlit dashboard: router (main.py), shared plumbing (ui.py), thin pages (pages/)."""
