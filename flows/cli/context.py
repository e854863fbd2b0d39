"""The CLI's process set-up and the settings its global options build (one App per process)."""

from __future__ import annotations

import os
from pathlib import Path

_STATE: dict = {}


def environment() -> None:
    """Defaults for this process: no hub downloads, quiet libraries, Prefect (when used) with its
    state under the home, its task-failure logs kept off the terminal (they still reach the run's
    logs, and ``$DATAWORTH_HOME/logs/dataworth.log``)."""
    home = Path(os.environ.get("DATAWORTH_HOME", ".dataworth"))
    for key, value in {
        "PREFECT_HOME": str((home / "prefect").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL": "CRITICAL",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL": "CRITICAL",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_OFFLINE": "1",  # nothing is ever downloaded from a model hub
        "TRANSFORMERS_VERBOSITY": "error",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        os.environ.setdefault(key, value)


def set_options(config: Path | None, overrides: dict) -> None:
    _STATE.clear()
    _STATE["config"] = config
    _STATE["overrides"] = {k: v for k, v in overrides.items() if v is not None}


def home() -> Path:
    return Path(os.environ.get("DATAWORTH_HOME", ".dataworth"))


def require_home() -> None:
    """Before anything heavy is imported: a command that needs a home says at once that there is none."""
    made = any((home() / name).exists() for name in ("dataworth.toml", "ledger.db", "lance"))
    if _STATE.get("config") is None and not made:
        from flows.errors import HomeNotInitialisedError

        raise HomeNotInitialisedError(
            f"no dataworth home at {home().resolve()}: run `dataworth init` first (or set DATAWORTH_HOME)"
        )


def settings():
    if "settings" not in _STATE:
        from flows.config import load_settings

        _STATE["settings"] = load_settings(_STATE.get("config"), **_STATE.get("overrides", {}))
    return _STATE["settings"]


def get_app(need_home: bool = True):
    """The process's :class:`flows.app.App` (its home checked first), with a log file under the home."""
    if need_home:
        require_home()
    from flows.app import App

    app = App.of(settings())
    _log_file(app.settings.home)
    return app


def _log_file(home_dir: Path) -> None:
    import logging

    if _STATE.get("log_file"):
        return
    (home_dir / "logs").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(home_dir / "logs" / "dataworth.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("dataworth", "prefect"):
        logging.getLogger(name).addHandler(handler)
    logging.getLogger("dataworth").setLevel(logging.INFO)
    _STATE["log_file"] = handler
