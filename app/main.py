"""EquiLab dashboard script: draws the shared sidebar and routes pages.

Served by ``streamlit run app/serve.py`` (which also sends nested paths such as /a/b to a page); ``streamlit run
app/main.py`` works too, without that redirect.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts app/ on sys.path; the engine lives beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st

from app import ui

# Not "pages/": that name switches Streamlit into its legacy multipage mode beside st.navigation.
PAGES_DIR = Path(__file__).resolve().parent / "views"

# An emoji favicon is drawn by the browser from an inline SVG; ":material/..." icons are fetched from a font CDN.
st.set_page_config(page_title="EquiLab", page_icon="🧪", layout="wide")

PAGES = {
    "Explore": [
        st.Page(
            PAGES_DIR / "lab.py",
            title="Augmentation lab",
            url_path="lab",
            icon=":material/tune:",
            default=True,
        ),
        st.Page(PAGES_DIR / "map.py", title="Map", url_path="map", icon=":material/scatter_plot:"),
        st.Page(
            PAGES_DIR / "retrieval.py", title="Retrieval", url_path="retrieval", icon=":material/search:"
        ),
        st.Page(
            PAGES_DIR / "compare.py", title="Compare models", url_path="compare", icon=":material/compare:"
        ),
    ],
    "Runs": [
        st.Page(
            PAGES_DIR / "training.py", title="Training", url_path="training", icon=":material/monitoring:"
        ),
        st.Page(
            PAGES_DIR / "add_model.py",
            title="Add a model",
            url_path="add-model",
            icon=":material/upload_file:",
        ),
    ],
    "Learn": [
        st.Page(PAGES_DIR / "about.py", title="About / teach", url_path="about", icon=":material/school:")
    ],
}

page = st.navigation(PAGES)
ui.sidebar()
page.run()
