"""The long fuzz run, for local use (CI runs the short one in tests/fuzz/).

Three ways, all with the same mutators and checks (tests/fuzz/harness.py):

    # 1. random mutations for a time budget; a table of outcomes per input kind and mutation
    python benchmarks/fuzz_long.py --minutes 30 --seed 7
    # 2. coverage-guided with atheris (pip install atheris): the fuzzer's bytes choose the
    #    seed input and the mutations; bmeviz.io is instrumented
    python benchmarks/fuzz_long.py --atheris --minutes 30 -- -max_len=512
    # 3. the CI suite with more cases and another seed (same as the env vars by hand)
    python benchmarks/fuzz_long.py --pytest --scale 20 --seed 7

A case passes when bmeviz returns a sane volume or raises a BmevizError naming the input,
within the per-case time limit and without trying to allocate more than the input can
justify (see harness.run_case). Failing cases are copied to --keep (default
benchmarks/results/fuzz-failures/) with a ``case.json`` that says which mutations made
them; re-run one with ``python benchmarks/fuzz_long.py --replay DIR``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
SHARED = Path(os.environ.get("BMEVIZ_SHARED_DATA", ROOT.parent / "shared" / "data"))

from fuzz import harness as H  # noqa: E402

REAL_CASES = [
    "generic/anatomical/001", "generic/anatomical/001_implicit", "generic/compressed/001",
    "generic/compressed_j2k/001", "generic/compressed_jpeg/001", "generic/compressed_jpegls/001",
    "generic/compressed_rle/001", "hitachi/anatomical/001", "philips/anatomical/001",
    "philips_enhanced/anatomical/001", "siemens_multiframe/anatomical/001",
]


def make_seeds(root: Path) -> dict[str, Path]:
    import numpy as np

    vol = H.synthetic_volume()
    classic = H.write_classic_series(root / "classic", vol, shuffle_names=True)
    seeds = {
        "classic": classic,
        "implicit": H.convert_series(classic, root / "implicit", "implicit"),
        "bigendian": H.convert_series(classic, root / "bigendian", "bigendian"),
        "rle": H.convert_series(classic, root / "rle", "rle"),
        "deflated": H.convert_series(classic, root / "deflated", "deflated"),
        "enhanced": H.write_enhanced(root / "enhanced" / "enh.dcm", vol).parent,
        "nifti_int": H.write_nifti(root / "int16.nii", vol, dtype=np.int16, slope=2.5),
        "nifti_float": H.write_nifti(root / "float.nii", vol, dtype=np.float32, slope=None),
    }
    for case in REAL_CASES:
        if (SHARED / "dicom-series-cases" / case).is_dir():
            seeds["real:" + case] = SHARED / "dicom-series-cases" / case
    return seeds


# ----------------------------------------------------------------------------- random ops
KEYWORDS = H.TARGET_KEYWORDS
NIFTI_FIELDS = sorted(H.NIFTI_INTERESTING)


def random_dicom_op(rng: random.Random) -> tuple:
    kind = rng.choice(["flip", "truncate", "splice", "delete", "set", "set", "length"])
    target = rng.choice(KEYWORDS) if rng.random() < 0.7 else rng.randrange(10_000)
    if kind == "flip":
        return ("flip", [(rng.randrange(2**31), rng.randrange(1, 256)) for _ in range(rng.randint(1, 8))])
    if kind == "truncate":
        return ("truncate", rng.random())
    if kind == "splice":
        return ("splice", rng.randrange(2**31), rng.randrange(65), bytes(rng.randrange(256) for _ in range(rng.randrange(48))))
    if kind == "delete":
        return ("delete", target)
    if kind == "set":
        return ("set", target, rng.randrange(1000))
    return ("length", target, rng.choice([0, 1, 2, 3, 7, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF]))


def random_nifti_op(rng: random.Random) -> tuple:
    kind = rng.choice(["field", "field", "flip-header", "nonfinite-data", "truncate", "extension"])
    if kind == "field":
        name = rng.choice(NIFTI_FIELDS)
        return ("field", name, rng.randrange(H.NIFTI1_FIELDS[name][2]), rng.randrange(100))
    if kind == "flip-header":
        return ("flip-header", [(rng.randrange(352), rng.randrange(1, 256)) for _ in range(rng.randint(1, 6))])
    if kind == "nonfinite-data":
        return ("nonfinite-data", [rng.randrange(2**31) for _ in range(rng.randint(1, 10))], rng.randrange(4))
    if kind == "truncate":
        return ("truncate", rng.random())
    return ("extension", rng.choice([0, 8, 16, 32, 1 << 20, 0x7FFFFFF0, 0xFFFFFFF0]), rng.randrange(-1, 41))


def run_one(seed_name: str, seed_path: Path, ops: list, work: Path, gz: float | None = None) -> tuple[list[str], Path]:
    """Build the case from a seed and ops, check it; (problems, case path)."""
    if seed_name.startswith("nifti"):
        data = seed_path.read_bytes()
        for op in ops:
            data = H.apply_nifti_op(data, op)
        path = work / ("case.nii" + (".gz" if gz is not None else ""))
        path.write_bytes(data if gz is None else H.truncate(H.gz_bytes(data), gz) if gz < 1 else H.gz_bytes(data))
        return H.check_nifti_file(path), path
    folder = work / "case"
    shutil.copytree(seed_path, folder) if seed_path.is_dir() else None
    files = sorted(folder.iterdir())
    for which, op in ops:
        f = files[which % len(files)]
        f.write_bytes(H.apply_op(f.read_bytes(), op))
    return H.check_dicom_folder(folder), folder


def outcome_kind(path: Path) -> str:
    """volume / error class name of one case (for the table)."""
    import bmeviz

    out = H.run_case(lambda: bmeviz.load(path))
    return "volume" if out.kind == "volume" else type(out.exc).__name__ if out.kind == "error" else out.kind


def random_mode(args) -> int:
    rng = random.Random(args.seed)
    keep = Path(args.keep)
    tally: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    failures = 0
    n = 0
    deadline = time.monotonic() + 60 * args.minutes
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seeds = make_seeds(tmp / "seeds")
        real = sorted(k for k in seeds if k.startswith("real:"))
        kinds = sorted(k for k in seeds if not k.startswith("real:")) + (["real"] if real else [])
        while time.monotonic() < deadline and (args.cases is None or n < args.cases):
            n += 1
            name = rng.choice(kinds)  # each input kind as often; a real case at random
            name = rng.choice(real) if name == "real" else name
            nifti = name.startswith("nifti")
            if nifti:
                ops = [random_nifti_op(rng) for _ in range(rng.randint(1, 4))]
                gz = rng.choice([None, None, 1.0, 0.99, 0.5, 0.05, rng.random()])
            else:
                ops = [(rng.randrange(100), random_dicom_op(rng)) for _ in range(rng.randint(1, 3))]
                gz = None
            work = tmp / f"w{n}"
            work.mkdir()
            problems, case = run_one(name, seeds[name], ops, work, gz)
            kind = outcome_kind(case) if not problems else "FAIL"
            seed_kind = "real" if name.startswith("real:") else name
            tally[("input", seed_kind)][kind] += 1
            for op_kind in sorted({(op if nifti else op[1])[0] for op in ops}):
                tally[("mutation", ("nifti " if nifti else "dicom ") + op_kind)][kind] += 1
            if problems:
                failures += 1
                dst = keep / f"{time.strftime('%Y%m%d-%H%M%S')}-{n}"
                dst.mkdir(parents=True, exist_ok=True)
                if case.is_dir():
                    shutil.copytree(case, dst / "case")
                else:
                    shutil.copy(case, dst / case.name)
                (dst / "case.json").write_text(json.dumps(
                    {"seed_input": name, "ops": ops, "gz": gz, "problems": problems}, indent=2, default=repr))
                print(f"FAIL #{n} ({name}, {ops!r:.200}): {problems[0][:300]} -> {dst}", flush=True)
            shutil.rmtree(work, ignore_errors=True)
            if n % 500 == 0:
                print(f"{n} cases, {failures} failures, {deadline - time.monotonic():.0f} s left", flush=True)
    print_table(tally, n, failures)
    return 1 if failures else 0


def print_table(tally, n, failures) -> None:
    """Outcomes per input kind and per mutation kind (a case with several mutations counts
    once for each kind it used), as markdown."""
    kinds = sorted({k for c in tally.values() for k in c}, key=lambda k: (k == "FAIL", k != "volume", k))
    print(f"\n{n} cases, {failures} failures\n")
    for axis in ("input", "mutation"):
        print(f"| {axis} | " + " | ".join(kinds) + " |")
        print("|---|" + "---:|" * len(kinds))
        for (a, what), c in sorted(tally.items()):
            if a == axis:
                print(f"| {what} | " + " | ".join(str(c.get(k, 0)) for k in kinds) + " |")
        print()


def replay(folder: Path) -> int:
    info = json.loads((folder / "case.json").read_text())
    case = folder / "case" if (folder / "case").is_dir() else next(p for p in folder.iterdir() if ".nii" in p.name)
    problems = H.check_nifti_file(case) if ".nii" in case.name else H.check_dicom_folder(case)
    print(json.dumps(info, indent=2)[:2000])
    print("\n".join(problems) or "passes now")
    return 1 if problems else 0


def atheris_mode(args, extra: list[str]) -> int:
    import atheris

    with atheris.instrument_imports(include=["bmeviz"]):
        import bmeviz  # noqa: F401
        import bmeviz.io.dicom  # noqa: F401
        import bmeviz.io.nifti  # noqa: F401
    import atexit

    tmp = Path(tempfile.mkdtemp())
    atexit.register(shutil.rmtree, tmp, True)
    seeds = make_seeds(tmp / "seeds")
    names = sorted(seeds)
    counter = [0]

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        name = names[fdp.ConsumeIntInRange(0, len(names) - 1)]
        rng = random.Random(fdp.ConsumeInt(8))  # the bytes pick the ops through a seeded generator
        nifti = name.startswith("nifti")
        if nifti:
            ops = [random_nifti_op(rng) for _ in range(fdp.ConsumeIntInRange(1, 4))]
            gz = [None, 1.0, 0.5][fdp.ConsumeIntInRange(0, 2)]
        else:
            ops = [(fdp.ConsumeIntInRange(0, 99), random_dicom_op(rng)) for _ in range(fdp.ConsumeIntInRange(1, 3))]
            gz = None
        counter[0] += 1
        work = tmp / f"w{counter[0]}"
        work.mkdir()
        try:
            problems, _ = run_one(name, seeds[name], ops, work, gz)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if problems:
            raise RuntimeError(f"{name} {ops!r}: {problems[0]}")

    atheris.Setup([sys.argv[0], f"-max_total_time={int(60 * args.minutes)}", *extra], one_input)
    atheris.Fuzz()
    return 0


def pytest_mode(args) -> int:
    env = {**os.environ, "BMEVIZ_FUZZ_SCALE": str(args.scale), "BMEVIZ_FUZZ_SEED": str(args.seed)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "fuzz"),
           str(ROOT / "tests" / "test_properties.py"), "-n", str(args.workers)]
    print("running:", " ".join(cmd), f"(BMEVIZ_FUZZ_SCALE={args.scale} BMEVIZ_FUZZ_SEED={args.seed})")
    return subprocess.call(cmd, env=env, cwd=ROOT)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="time budget (random and atheris modes)")
    p.add_argument("--cases", type=int, help="stop after this many cases (random mode)")
    p.add_argument("--seed", type=int, default=1, help="random seed (random and pytest modes)")
    p.add_argument("--keep", default=str(ROOT / "benchmarks" / "results" / "fuzz-failures"),
                   help="where failing cases are copied")
    p.add_argument("--atheris", action="store_true", help="coverage-guided with atheris")
    p.add_argument("--pytest", action="store_true", help="run the CI fuzz and property suites, scaled up")
    p.add_argument("--scale", type=float, default=20.0, help="pytest mode: cases x this")
    p.add_argument("--workers", type=int, default=2, help="pytest mode: xdist workers")
    p.add_argument("--replay", type=Path, help="re-check one kept failing case")
    args, extra = p.parse_known_args(argv)
    if args.replay:
        return replay(args.replay)
    if args.pytest:
        return pytest_mode(args)
    if args.atheris:
        return atheris_mode(args, [a for a in extra if a != "--"])
    return random_mode(args)


if __name__ == "__main__":
    sys.exit(main())
