"""A bad setting fails at start-up naming the setting; secrets never show."""

from __future__ import annotations

from pathlib import Path

import pytest

from breachwatch.core.settings import RESERVED_PREFIXES, ConfigError, known_variables, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for k in list(os.environ):
        if k.startswith("BREACHWATCH_") or k == "KAFKA_BOOTSTRAP":
            monkeypatch.delenv(k)


def test_defaults_are_the_embedded_setup() -> None:
    s = load_settings()
    assert s.kafka_bootstrap is None and s.db_url.startswith("sqlite") and s.mail_channel == "file"


def test_wrong_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREACHWATCH_PARTITIONS", "many")
    with pytest.raises(ConfigError, match="BREACHWATCH_PARTITIONS"):
        load_settings()


def test_wrong_choice_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREACHWATCH_MAIL_CHANNEL", "pigeon")
    with pytest.raises(ConfigError, match="BREACHWATCH_MAIL_CHANNEL"):
        load_settings()


def test_kafka_bootstrap_is_read_from_the_design_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "kafka-1.example:9093")
    assert load_settings().kafka_bootstrap == "kafka-1.example:9093"


def test_file_then_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "bw.toml"
    cfg.write_text('partitions = 6\ngroup_id = "from-file"\noncall_emails = ["a@x.example"]\n')
    monkeypatch.setenv("BREACHWATCH_CONFIG", str(cfg))
    monkeypatch.setenv("BREACHWATCH_GROUP_ID", "from-env")
    s = load_settings()
    assert s.partitions == 6 and s.group_id == "from-env" and s.oncall_emails == ("a@x.example",)


def test_unknown_key_in_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "bw.toml"
    cfg.write_text("partitons = 6\n")
    monkeypatch.setenv("BREACHWATCH_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="BREACHWATCH_PARTITONS: not a known setting"):
        load_settings()


def test_unreadable_config_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BREACHWATCH_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="BREACHWATCH_CONFIG"):
        load_settings()


def test_secret_from_file_and_never_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = "SG.very-secret-key-value"
    (tmp_path / "key").write_text(key + "\n")
    monkeypatch.setenv("BREACHWATCH_SENDGRID_API_KEY_FILE", str(tmp_path / "key"))
    s = load_settings()
    assert s.secret("sendgrid_api_key") == key
    assert key not in repr(s) and key not in str(s.model_dump())
    monkeypatch.setenv("BREACHWATCH_SMTP_PASSWORD", key)
    monkeypatch.setenv("BREACHWATCH_SMTP_PORT", "not-a-port")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert key not in str(info.value) and "BREACHWATCH_SMTP_PORT" in str(info.value)


def test_oncall_addresses_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREACHWATCH_ONCALL_EMAILS", "a@x.example, b@y.example")
    assert load_settings().oncall_emails == ("a@x.example", "b@y.example")
    monkeypatch.setenv("BREACHWATCH_ONCALL_EMAILS", "not an address")
    with pytest.raises(ConfigError, match="BREACHWATCH_ONCALL_EMAILS"):
        load_settings()


def test_as_env_reproduces_settings_in_another_process_but_never_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(kafka_bootstrap="k.example:9092", topic_prefix="p.", partitions=6, outbox_dir=Path("/srv/out"))
    env = s.as_env("kafka_bootstrap", "topic_prefix", "partitions", "outbox_dir", "model_path")
    assert env == {
        "KAFKA_BOOTSTRAP": "k.example:9092",
        "BREACHWATCH_TOPIC_PREFIX": "p.",
        "BREACHWATCH_PARTITIONS": "6",
        "BREACHWATCH_OUTBOX_DIR": "/srv/out",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    again = load_settings()
    assert (again.kafka_bootstrap, again.topic_prefix, again.partitions, again.outbox_dir) == (
        s.kafka_bootstrap,
        s.topic_prefix,
        s.partitions,
        s.outbox_dir,
    )
    with pytest.raises(ValueError, match="secret"):
        s.as_env("sendgrid_api_key")


def test_a_misspelt_variable_stops_start_up_naming_the_nearest_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREACHWATCH_KAFKA_BOOTSTRAPP", "kafka-1.example:9092")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "BREACHWATCH_KAFKA_BOOTSTRAPP: not a known setting (did you mean BREACHWATCH_KAFKA_BOOTSTRAP?)" in str(
        caught.value
    )
    assert "kafka-1.example" not in str(caught.value)  # the value may be a secret: never shown


def test_an_unknown_variable_far_from_any_setting_is_named_without_a_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREACHWATCH_ZZZ", "1")
    with pytest.raises(ConfigError, match=r"BREACHWATCH_ZZZ: not a known setting$"):
        load_settings()


def test_secret_files_other_variables_and_the_test_namespace_are_known(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("fictional-password\n")
    monkeypatch.setenv("BREACHWATCH_SMTP_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("BREACHWATCH_NEW_USER_PASSWORD", "fictional-password")
    monkeypatch.setenv("BREACHWATCH_TEST_PG_URL", "postgresql://db.example/test")
    assert load_settings().secret("smtp_password") == "fictional-password"
    monkeypatch.setenv("BREACHWATCH_DB_URL_FILE", "/nowhere")  # only secrets have a _FILE form
    with pytest.raises(ConfigError, match="BREACHWATCH_DB_URL_FILE: not a known setting"):
        load_settings()


def test_every_variable_the_code_and_deployment_files_name_is_known() -> None:
    """A variable read by name in one place and misspelt (or removed from the model) in
    another would be refused at start-up; this finds it first."""
    import re

    root = Path(__file__).resolve().parents[2]
    sources = [p for p in root.rglob("*") if p.suffix in {".py", ".yml", ".yaml", ".sh", ".md", ".tpl", ".toml"}]
    sources += [root / "Dockerfile"]
    named: dict[str, Path] = {}
    for path in sources:
        if {"tests", ".git", "node_modules"} & set(path.relative_to(root).parts) or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        # A name shown as the example of a mistake ("X: not a known setting") is no use of it.
        for name in re.findall(r"\bBREACHWATCH_[A-Z0-9_]*[A-Z0-9]\b(?!: not a known setting)", text):
            named.setdefault(name, path)
    known = known_variables()
    strangers = {
        name: str(path.relative_to(root))
        for name, path in named.items()
        if name not in known and not name.startswith(RESERVED_PREFIXES)
    }
    assert not strangers
    assert "BREACHWATCH_KAFKA_BOOTSTRAP" in named  # the scan found the names it should
