"""``run`` needs a cluster: without KAFKA_BOOTSTRAP it stops at once, naming the setting, and
starts no broker of its own unless asked to (``--embedded-broker``)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from breachwatch.cli import main
from breachwatch.core.settings import load_settings
from breachwatch.devkit.local_kafka import embedded_bootstrap


def test_run_without_a_bootstrap_stops_naming_kafka_bootstrap(tmp_path: Path) -> None:
    env = {
        "KAFKA_BOOTSTRAP": "",
        "BREACHWATCH_DB_URL": f"sqlite:///{tmp_path / 'bw.db'}",
        "BREACHWATCH_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 2
    assert "KAFKA_BOOTSTRAP is not set" in result.output
    assert "--embedded-broker" in result.output
    # No broker was fetched or started: the cache it would use is untouched.
    assert not (tmp_path / "cache").exists()


def test_a_configured_bootstrap_wins_over_the_embedded_broker(tmp_path: Path) -> None:
    settings = load_settings(kafka_bootstrap="kafka.unisen.example:9092", cache_dir=tmp_path / "cache")
    with embedded_bootstrap(settings) as boot:
        assert boot == "kafka.unisen.example:9092"
    assert not (tmp_path / "cache").exists()
