"""Where a flow's partitions run: Prefect's Dask task runner (prefect-dask), on the scheduler at
`FRAUDLOOP_DASK_ADDRESS` or on a local cluster of one single-threaded process per worker; and
the same choice as a plain `distributed` client, for work that talks to Dask itself (training
with `xgboost.dask`).
"""

from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster
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


def training_workers(settings: Settings, workers: int | None) -> int:
    """Dask workers a training fit runs on, 0 for one process: `workers` if given, else
    `FRAUDLOOP_DASK_WORKERS`; a scheduler at `FRAUDLOOP_DASK_ADDRESS` alone also means Dask."""
    if workers is not None:
        return workers
    return settings.dask_workers or int(settings.dask_address is not None)


@contextmanager
def dask_client(settings: Settings, workers: int) -> Iterator[Client]:
    """A client of the scheduler at `FRAUDLOOP_DASK_ADDRESS`, or of a local cluster of `workers`
    single-threaded processes (as `dask_runner`'s), closed after."""
    if settings.dask_address:
        with Client(settings.dask_address) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


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
