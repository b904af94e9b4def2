"""One typed, frozen settings object, built once at start-up from the environment and an
optional file, and passed explicitly to every component.

Every variable is ``BREACHWATCH_<FIELD>`` (``KAFKA_BOOTSTRAP`` is also read, as the design
names it). ``BREACHWATCH_CONFIG`` may name a TOML or JSON file whose keys are the field
names; the environment wins over the file. Secrets are ``SecretStr``: they never show in a
``repr``, a log line or an error, and they may be given as ``BREACHWATCH_<FIELD>_FILE``
(a path whose contents are the secret), as container secrets are usually mounted.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

ENV_PREFIX = "BREACHWATCH_"
SECRET_FIELDS = (
    "kafka_sasl_password",
    "sendgrid_api_key",
    "smtp_password",
    "slack_webhook_url",
    "pagerduty_routing_key",
    "webhook_secret",
    "pagerduty_webhook_secret",
    "jira_api_token",
    "pseudonym_key",
    "model_signing_key",
    "console_secret_key",
)


# BREACHWATCH_* variables read outside the settings model, by the commands that need them.
OTHER_VARIABLES: dict[str, str] = {
    "BREACHWATCH_CONFIG": "a TOML or JSON file of settings, keyed by the names below in lower case without the "
    "prefix (`db_url = ...`); the environment wins over it",
    "BREACHWATCH_NEW_USER_PASSWORD": "`users add`: the new user's password, where no terminal can ask for it",
    "BREACHWATCH_ESCALATION_FILE": "TOML file of the escalation chains (`escalate`, the console's paging)",
    "BREACHWATCH_CONTRACTS_FILE": "TOML file of per-tenant contractual notification deadlines",
    "BREACHWATCH_NOTICES_FILE": "TOML file of the customer-notice options (approvals, the vendor's contact)",
}
# Names the test suite and the benchmarks keep for themselves; no process of the service reads them.
RESERVED_PREFIXES = ("BREACHWATCH_TEST_", "BREACHWATCH_BENCH_")


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the variable and never its value."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # --- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        default=None,
        validation_alias=AliasChoices("BREACHWATCH_KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP", "kafka_bootstrap"),
        description="the cluster's bootstrap servers, host:port[,host:port] (also read as KAFKA_BOOTSTRAP); "
        "without it `run` and `produce` stop at once naming it",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="how to reach the brokers: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism for SASL_* protocols (SCRAM-SHA-512 recommended)"
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password")
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="CA certificate (PEM) the brokers' certificates are signed by, if not a public CA"
    )
    kafka_ssl_certfile: Path | None = Field(default=None, description="client certificate (PEM), for mutual TLS")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="client private key (PEM), for mutual TLS")
    kafka_api_version: str | None = Field(
        default=None, description="pin the broker API version, e.g. 4.0; unset means probe"
    )
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="prefix of every topic name read and written (e.g. `prod.` reads `prod.erp.access`)",
    )
    partitions: int = Field(default=4, ge=1, le=1024, description="partitions of the event topics it creates")
    replication_factor: int = Field(default=1, ge=1, le=16, description="replication factor of the topics it creates")
    group_id: str = Field(
        default="breachwatch", min_length=1, description="consumer group of `run`: processes sharing it share the work"
    )
    # Static membership (KIP-345): a restarted consumer with the same instance id gets its
    # partitions back at once instead of waiting out the session timeout and a rebalance.
    group_instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=249,
        description="static group membership: a restarted consumer with the same id gets its units back at once "
        "(unique per process; the Helm chart uses the pod name)",
    )
    session_timeout_ms: int = Field(
        default=45_000, ge=6_000, le=1_800_000, description="when the group gives up on a silent consumer"
    )
    # How often a consumer tells the group it is alive, which is also how soon it learns that
    # the group is rebalancing: a unit that changes hands waits for a release and a second
    # round, about two of these, where Kafka's usual 3 s leaves the others working alone
    # meanwhile. A heartbeat is one small request to the group coordinator.
    heartbeat_interval_ms: int = Field(
        default=300,
        ge=100,
        le=600_000,
        description="how often a consumer reports to its group, which is also how soon it learns of a rebalance; "
        "at most a third of the session timeout",
    )
    # cooperative: a rebalance moves only the units that change hands, and every other unit
    # keeps being judged through it (KIP-429). eager: every member gives up all its units at
    # each rebalance, as versions without this setting did; a group that still holds one of
    # those agrees only with eager, so roll an upgrade with eager first, then with cooperative.
    rebalance_protocol: Literal["cooperative", "eager"] = Field(
        default="cooperative",
        description="`cooperative`: only the units that change hands pause in a rebalance; `eager`: every consumer "
        "gives up all its units, which a group still holding an older version needs (see Upgrading)",
    )
    max_message_bytes: int = Field(default=1_048_576, ge=1024, description="larger messages are dead-lettered unread")
    poll_max_records: int = Field(default=5000, ge=1, description="most messages taken in by one poll (one batch)")
    poll_timeout_ms: int = Field(default=500, ge=1, description="how long one poll waits for messages")
    # Each checkpoint writes what changed since the last, so its cost grows far slower than the
    # interval. At 10 s, bench.latency's service (4,000 events/s for 120 s) fell behind: batches
    # with a checkpoint took 27 of the 36 s it spent judging and writing in one instrumented run,
    # and p99 reached 13-21 s; at 30 s, 3.3-7.9 s. A crash re-reads up to about two intervals of
    # events. 30 s is also Kafka Streams' default commit interval.
    checkpoint_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="how often each unit's detector state is checkpointed with its offsets (units take turns); "
        "a crash re-reads up to about two intervals of events",
    )

    # --- embedded broker -----------------------------------------------------------------
    kafka_version: str = Field(
        default="4.1.1", pattern=r"^4\.\d+\.\d+$", description="Apache Kafka version of the embedded broker (devkit)"
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "breachwatch",
        description="where downloads are cached: the embedded broker's jars, the test tools",
    )

    # --- storage ---------------------------------------------------------------------------
    db_url: str = Field(
        default="sqlite:///breachwatch.db",
        description="SQLAlchemy URL of the database; `postgresql://…` in production",
    )
    db_lock_timeout_s: float = Field(default=30.0, gt=0, description="SQLite: wait this long for a lock, then retry")
    evidence_retention_days: int = Field(
        default=365, ge=1, description="`retention apply` anonymises or purges incident evidence older than this"
    )

    # --- detection -------------------------------------------------------------------------
    model_path: Path | None = Field(default=None, description="trained model file (skops, signed)")
    model_signing_key: SecretStr | None = Field(
        default=None,
        description="key of the HMAC that `train` signs model files with and that `run` and `replay` check before "
        "loading one; a file signed with another key, or changed after, is refused",
    )
    incident_window_minutes: int = Field(default=360, ge=1, description="findings within this window join one incident")
    max_alerts_per_day: float = Field(
        default=4.0, gt=0, description="alert budget `train` calibrates the learned detector's threshold to"
    )
    pseudonym_key: SecretStr | None = Field(
        default=None, description="key for pseudonymising identities in model files (`train` needs it)"
    )
    # Findings of the same actor (or attacking address) and kind as an incident marked false
    # positive are attached to it instead of opening and paging a new one, for this many days
    # of event time after the judgement; 0 turns this off.
    false_positive_suppress_days: int = Field(
        default=14,
        ge=0,
        le=365,
        description="after a false positive, later findings of the same actor (or address) and kind join it "
        "instead of paging, for this many days of event time; `0` turns it off",
    )
    risk_threshold: float = Field(
        default=100.0,
        ge=0,
        description="risk points at which an actor's (or, at 1.5 times it, a tenant's) ledger of findings "
        "below the incident threshold opens an incident listing every contribution; 0 turns the ledger off",
    )
    risk_source_cap: float = Field(
        default=60.0,
        gt=0,
        description="the most risk one source (kind of finding) adds to a ledger, however often it fires",
    )
    risk_half_life_hours: float = Field(
        default=24.0,
        gt=0,
        description="event time in which a contribution to a risk ledger loses half its points",
    )
    # Once a partition holds more than profile_live_max live actor profiles, those idle for
    # profile_pack_after_s (event time) are kept packed in memory until the actor's next event:
    # a fifth of the memory or less, for about 100 us each time an actor comes back.
    # profile_pack_after_s = 0 keeps every profile live.
    profile_pack_after_s: float = Field(
        default=1800.0,
        ge=0,
        le=30 * 86400,
        description="event-time idleness after which an actor profile may be packed; `0` keeps every profile live",
    )
    profile_live_max: int = Field(
        default=10_000,
        ge=0,
        description="live actor profiles per unit beyond which idle ones are packed; `0` packs every idle profile",
    )

    # --- notification ----------------------------------------------------------------------
    outbox_dir: Path = Field(default=Path("outbox"), description="where the file channel writes `.eml` files")
    mail_channel: Literal["file", "sendgrid", "smtp"] = Field(
        default="file", description="how email leaves: `file` (`.eml` outbox), `sendgrid`, `smtp`"
    )
    mail_from: str = Field(
        default="breachwatch@unisen.example", pattern=r"^[^@\s]+@[^@\s]+$", description="sender of every email"
    )
    oncall_emails: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("oncall-security@unisen.example",), description="on-call addresses, comma-separated"
    )
    sendgrid_api_key: SecretStr | None = Field(default=None, description="SendGrid v3 API key")
    sendgrid_host: str = Field(
        default="https://api.sendgrid.com", pattern=r"^https?://", description="SendGrid API base URL"
    )
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP port")
    smtp_username: str | None = Field(default=None, description="SMTP user name (unset: no authentication)")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password")
    smtp_starttls: bool = Field(default=False, description="upgrade the SMTP connection with STARTTLS")
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="Slack incoming-webhook URL (a secret: the URL is the credential)"
    )
    pagerduty_url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue",
        pattern=r"^https?://",
        description="PagerDuty Events API v2 endpoint",
    )
    pagerduty_routing_key: SecretStr | None = Field(
        default=None,
        description="PagerDuty Events API v2 integration key: incidents are triggered when paged, "
        "acknowledged and resolved as they are here",
    )
    pagerduty_webhook_secret: SecretStr | None = Field(
        default=None,
        description="signing secret(s) of the PagerDuty webhook v3 subscription, comma-separated while "
        "rotating; set it to let acknowledgements and resolutions in PagerDuty reach incidents here "
        "(POST /webhooks/pagerduty on the console)",
    )
    webhook_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="generic webhook: every page and every incident change POSTed as JSON, signed "
        "with the Standard Webhooks scheme",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="the webhook's Standard Webhooks secret: whsec_ followed by base64 of 24-64 random bytes",
    )
    jira_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/?#]+/?$",
        description="Jira Cloud site, e.g. https://example.atlassian.net: one issue per incident",
    )
    jira_email: str | None = Field(default=None, description="the Atlassian account the API token belongs to")
    jira_api_token: SecretStr | None = Field(default=None, description="that account's Jira API token")
    jira_project: str | None = Field(
        default=None, pattern=r"^[A-Z][A-Z0-9_]{0,49}$", description="key of the Jira project issues are opened in"
    )
    jira_issue_type: str = Field(default="Task", min_length=1, max_length=60, description="issue type to open")
    ocsf_topic: str = Field(
        default="breachwatch.findings.ocsf",
        pattern=r"^[A-Za-z0-9._-]{0,200}$",
        description="Kafka topic (after BREACHWATCH_TOPIC_PREFIX) receiving every incident as an OCSF "
        "Detection Finding, keyed by incident id, once per change; empty turns it off",
    )
    sendgrid_webhook_public_key: str | None = Field(
        default=None,
        min_length=40,
        description=(
            "the base64 public key of SendGrid's signed event webhook (Mail Settings); the console then "
            "accepts delivery events at /webhooks/sendgrid/events (else the notices file's key is used)"
        ),
    )
    notice_confirmer_may_approve_alone: bool = Field(
        default=False,
        description=(
            "let the person who confirmed a breach be the only approver of its notices; by default "
            "another approver must approve (with two required approvals, two distinct users always)"
        ),
    )

    # --- console ---------------------------------------------------------------------------
    console_host: str = Field(default="127.0.0.1", description="address the console listens on")
    console_port: int = Field(default=8080, ge=1, le=65535, description="port the console listens on")
    console_secret_key: SecretStr | None = Field(
        default=None, description="signs console sessions; without it, sessions end when the console restarts"
    )
    console_secure_cookies: bool = Field(
        default=True, description="mark cookies Secure (HTTPS only); `false` only for plain-HTTP trials"
    )
    console_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s?#]+$",
        description=(
            "the console's address as the on-call reaches it (e.g. https://breachwatch.example.com); "
            "every alert, escalation and deadline page then links to its incident"
        ),
    )
    console_trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "comma-separated addresses or networks of reverse proxies in front of the console; only a "
            "request from one of these may name the client in X-Forwarded-For (otherwise the header is ignored)"
        ),
    )

    console_public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description=(
            "the console's address as people outside the vendor reach it (e.g. https://breachwatch.unisen.example);"
            " the links in access-request e-mails to tenants' approvers start with it, so filing a request needs it"
        ),
    )

    # --- staff access: transparency and approval ------------------------------------------
    transparency_staff_identity: Literal["name", "pseudonym"] = Field(
        default="name",
        description=(
            "how a tenant's transparency log, summaries and approval e-mails name vendor staff: their directory"
            " name, or a pseudonym stable per tenant (keyed by BREACHWATCH_PSEUDONYM_KEY, which it then needs)"
        ),
    )
    transparency_retention_days: int = Field(
        default=400,
        ge=31,
        le=36500,
        description=(
            "staff accesses older than this leave the transparency log at `breachwatch retention apply`"
            " (privacy policy 5); the default keeps a year and a month, so each monthly summary can be checked"
        ),
    )
    access_request_link_hours: int = Field(
        default=72,
        ge=1,
        le=720,
        description=(
            "how long an approver's link to decide an access request works; an undecided request expires then,"
            " or when its requested window ends if that is sooner"
        ),
    )

    # --- service ---------------------------------------------------------------------------
    metrics_host: str = Field(
        default="127.0.0.1",
        description="address `run` serves /metrics, /healthz and /readyz on (`0.0.0.0` in a container, so "
        "Prometheus and the orchestrator reach it)",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="port of /metrics (Prometheus), /healthz and /readyz of `run`; unset: not served",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="`json`: one ECS JSON object per line, for log shippers"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="least severe log level shown"
    )

    @field_validator("heartbeat_interval_ms")
    @classmethod
    def _check_heartbeat(cls, value: int, info: ValidationInfo) -> int:
        session = info.data.get("session_timeout_ms")
        if session is not None and value * 3 > session:
            raise ValueError(f"must be at most a third of BREACHWATCH_SESSION_TIMEOUT_MS ({session})")
        return value

    @field_validator("transparency_staff_identity")
    @classmethod
    def _pseudonyms_need_a_key(cls, value: str, info: ValidationInfo) -> str:
        key = info.data.get("pseudonym_key")
        if value == "pseudonym" and (key is None or len(key.get_secret_value()) < 16):
            raise ValueError("pseudonyms need BREACHWATCH_PSEUDONYM_KEY (at least 16 characters)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Standard Webhooks secrets are base64 keys; a free-form string would fail at the first send.
        if value is not None and value.get_secret_value() and not _is_webhook_key(value.get_secret_value()):
            raise ValueError("must be whsec_ followed by base64 of 24 to 64 random bytes (Standard Webhooks)")
        return value

    @field_validator("model_signing_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: Any) -> Any:
        # Compose passes `${BREACHWATCH_MODEL_SIGNING_KEY:-}` as an empty string when unset.
        return None if value == "" else value

    @field_validator("model_signing_key")
    @classmethod
    def _check_signing_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (a random key, e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("oncall_emails", mode="before")
    @classmethod
    def _split_emails(cls, value: Any) -> Any:
        # An env var holds one string; accept "a@x, b@y" as well as a JSON list.
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, str):
            return json.loads(value)
        return value

    @field_validator("console_trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("console_trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry[:60]!r} is not an address or a network such as 10.0.0.0/8") from None
        return value

    @field_validator("oncall_emails")
    @classmethod
    def _check_emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for addr in value:
            if "@" not in addr or any(c.isspace() for c in addr):
                raise ValueError("each on-call address must look like name@domain")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))

    def secret(self, name: str) -> str | None:
        """The plain value of one secret, for the adapter that needs it and nowhere else."""
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else None

    def as_env(self, *names: str) -> dict[str, str]:
        """These settings as the environment variables that reproduce them, for starting
        another BreachWatch process (a consumer, a benchmark's service). Unset ones are left out;
        secrets are refused: they reach a child process only through the operator's environment."""
        env: dict[str, str] = {}
        for name in names:
            if name in SECRET_FIELDS:
                raise ValueError(f"{name} is a secret and is not copied into an environment")
            value = getattr(self, name)
            if value is not None:
                env["KAFKA_BOOTSTRAP" if name == "kafka_bootstrap" else _env_name(name)] = str(value)
        return env

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def _is_webhook_key(secret: str) -> bool:
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(key) <= 64


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"BREACHWATCH_CONFIG: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"BREACHWATCH_CONFIG: {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"BREACHWATCH_CONFIG: {path} is not valid {path.suffix[1:] or 'TOML'}: {exc}") from None
    except RecursionError:
        # Both parsers recurse per nesting level; thousands of levels is not a settings file.
        raise ConfigError(f"BREACHWATCH_CONFIG: {path} is nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"BREACHWATCH_CONFIG: {path} must hold a table of settings")
    return data


class _FileSource(PydanticBaseSettingsSource):
    """Settings from the file named by BREACHWATCH_CONFIG and from *_FILE secret paths."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ supplies everything at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if os.environ.get(f"{ENV_PREFIX}CONFIG"):
            values.update(_read_file(Path(os.environ[f"{ENV_PREFIX}CONFIG"])))
        for name in SECRET_FIELDS:
            var = f"{ENV_PREFIX}{name.upper()}_FILE"
            if var in os.environ:
                try:
                    values[name] = Path(os.environ[var]).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ConfigError(f"{var}: cannot read the secret file: {exc.strerror}") from None
        return values


def _env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def known_variables() -> set[str]:
    """Every BREACHWATCH_* variable some part of BreachWatch reads."""
    names = {_env_name(field) for field in Settings.model_fields}
    names |= {f"{_env_name(field)}_FILE" for field in SECRET_FIELDS}
    return names | set(OTHER_VARIABLES)


def _nearest(name: str, known: set[str]) -> str:
    """The hint " (did you mean X?)" for the known name closest to ``name``, compared without the prefix."""
    stems = {k.removeprefix(ENV_PREFIX): k for k in known}
    near = difflib.get_close_matches(name.upper().removeprefix(ENV_PREFIX), list(stems), n=1, cutoff=0.6)
    return f" (did you mean {stems[near[0]]}?)" if near else ""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A problem per BREACHWATCH_* variable nothing reads: a misspelt setting would otherwise be
    ignored without a word. The value is never shown (it may be a secret)."""
    known = known_variables()
    return [
        f"{name}: not a known setting{_nearest(name, known)}"
        for name in sorted(environ)
        if name.upper().startswith(ENV_PREFIX)
        and name.upper() not in known
        and not name.upper().startswith(RESERVED_PREFIXES)
    ]


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once: command-line overrides, then the environment, then the file.

    A wrong value, or a BREACHWATCH_* variable that is no setting, raises ``ConfigError``
    naming the variable (never echoing a secret).
    """
    unknown = unknown_variables(os.environ)
    if unknown:
        raise ConfigError("invalid configuration: " + "; ".join(unknown))
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            if err["type"] == "extra_forbidden":
                problems.append(f"{_env_name(field)}: not a known setting{_nearest(field, known_variables())}")
            elif field in SECRET_FIELDS:
                problems.append(f"{_env_name(field)}: {err['msg']}")
            else:
                problems.append(f"{_env_name(field)}: {err['msg']} (got {err.get('input')!r:.80})")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
    except SettingsError as exc:
        # pydantic-settings names the field in its message; keep that, drop the value.
        field = str(exc).split('"')[1] if '"' in str(exc) else "?"
        raise ConfigError(f"invalid configuration: {_env_name(field)}: cannot be parsed") from None
