"""Errors a user can cause; the CLI prints them without a traceback."""


class FraudloopError(Exception):
    """A problem the user can fix: the message names the field or service and what to do."""


class ServiceUnavailable(FraudloopError):
    """An external service (Label Studio, MLflow, database) could not be reached."""
