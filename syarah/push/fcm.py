"""FCM HTTP v1 over aiohttp: the service account, its OAuth2 token, and one send.

The OAuth2 token comes from a JWT assertion signed with the account's private key
(RS256, PyJWT) and posted to the account's ``token_uri``; it is cached until shortly
before it expires. Both that URI and the FCM endpoint come from configuration, so a
test (or a proxy) can stand in for Google.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from dataclasses import dataclass

import aiohttp
import jwt

log = logging.getLogger("syarah.push")

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google issues assertions for at most an hour.
ASSERTION_LIFETIME = 3600
# A token is renewed this long before it expires, so a send never races its expiry.
TOKEN_MARGIN = 60
# One FCM call (or token fetch) may take this long; a hanging FCM costs a worker slot
# for no longer, and the row is retried.
REQUEST_TIMEOUT = 10.0


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServiceAccount:
    project_id: str
    client_email: str
    private_key: str
    private_key_id: str
    token_uri: str

    @classmethod
    def load(cls, path: str) -> "ServiceAccount":
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the FCM service account {path}: {exc}")
        if not isinstance(data, dict):
            raise ConfigError(f"{path} is not a service-account JSON object")
        missing = [k for k in ("project_id", "client_email", "private_key", "token_uri")
                   if not isinstance(data.get(k), str) or not data.get(k)]
        if missing:
            raise ConfigError(f"the FCM service account {path} lacks {', '.join(missing)}")
        account = cls(data["project_id"], data["client_email"], data["private_key"],
                      data.get("private_key_id") or "", data["token_uri"])
        try:
            account.assertion(int(time.time()))
        except Exception as exc:
            raise ConfigError(f"the private key in {path} cannot sign: {exc}")
        return account

    def assertion(self, now: int) -> str:
        claims = {"iss": self.client_email, "scope": SCOPE, "aud": self.token_uri,
                  "iat": now, "exp": now + ASSERTION_LIFETIME}
        headers = {"kid": self.private_key_id} if self.private_key_id else None
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)


@dataclass
class SendResult:
    """What became of one send: ``ok``; ``retry`` (429, 5xx, network: try later,
    not before ``retry_after`` seconds when FCM said so); ``bad_token`` (the device
    is gone); ``failed`` (FCM refused the message itself: retrying cannot help)."""

    outcome: str
    error: str = ""
    retry_after: float | None = None


class OAuthError(Exception):
    pass


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _fcm_error(body) -> tuple[str, str, bool]:
    """(errorCode, message, concerns_token) from an FCM v1 error body."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", "", False
    code = str(error.get("status") or "")
    message = str(error.get("message") or "")
    about_token = "token" in message.lower()
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if detail.get("errorCode"):
            code = str(detail["errorCode"])
        for violation in detail.get("fieldViolations") or []:
            if isinstance(violation, dict) and "token" in str(violation.get("field", "")):
                about_token = True
    return code, message, about_token


class FcmClient:
    def __init__(self, account: ServiceAccount, endpoint: str):
        self.account = account
        self.send_url = (f"{endpoint.rstrip('/')}/v1/projects/"
                         f"{account.project_id}/messages:send")
        self.session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    async def start(self):
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))

    async def close(self):
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def access_token(self, stale: str | None = None) -> str:
        """The cached token, or a new one when it nears expiry or when ``stale`` (a
        token FCM refused) is still the cached one. Concurrent callers share one fetch."""
        async with self._token_lock:
            fresh = (self._token is not None and self._token != stale
                     and time.time() < self._token_expires - TOKEN_MARGIN)
            if not fresh:
                await self._fetch_token()
            return self._token

    async def _fetch_token(self):
        now = int(time.time())
        form = {"grant_type": GRANT_TYPE, "assertion": self.account.assertion(now)}
        try:
            async with self.session.post(self.account.token_uri, data=form) as r:
                text = await r.text()
                if r.status != 200:
                    raise OAuthError(f"token endpoint answered {r.status}: {text[:200]}")
                body = json.loads(text)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise OAuthError(f"token endpoint unreachable: {exc!r}") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise OAuthError("token endpoint answered without an access_token")
        expires_in = body.get("expires_in", 3600)
        self._token = token
        self._token_expires = now + float(expires_in if isinstance(expires_in, (int, float))
                                          else 3600)
        log.debug("FCM access token obtained, valid for %ss", expires_in)

    async def _post(self, message: dict, token: str):
        async with self.session.post(
                self.send_url, json={"message": message},
                headers={"Authorization": f"Bearer {token}"}) as r:
            text = await r.text()
            try:
                body = json.loads(text) if text else {}
            except ValueError:
                body = {}
            return r.status, body, r.headers.get("Retry-After")

    async def send(self, message: dict) -> SendResult:
        try:
            token = await self.access_token()
            status, body, retry_after = await self._post(message, token)
            if status == 401:
                # The token was revoked or expired early: one refresh, one more try.
                token = await self.access_token(stale=token)
                status, body, retry_after = await self._post(message, token)
        except OAuthError as exc:
            return SendResult("retry", str(exc))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return SendResult("retry", f"FCM unreachable: {exc!r}")
        if 200 <= status < 300:
            return SendResult("ok")
        code, text, about_token = _fcm_error(body)
        error = f"{status} {code} {text}".strip()[:500]
        if code == "UNREGISTERED" or (code == "INVALID_ARGUMENT" and about_token):
            return SendResult("bad_token", error)
        if status == 429 or status >= 500 or status == 401:
            return SendResult("retry", error, parse_retry_after(retry_after))
        return SendResult("failed", error)
