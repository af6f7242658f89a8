"""The README's test command on a fresh machine: Xvfb installed by the run where it can be
(root + apt-get), the napari tests skipped with the reason where it cannot, failed under CI.

Every path runs in a subprocess with a fake PATH (no Xvfb; no apt-get, or a fake one that
records what it was asked), so nothing is installed for real.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = ROOT / "tests" / "_system.py"


def _env(tmp_path, fakebin, **extra):
    env = {k: v for k, v in os.environ.items()
           if k not in {"DISPLAY", "CI", "BMEVIZ_NO_SYSTEM_INSTALL", "BMEVIZ_CI_SKIP_APT", "BMEVIZ_NO_DISPLAY_REASON",
                        "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS"}}
    env["PATH"] = str(fakebin)
    env["TMPDIR"] = str(tmp_path)  # the apt log and lock go here
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    env.update(extra)
    return env


def _fake_apt(fakebin, *, rc=0, installs=False, sleep=0.0):
    """A fake apt-get that logs its arguments (and can 'install' a fake Xvfb)."""
    fakebin.mkdir(exist_ok=True)
    log = fakebin.parent / "apt-calls.txt"
    body = f'echo "$@" >> "{log}"\n'
    if sleep:
        body += f"/bin/sleep {sleep}\n"
    if installs:
        body += (f'if [ "$1" = install ]; then printf \'#!/bin/sh\\nexit 0\\n\' > "{fakebin}/Xvfb"; '
                 f'/bin/chmod +x "{fakebin}/Xvfb"; fi\n')
    script = fakebin / "apt-get"
    script.write_text(f"#!/bin/sh\n{body}exit {rc}\n")
    script.chmod(0o755)
    return log


def _run_system(tmp_path, fakebin, **extra):
    return subprocess.run([sys.executable, str(SYSTEM)], env=_env(tmp_path, fakebin, **extra),
                          capture_output=True, text=True, timeout=60)


def test_no_apt_get_gives_the_reason(tmp_path):
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    proc = _run_system(tmp_path, fakebin)
    assert proc.returncode == 1
    assert "no apt-get" in proc.stdout and "xvfb" in proc.stdout


def test_no_install_when_told_not_to(tmp_path):
    fakebin = tmp_path / "bin"
    calls = _fake_apt(fakebin)
    proc = _run_system(tmp_path, fakebin, BMEVIZ_NO_SYSTEM_INSTALL="1")
    assert proc.returncode == 1 and "forbids" in proc.stdout
    assert not calls.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the install path runs as root only")
def test_root_with_apt_installs_the_listed_packages(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    import _system

    fakebin = tmp_path / "bin"
    calls = _fake_apt(fakebin, installs=True)
    proc = _run_system(tmp_path, fakebin)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == "update -qq"
    assert lines[1].split() == ["install", "-y", "-qq", "--no-install-recommends", *_system.APT_PACKAGES]
    assert "installed xvfb" in proc.stdout
    # a second run finds Xvfb and does nothing
    proc = _run_system(tmp_path, fakebin)
    assert proc.returncode == 0 and len(calls.read_text().splitlines()) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="the install path runs as root only")
def test_failing_apt_is_reported_with_the_log(tmp_path):
    fakebin = tmp_path / "bin"
    _fake_apt(fakebin, rc=100)
    proc = _run_system(tmp_path, fakebin)
    assert proc.returncode == 1
    assert "'apt-get update' failed (exit code 100; offline?)" in proc.stdout
    assert str(tmp_path) in proc.stdout  # names the log


@pytest.mark.skipif(os.geteuid() != 0, reason="the install path runs as root only")
def test_two_runs_at_once_install_once(tmp_path):
    fakebin = tmp_path / "bin"
    calls = _fake_apt(fakebin, installs=True, sleep=1.0)
    env = _env(tmp_path, fakebin)
    procs = [subprocess.Popen([sys.executable, str(SYSTEM)], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [line.split()[0] for line in calls.read_text().splitlines()] == ["update", "install"]


def _pytest_napari(tmp_path, fakebin, *more, pythonpath=(), **extra):
    tests = [str(ROOT / "tests" / "napari" / "test_cli_view.py"), *more]
    env = _env(tmp_path, fakebin, **extra)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), env["PYTHONPATH"]])
    return subprocess.run(
        [sys.executable, "-m", "pytest", *tests, "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-o", "addopts=--import-mode=importlib"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_where_qt_cannot_load_the_napari_tests_skip_and_the_rest_runs(tmp_path):
    """A bare machine without libEGL/libxkbcommon (not root): pytest-qt would stop the whole run
    when it imports Qt; instead the napari tests skip and the others run."""
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    fake = tmp_path / "site" / "PyQt6"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    for mod in ("QtCore", "QtGui", "QtWidgets", "QtTest"):
        (fake / f"{mod}.py").write_text(
            "raise ImportError('libEGL.so.1: cannot open shared object file: No such file or directory')\n")
    other = str(ROOT / "tests" / "test_geometry.py") + "::test_shapes_must_agree_and_tolerance_is_checked"
    proc = _pytest_napari(tmp_path, fakebin, other, pythonpath=[fake.parent])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    summary = _summary(out)
    assert re.search(r"1 passed", summary) and re.search(r"\d+ skipped", summary), summary
    assert "the Qt binding cannot load" in out and "libEGL.so.1" in out


def _summary(out: str) -> str:
    return [line for line in out.splitlines() if re.search(r"\d+ (skipped|passed|failed|errors?)\b", line)][-1]


def test_napari_tests_skip_with_the_reason_where_nothing_can_be_installed(tmp_path):
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    proc = _pytest_napari(tmp_path, fakebin)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    summary = _summary(out)
    assert re.search(r"\d+ skipped", summary) and not re.search(r"passed|failed|error", summary), summary
    assert "napari tests need an X display: Xvfb is not installed and this machine has no apt-get" in out


def test_napari_tests_fail_under_ci_without_a_display(tmp_path):
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    proc = _pytest_napari(tmp_path, fakebin, CI="true")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "under CI=true" in out and "no apt-get" in out
    summary = _summary(out)
    assert re.search(r"\d+ errors?", summary) and "skipped" not in summary, summary


def test_ci_script_runs_the_readme_command():
    """.ci/run takes the README's test-command block verbatim (the README and CI cannot drift)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- test-command -->")[1].split("<!-- /test-command -->")[0]
    cmd = [line for line in block.splitlines() if line.strip() and not line.startswith("```")]
    assert len(cmd) == 1 and "python -m pytest" in cmd[0] and '.[test]' in cmd[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and 'bash -euo pipefail -c "$cmd"' in ci
    assert "apt-get install" not in ci  # one place installs system packages: tests/_system.py
    assert 'export CI="${CI:-true}"' in ci  # in CI a missing display fails the napari tests
