"""System packages for the napari tests (an X server), installed by the test run itself.

The napari plugin tests draw on a real X server: Xvfb (started by pytest-xvfb) with Qt's
xcb platform and Mesa. pip cannot install those; on a fresh Debian/Ubuntu machine they
are missing, so the README's test command would fail every napari test. Here, once per
test run and before pytest-xvfb looks for Xvfb:

* Xvfb on PATH, or a display already set (``DISPLAY``): nothing to do;
* running as root with ``apt-get`` (a fresh container, a CI machine): ``apt-get update``
  and ``apt-get install`` of :data:`APT_PACKAGES`, logged to a file, under a file lock so
  two test runs never run apt at once; only the pytest controller does it, never an xdist
  worker (the workers start after it, and find Xvfb);
* otherwise (not root, no apt-get, offline, ``BMEVIZ_NO_SYSTEM_INSTALL=1``): nothing is
  installed and the napari tests are skipped with the reason; with ``CI=true`` they fail
  instead (tests/napari/conftest.py), so CI never passes without them.

Run it by hand with ``python tests/_system.py`` (prints what it did).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: What the napari tests need on Debian/Ubuntu (see docs/robustness.md; Xvfb brings Mesa).
APT_PACKAGES = (
    "xvfb", "xauth", "libegl1", "libfontconfig1", "libdbus-1-3", "libglib2.0-0", "libxkbcommon-x11-0",
    "libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-shape0",
)
#: Set to 1 to never install anything (the napari tests then skip, or fail under CI).
NO_INSTALL_ENV = "BMEVIZ_NO_SYSTEM_INSTALL"
#: Where the controller leaves the reason the display is missing, for the workers.
REASON_ENV = "BMEVIZ_NO_DISPLAY_REASON"
APT_TIMEOUT_S = 900


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def have_display() -> bool:
    return bool(os.environ.get("DISPLAY")) or shutil.which("Xvfb") is not None


def _log_path() -> Path:
    return Path(tempfile.gettempdir()) / f"bmeviz-apt-{os.getuid()}.log"


def ensure_display_packages(*, echo=print) -> str | None:
    """Install Xvfb and the Qt/Mesa libraries when possible; return why there is no X server
    (None: Xvfb or a display is there now)."""
    if have_display():
        return None
    if os.environ.get(NO_INSTALL_ENV) == "1" or os.environ.get("BMEVIZ_CI_SKIP_APT") == "1":
        return f"Xvfb is not installed and {NO_INSTALL_ENV}=1 forbids installing it"
    apt = shutil.which("apt-get")
    if apt is None:
        return ("Xvfb is not installed and this machine has no apt-get to install it: install Xvfb "
                f"(Debian/Ubuntu: apt-get install {' '.join(APT_PACKAGES)})")
    if os.geteuid() != 0:
        return ("Xvfb is not installed and installing it needs root: run "
                f"sudo apt-get install -y --no-install-recommends {' '.join(APT_PACKAGES)}")
    import fcntl

    log = _log_path()
    lock = Path(tempfile.gettempdir()) / "bmeviz-apt.lock"
    with open(lock, "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)  # another test run installing: wait for it, then look again
        if have_display():
            return None
        echo(f"bmeviz tests: Xvfb is missing; installing the napari test packages with apt-get (log: {log})")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with open(log, "a") as out:
            for cmd in ([apt, "update", "-qq"],
                        [apt, "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES]):
                out.write(f"$ {' '.join(cmd)}\n")
                out.flush()
                try:
                    rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=APT_TIMEOUT_S,
                                        stdin=subprocess.DEVNULL).returncode
                except (OSError, subprocess.TimeoutExpired) as exc:
                    rc, why = -1, str(exc)
                else:
                    why = f"exit code {rc}"
                if rc != 0:
                    tail = _tail(log)
                    return (f"Xvfb is not installed and 'apt-get {cmd[1]}' failed ({why}; offline?): "
                            f"see {log}" + (f"; last line: {tail}" if tail else ""))
    if shutil.which("Xvfb") is None:
        return f"apt-get installed the packages but Xvfb is still not on PATH (see {log})"
    echo("bmeviz tests: installed " + " ".join(APT_PACKAGES))
    return None


def _tail(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def wants_napari_tests(args: list[str], rootdir: Path) -> bool:
    """Whether the run may collect tests/napari (no paths given, or a path inside/above it)."""
    napari_dir = (rootdir / "tests" / "napari").resolve()
    paths = [a.split("::")[0] for a in args if not a.startswith("-")]
    if not paths:
        return True
    for a in paths:
        p = Path(a).resolve()
        if p == napari_dir or napari_dir in p.parents or p in napari_dir.parents:
            return True
    return False


#: Qt bindings pytest-qt can use, in its order of preference.
_QT_BINDINGS = ("PyQt6", "PySide6", "PyQt5")


def qt_problem() -> str | None:
    """Why no Qt binding can load here (e.g. libEGL or libxkbcommon missing), or None."""
    import importlib
    import importlib.util

    errors = []
    for binding in _QT_BINDINGS:
        if importlib.util.find_spec(binding) is None:
            continue
        try:
            importlib.import_module(f"{binding}.QtGui")
            importlib.import_module(f"{binding}.QtWidgets")
            return None
        except ImportError as exc:
            errors.append(f"{binding}: {exc}")
    if not errors:
        return "no Qt binding is installed (pip install -e '.[test]' brings PyQt6)"
    return ("the Qt binding cannot load (" + "; ".join(errors) + "): system libraries are missing, install "
            + " ".join(APT_PACKAGES))


def _disable_pytest_qt(config) -> None:
    """pytest-qt imports Qt in its pytest_configure and in hooks around every test: where Qt
    cannot load, that would stop the whole run. Its configure (already scheduled) is made
    harmless and the plugin unregistered; the napari tests are skipped at collection."""
    try:
        from pytestqt.qt_compat import qt_api
    except ImportError:
        return
    qt_api.set_qt_api = lambda *a, **k: None
    if hasattr(config.option, "qt_log"):
        config.option.qt_log = False  # else its configure registers a Qt logging plugin for every test
    for name in ("pytest-qt", "pytestqt.plugin"):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)


def configure(config) -> None:
    """pytest_configure (first of all): install the packages in the controller where it can (or
    note why not); in every process, keep a Qt that cannot load from stopping the run."""
    worker = hasattr(config, "workerinput")
    if not worker and not os.environ.get(REASON_ENV) and wants_napari_tests(list(config.args),
                                                                           Path(str(config.rootpath))):
        reason = ensure_display_packages(echo=lambda m: sys.stderr.write(m + "\n"))
        if reason:
            os.environ[REASON_ENV] = reason  # the workers inherit it
    problem = qt_problem()
    if problem:
        os.environ[REASON_ENV] = problem if not os.environ.get(REASON_ENV) else f"{os.environ[REASON_ENV]}; {problem}"
        if not in_ci():
            _disable_pytest_qt(config)
    if not worker and os.environ.get(REASON_ENV):
        sys.stderr.write(f"bmeviz tests: {os.environ[REASON_ENV]}; the napari tests will "
                         f"{'FAIL (CI=true)' if in_ci() else 'be skipped'}\n")


def napari_skip_reason() -> str | None:
    """Why the napari tests cannot run in this process (None: they can)."""
    problem = qt_problem()
    if problem:
        return os.environ.get(REASON_ENV) or problem
    if not os.environ.get("DISPLAY"):
        return no_display_reason()
    return None


def no_display_reason() -> str:
    """Why the napari tests cannot run (for the skip or failure message)."""
    return os.environ.get(REASON_ENV) or (
        "no X display: Xvfb is not installed (pytest-xvfb cannot start it) and DISPLAY is not set")


if __name__ == "__main__":
    why = ensure_display_packages()
    print(why or "Xvfb (or a display) is available")
    sys.exit(1 if why else 0)
