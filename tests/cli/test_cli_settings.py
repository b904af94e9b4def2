"""The settings reference, the exit statuses and the help texts, as an operator reads them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from breachwatch.cli import main
from breachwatch.cli.settings import reference
from breachwatch.core.settings import SECRET_FIELDS, Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The process environment without any BreachWatch variable, and a database in tmp_path."""
    for name in list(os.environ):
        if name.startswith("BREACHWATCH_") or name == "KAFKA_BOOTSTRAP":
            monkeypatch.delenv(name)
    return {"BREACHWATCH_DB_URL": f"sqlite:///{tmp_path / 'bw.db'}"}


def test_the_settings_reference_is_generated_from_the_model_and_up_to_date() -> None:
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert text == reference(), "regenerate it: breachwatch settings reference > docs/settings.md"
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert f"`BREACHWATCH_{name.upper()}`" in text
    for name in SECRET_FIELDS:
        assert f"`BREACHWATCH_{name.upper()}_FILE`" in text
    assert "| `BREACHWATCH_METRICS_HOST` | `127.0.0.1` |" in text


def test_exit_statuses(clean_env: dict[str, str]) -> None:
    """0 done; 1 failed, saying why; 2 wrong usage or a setting to fix (named)."""
    runner = CliRunner()
    assert runner.invoke(main, ["settings", "check"], env=clean_env).exit_code == 0
    assert runner.invoke(main, ["db", "upgrade"], env=clean_env).exit_code == 0

    unknown_id = runner.invoke(main, ["tokens", "revoke", "no-such-token"], env=clean_env)
    assert unknown_id.exit_code == 1, unknown_id.output

    no_option = runner.invoke(main, ["run", "--no-such-option"], env=clean_env)
    assert no_option.exit_code == 2 and "No such option" in no_option.output
    bad_value = runner.invoke(main, ["settings", "check"], env={**clean_env, "BREACHWATCH_PARTITIONS": "many"})
    assert bad_value.exit_code == 2 and "BREACHWATCH_PARTITIONS" in bad_value.output
    typo = runner.invoke(main, ["db", "current"], env={**clean_env, "BREACHWATCH_DB_URLL": "sqlite://"})
    assert typo.exit_code == 2 and "did you mean BREACHWATCH_DB_URL?" in typo.output
    no_bootstrap = runner.invoke(main, ["produce", str(ROOT)], env=clean_env)
    assert no_bootstrap.exit_code == 2 and "KAFKA_BOOTSTRAP is not set" in no_bootstrap.output


def test_the_installed_command_exits_2_naming_a_misspelt_setting(clean_env: dict[str, str]) -> None:
    env = {**os.environ, **clean_env, "BREACHWATCH_KAFKA_BOOTSTRAPP": "kafka-1.example:9092"}
    done = subprocess.run(
        [sys.executable, "-m", "breachwatch", "run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert (
        "BREACHWATCH_KAFKA_BOOTSTRAPP: not a known setting (did you mean BREACHWATCH_KAFKA_BOOTSTRAP?)" in done.stderr
    )
    assert "Traceback" not in done.stderr


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


def test_every_command_and_option_says_what_it_does() -> None:
    commands = _commands(main)
    assert len(commands) > 30
    for path, command in commands:
        assert command.help, f"breachwatch {' '.join(path)} has no help text"
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"breachwatch {' '.join(path)} {param.opts[0]} has no help text"


def test_produce_help_says_it_needs_a_cluster_and_never_starts_one() -> None:
    text = " ".join(CliRunner().invoke(main, ["produce", "--help"]).output.split())
    assert "KAFKA_BOOTSTRAP" in text and "never starts a broker" in text
    assert "fall" not in text.lower() and "local broker" not in text.lower()


def test_model_files_need_the_signing_key_and_a_refused_one_is_explained(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    runner = CliRunner()
    model = tmp_path / "model.skops"
    model.write_bytes(b"not a model at all")
    dump = tmp_path / "dump"
    dump.mkdir()
    env = {**clean_env, "BREACHWATCH_PSEUDONYM_KEY": "fictional-pseudonym-key-0123456789"}

    train = runner.invoke(main, ["train", str(dump), "--until", "2026-11-24T00:00:00Z", "--model", str(model)], env=env)
    assert train.exit_code == 2 and "BREACHWATCH_MODEL_SIGNING_KEY is not set" in train.output

    env["BREACHWATCH_MODEL_SIGNING_KEY"] = "short"
    weak = runner.invoke(main, ["settings", "check"], env=env)
    assert weak.exit_code == 2 and "BREACHWATCH_MODEL_SIGNING_KEY: Value error, must be at least 16" in weak.output
    assert "short" not in weak.output.replace("shortly", "")  # a secret is never echoed

    unsigned_run = runner.invoke(
        main, ["run", "--model", str(model)], env={**clean_env, "KAFKA_BOOTSTRAP": "kafka-1.example:9092"}
    )
    assert unsigned_run.exit_code == 2 and "BREACHWATCH_MODEL_SIGNING_KEY is not set" in unsigned_run.output

    env["BREACHWATCH_MODEL_SIGNING_KEY"] = "fictional-model-signing-key-0123456789"
    refused = runner.invoke(
        main, ["replay", str(dump), "--out", str(tmp_path / "out.jsonl"), "--model", str(model)], env=env
    )
    assert refused.exit_code == 1, refused.output
    assert f"Error: {model}: not a BreachWatch model file" in refused.output and "Traceback" not in refused.output
