"""AppTest: the map coloured by the predictor's gain over the strongest baseline, and non-identity default strengths."""

from __future__ import annotations

import json

import numpy as np


def _trace(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]


def test_map_colours_items_by_the_gain_over_the_strongest_baseline(plotly_array, open_app):
    at = open_app("map")
    at.selectbox(key="map_colour").set_value("gain over the strongest baseline").run()
    at.selectbox(key="map_family").set_value("hue").run()
    at.slider(key="map_strength_hue").set_value(0.25).run()
    assert not at.exception
    trace = _trace(at)
    title = trace["marker"]["colorbar"]["title"]["text"]
    assert (
        title.startswith("gain in cos(Δ, Δ̂)") and "over" in title
    )  # a titled colour bar naming the baseline
    gain = plotly_array(trace["marker"]["color"])
    assert np.isfinite(gain).any() and np.nanmax(np.abs(gain)) <= 2.0
    assert any("strongest model-free guess" in c.value for c in at.caption)


def test_rotation_opens_on_a_non_identity_strength_and_says_it_is_not_encoded(plotly_array, open_app):
    at = open_app("map")
    at.selectbox(key="map_colour").set_value("gain over the strongest baseline").run()
    at.selectbox(key="map_family").set_value("rotation").run()
    assert not at.exception
    assert at.slider(key="map_strength_rotation").value == 180.0  # not 360°, the identity
    assert any("not encoded" in i.value for i in at.info)
    trace = _trace(at)  # every gain undefined: no colour bar with made-up ticks, no raw "{strongest}" title
    assert not trace["marker"]["showscale"] and "{" not in trace["marker"]["colorbar"]["title"]["text"]
    at.selectbox(key="map_colour").set_value("relative invariance").run()
    assert not at.exception
    inv = plotly_array(_trace(at)["marker"]["color"])
    assert np.isfinite(inv).all() and (inv <= 1.0 + 1e-9).all()
