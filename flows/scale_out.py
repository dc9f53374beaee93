"""Where a flow's partitions run: Prefect's Dask task runner (prefect-dask), on the scheduler at
`FRAUDLOOP_DASK_ADDRESS` or on a local cluster of one single-threaded process per worker.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_dask import DaskTaskRunner

from fraudloop.settings import Settings


def dask_runner(settings: Settings, workers: int) -> DaskTaskRunner:
    """A runner for `workers` Dask workers; processes, not threads: scoring holds the GIL."""
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


@contextmanager
def tasks_report_here() -> Iterator[None]:
    """Tasks submitted inside report to this flow's Prefect API, also from other processes.

    A Dask worker gets the flow's settings, not its temporary server: with no `PREFECT_API_URL`
    (Prefect's in-process default) each worker would start a temporary server of its own and
    its task runs would land there, unseen by the flow's.
    """
    if PREFECT_API_URL.value():
        yield
        return
    with get_client(sync_client=True) as client:
        url = str(client.api_url)
    with temporary_settings({PREFECT_API_URL: url}):
        yield
