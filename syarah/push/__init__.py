"""Push notifications through FCM HTTP v1."""

from __future__ import annotations

import logging

from syarah import paths

log = logging.getLogger("syarah.push")


def make_push(settings, store, presence):
    """The push service, or None (push off) when no service account is configured.
    A configured but unreadable account stops the start: better than silence."""
    if not settings.fcm_service_account_file:
        log.warning("push notifications are OFF: no fcm_service_account_file is configured")
        return None
    from syarah.push.fcm import FcmClient, ServiceAccount
    from syarah.push.service import PushService

    account = ServiceAccount.load(paths.resolve(settings.fcm_service_account_file))
    return PushService(
        store, presence, FcmClient(account, settings.fcm_endpoint),
        concurrency=settings.push_concurrency, max_attempts=settings.push_max_attempts,
        retry_base=settings.push_retry_base)
