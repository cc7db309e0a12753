"""Access tokens: verified with PyJWT, algorithms from configuration only.

Verified tokens are cached until they expire, so the message path pays for a
signature check once per token, not once per event.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from syarah.errors import Unauthorized
from syarah.protocol.fields import Guid
from syarah.types import User

NAMEIDENTIFIER = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
# The users table's column sizes.
MAX_NAME = 255
MAX_AVATAR = 2048


def _storable(text: str) -> str:
    """Claims are JSON, which can carry half a surrogate pair: no store can write it."""
    return text.encode("utf-8", "replace").decode("utf-8")


NAME_CLAIMS = ("name", "unique_name", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name")
LEEWAY_SECONDS = 30
# HS256 keys shorter than its 256-bit output make the secret the weak point.
MIN_SECRET_BYTES = 32
# Enough for every token of a busy node's active users; evicted oldest first.
CACHE_SIZE = 50_000


@dataclass(frozen=True)
class Identity:
    user: User
    expires_at: float
    # When the claims were true (`iat`, else `nbf`); None when the token says neither.
    issued_at: float | None = None


def strip_bearer(token: str | None) -> str | None:
    if not token:
        return None
    token = token.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return token or None


class TokenVerifier:
    def __init__(self, *, secret: str = "", public_key: str = "",
                 algorithms: list[str], issuer: str = "", audience: str = "",
                 user_claim: str = "", leeway: float = LEEWAY_SECONDS):
        if not algorithms:
            raise ValueError("jwt_algorithms must name at least one algorithm")
        symmetric = [a for a in algorithms if a.startswith("HS")]
        if symmetric and not secret:
            raise ValueError("jwt_secret is required for " + ", ".join(symmetric))
        if symmetric and len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"jwt_secret is {len(secret.encode())} bytes; {', '.join(symmetric)} "
                f"needs at least {MIN_SECRET_BYTES} bytes (a shorter key can be "
                "guessed offline from any one token)")
        if len(symmetric) != len(algorithms) and not public_key:
            raise ValueError("jwt_public_key_file is required for asymmetric algorithms")
        self.secret, self.public_key = secret, public_key
        self.algorithms = algorithms
        self.issuer, self.audience = issuer or None, audience or None
        self.user_claims = (user_claim,) if user_claim else ("sub", NAMEIDENTIFIER)
        self.leeway = leeway
        self._cache: OrderedDict[str, Identity] = OrderedDict()

    def _key_for(self, token: str):
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        # ValueError: text that has no UTF-8 form (a lone surrogate) is no token either.
        except (jwt.PyJWTError, ValueError):
            raise Unauthorized("The access token is malformed.")
        if alg not in self.algorithms:
            raise Unauthorized(f"Access tokens signed with {alg!r} are not accepted.")
        return self.secret if alg.startswith("HS") else self.public_key

    def verify(self, token: str | None) -> Identity:
        token = strip_bearer(token)
        if not token:
            raise Unauthorized("An access token is required.")
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self.leeway > now:
                self._cache.move_to_end(token)
                return cached
            del self._cache[token]
        try:
            claims = jwt.decode(
                token, self._key_for(token), algorithms=self.algorithms,
                issuer=self.issuer, audience=self.audience, leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The access token has expired.")
        except jwt.InvalidIssuerError:
            raise Unauthorized("The access token was issued by someone else.")
        except jwt.InvalidAudienceError:
            raise Unauthorized("The access token is meant for another audience.")
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"The access token has no {exc.claim!r} claim.")
        except jwt.PyJWTError:
            raise Unauthorized("The access token is not valid.")
        issued = claims.get("iat", claims.get("nbf"))
        identity = Identity(self._user_from(claims), float(claims["exp"]),
                            float(issued) if isinstance(issued, (int, float)) else None)
        self._cache[token] = identity
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return identity

    def _user_from(self, claims: dict) -> User:
        raw_id = next((claims[c] for c in self.user_claims if claims.get(c)), None)
        if raw_id is None:
            raise Unauthorized("The access token names no user.")
        try:
            user_id = Guid().parse(str(raw_id), "user id")
        except Exception:
            raise Unauthorized("The access token's user id is not a GUID.")
        name = next((claims[c] for c in NAME_CLAIMS if isinstance(claims.get(c), str)), None)
        if name is None:
            parts = [claims.get("given_name"), claims.get("family_name")]
            name = " ".join(p for p in parts if isinstance(p, str)) or None
        picture = claims.get("picture")
        if not isinstance(picture, str) or len(picture) > MAX_AVATAR:
            # A cut URL points nowhere: an avatar too long to store is left out.
            picture = None
        return User(user_id, _storable(name or "")[:MAX_NAME], picture and _storable(picture))


def mint(secret: str, user_id: str, name: str, *, hours: float = 24,
         algorithm: str = "HS256", issuer: str = "", audience: str = "",
         avatar: str | None = None, private_key: str | None = None) -> str:
    """A development access token, signed as the main backend would sign one."""
    now = int(time.time())
    claims = {"sub": user_id, "name": name, "iat": now, "exp": now + int(hours * 3600)}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    if avatar:
        claims["picture"] = avatar
    return jwt.encode(claims, private_key or secret, algorithm=algorithm)
