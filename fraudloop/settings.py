"""One settings object for the whole project (env vars `FRAUDLOOP_*`, or a `.env` file)."""

from functools import cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from fraudloop import credentials

PACKAGE_DIR = Path(__file__).resolve().parent


class ApiKey(BaseModel):
    """One API client: only the SHA-256 of its key is configured (keys are random, not passwords)."""

    name: str
    role: Literal["scorer", "chargebacks", "reviewer", "senior", "data_scientist", "admin"]
    sha256: str = Field(pattern="^[0-9a-f]{64}$")


class Settings(BaseSettings):
    """Where things live and how services are reached; thresholds live in the policy file."""

    model_config = SettingsConfigDict(env_prefix="FRAUDLOOP_", env_file=".env", extra="ignore")

    home: Path = Field(Path(".fraudloop"), description="Working directory for state and reports")
    db_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite under home")
    mlflow_tracking_uri: str | None = Field(None, description="Default SQLite under home")
    model_name: str = "fraud-detector"
    policy_file: Path = PACKAGE_DIR / "policy.yaml"
    labelstudio_url: str = "http://127.0.0.1:8089"
    # secrets: no defaults; from the environment or `<home>/credentials.json` (`fraudloop up`)
    labelstudio_token: str = Field("", description="Label Studio API token (40 hex)")
    labelstudio_username: str = "admin@fraudloop.local"
    labelstudio_password: str = Field("", description="Label Studio admin password")
    labelstudio_project_prefix: str = Field("fraudloop", description="Title prefix of the queues")
    webhook_url: str | None = Field(
        None, description="Where Label Studio posts annotations (fraudloop's API); None: sync only"
    )
    webhook_secret: str = Field("", description="Shared secret Label Studio sends with webhooks")
    labelstudio_venv: Path = Path(".services/labelstudio-venv")
    api_keys: list[ApiKey] = Field([], description="JSON list of {name, role, sha256}")
    api_keys_file: Path | None = Field(None, description="JSON file with the same list")
    api_max_batch: int = Field(1000, gt=0, description="Transactions per POST /v1/score")
    score_chunk_rows: int = Field(
        10_000, gt=0, description="Transactions the scoring flow stores per transaction"
    )
    model_refresh_seconds: float = Field(
        30.0, gt=0, description="How often the API checks where the champion alias points"
    )
    # scale-out: batch scoring over Dask (`flows.score`), the API behind several workers
    dask_workers: int = Field(
        0, ge=0, description="Dask workers a scoring window is partitioned over (0: one process)"
    )
    dask_address: str | None = Field(
        None, description="A running Dask scheduler (tcp://…); default: a local cluster per run"
    )
    # the server profile (`fraudloop up --profile server`, `flows.profile`): each part a real
    # server, each on its own PostgreSQL database; what is unset here points at them
    profile: Literal["embedded", "server"] = Field(
        "embedded", description="embedded: SQLite and local files; server: `up --profile server`"
    )
    server_postgres_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432",
        description="The PostgreSQL server the server profile keeps a database per service on",
    )
    server_database_prefix: str = Field(
        "fraudloop", pattern="^[a-z][a-z0-9_]{0,40}$", description="<prefix>_store, _mlflow, …"
    )
    mlflow_server_url: str = Field(
        "http://127.0.0.1:5000", description="The server profile's MLflow tracking server"
    )
    prefect_work_pool: str = Field("fraudloop", description="The server profile's work pool")
    prefect_workers: int = Field(1, ge=1, description="Prefect workers the server profile starts")
    alert_sinks: list[str] = Field(
        ["log"],
        description='Where alerts go (JSON list): "log" and/or webhook URLs; every one gets each',
    )
    # the scheduler side (`fraudloop up`): a Prefect server, the deployments, the intake folders
    prefect_api_url: str = Field(
        "http://127.0.0.1:4200/api", description="The Prefect server `up` starts, flows report to"
    )
    prefect_database_url: str | None = Field(
        None, description="Prefect's database (postgresql+asyncpg://…); default SQLite under home"
    )
    api_url: str = Field("http://127.0.0.1:8000", description="Where `up` serves the online API")
    landing_transactions: Path | None = Field(
        None, description="Transaction files are dropped here; default <home>/landing/transactions"
    )
    landing_chargebacks: Path | None = Field(
        None, description="Chargeback files are dropped here; default <home>/landing/chargebacks"
    )

    @model_validator(mode="after")
    def _installed_secrets(self) -> "Settings":
        """Secrets the environment left unset come from this install's credentials file."""
        stored = credentials.read(self.home)
        for name in credentials.FIELDS:
            if not getattr(self, name) and stored.get(name):
                setattr(self, name, stored[name])
        return self

    @model_validator(mode="after")
    def _server_profile(self) -> "Settings":
        """In the server profile, the store, the tracking URI and Prefect's database left unset
        are the profile's servers; set any of them to use another."""
        if self.profile == "server":
            self.db_url = self.db_url or self.server_database("store")
            self.mlflow_tracking_uri = self.mlflow_tracking_uri or self.mlflow_server_url
            self.prefect_database_url = self.prefect_database_url or self.server_database(
                "prefect", driver="asyncpg"
            )
        return self

    def server_database(self, service: str, driver: str = "psycopg") -> str:
        """The server profile's database of one service (`store`, `mlflow`, `prefect`,
        `labelstudio`), as a SQLAlchemy URL with this driver."""
        url = make_url(self.server_postgres_url).set(
            drivername=f"postgresql+{driver}", database=f"{self.server_database_prefix}_{service}"
        )
        return url.render_as_string(hide_password=False)

    def secrets(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in credentials.FIELDS}

    def require_secrets(self) -> None:
        """For what serves or starts services (`serve`, `up`, `doctor`): no default secrets."""
        credentials.require(self.secrets(), self.home)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home.resolve() / 'fraudloop.db'}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home.resolve() / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home.resolve() / "mlartifacts"

    @property
    def labelstudio_data_dir(self) -> Path:
        return self.home.resolve() / "labelstudio"

    @property
    def reports_dir(self) -> Path:
        return self.home.resolve() / "reports"

    @property
    def prefect_home(self) -> Path:
        return self.home.resolve() / "prefect"

    @property
    def transactions_landing(self) -> Path:
        return (self.landing_transactions or self.home / "landing" / "transactions").resolve()

    @property
    def chargebacks_landing(self) -> Path:
        return (self.landing_chargebacks or self.home / "landing" / "chargebacks").resolve()

    @property
    def labelstudio_host(self) -> str:
        return urlparse(self.labelstudio_url).hostname or "127.0.0.1"

    @property
    def labelstudio_port(self) -> int:
        return urlparse(self.labelstudio_url).port or 8089


@cache
def get_settings() -> Settings:
    return Settings()
