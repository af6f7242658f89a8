"""Where the studies run: a Dask LocalCluster, an existing scheduler, or this process.

Dask is imported only when a cluster is needed (``workers=0`` runs without it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from .._version import __version__
from ..errors import ParameterError
from .study import _failed_row, _process_study, _scrub


def _worker_version() -> str:
    return __version__


def _default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        n = os.cpu_count() or 1
    return max(1, n)


@contextlib.contextmanager
def _client(workers: int | None, scheduler: Any, n_tasks: int, dashboard: bool):
    """A distributed Client: on ``scheduler`` (address, Client or cluster), or on a new LocalCluster."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ParameterError("bmeviz batch needs Dask: pip install 'bmeviz[dask]' (dask[distributed]); "
                             "or run without it with workers=0 (CLI: --workers 0)") from None
    if scheduler is not None:
        if hasattr(scheduler, "submit"):  # a Client
            yield scheduler
            return
        address = getattr(scheduler, "scheduler_address", scheduler)  # a cluster object
        try:
            from . import CONNECT_TIMEOUT  # the package's, read when connecting (settable)

            client = Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ParameterError(f"cannot reach the Dask scheduler at {address}: {exc}. Start one with "
                                 "'dask scheduler' and workers with 'dask worker ADDRESS', or leave out --scheduler "
                                 "for a local cluster") from None
        try:
            _check_workers(client, address)
            yield client
        finally:
            client.close()
        return
    import dask

    n = workers if workers is not None else min(_default_workers(), max(1, n_tasks))
    # Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536 in their workers, which turns off
    # glibc's adaptive mmap threshold: every large NumPy array is then a fresh mmap, ten
    # times the page faults and ~15-30% more time per study here (benchmarks/bench_batch.py).
    # A study's arrays are freed when it ends, so the default allocator is kept.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":8787" if dashboard else ":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        if dashboard:
            print(f"bmeviz batch: Dask dashboard at {client.dashboard_link}", file=sys.stderr)
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            cluster.close()


def _check_workers(client: Any, address: str) -> None:
    try:
        client.wait_for_workers(1, timeout=30)
    except Exception:
        raise ParameterError(f"the Dask scheduler at {address} has no worker; start some with "
                             f"'dask worker {address}'") from None
    try:
        versions = client.run(_worker_version)
    except Exception as exc:
        raise ParameterError(f"the Dask workers at {address} cannot run bmeviz ({type(exc).__name__}: {exc}); "
                             f"install bmeviz {__version__} in every worker's environment") from None
    wrong = {w: v for w, v in versions.items() if v != __version__}
    if wrong:
        raise ParameterError(f"Dask workers run another bmeviz version ({sorted(set(wrong.values()))}; this is "
                             f"{__version__}): install the same version everywhere")


def _run_tasks(tasks: Sequence[dict], *, workers: int | None, scheduler: Any, progress: Any,
               dashboard: bool) -> dict[str, dict]:
    results: dict[str, dict] = {}
    if not tasks:
        return results
    if workers == 0 and scheduler is None:
        try:
            for t in tasks:
                r = _process_study(t)
                results[t["study_id"]] = r
                progress.update(r["study_id"], r["status"], r["seconds"])
        except KeyboardInterrupt:
            for t in tasks:
                results.setdefault(t["study_id"], _failed_row(t["study_id"], "interrupted"))
            raise _Interrupted(results) from None
        return results
    with _client(workers, scheduler, len(tasks), dashboard) as client:
        from distributed import as_completed

        futures = {}
        for t in tasks:
            key = f"bmeviz-study-{t['study_id']}-{t['hash'][:12]}-{uuid.uuid4().hex[:6]}"
            futures[client.submit(_process_study, t, key=key, pure=False, retries=0)] = t
        try:
            for fut in as_completed(list(futures)):
                t = futures[fut]
                try:
                    r = fut.result()
                except Exception as exc:  # the worker died (memory), was lost, or the task was cancelled
                    r = _failed_row(t["study_id"], _scrub(f"{type(exc).__name__}: {exc}", t))
                results[t["study_id"]] = r
                progress.update(r["study_id"], r["status"], r["seconds"])
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()
            for t in tasks:
                results.setdefault(t["study_id"], _failed_row(t["study_id"], "interrupted"))
            raise _Interrupted(results) from None
    return results


class _Interrupted(Exception):
    def __init__(self, results: dict) -> None:
        super().__init__("interrupted")
        self.results = results
