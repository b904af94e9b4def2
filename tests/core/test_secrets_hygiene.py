"""Every secret comes from the environment (or a file an environment variable names) and never
shows in the settings' text or in a configuration error. The log, metrics and disk side of a
run over Kafka is in tests/streams/test_transport_security.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from breachwatch.channels.registry import build_channels
from breachwatch.core.settings import SECRET_FIELDS, ConfigError, Settings, load_settings
from breachwatch.streams.kafka_client import client_options

# Distinctive values, so a leak anywhere is found by a plain substring search.
SECRETS = {
    "kafka_sasl_password": "kafka-secret-Tq9Wm2",
    "sendgrid_api_key": "SG.sendgrid-secret-Lr4Xc7",
    "smtp_password": "smtp-secret-Vb8Nd3",
    "slack_webhook_url": "https://hooks.slack.example/services/T0/B0/slack-secret-Pk2Hs5",
    "pagerduty_routing_key": "pagerduty-secret-Ey6Gj1",
    # A Standard Webhooks key: whsec_ and base64 of "webhook-secret-Ua3Zf9-fictional-key!"
    "webhook_secret": "whsec_d2ViaG9vay1zZWNyZXQtVWEzWmY5LWZpY3Rpb25hbC1rZXkh",
    "pagerduty_webhook_secret": "pagerduty-webhook-secret-Hn3Dx6",
    "jira_api_token": "jira-token-secret-Wz5Kb2",
    "pseudonym_key": "pseudonym-secret-Mo7Qt4",
    "console_secret_key": "console-secret-Ci5Rw8",
    "model_signing_key": "model-signing-secret-Hd4Kp6",
}
FROM_FILE = "smtp_password"  # given as BREACHWATCH_SMTP_PASSWORD_FILE, as a mounted secret would be


@pytest.fixture(autouse=True)
def _secrets_in_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("BREACHWATCH_") or name == "KAFKA_BOOTSTRAP":
            monkeypatch.delenv(name)
    for field, value in SECRETS.items():
        if field == FROM_FILE:
            (tmp_path / field).write_text(value + "\n", encoding="utf-8")
            monkeypatch.setenv(f"BREACHWATCH_{field.upper()}_FILE", str(tmp_path / field))
        else:
            monkeypatch.setenv(f"BREACHWATCH_{field.upper()}", value)


def leaked(text: str) -> list[str]:
    return [field for field, value in SECRETS.items() if value in text]


def test_every_secret_is_read_from_the_environment_and_hidden_in_the_settings_text() -> None:
    settings = load_settings()

    assert set(SECRETS) == set(SECRET_FIELDS)
    assert {field: settings.secret(field) for field in SECRET_FIELDS} == SECRETS
    for text in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert leaked(text) == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BREACHWATCH_PARTITIONS", "0"),
        ("BREACHWATCH_SMTP_PORT", "not-a-port"),
        ("BREACHWATCH_MAIL_FROM", "nobody"),
        ("BREACHWATCH_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("BREACHWATCH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-1"),
        ("BREACHWATCH_ONCALL_EMAILS", "oncall at unisen.example"),
        ("BREACHWATCH_LOG_LEVEL", "LOUD"),
        ("BREACHWATCH_SENDGRID_HOST", "ftp://mail.unisen.example"),
    ],
)
def test_an_error_in_another_setting_shows_no_secret(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert variable in str(caught.value)
    assert leaked(str(caught.value)) == []


def test_a_secret_of_the_wrong_type_is_named_without_its_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BREACHWATCH_KAFKA_SASL_PASSWORD")
    config = tmp_path / "breachwatch.json"
    config.write_text(json.dumps({"kafka_sasl_password": [SECRETS["kafka_sasl_password"]]}), encoding="utf-8")
    monkeypatch.setenv("BREACHWATCH_CONFIG", str(config))

    with pytest.raises(ConfigError, match="BREACHWATCH_KAFKA_SASL_PASSWORD") as caught:
        load_settings()

    assert leaked(str(caught.value)) == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"kafka_security_protocol": "SASL_SSL"},  # no mechanism
        {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512"},  # no user name
        {"kafka_sasl_mechanism": "PLAIN"},  # SASL mechanism on a PLAINTEXT connection
        {"kafka_api_version": "four"},
    ],
)
def test_kafka_client_errors_show_no_secret(overrides: dict[str, str]) -> None:
    settings = load_settings(kafka_bootstrap="kafka.unisen.example:9094", **overrides)

    with pytest.raises(ConfigError) as caught:
        client_options(settings)

    assert "BREACHWATCH_KAFKA_" in str(caught.value)
    assert leaked(str(caught.value)) == []


def test_client_options_hide_the_kafka_password_from_repr() -> None:
    """kafka-python logs its whole configuration at DEBUG through ``repr``."""
    settings = load_settings(
        kafka_bootstrap="kafka.unisen.example:9094",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="breachwatch",
    )

    options = client_options(settings)

    assert options["sasl_plain_password"] == SECRETS["kafka_sasl_password"]  # usable as the plain string
    assert leaked(repr(options)) == [] and leaked(str(options)) == []


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"mail_channel": "sendgrid", "sendgrid_api_key": ""}, "BREACHWATCH_SENDGRID_API_KEY"),
        (
            {"webhook_url": "https://hooks.unisen.example/breachwatch", "webhook_secret": ""},
            "BREACHWATCH_WEBHOOK_SECRET",
        ),
    ],
)
def test_channel_errors_show_no_secret(overrides: dict[str, str], variable: str, tmp_path: Path) -> None:
    settings: Settings = load_settings(outbox_dir=tmp_path / "outbox", **overrides)

    with pytest.raises(ConfigError, match=variable) as caught:
        build_channels(settings)

    assert leaked(str(caught.value)) == []
