"""Composition root: builds the parts from one Settings object. No logic lives here."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from breachwatch.core.findings import Detector
from breachwatch.core.settings import ConfigError, Settings
from breachwatch.incidents.ledger import RiskPolicy
from breachwatch.incidents.lifecycle import BreachHook, ChangeHook, ClosedIncidentPolicy
from breachwatch.incidents.store import IncidentStore, NewIncidentHook
from breachwatch.notifier.delivery import Channel
from breachwatch.runtime.pipeline import Pipeline
from breachwatch.runtime.schema import init_db
from breachwatch.storage.db import make_engine

if TYPE_CHECKING:
    from breachwatch.notifier.outbox import Dispatcher

log = logging.getLogger(__name__)


def database(settings: Settings, url: str | None = None) -> Engine:
    engine = make_engine(url or settings.db_url, settings.db_lock_timeout_s)
    init_db(engine)
    return engine


def load_model(settings: Settings) -> Any:
    """The trained model BREACHWATCH_MODEL_PATH names, its signature checked; None without one."""
    if settings.model_path is None:
        return None
    key = settings.secret("model_signing_key")
    if not key:
        raise ConfigError(
            "BREACHWATCH_MODEL_SIGNING_KEY is not set: it is needed to check the signature of the model file"
            " BREACHWATCH_MODEL_PATH names"
        )
    from breachwatch.detectors.learned.detector import load_model as _load

    return _load(settings.model_path, key.encode())


def detector_factory(settings: Settings, model: Any = None) -> Callable[[], list[Detector]]:
    """A fresh detector set per unit worker: rules, learned models, the log detector (a
    worker keeps those of its unit's topics, see ``streams.units``)."""
    from breachwatch.detectors.learned.detector import LearnedDetector
    from breachwatch.detectors.logs.detector import LogDetector
    from breachwatch.detectors.rules import RulesDetector

    key = (settings.secret("pseudonym_key") or "").encode() or None

    def make() -> list[Detector]:
        learned = LearnedDetector(
            model,
            pseudonym_key=key,
            pack_after=settings.profile_pack_after_s,
            live_max=settings.profile_live_max,
            feedback_days=settings.false_positive_suppress_days,
        )
        # The log detector starts from what ``train`` learned of the logs, if the model has it.
        return [RulesDetector(), learned, LogDetector(trained=getattr(model, "logs", None))]

    return make


def incident_hooks(settings: Settings) -> list[NewIncidentHook]:
    """Run in the batch transaction for each new incident: page the on-call."""
    from breachwatch.notifier.alerts import enqueue_incident_alert

    def page(session: Any, incident: Any, findings: Any, evidence: Any, tenants: Any) -> None:
        enqueue_incident_alert(session, incident, findings, evidence, tenants, settings)

    return [page]


def directory_hooks() -> list[NewIncidentHook]:
    """Run in the batch transaction for every incident a batch opens or adds to, paged or not:
    keep the directory entries of its tenants, which a breach notice needs later (maybe in
    another process, maybe after a replay that paged nobody)."""
    from breachwatch.notifier.notices import remember_incident_tenants

    return [remember_incident_tenants]


def breach_hooks(settings: Settings) -> list[BreachHook]:
    """Run in the transaction that confirms a breach: draft the customer notices, their blast
    radius read from the access topic where the deployment has one, else from the store."""
    from breachwatch.notifier.blast_radius import AccessHistory, StoreHistory
    from breachwatch.notifier.notices import on_breach_confirmed
    from breachwatch.streams.access_history import KafkaHistory

    def draft_notices(session: Any, incident_id: str, confirmed_by: str, confirmed_at: Any) -> None:
        history: list[AccessHistory] = [StoreHistory(session)]
        if settings.kafka_bootstrap:
            history.insert(0, KafkaHistory(settings, timeout_s=30.0))
        on_breach_confirmed(
            session,
            incident_id,
            confirmed_by=confirmed_by,
            confirmed_at=confirmed_at,
            settings=settings,
            history=history,
        )

    return [draft_notices]


def lifecycle_hooks(settings: Settings) -> list[ChangeHook]:
    """Run in the transaction of every incident change (opened, new findings, acknowledged,
    resolved, breach confirmed...): queue it to the OCSF topic, PagerDuty, Jira and the webhook."""
    from breachwatch.notifier.integrations import queue_change

    def tell(session: Any, incident: Any, change: Any) -> None:
        queue_change(session, incident, change, settings)

    return [tell]


def closed_incident_policy(settings: Settings) -> ClosedIncidentPolicy:
    """What new findings do to closed incidents, including how long a false positive suppresses."""
    return ClosedIncidentPolicy(suppress_false_positives=timedelta(days=settings.false_positive_suppress_days))


def incident_store(settings: Settings, engine: Engine, *, notify: bool = True) -> IncidentStore:
    """The incident store the pipeline writes to: correlation window, the directory and paging
    hooks (``notify`` False: no page, but the tenants' directory entries are still kept),
    closed-incident policy."""
    return IncidentStore(
        engine,
        window=timedelta(minutes=settings.incident_window_minutes),
        on_new_incident=incident_hooks(settings) if notify else (),
        on_incident_stored=directory_hooks(),
        closed_policy=closed_incident_policy(settings),
        on_change=lifecycle_hooks(settings) if notify else (),
        risk=RiskPolicy(
            threshold=settings.risk_threshold,
            source_cap=settings.risk_source_cap,
            half_life=timedelta(hours=settings.risk_half_life_hours),
        ),
    )


def grants_loader(engine: Engine) -> Callable[[], Any]:
    """Reads the tenants that require approval before staff access, and their requests."""
    from sqlalchemy.orm import Session

    from breachwatch.privacy.approvals import load_grants

    def load() -> Any:
        with Session(engine) as session:
            return load_grants(session)

    return load


def build_pipeline(settings: Settings, engine: Engine, model: Any = None, *, notify: bool = True) -> Pipeline:
    store = incident_store(settings, engine, notify=notify)
    return Pipeline(store, detector_factory(settings, model), group_id=settings.group_id, grants=grants_loader(engine))


def outbox_dispatcher(settings: Settings, engine: Engine, channels: Mapping[str, Any] | None = None) -> Dispatcher:
    """The outbox dispatcher over the configured channels (or ``channels``), with the notices'
    send guard (approved content only, refusals paged) and the provider's receipts to consult
    before an unanswered send is looked up."""
    from breachwatch.notifier.notices import NoticeSendGuard, provider_receipt
    from breachwatch.notifier.outbox import Dispatcher

    return Dispatcher(
        engine,
        delivery_channels(settings, engine) if channels is None else channels,
        guard=NoticeSendGuard(settings),
        confirmations=provider_receipt,
    )


def delivery_channels(settings: Settings, engine: Engine, bootstrap: str | None = None) -> dict[str, Channel]:
    """Every channel this deployment delivers through: mail, the paging channels, Jira (its
    issue keys in ``engine``) and, with a Kafka cluster, the OCSF findings topic."""
    from breachwatch.channels.registry import build_channels, ticket_channels
    from breachwatch.notifier.integrations import OCSF
    from breachwatch.streams.findings_topic import FindingsTopicChannel

    channels = {**build_channels(settings), **ticket_channels(settings, engine)}
    if settings.ocsf_topic and (bootstrap or settings.kafka_bootstrap):
        channels[OCSF] = FindingsTopicChannel(settings, settings.topic(settings.ocsf_topic), bootstrap=bootstrap)
    return channels


class OutboxPump:
    """Delivers due outbox messages from a background thread, so a slow or failing mail
    provider never stalls consumption; the consumer only nudges it after each batch."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        interval_s: float = 1.0,
        deadline_every_s: float = 60.0,
        bootstrap: str | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.dispatcher = outbox_dispatcher(settings, engine, delivery_channels(settings, engine, bootstrap))
        self.deadline_every_s = deadline_every_s
        self._last_deadline_check = 0.0
        self._last_staff_check = 0.0
        self._summarised: Any = None  # the month whose transparency summaries are queued
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_deadlines()
                self.check_staff_access()
                if self.dispatcher.dispatch_due(limit=100).attempted:
                    # An incident's next change to a system is due once the last went out.
                    continue
            except Exception:
                logging.getLogger(__name__).exception("outbox dispatch failed; will retry")
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def check_deadlines(self) -> None:
        """Page the on-call as a notification deadline nears or passes (once per threshold)."""
        if time.monotonic() - self._last_deadline_check < self.deadline_every_s:
            return
        self._last_deadline_check = time.monotonic()
        from datetime import UTC, datetime

        from sqlalchemy.orm import Session

        from breachwatch.notifier.notices import check_deadlines

        with Session(self.engine) as session, session.begin():
            check_deadlines(session, self.settings, datetime.now(UTC))

    def check_staff_access(self) -> None:
        """Expire access requests nobody decided in time, and queue last month's transparency
        summaries once it is over (once per month and process; queuing twice sends nothing twice)."""
        if time.monotonic() - self._last_staff_check < self.deadline_every_s:
            return
        self._last_staff_check = time.monotonic()
        from datetime import UTC, datetime

        from sqlalchemy.orm import Session

        from breachwatch.privacy.approvals import expire_due
        from breachwatch.privacy.staff_mail import month_due, queue_month

        now = datetime.now(UTC)
        with Session(self.engine) as session, session.begin():
            expire_due(session, now=now)
        month = month_due(now)
        if month is not None and month != self._summarised:
            with Session(self.engine) as session, session.begin():
                queue_month(session, month, self.settings, now=now)
            self._summarised = month

    def tick(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="outbox", daemon=True)
            self._thread.start()
        self._wake.set()

    def drain(self, timeout_s: float = 30.0) -> None:
        """Stop the thread, then deliver what is due now (bounded by ``timeout_s``)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            report = self.dispatcher.dispatch_due(limit=100)
            if not getattr(report, "attempted", 0):
                break
        for channel in self.dispatcher.channels.values():
            close = getattr(channel, "close", None)  # HTTP clients, the findings topic's producer
            if close is not None:
                close()


def dispatcher(settings: Settings, engine: Engine, bootstrap: str | None = None) -> OutboxPump:
    return OutboxPump(settings, engine, bootstrap=bootstrap)


@contextmanager
def metrics_server(settings: Settings, service: Any) -> Iterator[None]:
    """/metrics (Prometheus), /healthz and /readyz on ``metrics_host:metrics_port``, when it is set."""
    if settings.metrics_port is None:
        yield
        return
    from breachwatch.runtime.metrics import serve

    server = serve(settings.metrics_host, settings.metrics_port, service)
    try:
        yield
    finally:
        server.shutdown()


def run_service(settings: Settings, bootstrap: str, *, until_caught_up: bool) -> dict[str, Any]:
    """The service on ``bootstrap`` until SIGTERM (or until caught up): the database, the model,
    the pipeline, the outbox pump and metrics wired together; its counters at the end."""
    from breachwatch.runtime.pipeline import fewer_collections
    from breachwatch.runtime.service import Service
    from breachwatch.streams.kafka_client import check_connection, ensure_topics

    engine = database(settings)
    pipeline = build_pipeline(settings, engine, load_model(settings))
    pump = dispatcher(settings, engine, bootstrap)
    checked = check_connection(settings, bootstrap)
    log.info("Kafka at %s: %s, %d broker(s)", checked.bootstrap, checked.security_protocol, checked.brokers)
    ensure_topics(settings, bootstrap)
    service = Service(settings, bootstrap, pipeline, after_batch=pump.tick)
    service.install_signal_handlers()
    # Full garbage collections walking all detector state were the long pauses of a busy
    # stream (a quarter of replay's time); reference counting frees nearly everything anyway.
    with metrics_server(settings, service), fewer_collections():
        stats = service.run(until_caught_up=until_caught_up)
    pump.drain()
    return stats
