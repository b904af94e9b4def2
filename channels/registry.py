"""The delivery channels a deployment uses, built from its settings: mail (file, SendGrid or
SMTP), the paging channels besides it (Slack, PagerDuty, a signed webhook) and Jira."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from breachwatch.channels.file import FileChannel
from breachwatch.channels.jira import JiraChannel
from breachwatch.channels.pagerduty import PagerDutyChannel
from breachwatch.channels.sendgrid_api import SendGridChannel
from breachwatch.channels.slack import SlackChannel
from breachwatch.channels.smtp import SmtpChannel
from breachwatch.channels.webhook import WebhookChannel
from breachwatch.core.settings import ConfigError, Settings
from breachwatch.notifier.alerts import paging_channel_names
from breachwatch.notifier.delivery import Channel
from breachwatch.notifier.integrations import jira_configured
from breachwatch.notifier.message import EMAIL
from breachwatch.notifier.tickets import TicketBook


def build_channels(settings: Settings) -> dict[str, Channel]:
    """The delivery channels this deployment uses, by logical channel name."""
    mail: Channel
    if settings.mail_channel == "file":
        mail = FileChannel(settings.outbox_dir, settings.mail_from)
    elif settings.mail_channel == "sendgrid":
        if settings.sendgrid_api_key is None or not settings.sendgrid_api_key.get_secret_value():
            raise ConfigError("BREACHWATCH_SENDGRID_API_KEY: required when BREACHWATCH_MAIL_CHANNEL=sendgrid")
        mail = SendGridChannel(settings.sendgrid_api_key, settings.mail_from, host=settings.sendgrid_host)
    elif settings.mail_channel == "smtp":
        mail = SmtpChannel(
            settings.smtp_host,
            settings.smtp_port,
            settings.mail_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )
    else:  # pragma: no cover - Settings only admits the values above
        raise ConfigError(f"BREACHWATCH_MAIL_CHANNEL: unknown channel {settings.mail_channel!r}")
    return {EMAIL: mail, **oncall_channels(settings)}


def oncall_channels(settings: Settings) -> dict[str, Channel]:
    """The paging channels configured besides email: Slack, PagerDuty, a signed webhook."""
    channels: dict[str, Channel] = {}
    names = paging_channel_names(settings)
    if "slack" in names:
        channels["slack"] = SlackChannel(settings.secret("slack_webhook_url") or "")
    if "pagerduty" in names:
        channels["pagerduty"] = PagerDutyChannel(
            settings.secret("pagerduty_routing_key") or "", url=settings.pagerduty_url
        )
    if "webhook" in names and settings.webhook_url:
        channels["webhook"] = WebhookChannel(settings.webhook_url, settings.secret("webhook_secret") or "")
    return channels


def ticket_channels(settings: Settings, engine: Engine) -> dict[str, Channel]:
    """The ticketing channels configured (Jira), keeping their issue keys in ``engine``."""
    if not jira_configured(settings):
        return {}
    return {
        "jira": JiraChannel(
            settings.jira_url or "",
            settings.jira_email or "",
            settings.secret("jira_api_token") or "",
            settings.jira_project or "",
            TicketBook(engine, "jira"),
            issue_type=settings.jira_issue_type,
        )
    }
