"""An authenticated Label Studio client: the SDK where it fits, plain HTTP where it does not.

The SDK has no typed calls for Data Manager queries (filters in `?query=`) or the JSON export,
so `LabelStudioClient.request` covers those over the same connection and token.
"""

from dataclasses import dataclass
from typing import Any

import httpx
from label_studio_sdk import LabelStudio
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from fraudloop.errors import FraudloopError, ServiceUnavailable

# Only refused connections are retried (a restart takes seconds): the request never arrived, so
# even an import cannot be applied twice. HTTP errors are answers, not outages.
_retry_connection = retry(
    retry=retry_if_exception_type(httpx.ConnectError),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.5, max=8),
    reraise=True,
)


class LabelStudioError(FraudloopError):
    """Label Studio refused a request; the message carries its status and answer."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class LabelStudioClient:
    url: str
    http: httpx.Client
    sdk: LabelStudio

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; raises ServiceUnavailable when unreachable, LabelStudioError on 4xx/5xx."""
        try:
            response = _retry_connection(self.http.request)(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"Label Studio at {self.url} is unreachable ({exc}); start it with `fraudloop up`"
            ) from exc
        if response.is_error:
            raise LabelStudioError(
                f"Label Studio answered {response.status_code} to {method} {path}: "
                f"{response.text[:300]}",
                status_code=response.status_code,
            )
        return response

    def close(self) -> None:
        self.http.close()


def connect(url: str, token: str, timeout: float = 120.0) -> LabelStudioClient:
    """A client that sends the legacy `Authorization: Token <token>` header the server expects."""
    http = httpx.Client(
        base_url=url.rstrip("/"),
        headers={"Authorization": f"Token {token}"},
        timeout=timeout,
        transport=httpx.HTTPTransport(retries=3),  # retries failed connects only
    )
    sdk = LabelStudio(base_url=url.rstrip("/"), api_key=token, httpx_client=http)
    return LabelStudioClient(url=url.rstrip("/"), http=http, sdk=sdk)
