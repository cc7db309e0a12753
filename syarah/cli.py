"""Operator commands: migrate the schema, mint a development token."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from syarah import auth, logs, options
from syarah.store import Database
from syarah.store.database import settings_tls
from syarah.store.migrations import current_version, migrate


def migrate_main(argv: list[str] | None = None) -> int:
    """syarah-migrate [--config FILE] [--database-url URL]: apply pending migrations."""
    try:
        settings = options.load(sys.argv[1:] if argv is None else argv)
    except options.OptionsError as exc:
        print(f"syarah-migrate: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)

    async def run():
        db = await Database.connect(settings.effective_database_url, pool_size=1,
                                    timeout=max(settings.db_timeout, 60),
                                    ssl=settings_tls(settings))
        try:
            applied = await migrate(db)
            version = await current_version(db)
        finally:
            await db.close()
        for name in applied:
            print(f"applied {name}")
        print(f"schema at version {version}")

    try:
        asyncio.run(run())
    except ValueError as exc:
        print(f"syarah-migrate: {exc}", file=sys.stderr)
        return 2
    return 0


def mint_main(argv: list[str] | None = None) -> int:
    """syarah-mint-token [--user-id GUID] [--name NAME] [--hours N] [settings flags]"""
    parser = argparse.ArgumentParser(
        prog="syarah-mint-token",
        description="Print a development access token signed with the configured "
                    "jwt_secret (HS256).")
    parser.add_argument("--user-id", default=None, help="the user's GUID (default: new)")
    parser.add_argument("--name", default="Dev User")
    parser.add_argument("--avatar", default=None)
    parser.add_argument("--hours", type=float, default=24.0)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = options.load(rest)
    except options.OptionsError as exc:
        print(f"syarah-mint-token: {exc}", file=sys.stderr)
        return 2
    if not settings.jwt_secret:
        print("jwt_secret is not set: pass --jwt-secret, SYARAH_JWT_SECRET or --config",
              file=sys.stderr)
        return 2
    user_id = args.user_id or str(uuid.uuid4())
    token = auth.mint(settings.jwt_secret, user_id.lower(), args.name, hours=args.hours,
                      issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                      avatar=args.avatar)
    print(f"# user {user_id.lower()}", file=sys.stderr)
    print(token)
    return 0
