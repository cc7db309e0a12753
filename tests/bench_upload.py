"""By hand: stream a 500 MB video through uploadFile and report the server's memory.

    .venv/bin/python tests/bench_upload.py [size_mb]

Starts its own server (SQLite), uploads a video of size_mb (default 500), then one
over the limit sent without Content-Length, and prints RSS before and after (VmRSS of
the server process) and its peak (VmHWM)."""

from __future__ import annotations

import asyncio
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import ServerProcess, User, new_database_url  # noqa: E402
from upload_client import MIB, field_part, hwm_kib, post_multipart, rss_kib, streamed_file  # noqa: E402


def mp4_head() -> bytes:
    brands = b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41"
    return struct.pack(">I", 8 + len(brands)) + b"ftyp" + brands


async def main(size_mb: int):
    url, cleanup = new_database_url("sqlite")
    srv = ServerProcess(url).start()
    try:
        ann = User(srv, "Ann")
        pid = srv.proc.pid
        before = rss_kib(pid)
        started = time.monotonic()
        ok = await post_multipart(srv.url, [
            field_part("messageType", 4),
            streamed_file(size_mb * MIB, mp4_head())], ann.token, timeout=600)
        took = time.monotonic() - started
        after = rss_kib(pid)
        print(f"{size_mb} MB video: {ok.status} {ok.body[:120]!r} in {took:.1f}s "
              f"({size_mb / took:.0f} MB/s)")
        print(f"server RSS before {before / 1024:.1f} MiB, after {after / 1024:.1f} MiB "
              f"(+{(after - before) / 1024:.1f} MiB), peak {hwm_kib(pid) / 1024:.1f} MiB")
        started = time.monotonic()
        over = await post_multipart(srv.url, [
            field_part("messageType", 4),
            streamed_file((size_mb + 40) * MIB, mp4_head())], ann.token, chunked=True,
            timeout=600)
        print(f"{size_mb + 40} MB video, chunked: {over.status} {over.body!r} after "
              f"{over.sent / MIB:.0f} MiB sent, {time.monotonic() - started:.1f}s; "
              f"RSS {rss_kib(pid) / 1024:.1f} MiB")
        partial = os.listdir(os.path.join(srv.upload_dir, "chat-messages", ".partial"))
        print(f"staged files left: {partial}")
    finally:
        srv.stop()
        cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
