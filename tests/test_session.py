"""The Qt-free session model behind the napari widget: seeds, history, hand edits, lesion edits
by id, session files and autosave. No napari, no Qt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import bmeviz
from bmeviz.session import SeedRefused, Session, changed_box


@pytest.fixture(scope="module")
def sij(request):
    """SIJ STIR 1013 with its readers' normal-marrow, disease-region and R11 inflammation masks."""
    from helpers import shared

    root = shared("sij-stir-dev")
    vol = bmeviz.load(root / "images" / "1013_STIR.nii.gz")
    ref = bmeviz.load(root / "normal_marrow" / "1013_normal_marrow.nii.gz").array > 0
    region = bmeviz.load(root / "disease_region" / "1013_disease_region.nii.gz").array > 0
    infl = bmeviz.load(root / "inflammation" / "1013_inflammation_R11.nii.gz").array > 0
    return vol, ref, region, infl, root


def _seed_in(mask):
    """The voxel of ``mask``'s largest component nearest its centroid (a user's click)."""
    from scipy import ndimage as ndi

    lab, _ = ndi.label(mask)
    big = np.bincount(lab.ravel())[1:].argmax() + 1
    pts = np.argwhere(lab == big)
    return tuple(int(v) for v in pts[np.argmin(((pts - pts.mean(0)) ** 2).sum(1))])


def test_session_gives_segments_answer_on_real_masks(sij):
    vol, ref, region, infl, _ = sij
    s = Session(vol)
    s.set_reference(mask=ref, name="normal marrow")
    s.set_region(region, name="disease region")
    seed = _seed_in(infl & region)
    res = s.add_seed(seed)
    direct = bmeviz.segment(vol, reference=ref, region=region, seeds=[seed])
    assert np.array_equal(s.labels, direct.labels)
    assert s.totals["total_volume_ml"] == pytest.approx(direct.total_volume_ml)
    assert res.params["edge"] == bmeviz.pipeline.DEFAULTS["edge"]  # the CLI's defaults, not the widget's own
    assert not s.edited and s.last_box is not None
    # a second user clicks one voxel off in each direction: the volume barely moves
    for d in ((0, 1, 0), (0, 0, -1), (0, -1, 1)):
        other = tuple(int(a + b) for a, b in zip(seed, d))
        if not (infl & region)[other]:
            continue
        ml = bmeviz.segment(vol, reference=ref, region=region, seeds=[other]).total_volume_ml
        assert ml == pytest.approx(direct.total_volume_ml, rel=0.05)
    # the lesion overlaps the reader's outline
    dice = 2 * (s.labels.astype(bool) & infl).sum() / (s.labels.astype(bool).sum() + infl.sum())
    assert dice > 0.5


def test_refused_seeds_change_nothing_and_say_why(sij):
    vol, ref, region, infl, _ = sij
    s = Session(vol)
    s.set_reference(mask=ref)
    s.set_region(region, name="disease region")
    s.add_seed(_seed_in(infl & region))
    labels, seeds, n_steps = s.labels, s.seeds, len(s._history)
    off_image = (7, -8, 2)
    with pytest.raises(SeedRefused, match="outside the image"):
        s.add_seed(off_image)
    outside_region = tuple(int(v) for v in np.argwhere(~region)[0])
    with pytest.raises(SeedRefused, match="outside the search region 'disease region'"):
        s.add_seed(outside_region)
    assert s.seeds == seeds and s.labels is labels and len(s._history) == n_steps
    # and the next grow still works (a refused click never poisons the seeds)
    assert s.grow().n_lesions >= 1


