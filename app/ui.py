"""Shared dashboard plumbing: allowed roots, the sidebar, URL state, cached loaders and error boxes.

Pages import this module and stay thin. User-typed paths only ever resolve inside the configured roots
(checkpoints/, runs/, stores/, overridable with EQUILAB_CHECKPOINTS / EQUILAB_RUNS / EQUILAB_STORES).
Finding checkpoints and loading models are the engine's (engine.store.discovery, engine.lab.models).
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from engine import data as mod
from engine.core.errors import DataError, EquiLabError
from engine.core.paths import is_inside, resolve_inside
from engine.data import DATASETS
from engine.eval.displacement import SCORED_SPACES
from engine.lab import models as lab_models
from engine.lab.display import png_data_uri
from engine.store.discovery import find_checkpoints, model_label

REPO = Path(__file__).resolve().parent.parent
ROOT_ENV: dict[str, str] = {
    "checkpoints": "EQUILAB_CHECKPOINTS",
    "runs": "EQUILAB_RUNS",
    "stores": "EQUILAB_STORES",
}
DEFAULT_DATASET = "shapes"
DEFAULT_MODELS = ("shapes-equimod", "shapes-simclr")  # preferred first choice when the URL names none
SHARED = (
    "_shared_selection"  # session state: {"model", "dataset", "space"} the pages share (mirrored in the URL)
)
# where each file-backed dataset's files go under the data root (engine.data's loaders)
DATA_LAYOUTS = {
    "cifar10": "cifar-10-batches-py/ (torchvision's download) or test/<class>/*.jpg",
    "cifar100": "cifar-100-python/ (torchvision's download)",
    "stl10": "stl10_binary/ (torchvision's download)",
    "imagefolder": "<split>/<class>/<images>",
}
MAX_UPLOAD_BYTES = 10 * 1024 * 1024


def roots() -> dict[str, Path]:
    """The directories a widget may reach: name -> absolute path (env override, else under the repo)."""
    return {k: Path(os.environ.get(env, REPO / k)).resolve() for k, env in ROOT_ENV.items()}


def resolve_path(text: str, kinds: tuple[str, ...] = ("checkpoints", "runs", "stores")) -> Path:
    """``text`` resolved (relative paths against each root, then the repo) when it lies inside one of the
    ``kinds`` roots; else engine.core.paths.UnsafePathError saying why (for the page's error box)."""

    r = roots()
    return resolve_inside(text, [r[k] for k in kinds], anchors=[REPO])


def inside_root(path: Path, kind: str) -> bool:
    """True when ``path`` (symlinks followed) lies inside the ``kind`` root: discovered files must not escape it."""

    return is_inside(path, roots()[kind])


def url_choice(name: str, options: list[str], default: str) -> str:
    """``?name=`` when it is one of ``options``; else ``default``, with a warning naming the refused value."""
    want = qp(name)
    if want is None or want in options:
        return default if want is None else want
    st.warning(f"Ignored {name}={want[:200]!r} from the URL: not one of the {len(options)} choices offered.")
    return default


def discover_models() -> dict[str, Path]:
    """Checkpoints the sidebar offers: label -> .safetensors path (checkpoints/ first, then runs/ and stores/)."""
    return find_checkpoints(roots())


def show_error(err: Exception, fix: str | None = None) -> None:
    """A red box with the engine's message and, below it, the one command that fixes it.

    The command is ``fix`` when the page knows a better one (the store the app reads first), else the error's own
    ``fix`` (engine.core.errors.EquiLabError); the message then points at the box instead of repeating it.
    """

    fix = fix or getattr(err, "fix", None)
    engine_error = isinstance(err, EquiLabError)
    text = err.reason if engine_error else str(err)
    if fix:
        text += f"; {err.fix_prefix if engine_error else 'fix it with'} the command below."
    st.error(f"{type(err).__name__}: {text}")
    if fix:
        st.code(fix, language="bash")


def show_store_error(err: Exception, dataset: str, fix: str) -> None:
    """:func:`show_error` for a store that cannot be built or opened; when the dataset's files are missing, says
    that they are not shipped, how to point the app at them and a command with ``--data-root``."""

    if not isinstance(err, DataError) or dataset not in DATA_LAYOUTS:
        show_error(err, fix)
        return
    folder = f"/path/to/{dataset}"
    st.error(
        f"DataError: {err.reason}. The {dataset} images are not shipped with EquiLab (only the generated shapes "
        f"datasets are). Point the app at a copy: set EQUILAB_DATA_ROOT to a folder holding "
        f"{DATA_LAYOUTS[dataset]} and restart the app, or build this store once with the command below."
    )
    st.code(
        f"export EQUILAB_DATA_ROOT={folder}   # then restart the app, or:\n{fix} --data-root {folder}",
        language="bash",
    )


# ---------------------------------------------------------------- URL and session state


def qp(name: str, default: str | None = None) -> str | None:
    """A query parameter (shareable state) or ``default``."""
    return st.query_params.get(name, default)


def set_qp(**values: Any) -> None:
    """Write shareable state to the URL, only when it changed (each write costs a message)."""
    for k, v in values.items():
        if v is None:
            continue
        if st.query_params.get(k) != str(v):
            st.query_params[k] = str(v)


def url_int(name: str, default: int, low: int, high: int) -> int:
    """``?name=`` as an integer clamped to [``low``, ``high``]; ``default`` (clamped too) when absent or not an
    integer. A refused or clamped value is named in a warning."""
    default = min(max(int(default), low), high)
    text = qp(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        st.warning(f"Ignored {name}={text[:200]!r} from the URL: not an integer; showing {default}.")
        return default
    if not low <= value <= high:
        clamped = min(max(value, low), high)
        st.warning(f"{name}={str(value)[:40]} from the URL is outside {low}–{high}; showing {clamped}.")
        return clamped
    return value


# ---------------------------------------------------------------- sidebar


@dataclass(frozen=True)
class Selection:
    """What the sidebar picked; every page reads it from ``st.session_state["selection"]``."""

    model: str | None  # label in discover_models()
    checkpoint: Path | None
    dataset: str
    split: str
    space: str | None  # chosen after the store is open (only spaces the model has)


def _dataset_names() -> list[str]:

    return sorted(DATASETS)


def _shared() -> dict[str, Any]:
    """The selection every page shares (session state; survives page switches, which clear the URL)."""
    return st.session_state.setdefault(SHARED, {})


def _init_choice(key: str, url_name: str, options: list[str], fallback: str, adopt_url: bool) -> None:
    """Set widget ``key`` before it is created (never also given an index): the URL on a new session or an
    example link, else the widget's own value, else the shared selection, else ``fallback``."""
    current = st.session_state.get(key)
    if adopt_url or current not in options:
        shared = _shared().get(url_name)
        base = current if current in options else shared if shared in options else fallback
        st.session_state[key] = url_choice(url_name, options, base) if adopt_url or current is None else base


def sidebar() -> Selection:
    """Model / dataset pickers shared by all pages (the space picker is added by :func:`pick_space`)."""
    models = discover_models()
    labels = list(models)
    adopt = st.session_state.pop("apply_qp", False)  # a one-click example or shared link set the URL
    if adopt and qp("space"):
        _shared()["space"] = qp("space")
    with st.sidebar:
        st.header("EquiLab")
        if labels:
            # the shipped EquiMod checkpoint shows both actual and predicted arrows
            first = next((m for m in DEFAULT_MODELS if m in labels), labels[0])
            _init_choice("sb_model", "model", labels, first, adopt)
            shown = {label: model_label(label, path) for label, path in models.items()}  # imported: marked
            model = st.selectbox(
                "Model", labels, key="sb_model", help="checkpoints/, runs/, stores/", format_func=shown.get
            )
        else:
            model = None
            st.warning(
                "No checkpoints found under " + ", ".join(str(p) for p in roots().values()) + ". Train one:"
            )
            st.code("python -m engine train --method simclr --dataset shapes", language="bash")
        names = _dataset_names()
        _init_choice(
            "sb_ds", "dataset", names, DEFAULT_DATASET if DEFAULT_DATASET in names else names[0], adopt
        )
        dataset = st.selectbox("Dataset", names, key="sb_ds")
        split = "test"
        if note := st.session_state.pop("example_note", None):
            st.info(note)
    _shared().update(model=model, dataset=dataset)
    set_qp(model=model, dataset=dataset)
    sel = Selection(model=model, checkpoint=models.get(model), dataset=dataset, split=split, space=None)
    st.session_state["selection"] = sel
    return sel


def selection() -> Selection:
    """The current sidebar selection (pages run after the router drew the sidebar)."""
    sel = st.session_state.get("selection")
    return sel if sel is not None else sidebar()


def _remember_space(key: str) -> None:
    """Callback: a space picked in the widget becomes the shared one before the page reruns."""
    _shared()["space"] = st.session_state[key]


def pick_space(
    spaces: list[str],
    key: str = "sb_space",
    label: str = "Embedding space",
    prefer: tuple[str, ...] = SCORED_SPACES,
) -> str:
    """Space picker in the sidebar restricted to the spaces the store has, shared by every page: the shared
    selection, else the widget's value, else ``?space=``, else the first of ``prefer``. Synced with ?space=."""
    fallback = next((s for s in prefer if s in spaces), spaces[0])
    want = qp("space")
    candidates = (_shared().get("space"), st.session_state.get(key), want)
    if want is not None and not any(s in spaces for s in candidates):  # the URL's value is the one refused
        st.warning(f"Ignored space={want[:200]!r} from the URL: this store's spaces are {', '.join(spaces)}.")
    st.session_state[key] = next((s for s in candidates if s in spaces), fallback)
    space = st.sidebar.selectbox(label, spaces, key=key, on_change=_remember_space, args=(key,))
    _shared()["space"] = space
    set_qp(space=space)
    return space


# ---------------------------------------------------------------- cached loaders


def _stamp(path: Path) -> float:
    """Cache key part that changes when the file (or the store manifest) is rewritten."""
    p = path / "manifest.json" if path.is_dir() else path
    return p.stat().st_mtime_ns if p.exists() else 0.0


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def _load_model(path: str, stamp: float):
    return lab_models.load_model(path)


def load_model(path: Path, stop: bool = True):
    """(model, info) for a checkpoint, cached on path + mtime; shared across sessions, never mutated.

    A missing or damaged checkpoint shows the engine's message and the fixing command, then stops the page
    (or returns None with ``stop=False``, for loops over several models).
    """

    try:
        return _load_model(str(path), _stamp(path))
    except EquiLabError as e:
        if not stop:
            st.warning(f"Skipped {Path(path).stem}: {e.reason}")
            return None
        show_error(e)
        st.stop()


# ---------------------------------------------------------------- images


def decode_upload(up: Any) -> np.ndarray | None:
    """An uploaded file as uint8 [H, W, 3] via engine.data.decode_image, or None after a clear st.error."""
    if up is None:
        return None
    data = up.getvalue()
    if len(data) > MAX_UPLOAD_BYTES:
        st.error(f"{up.name}: {len(data) / 1e6:.1f} MB is over the 10 MB upload limit.")
        return None

    try:
        return _decode(mod, data)
    except EquiLabError as e:
        st.error(f"Cannot use {up.name}: {e}")
    except Exception as e:  # the decoder promises DataError; anything else is still the upload's fault
        st.error(f"Cannot use {up.name}: not a readable image ({type(e).__name__}: {e})")
    return None


@st.cache_data(max_entries=16, show_spinner=False)
def _decode(_mod: Any, data: bytes) -> np.ndarray:
    return np.asarray(_mod.decode_image(data), dtype=np.uint8)


# ---------------------------------------------------------------- pictures: colours, legends, numbers

# Tableau 10 (Plotly's "T10"): ten clearly distinct class colours, keyed by class index on every page
CLASS_COLOURS = (
    "#4C78A8",
    "#F58518",
    "#E45756",
    "#72B7B2",
    "#54A24B",
    "#EECA3B",
    "#B279A2",
    "#FF9DA6",
    "#9D755D",
    "#BAB0AC",
)
CYCLIC_SCALE = "Twilight"  # hue and angle colourings wrap around: 0 and 1 (0° and 360°) get one colour
CYCLIC_FACTORS = ("hue", "angle", "rotation")


def class_colour(index: int) -> str:
    """The colour of class ``index`` (the same on every page; the palette repeats past ten classes)."""
    return CLASS_COLOURS[int(index) % len(CLASS_COLOURS)]


def is_cyclic(name: str) -> bool:
    """True for a factor measured on a circle (hue, angle, rotation), coloured with :data:`CYCLIC_SCALE`."""
    return any(f in name.lower() for f in CYCLIC_FACTORS)


def legend_below(fig: Any, height: int | None = None) -> Any:
    """``fig`` with its legend in a row under the plot, where the toolbar (top right) cannot cover it."""
    fig.update_layout(
        showlegend=True,
        legend=dict(orientation="h", yanchor="top", y=-0.08, xanchor="left", x=0.0),
        **({"height": height} if height else {}),
    )
    return fig


def sig3(value: Any) -> Any:
    """A number to 3 significant digits (integers and non-numbers unchanged)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, float | np.floating):
        return value
    return float(f"{value:.3g}") if np.isfinite(value) else value


def table3(df: Any) -> Any:
    """A copy of a DataFrame with every float cell to 3 significant digits (what every page's table shows)."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype.kind == "f":
            out[c] = out[c].map(sig3)
    return out


def _points(xy: np.ndarray, ids: np.ndarray, name: str, marker: dict, extra: str) -> go.Scattergl:
    """Map points ``ids`` with their ids as customdata (what a selection returns)."""
    return go.Scattergl(
        x=xy[ids, 0],
        y=xy[ids, 1],
        customdata=ids,
        mode="markers",
        name=name,
        marker=dict(size=4, **marker),
        hovertemplate="id %{customdata}<extra>" + extra + "</extra>",
    )


def class_points(xy: np.ndarray, ids: np.ndarray, name: str, colour: str, **marker) -> go.Scattergl:
    """Map points ``ids`` of one category: one legend entry in ``colour``."""
    return _points(xy, ids, name, dict(color=colour, **marker), name)


def any_defined(values) -> bool:
    """Whether any of ``values`` is a number (not NaN/inf): a colour bar over none would show made-up ticks."""
    return bool(np.isfinite(np.asarray(values, dtype=np.float64)).any())


def value_points(
    xy: np.ndarray, ids: np.ndarray, values: np.ndarray, name: str, title: str, **marker
) -> go.Scattergl:
    """Map points ``ids`` coloured by ``values`` [len(ids)] on a colour scale with a titled colour bar (none
    when no value is defined: a bar over nothing would show made-up ticks)."""
    bar = dict(showscale=any_defined(values), colorbar=dict(title=dict(text=title, side="right")))
    return _points(xy, ids, name, dict(color=values, **bar, **marker), "")


def thumb_grid_html(images: list[np.ndarray], captions: list[str], width: int = 56) -> str:
    """The HTML of :func:`thumb_grid`: our own PNG data URIs and escaped captions, nothing else from outside."""
    cells = "".join(
        f'<figure style="margin:0;text-align:center"><img src="{png_data_uri(im)}" width="{int(width)}" '
        f'style="image-rendering:pixelated;display:block" alt="{html.escape(c)}">'
        f'<figcaption style="font-size:0.75rem;opacity:0.7">{html.escape(c)}</figcaption></figure>'
        for im, c in zip(images, captions, strict=True)
    )
    return f'<div class="eq-thumbs" style="display:flex;flex-wrap:wrap;gap:6px">{cells}</div>'


def thumb_grid(images: list[np.ndarray], captions: list[str], width: int = 56) -> None:
    """Captioned thumbnails as one block of inline PNGs: they arrive with the page (st.image sends each as its own
    media file, fetched after the page has settled). The app's only raw HTML (tests/app/test_paths.py)."""
    st.html(thumb_grid_html(images, captions, width))
