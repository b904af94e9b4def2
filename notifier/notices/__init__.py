"""Breach notices to affected customers: blast radius, duties and deadlines, drafts in the
customer's language, approval, and delivery through the outbox exactly once."""

from breachwatch.notifier.notices.approval import approve_notice
from breachwatch.notifier.notices.config import NoticeConfig, Vendor, load_notice_config
from breachwatch.notifier.notices.deadlines import DeadlinePage, check_deadlines, overdue_duties
from breachwatch.notifier.notices.directory import remember_incident_tenants, remember_tenants, tenant_record
from breachwatch.notifier.notices.sending import (
    NoticeSendGuard,
    provider_receipt,
    resolve_unknown,
    unknown_deliveries,
)
from breachwatch.notifier.notices.service import (
    ApprovalRefused,
    NoticeError,
    NoticeNotFound,
    blast_radius,
    correct_blast_radius,
    delivery_message_id,
    list_notices,
    mark_duty_met,
    notice_timeline,
    on_breach_confirmed,
    preview_notice,
    revise_notice,
)

__all__ = [
    "ApprovalRefused",
    "DeadlinePage",
    "NoticeConfig",
    "NoticeError",
    "NoticeNotFound",
    "NoticeSendGuard",
    "Vendor",
    "approve_notice",
    "blast_radius",
    "check_deadlines",
    "correct_blast_radius",
    "delivery_message_id",
    "list_notices",
    "load_notice_config",
    "mark_duty_met",
    "notice_timeline",
    "on_breach_confirmed",
    "overdue_duties",
    "preview_notice",
    "provider_receipt",
    "remember_incident_tenants",
    "remember_tenants",
    "resolve_unknown",
    "revise_notice",
    "tenant_record",
    "unknown_deliveries",
]
