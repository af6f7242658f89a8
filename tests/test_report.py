"""The per-study HTML report: self-contained, complete, and free of identifiers unless asked."""

from __future__ import annotations

import base64
import re

import pytest

import bmeviz

PLANTED = {"PatientName": "Doe^Jane", "PatientID": "PID-778899", "PatientBirthDate": "19700101",
           "AccessionNumber": "ACC-445566", "InstitutionName": "Hospital Zeta"}


@pytest.fixture(scope="module")
def result():
    from bmeviz.data import make_phantom

    ph = make_phantom(shape=(16, 96, 96), spacing=(3.0, 1.4, 1.4), seed=4)
    return bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds, edge="half-max")


def test_report_is_self_contained(result, tmp_path):
    from bmeviz.report import save_report

    path = save_report(result, tmp_path / "report.html", title="K07")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # nothing outside the file: no scripts, stylesheets, or linked images
    assert "<script" not in text and "<link" not in text and "@import" not in text
    srcs = re.findall(r'src="([^"]*)"', text)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:  # real PNGs
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(href|src)="(https?:|file:|/)', text)
    assert list(tmp_path.iterdir()) == [path], "one file, written atomically (no temporary left)"


def test_report_holds_table_threshold_reference_and_provenance(result, tmp_path):
    from bmeviz.report import save_report

    text = save_report(result, tmp_path / "r.html", title="K07").read_text(encoding="utf-8")
    assert "<title>BME report: K07</title>" in text
    assert f"{result.total_volume_ml:.3f} mL" in text
    from bmeviz.report import _fmt

    assert _fmt(result.threshold.value, 1) in text
    st = result.threshold.stats
    for v in (st.q3, st.iqr, st.mean):
        assert _fmt(v) in text
    # one row per lesion in the table, with its volume in fixed decimals
    for _, row in result.table.iterrows():
        assert f"<td>{int(row['lesion_id'])}</td><td>{row['volume_ml']:.3f}</td>" in text
    assert "provenance.json" in text and "&quot;software&quot;" in text
    assert "bmeviz " + bmeviz.__version__ in text


def test_report_without_lesions(tmp_path):
    from bmeviz.data import make_phantom
    from bmeviz.report import save_report

    ph = make_phantom(shape=(16, 96, 96), spacing=(3.0, 1.4, 1.4), seed=2)
    res = bmeviz.segment(ph.volume, reference=ph.reference, k=1000)
    assert res.n_lesions == 0
    text = save_report(res, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No lesion." in text and "0.000 mL" in text


def test_report_has_no_identifiers_unless_asked(tmp_path):
    from bmeviz.data import make_phantom
    from bmeviz.io.dicom_write import write_dicom_series
    from bmeviz.report import save_report

    ph = make_phantom(shape=(16, 96, 96), spacing=(3.0, 1.4, 1.4), seed=6)
    # identifiers in the DICOM tags and in the folder names, as real exports have them
    folder = write_dicom_series(ph.volume, tmp_path / "Doe_Jane_PID-778899" / "stir", patient=PLANTED)
    vol = bmeviz.load(folder)
    res = bmeviz.segment(vol, reference=tuple(int(v) for v in vol.ras_to_index(
        ph.volume.index_to_ras(ph.reference_point), round=True)), reference_radius_mm=6,
        seeds_mm=ph.volume.index_to_ras(ph.seeds))
    text = save_report(res, tmp_path / "r.html").read_text(encoding="utf-8")
    for value in list(PLANTED.values()) + ["Doe_Jane", str(tmp_path)]:
        assert value not in text, value
    assert "no patient identifiers" in text
    text = save_report(res, tmp_path / "phi.html", include_phi=True).read_text(encoding="utf-8")
    assert "Doe_Jane_PID-778899" in text  # the paths, asked for
    assert vol.metadata["series_uid"] in text


def test_report_reads_like_a_paper_table(result, tmp_path):
    """Fixed decimals (no 1.793e+04 beside 0.9038), a table that fits the page, the study label
    as title, and a long tail of tiny lesions summarised in one row."""
    import dataclasses

    import numpy as np

    from bmeviz.lesions import lesion_table
    from bmeviz.report import MAX_ROWS, report_html

    text = report_html(result)
    assert not re.search(r"\d\.\d+e[+-]\d", text.split("<h2>Provenance")[0])  # no e-notation above the raw JSON
    assert "sha256:" not in text.split("<h2>Provenance")[0].split("<body>")[1].split("<h2>")[0]  # not the title
    assert "<title>BME report: SIJ-042 baseline</title>" in report_html(result, title="SIJ-042 baseline")
    # 60 specks beside the real lesions: the largest rows in full, the rest in one line
    labels = result.labels.copy()
    free = np.argwhere((labels == 0) & (result.volume.array > -np.inf))[::997][:60]
    for i, (z, r, c) in enumerate(free, start=int(labels.max()) + 1):
        labels[z, r, c] = i
    table = lesion_table(labels, result.volume.array, affine=result.volume.affine, reference=result.threshold.stats)
    many = dataclasses.replace(result, labels=labels, mask=labels > 0, table=table)
    text = report_html(many)
    lesion_html = text.split("class='lesions'>")[1].split("</table>")[0]
    assert lesion_html.count("<tr>") == MAX_ROWS + 1  # header + the largest lesions
    n_rest = len(table) - MAX_ROWS
    assert f"{n_rest} smaller lesions" in lesion_html and "lesions.csv" in lesion_html
    rest_ml = table.sort_values("volume_ml", ascending=False)["volume_ml"].iloc[MAX_ROWS:].sum()
    assert f"{rest_ml:.3f} mL together" in lesion_html
    assert lesion_html.count("<th>") == 6  # six columns: fits a printed page
