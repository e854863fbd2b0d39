"""Where stores live: a local directory or an object-store URI (``s3://bucket/prefix``).

Object stores are configured the way their own tools are, by the standard environment
variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, ``AWS_ALLOW_HTTP`` for a plain-HTTP endpoint such as MinIO or moto on loopback),
so moving a deployment from disk to a bucket changes one URI and nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs

REMOTE_SCHEMES = ("s3://", "gs://", "az://", "abfs://")


def is_remote(uri: str | Path) -> bool:
    return str(uri).startswith(REMOTE_SCHEMES)


def join(uri: str | Path, *parts: str) -> str:
    """``uri/part/...`` for local paths and object-store URIs alike."""
    base = str(uri).rstrip("/")
    return "/".join([base, *(p.strip("/") for p in parts)])


def _aws_env() -> dict[str, str]:
    """The standard AWS variables that are set (endpoint, region, credentials)."""
    env = {
        "endpoint": os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT"),
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        "access_key": os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "session_token": os.environ.get("AWS_SESSION_TOKEN"),
    }
    return {k: v for k, v in env.items() if v}


def lance_storage_options(uri: str | Path) -> dict[str, str] | None:
    """LanceDB ``storage_options`` for ``uri`` from the environment (``None`` for local paths)."""
    if not str(uri).startswith("s3://"):
        return None
    names = {
        "endpoint": "aws_endpoint",
        "region": "aws_region",
        "access_key": "aws_access_key_id",
        "secret_key": "aws_secret_access_key",
        "session_token": "aws_session_token",
    }
    env = _aws_env()
    opts = {names[k]: v for k, v in env.items()}
    plain_http = env.get("endpoint", "").startswith("http://")
    if plain_http or os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes"):
        opts["allow_http"] = "true"
    return opts


def filesystem(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it (``bucket/prefix`` or an absolute path)."""
    uri = str(uri)
    if uri.startswith("s3://"):
        kwargs: dict = {"region": "us-east-1", **_aws_env()}
        if endpoint := kwargs.pop("endpoint", None):
            scheme, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        return pafs.S3FileSystem(**kwargs), uri[len("s3://") :].rstrip("/")
    if is_remote(uri):
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/")
    path = Path(uri).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return pafs.LocalFileSystem(), str(path)
