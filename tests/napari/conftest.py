"""napari plugin tests: headless under Xvfb (pytest-xvfb) with Qt's xcb platform.

Qt's ``offscreen`` platform has no OpenGL context (napari cannot draw), so the display is
a real X server: pytest-xvfb starts Xvfb for the session (screen size and depth from
pyproject's ``xvfb_*`` settings). The environment must be set before napari or Qt is
imported, hence at the top of this file. Xvfb is installed by the test run where it can be
(root with apt-get: tests/_system.py); where it cannot, the napari tests are skipped with
the reason, and under CI (``CI=true``) a missing display is a failure, not a skip.
"""

from __future__ import annotations

import os
import tempfile

os.environ["QT_QPA_PLATFORM"] = "xcb"
if not os.environ.get("XDG_RUNTIME_DIR") or not os.path.isdir(os.environ["XDG_RUNTIME_DIR"]):
    _xdg = os.path.join(tempfile.gettempdir(), f"bmeviz-xdg-{os.getuid()}")
    os.makedirs(_xdg, mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = _xdg

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _display_required():
    """Skip every napari test when there is no X display to draw on (with the reason); fail
    under CI (``CI=true``), where the napari tests must run."""
    if not os.environ.get("DISPLAY"):
        import _system

        reason = _system.no_display_reason()
        if _system.in_ci():
            pytest.fail(f"no X display for the napari tests under CI=true ({reason}); they are not skipped "
                        "in CI: install the packages listed in tests/_system.py", pytrace=False)
        pytest.skip(f"napari tests need an X display: {reason}")


@pytest.fixture(scope="session")
def phantom_sample():
    """The shipped phantom: (volume, ground truth dict) from bmeviz.data.load_sample."""
    from bmeviz.data import load_sample

    return load_sample()


@pytest.fixture
def error_notifications():
    """Collect napari error notifications sent during a test (list of messages)."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    got: list[str] = []

    def grab(n):
        if n.severity == NotificationSeverity.ERROR:
            got.append(str(n.message))

    notification_manager.notification_ready.connect(grab)
    yield got
    notification_manager.notification_ready.disconnect(grab)


@pytest.fixture
def phantom_viewer(make_napari_viewer_proxy):
    """``phantom_viewer(show=False)``: a viewer with the phantom sample open and the BME
    widget docked, as ``(viewer, widget)``; ``show=True`` where pixels matter."""

    def make(show: bool = False):
        viewer = make_napari_viewer_proxy(show=show)
        viewer.open_sample("bmeviz", "phantom")
        _, widget = viewer.window.add_plugin_dock_widget("bmeviz", "BME segmentation")
        return viewer, widget

    return make


@pytest.fixture
def viewer_with_widget(phantom_viewer):
    return phantom_viewer()


@pytest.fixture
def wait_idle(qtbot):
    """``wait_idle(widget)``: wait until the widget's worker (segmentation, export...) is done."""

    def wait(widget, timeout=20000):
        qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)

    return wait


@pytest.fixture
def non_black_share():
    """``non_black_share(rgba)``: share of pixels that are not (near) black."""

    def share(rgba: np.ndarray) -> float:
        rgb = np.asarray(rgba)[..., :3].astype(int)
        return float((rgb.max(axis=-1) > 16).mean())

    return share


def _click(viewer, image, index):
    """A real mouse click on the canvas at voxel ``index`` (slice, row, column) of ``image``
    (the row/column may lie outside the image): go to its slice, centre the camera on the
    point, click the canvas centre with the left button."""
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    raw = getattr(viewer, "__wrapped__", viewer)  # the viewer behind the plugin proxy (canvas access)
    world = np.asarray(image.data_to_world(np.asarray(index, float)), float)
    inside = np.clip(np.asarray(index, float), 0, np.asarray(image.data.shape) - 1)
    world[0] = image.data_to_world(inside)[0]  # the slice shown is always one of the image's
    raw.dims.set_point(0, world[0])
    raw.scene.camera.center = tuple(world[1:])
    canvas = raw.window._qt_viewer.canvas.native
    QApplication.processEvents()
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(canvas.width() // 2, canvas.height() // 2))
    QApplication.processEvents()


@pytest.fixture
def click():
    """``click(viewer, image_layer, (slice, row, column))``: a real mouse click on the canvas there."""
    return _click


@pytest.fixture(autouse=True)
def _autosave_here(tmp_path, monkeypatch):
    """Autosaves of the widget go to the test's folder, never to the user's cache."""
    monkeypatch.setenv("BMEVIZ_AUTOSAVE_DIR", str(tmp_path / "autosave"))
