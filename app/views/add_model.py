"""Add a model: import a weights file already under the allowed roots (engine.imports), then pick it in the sidebar.

Only files found under the imports folder ($EQUILAB_IMPORTS, default imports/), checkpoints/ and runs/ are offered;
nothing is uploaded, and files are read with safetensors or torch.load(weights_only=True) only (engine.imports.source).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import ui
from engine.core.errors import EquiLabError
from engine.lab.models import import_formats, import_into
from engine.store.discovery import IMPORTABLE_SUFFIXES, find_importable, imports_root

RESULT = "add_result"  # session state: ("ok" | "error", one line) of the last Import press


def _allowed() -> dict[str, Path]:
    r = ui.roots()
    return {"imports": imports_root(ui.REPO), "checkpoints": r["checkpoints"], "runs": r["runs"]}


def _import() -> None:
    """Button callback (runs before the page, so it may pick the new model in the sidebar): import, keep one line."""
    ss = st.session_state
    try:
        source = find_importable(_allowed()).get(ss.get("add_source"))
        if source is None:
            raise FileNotFoundError(f"{ss.get('add_source')!r} is no longer under the allowed roots")
        size = int(ss.get("add_size") or 0)
        path = import_into(
            source,
            ss["add_format"],
            ui.roots()["checkpoints"],
            (ss.get("add_name") or "").strip(),
            arch=(ss.get("add_arch") or "").strip() or None,
            strict=bool(ss.get("add_strict", True)),
            input_size=size or None,
        )
    except EquiLabError as e:
        ss[RESULT] = ("error", f"{type(e).__name__}: {e}")
    except (
        Exception
    ) as e:  # anything else the import trips on is still the file's fault: one line, no traceback
        first = (str(e).strip().splitlines() or [""])[0][:500]
        ss[RESULT] = ("error", f"Cannot import {ss.get('add_source')}: {type(e).__name__}: {first}")
    else:
        ss["sb_model"] = path.stem  # checkpoints/ labels are file stems: the sidebar shows the new model
        ss[RESULT] = (
            "ok",
            f"Imported {ss.get('add_source')} as {path.stem} ({path}). It is open in the sidebar.",
        )


st.title("Add a model")
allowed = _allowed()
st.caption(
    "Import a model trained elsewhere (torchvision, timm, solo-learn, lightly, the E-SSL or EquiMod authors' "
    "checkpoints, a plain safetensors file) from a file already on this machine. Files are read with safetensors "
    "or torch.load(weights_only=True) only: a file that needs full unpickling is refused. Looked for under: "
    + ", ".join(str(p) for p in allowed.values())
)
files = find_importable(allowed)
if not files:
    st.info(
        f"No weights files ({', '.join(IMPORTABLE_SUFFIXES)}) found. Copy one into "
        f"{allowed['imports']} (or set EQUILAB_IMPORTS), or import it from a shell:"
    )
    st.code(
        "python -m engine import model.pth --format torchvision --arch resnet18 --out checkpoints/my-resnet",
        language="bash",
    )
    st.stop()

formats = import_formats()
source = st.selectbox("Weights file", list(files), key="add_source")
st.selectbox("Format", list(formats), key="add_format", format_func=lambda f: f"{f}: {formats[f]}")
c1, c2 = st.columns(2)
c1.text_input(
    "Architecture (empty: the format's default)",
    key="add_arch",
    placeholder="resnet18, vit_b_16, convnext_tiny, timm:vit_small_patch16_224 …",
)
if st.session_state.get("add_name_for") != source:  # a fresh default name per file, never over a typed one
    st.session_state["add_name"] = Path(source).stem.replace(" ", "-")
    st.session_state["add_name_for"] = source
c2.text_input("Name in the model picker", key="add_name", max_chars=100)
c1.number_input("Input size in pixels (0: the format's default)", 0, 1024, 0, key="add_size")
c2.toggle("Require the format's heads (off: import the backbone alone)", value=True, key="add_strict")
st.button("Import", key="add_import", type="primary", on_click=_import)

kind, line = st.session_state.get(RESULT, (None, ""))
if kind == "error":
    st.error(line)
elif kind == "ok":
    st.success(line)
