"""Process-wide switches, each applied by one explicit call: nothing changes at import time."""

import gc
import os

PROCESS_DEFAULTS = {
    # no usage data leaves the machine (MLflow and Prefect report by default)
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    # a registry that does not answer is known within seconds (MLflow's defaults: 7 retries of a
    # 120 s request, minutes before the fallback rules decide); set them higher for slow links
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    # the ephemeral Prefect server needs more than its default 20 s on a busy 2-core machine
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}
GC_THRESHOLDS = (100_000, 20, 100)  # gen0 allocations, gen0 passes per gen1, gen1 per gen2


def apply_process_defaults() -> None:
    """Set the third-party switches above unless the environment already chose."""
    for key, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(key, value)


def tune_for_scoring() -> None:
    """For a process that scores (the scoring flow, an API worker), once its model is loaded.

    What is loaded by then (MLflow, pandas, the model) lives as long as the process: frozen, the
    collector's full passes stop re-scanning it. A batch allocates rows by the hundred thousand,
    nearly all freed by reference counting, so collecting at the default 700 allocations spends
    its time re-scanning rows still in use (`benchmarks/RESULTS.md`).
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
