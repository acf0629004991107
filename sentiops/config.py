"""One settings object for paths, endpoints and credentials (env vars override defaults).

- home: SENTIOPS_HOME (default ./.sentiops)
- mlflow_tracking_uri: MLFLOW_TRACKING_URI (default sqlite:///<home>/mlflow.db)
- s3_endpoint: SENTIOPS_S3_ENDPOINT, S3_ENDPOINT or MINIO_ENDPOINT (default localhost:9000)
- s3_access_key / s3_secret_key: SENTIOPS_S3_ACCESS_KEY / SENTIOPS_S3_SECRET_KEY, or
  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
- s3_secure: SENTIOPS_S3_SECURE (default false); s3_region: SENTIOPS_S3_REGION or AWS_REGION
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    home: Path = Field(Path(".sentiops"), validation_alias=AliasChoices("SENTIOPS_HOME", "home"))
    mlflow_tracking_uri: str | None = Field(
        None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri")
    )
    s3_endpoint: str = Field(
        "localhost:9000",
        validation_alias=AliasChoices(
            "SENTIOPS_S3_ENDPOINT", "S3_ENDPOINT", "MINIO_ENDPOINT", "s3_endpoint"
        ),
    )
    s3_access_key: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "SENTIOPS_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "s3_access_key"
        ),
    )
    s3_secret_key: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "SENTIOPS_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "s3_secret_key"
        ),
    )
    s3_secure: bool = Field(False, validation_alias=AliasChoices("SENTIOPS_S3_SECURE", "s3_secure"))
    s3_region: str = Field(
        "us-east-1", validation_alias=AliasChoices("SENTIOPS_S3_REGION", "AWS_REGION", "s3_region")
    )
    s3_retries: int = Field(3, validation_alias=AliasChoices("SENTIOPS_S3_RETRIES", "s3_retries"))

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        return (self.home / "mlartifacts").resolve()

    @property
    def cache_dir(self) -> Path:
        return (self.home / "cache").resolve()

    @property
    def datasets_dir(self) -> Path:
        return (self.home / "datasets").resolve()


def get_settings() -> Settings:
    """Settings read fresh from the environment (cheap; no caching so tests can monkeypatch)."""
    return Settings()
