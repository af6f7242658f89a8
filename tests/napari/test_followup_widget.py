"""The "BME follow-up" dock widget: pick the two visits, compare, both visits side by side or
overlaid on one slice slider, lesions coloured by status, the change table jumps to a track."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def followup_case():
    from bmeviz.data import make_phantom
    from bmeviz.followup.synthetic import make_followup

    ph = make_phantom(shape=(24, 128, 128), spacing=(3.0, 1.0, 1.0), seed=2)
    syn = make_followup(ph.volume, ph.truth, region=ph.bone, reference=ph.reference, angles_deg=(2.0, -1.0, 3.0),
                        translation_mm=(3.0, -2.0, 1.5))
    return syn


def test_followup_layers_without_qt(followup_case):
    from bmeviz.followup.change import compare
    from bmeviz.followup.figures import STATUS_COLORS
    from bmeviz.napari._followup import followup_layers

    syn = followup_case
    res = compare(syn.baseline, syn.followup, baseline_mask=syn.baseline_labels, followup_mask=syn.followup_labels)
    layers = followup_layers(res)
    assert [k for _, _, k in layers] == ["image", "labels", "image", "labels"]
    # every layer on the baseline grid: the same world frame, so one slider moves both visits
    assert len({tuple(kw["scale"]) for _, kw, _ in layers}) == 1
    assert len({tuple(np.round(kw["translate"], 6)) for _, kw, _ in layers}) == 1
    colors = layers[3][1]["metadata"]["bmeviz_status_colors"]
    new_ids = res.table[res.table.status == "new"].followup_id.tolist()
    assert new_ids and all(colors[int(i)] == STATUS_COLORS["new"] for i in new_ids)


def test_widget_compares_and_shows_both_visits(make_napari_viewer_proxy, followup_case):
    from bmeviz.followup.figures import STATUS_COLORS
    from bmeviz.napari._layers import image_kwargs, labels_kwargs

    syn = followup_case
    viewer = make_napari_viewer_proxy(show=True)
    viewer.add_image(syn.baseline.array, **image_kwargs(syn.baseline, name="visit 1"))
    viewer.add_labels(syn.baseline_labels, **labels_kwargs(syn.baseline, name="visit 1 lesions"))
    viewer.add_image(syn.followup.array, **image_kwargs(syn.followup, name="visit 2"))
    viewer.add_labels(syn.followup_labels, **labels_kwargs(syn.followup, name="visit 2 lesions"))
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "BME follow-up")
    for key, name in (("baseline", "visit 1"), ("baseline_mask", "visit 1 lesions"), ("followup", "visit 2"),
                      ("followup_mask", "visit 2 lesions")):
        widget.combos[key].setCurrentText(name)
    widget.compare_button.click()
    assert widget.result is not None, widget.status.text()
    res = widget.result
    assert widget.table.rowCount() == len(res.table)
    assert "NCC" in widget.status.text()
    assert viewer.grid.enabled and tuple(viewer.grid.shape) == (1, 2)
    # the new lesion is drawn in the 'new' colour
    fu_labels = widget.layers[3]
    new_id = int(res.table[res.table.status == "new"].followup_id.iloc[0])
    rgba = np.asarray(fu_labels.colormap.map(np.array([new_id])))[0]
    from matplotlib.colors import to_rgba

    assert np.allclose(rgba[:3], to_rgba(STATUS_COLORS["new"])[:3], atol=0.02)
    # a row of the table goes to that track's slice
    r = int(np.flatnonzero(res.table.status.to_numpy() == "new")[0])
    widget.go_to_track(r)
    row = res.table.iloc[r]
    want = int(round(res.baseline.volume.ras_to_index([row.centroid_x_mm, row.centroid_y_mm, row.centroid_z_mm])[0]))
    assert int(round(widget.layers[0].world_to_data(viewer.dims.point)[0])) == want
    # overlay with the opacity slider
    widget.mode.setCurrentText("overlay")
    assert not viewer.grid.enabled
    widget.opacity.setValue(30)
    assert widget.layers[2].opacity == pytest.approx(0.3)


def test_widget_says_what_is_missing(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "BME follow-up")
    widget.compare_button.click()
    assert widget.result is None and "choose the baseline" in widget.status.text()