def test_seed_history_undo_redo_and_remove(phantom):
    vol, gt = phantom
    s = Session(vol)
    s.set_reference(mask=gt["reference"])
    s.set_region(gt["bone"], name="bone")
    steps = []
    for seed in gt["seeds"]:
        s.add_seed(seed)
        steps.append(s.labels)
    assert s.last_action == f"seed {len(gt['seeds'])} added"  # numbered as the user counts
    assert len(np.unique(s.labels)) - 1 == len(gt["seeds"])
    assert s.undo() and len(s.seeds) == 3 and np.array_equal(s.labels, steps[2])
    box = s.last_box
    assert box is not None
    assert (steps[3] != steps[2]).sum() == (steps[3][box] != steps[2][box]).sum()  # the box holds every change
    assert s.redo() and len(s.seeds) == 4 and np.array_equal(s.labels, steps[3])
    assert not s.redo()
    s.remove_seed(0)  # the first seed: its lesion goes, the others stay
    assert s.last_action == "seed 1 removed" and len(s.seeds) == 3
    expected = bmeviz.segment(vol, reference=gt["reference"], region=gt["bone"], seeds=gt["seeds"][1:])
    assert np.array_equal(s.labels, expected.labels)
    s.remove_seed()
    s.remove_seed()
    s.remove_seed()
    assert not s.seeds and not s.labels.any() and s.table is None
    with pytest.raises(bmeviz.ParameterError, match="no seed to remove"):
        s.remove_seed()


@pytest.fixture(scope="module")
def phantom():
    from bmeviz.data import load_sample

    return load_sample()


def test_hand_edits_are_marked_truly_and_lesions_edited_by_id(phantom):
    vol, gt = phantom
    s = Session(vol)
    s.set_reference(mask=gt["reference"])
    s.set_region(gt["bone"])
    for seed in gt["seeds"]:
        s.add_seed(seed)
    grown = s.labels
    ml = s.table.set_index("lesion_id")["volume_ml"]
    # a brush stroke that erases a few voxels of lesion 1: re-measured, edited
    painted = grown.copy()
    painted[tuple(np.argwhere(grown == 1)[:20].T)] = 0
    assert s.set_labels(painted)
    assert s.edited and s.table.set_index("lesion_id")["volume_ml"][1] < ml[1]
    assert any("edited by hand" in m for m in s.current_result().messages)
    # napari's own undo puts the voxels back: the labels are the grown ones again, not "edited"
    assert s.set_labels(grown) and not s.edited
    assert not s.set_labels(grown)  # nothing changed: no step
    s.undo()
    assert s.edited
    s.undo()
    assert not s.edited and np.array_equal(s.labels, grown)
    assert s.current_result() is s.result
    # delete / merge / split by id
    s.delete_lesion(2)
    assert 2 not in s.table["lesion_id"].tolist() and s.edited
    s.undo()
    keep = s.merge_lesions([3, 4])
    assert keep == 3 and 4 not in set(np.unique(s.labels))
    merged_ml = s.table.set_index("lesion_id")["volume_ml"][3]
    assert merged_ml == pytest.approx(ml[3] + ml[4], rel=1e-9)
    parts = s.split_lesion(3)  # two separate blobs: split into its 6-connected parts
    assert len(parts) == 2 and parts[0] == 3
    split_ml = s.table.set_index("lesion_id")["volume_ml"]
    assert sorted([split_ml[parts[0]], split_ml[parts[1]]]) == pytest.approx(sorted([ml[3], ml[4]]))
    cube = np.zeros(vol.shape, np.int32)
    cube[5:8, 20:30, 20:30] = 1  # one solid piece and no seed in it: nothing to split along
    s.set_labels(cube)
    with pytest.raises(bmeviz.ParameterError, match="one piece"):
        s.split_lesion(1)
    with pytest.raises(bmeviz.ParameterError, match="no lesion 99"):
        s.delete_lesion(99)


def test_split_by_seeds_inside_one_lesion(phantom):
    vol, gt = phantom
    s = Session(vol)
    s.set_reference(mask=gt["reference"])
    s.set_region(gt["bone"])
    s.add_seed(gt["seeds"][0])
    lesion = np.argwhere(s.labels == 1)
    far = lesion[np.argmax(((lesion - np.asarray(gt["seeds"][0])) ** 2).sum(1))]
    s.add_seed(far)  # the same lesion: still one lesion, two seeds in it
    assert len(np.unique(s.labels)) - 1 == 1
    total = s.totals["total_volume_ml"]
    parts = s.split_lesion(1)
    assert len(parts) == 2 and s.totals["n_lesions"] == 2
    assert s.totals["total_volume_ml"] == pytest.approx(total)


