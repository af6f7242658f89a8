"""Per-subject trajectories from a cohort table with subject and visit columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bmeviz import ParameterError
from bmeviz.followup.cohort import TRAJECTORY_COLUMNS, save_trajectories, trajectories


def _cohort():
    # what batch's cohort.csv holds, with the manifest's subject/visit carried over; rows out of order
    return pd.DataFrame({
        "study_id": ["s1v2", "s1v1", "s2v1", "s1v10", "s2v2"],
        "status": ["ok", "ok", "ok", "ok", "failed"],
        "subject": ["A", "A", "B", "A", "B"],
        "visit": ["2", "1", "2024-01-05", "10", "2024-03-01"],
        "total_volume_ml": [6.0, 10.0, 3.0, 0.5, None],
        "n_lesions": [2, 3, 1, 1, None],
    })


def test_trajectories_order_visits_and_measure_change(tmp_path):
    df = _cohort()
    traj = trajectories(df)
    a = traj[traj.subject == "A"]
    assert a.visit.tolist() == ["1", "2", "10"]  # numeric order, not text order (1, 10, 2)
    assert a.change_from_first_ml.tolist() == [0.0, -4.0, -9.5]
    assert a.change_from_first_pct.tolist() == pytest.approx([0.0, -40.0, -95.0])
    assert a.change_from_previous_ml.tolist()[1:] == [-4.0, -5.5]
    b = traj[traj.subject == "B"]
    assert b.visit.tolist() == ["2024-01-05", "2024-03-01"]  # dates in date order
    assert np.isnan(b.total_volume_ml.iloc[1])  # a failed study stays, without a volume
    paths = save_trajectories(df, tmp_path)
    back = pd.read_csv(paths["table"])
    assert list(back.columns) == list(TRAJECTORY_COLUMNS) and len(back) == 5
    img = np.asarray(Image.open(paths["figure"]).convert("L"))
    assert img.shape[0] > 200 and (img < 200).mean() > 0.01  # lines drawn, not a blank canvas


def test_trajectories_refuse_bad_tables_by_name(tmp_path):
    with pytest.raises(ParameterError, match="subject"):
        trajectories(pd.DataFrame({"visit": [1], "total_volume_ml": [1.0]}))
    dup = _cohort()
    dup.loc[0, "visit"] = "1"
    with pytest.raises(ParameterError, match="twice"):
        trajectories(dup)
    _cohort().to_csv(tmp_path / "cohort.csv", index=False)
    assert len(trajectories(tmp_path / "cohort.csv")) == 5
