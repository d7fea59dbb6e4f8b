"""The Prefect server and workers' settings (started for real in tests/flows/test_scale.py)."""

from __future__ import annotations

from pathlib import Path

from pipeline.stack.prefect_server import SERVER_ENV, PrefectServer, Worker


def test_clients_of_the_server_get_its_url_and_a_home_of_their_own(tmp_path: Path) -> None:
    server = PrefectServer(tmp_path / "prefect", "postgresql+asyncpg://x", port=4200)
    assert server.client_env() == {
        "PREFECT_API_URL": "http://127.0.0.1:4200/api",
        "PREFECT_HOME": str(tmp_path / "prefect" / "client"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    assert SERVER_ENV["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"  # no network here


def test_stopping_what_never_started_is_fine(tmp_path: Path) -> None:
    PrefectServer(tmp_path, "postgresql+asyncpg://x").stop()
    worker = Worker("w", "pool", {}, tmp_path)
    worker.stop()
    worker.kill()
    assert worker.log == tmp_path / "w.log"