def test_save_and_load_restores_identical_labels(sij, tmp_path):
    vol, ref, region, infl, root = sij
    src = root / "images" / "1013_STIR.nii.gz"
    s = Session(vol, source=src)
    s.set_reference(mask=ref, name="normal marrow")
    s.set_region(region, name="disease region")
    s.set_options(min_volume_mm3=5.0)
    s.add_seed(_seed_in(infl & region))
    edited = s.labels.copy()
    edited[tuple(np.argwhere(edited > 0)[:50].T)] = 0
    s.set_labels(edited)
    path = s.save(tmp_path / "study.bmeviz-session.json")
    assert path.stat().st_size < 200_000  # small: masks are stored inside their bounding boxes
    back = Session.load(path)  # opens the scan again from its source
    assert np.array_equal(back.labels, s.labels) and back.labels.dtype == s.labels.dtype
    assert back.seeds == s.seeds and back.edited and back.options["min_volume_mm3"] == 5.0
    assert np.array_equal(back.reference_mask, ref) and np.array_equal(back.region, region)
    assert back.region_name == "disease region"
    assert back.result.threshold.value == pytest.approx(s.result.threshold.value)
    assert back.totals["total_volume_ml"] == pytest.approx(s.totals["total_volume_ml"])
    # a damaged or foreign file: one clear error
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(bmeviz.ParameterError, match="not a bmeviz session"):
        Session.load(bad)
    with pytest.raises(bmeviz.ParameterError, match="another grid|shape"):
        Session.load(path, volume=vol.with_array(vol.array[:, :, :-1].copy()))


def test_automatic_reference_in_a_session_is_segments_and_survives_save(sij, tmp_path):
    """set_reference(auto=True): no click; the threshold, the outline and the marrow used are
    segment(reference='auto')'s; saved and loaded as automatic."""
    vol, ref, region, infl, root = sij
    s = Session(vol, source=root / "images" / "1013_STIR.nii.gz")
    s.set_region(region, name="disease region")
    s.set_reference(auto=True)
    seed = _seed_in(infl & region)
    s.add_seed(seed)
    res = bmeviz.segment(vol, reference="auto", region=region, seeds=[seed])
    assert s.threshold.value == res.threshold.value and np.array_equal(s.labels, res.labels)
    assert np.array_equal(s.reference_used, res.reference)
    back = Session.load(s.save(tmp_path / "auto.bmeviz-session.json"))
    assert back.reference_auto and back.reference_point is None and back.reference_mask is None
    assert back.threshold.value == res.threshold.value
    s.set_reference(point=seed)  # a point replaces it
    assert not s.reference_auto and s._reference_arg() == tuple(seed)
    with pytest.raises(bmeviz.ParameterError, match="one of them"):
        s.set_reference(auto=True, point=seed)


def test_autosave_survives_a_killed_process(sij, tmp_path):
    """A viewer killed with SIGKILL after its clicks: the autosave file reloads to the same labels."""
    vol, ref, region, infl, root = sij
    auto = tmp_path / "autosave.bmeviz-session.json"
    seed = _seed_in(infl & region)
    code = textwrap.dedent(f"""
        import sys, time, numpy as np, bmeviz
        from bmeviz.session import Session
        root = {str(root)!r}
        vol = bmeviz.load(root + "/images/1013_STIR.nii.gz")
        s = Session(vol, source=root + "/images/1013_STIR.nii.gz", autosave={str(auto)!r})
        s.set_reference(mask=bmeviz.load(root + "/normal_marrow/1013_normal_marrow.nii.gz").array > 0)
        s.set_region(bmeviz.load(root + "/disease_region/1013_disease_region.nii.gz").array > 0, name="region")
        s.add_seed({seed!r})
        np.save({str(tmp_path / "expected.npy")!r}, s.labels)
        print("ready", flush=True)
        time.sleep(600)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(p) for p in sys.path if p]))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", line
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.05)
    back = Session.load(auto)
    expected = np.load(tmp_path / "expected.npy")
    assert expected.any() and np.array_equal(back.labels, expected)
    assert len(back.seeds) == 1 and not back.edited
    assert not list(tmp_path.glob(".autosave*"))  # no temporary file left behind


def test_changed_box():
    a = np.zeros((5, 6, 7), np.int32)
    b = a.copy()
    assert changed_box(a, b) is None
    b[1:3, 2, 4:6] = 3
    assert changed_box(a, b) == (slice(1, 3), slice(2, 3), slice(4, 6))
