"""POST /api/chat/uploadFile, GET /uploads/..., and media messages, over real HTTP
against the real server on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import re
import shutil
import struct
import subprocess
import time
import uuid
import zlib

import pytest
from PIL import Image, ImageDraw

from conftest import http_get, User, dm, register
from upload_client import (MIB, field_part, file_part, post_multipart, rss_kib,
                           streamed_file)

PATH = re.compile(r"^/uploads/chat-messages/(images|videos|audios|files)/"
                  r"[A-Za-z0-9_-]{32}(\.[a-z0-9]{1,10})?$")


# ----- sample files, made here

def jpeg(width, height, exif=None, quality=85) -> bytes:
    im = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(im)
    # Left half red, right half blue: shows which way the picture ends up.
    draw.rectangle([0, 0, width // 2, height], fill=(220, 20, 20))
    draw.rectangle([width // 2, 0, width, height], fill=(20, 20, 220))
    for x in range(0, width, 97):
        draw.line([(x, 0), (width - x, height)], fill=(240, 240, 240), width=3)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality, **({"exif": exif} if exif is not None else {}))
    return out.getvalue()


def rotated_with_gps() -> bytes:
    """A landscape-stored photo whose EXIF says: show me turned 90 degrees clockwise;
    with a GPS position and a camera name that must not survive."""
    exif = Image.Exif()
    exif[0x0112] = 6                       # Orientation: rotate 90 CW to display
    exif[0x010F] = "SecretCam"             # Make
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    return jpeg(400, 300, exif=exif)


def animated_gif(frames=12, size=(600, 400)) -> bytes:
    images = []
    for i in range(frames):
        im = Image.new("P", size, 0)
        im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
        ImageDraw.Draw(im).rectangle([i * 40, 0, i * 40 + 60, size[1]], fill=1 + i % 3)
        images.append(im)
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=80,
                   loop=0)
    return out.getvalue()


def png_bomb(width=60_000, height=60_000) -> bytes:
    """A tiny PNG that claims 3.6 gigapixels: the header alone must get it refused."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    idat = zlib.compress(row * 64, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def mp4_head() -> bytes:
    brands = b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41"
    ftyp = struct.pack(">I", 8 + len(brands)) + b"ftyp" + brands
    return ftyp + struct.pack(">I", 8 + 4096) + b"mdat" + os.urandom(4096)


def wav(seconds=1) -> bytes:
    import wave
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x10" * 8000 * seconds)
    return out.getvalue()


ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + os.urandom(20000)


# ----- helpers

async def upload(server, user, data: bytes, filename: str, message_type, *,
                 type_first=False, content_type=None, token=True):
    parts = [file_part(data, filename, content_type), field_part("messageType", message_type)]
    if type_first:
        parts.reverse()
    return await post_multipart(server.url, parts, user.token if token else None)


get = http_get


def assert_refused(reply, status, words):
    assert reply.status == status, (reply.status, reply.body)
    body = reply.json
    assert body["success"] is False and body["data"] is None, body
    assert re.search(words, body["message"], re.I), body["message"]


def partial_files(server):
    return os.listdir(os.path.join(server.upload_dir, "chat-messages", ".partial"))


def stored_image(server, path) -> Image.Image:
    status, headers, data = get(server, path)
    assert status == 200 and headers["Content-Type"] == "image/webp"
    im = Image.open(io.BytesIO(data))
    assert im.format == "WEBP"
    return im


# ----- happy paths

async def test_each_type_is_stored_and_answered_in_the_envelope(server):
    ann = User(server, "Ann")
    cases = [
        (jpeg(800, 600), "photo.jpg", 2, "images", "webp"),
        (wav(), "voice.wav", 1, "audios", "wav"),
        (b"%PDF-1.4\n% a small document\n", "report.pdf", 3, "files", "pdf"),
        (mp4_head(), "clip.mp4", 4, "videos", "mp4"),
    ]
    for data, name, message_type, folder, ext in cases:
        reply = await upload(server, ann, data, name, message_type)
        assert reply.status == 200, reply.body
        body = reply.json
        assert set(body) == {"success", "data", "message"}
        assert body["success"] is True and body["message"] is None
        path = body["data"]
        assert PATH.match(path), path
        assert path.startswith(f"/uploads/chat-messages/{folder}/") and path.endswith("." + ext)
        # The stored name is ours, not the client's.
        assert name.rsplit(".", 1)[0] not in path
        status, headers, stored = get(server, path)
        assert status == 200
        assert headers["X-Content-Type-Options"] == "nosniff"
        if message_type != 2:
            assert stored == data


async def test_a_large_photo_is_fitted_inside_1920_as_webp_without_metadata(server):
    ann = User(server, "Ann")
    original = jpeg(4000, 3000, exif=Image.Exif())
    reply = await upload(server, ann, original, "big.jpg", 2)
    assert reply.status == 200, reply.body
    im = stored_image(server, reply.json["data"])
    assert im.size == (1920, 1440)
    assert len(reply.body) and im.info.get("exif") is None


async def test_a_portrait_photo_is_turned_upright_and_loses_its_gps(server):
    ann = User(server, "Ann")
    reply = await upload(server, ann, rotated_with_gps(), "IMG_0001.JPG", 2)
    assert reply.status == 200, reply.body
    status, _, data = get(server, reply.json["data"])
    im = Image.open(io.BytesIO(data))
    # Stored 400x300 with "turn clockwise": shown 300x400, the red left half on top.
    assert im.size == (300, 400)
    rgb = im.convert("RGB")
    top, bottom = rgb.getpixel((150, 20)), rgb.getpixel((150, 380))
    assert top[0] > 150 and top[2] < 100, top
    assert bottom[2] > 150 and bottom[0] < 100, bottom
    assert not im.getexif(), dict(im.getexif())
    for marker in (b"SecretCam", b"Exif", b"GPS", b"XMP"):
        assert marker not in data


async def test_an_animated_gif_stays_animated(server):
    ann = User(server, "Ann")
    reply = await upload(server, ann, animated_gif(), "dance.gif", 2)
    assert reply.status == 200, reply.body
    im = stored_image(server, reply.json["data"])
    assert im.is_animated and im.n_frames == 12
    assert im.size == (600, 400)
    im.seek(5)
    im.load()
    assert im.info.get("duration") == 80


@functools.lru_cache(maxsize=1)
def huge_png() -> bytes:
    """36 megapixels that compress to ~2 MB: quick to send, seconds to decode."""
    im = Image.new("RGB", (6000, 6000), (10, 120, 200))
    draw = ImageDraw.Draw(im)
    for x in range(0, 6000, 50):
        draw.line([(x, 0), (6000 - x, 6000)], fill=(255, 255, 0), width=5)
    out = io.BytesIO()
    im.save(out, "PNG", compress_level=1)
    return out.getvalue()


async def test_a_big_image_does_not_stall_other_requests(server):
    ann = User(server, "Ann")
    upload_task = asyncio.ensure_future(upload(server, ann, huge_png(), "pano.png", 2))
    loop = asyncio.get_running_loop()
    answered, worst = 0, 0.0
    # Health checks while the picture is sent and converted: each is answered at once
    # only if the conversion runs beside the event loop, not on it.
    while not upload_task.done():
        started = time.monotonic()
        status, _, _ = await loop.run_in_executor(None, get, server, "/healthz")
        assert status == 200
        if not upload_task.done():
            answered += 1
            worst = max(worst, time.monotonic() - started)
        await asyncio.sleep(0.02)
    reply = upload_task.result()
    assert reply.status == 200, reply.body
    print(f"\n{answered} health checks answered during the upload, slowest {worst * 1000:.0f} ms")
    assert answered >= 5
    assert stored_image(server, reply.json["data"]).size == (1920, 1920)


# ----- refused images

async def test_a_decompression_bomb_is_refused_before_decoding(server):
    ann = User(server, "Ann")
    bomb = png_bomb()
    assert len(bomb) < 10_000
    started = time.monotonic()
    reply = await upload(server, ann, bomb, "bomb.png", 2)
    assert_refused(reply, 413, "pixels")
    # Decoding 3.6 gigapixels would take minutes and gigabytes; the header took none.
    print(f"bomb refused in {time.monotonic() - started:.3f}s")
    assert partial_files(server) == []


async def test_a_truncated_image_is_refused(server):
    ann = User(server, "Ann")
    whole = jpeg(1200, 900)
    reply = await upload(server, ann, whole[: len(whole) // 2], "cut.jpg", 2)
    assert_refused(reply, 400, "damaged|incomplete")


async def test_a_text_file_renamed_jpg_is_not_an_image(server):
    ann = User(server, "Ann")
    reply = await upload(server, ann, b"just some text, honestly\n" * 50, "cat.jpg", 2)
    assert_refused(reply, 415, "not a JPEG, PNG, GIF or WebP")
    assert partial_files(server) == []


# ----- refused audio and video

async def test_a_renamed_binary_is_not_stored_as_a_video(server):
    ann = User(server, "Ann")
    reply = await upload(server, ann, ELF, "movie.mp4", 4)
    assert_refused(reply, 415, "not a video")
    reply = await upload(server, ann, ELF, "song.mp3", 1)
    assert_refused(reply, 415, "not an audio")
    # Even when the type comes first, so it is judged by its first bytes.
    reply = await upload(server, ann, ELF, "movie.mp4", 4, type_first=True)
    assert_refused(reply, 415, "not a video")
    assert partial_files(server) == []


async def test_video_and_audio_extensions_are_the_documents_lists(server):
    ann = User(server, "Ann")
    reply = await upload(server, ann, mp4_head(), "clip.exe", 4)
    assert_refused(reply, 415, "mp4, webm, wmv")
    reply = await upload(server, ann, wav(), "voice.txt", 1)
    assert_refused(reply, 415, "aac, flac")
    reply = await upload(server, ann, mp4_head(), "noextension", 4)
    assert_refused(reply, 415, "must end in")
    reply = await upload(server, ann, mp4_head(), "CLIP.MOV", 4)
    assert reply.status == 200 and reply.json["data"].endswith(".mov")


# ----- names, tokens, types

@pytest.mark.parametrize("filename", [
    "../../x.sh", "..\\..\\x.sh", "evil\x00.sh", "/etc/passwd", "a" * 5000 + ".pdf",
    "", "ünïcödé 名前.pdf"])
async def test_a_hostile_file_name_never_becomes_a_path(server, filename):
    ann = User(server, "Ann")
    reply = await upload(server, ann, b"payload " * 100, filename, 3)
    assert reply.status in (200, 400), reply.body
    body = reply.json
    if reply.status == 400:
        assert body["success"] is False and body["message"]
        return
    path = body["data"]
    assert PATH.match(path), path
    assert "passwd" not in path and ".." not in path and "\x00" not in path
    found = [os.path.join(d, f) for d, _, files in os.walk(server.workdir) for f in files
             if f in ("x.sh", "passwd") or "evil" in f]
    assert found == []
    status, headers, data = get(server, path)
    assert status == 200 and data == b"payload " * 100
    assert headers["Content-Disposition"].startswith("attachment")


async def test_without_a_token_the_upload_is_refused_before_its_body(server):
    ann = User(server, "Ann")
    reply = await upload(server, ann, jpeg(100, 100), "a.jpg", 2, token=False)
    assert_refused(reply, 401, "Bearer")
    bad = await post_multipart(server.url, [field_part("messageType", 2),
                                            file_part(jpeg(100, 100), "a.jpg")],
                               "not-a-token")
    assert_refused(bad, 401, "token")


@pytest.mark.parametrize("message_type", ["0", "5", "-1", "2.5", "image", "", "2" * 40])
async def test_a_wrong_message_type_is_refused(server, message_type):
    ann = User(server, "Ann")
    reply = await upload(server, ann, jpeg(100, 100), "a.jpg", message_type)
    assert_refused(reply, 400, "messageType")
    assert partial_files(server) == []


async def test_missing_fields_and_bodies_that_are_not_forms(server):
    ann = User(server, "Ann")
    reply = await post_multipart(server.url, [file_part(jpeg(50, 50), "a.jpg")], ann.token)
    assert_refused(reply, 400, "messageType is required")
    reply = await post_multipart(server.url, [field_part("messageType", 2)], ann.token)
    assert_refused(reply, 400, "file is required")
    reply = await post_multipart(server.url, [file_part(b"", "a.pdf"),
                                              field_part("messageType", 3)], ann.token)
    assert_refused(reply, 400, "empty")
    reply = await post_multipart(server.url, [file_part(b"a", "a.pdf"), file_part(b"b", "b.pdf"),
                                              field_part("messageType", 3)], ann.token)
    assert_refused(reply, 400, "one file")
    status, body = ann.http("POST", "/api/chat/uploadFile", {"file": "x", "messageType": 2})
    assert status == 415 and body["success"] is False and "multipart" in body["message"]


# ----- limits, while streaming, with the server's memory flat

@pytest.mark.parametrize("message_type,limit_mb,name", [
    (1, 50, "long.mp3"), (3, 50, "huge.pdf"), (2, 25, "giant.jpg")])
async def test_a_body_over_its_limit_is_cut_off_early(server, message_type, limit_mb, name):
    ann = User(server, "Ann")
    pid = server.proc.pid
    before = rss_kib(pid)
    head = b"ID3\x03\x00\x00\x00\x00\x00\x00" if message_type == 1 else b""
    total = (limit_mb + 20) * MIB
    started = time.monotonic()
    reply = await post_multipart(server.url, [
        field_part("messageType", message_type),
        streamed_file(total, head, filename=name)], ann.token, slow_after=limit_mb * MIB)
    took = time.monotonic() - started
    after = rss_kib(pid)
    print(f"\n{name}: {total // MIB} MiB over a {limit_mb} MB limit -> {reply.status} "
          f"after {reply.sent / MIB:.1f} MiB sent, {took:.2f}s; server RSS "
          f"{before / 1024:.1f} -> {after / 1024:.1f} MiB")
    assert_refused(reply, 413, f"at most {limit_mb} MB")
    # Answered while the body was still coming, not after it.
    assert reply.sent < total
    assert partial_files(server) == []
    assert after - before < 50 * 1024


async def test_a_declared_length_over_the_largest_limit_is_refused_at_once(server):
    ann = User(server, "Ann")
    size = 600 * MIB
    reply = await post_multipart(server.url, [
        streamed_file(size, mp4_head()), field_part("messageType", 4)], ann.token,
        headers={"Expect": "100-continue"}, slow_after=0)
    assert_refused(reply, 413, "at most 500 MB")
    assert reply.sent < 2 * MIB


async def test_a_large_video_streams_through_with_flat_memory(server):
    ann = User(server, "Ann")
    pid = server.proc.pid
    size = 120 * MIB
    before = rss_kib(pid)
    started = time.monotonic()
    reply = await post_multipart(server.url, [
        streamed_file(size, mp4_head(), filename="holiday.mp4"),
        field_part("messageType", 4)], ann.token)
    took = time.monotonic() - started
    after = rss_kib(pid)
    print(f"\n120 MiB video: {reply.status} in {took:.2f}s; server RSS "
          f"{before / 1024:.1f} -> {after / 1024:.1f} MiB ({(after - before) / 1024:+.1f})")
    assert reply.status == 200, reply.body
    path = reply.json["data"]
    assert path.startswith("/uploads/chat-messages/videos/") and path.endswith(".mp4")
    stored = os.path.join(server.upload_dir, *path.split("/")[2:])
    assert os.path.getsize(stored) == size
    assert after - before < 50 * 1024
    os.remove(stored)


async def test_a_chunked_video_over_its_limit_is_cut_off(make_server, store_kind):
    srv = make_server(store_kind, "--upload-max-video-mb=30")
    ann = User(srv, "Ann")
    reply = await post_multipart(srv.url, [
        field_part("messageType", 4), streamed_file(80 * MIB, mp4_head())], ann.token,
        chunked=True, slow_after=30 * MIB)
    assert_refused(reply, 413, "video may be at most 30 MB")
    assert reply.sent < 80 * MIB
    assert partial_files(srv) == []
    # Before the form names the type, the largest limit holds; the type's own limit
    # applies as soon as it is known.
    reply = await post_multipart(srv.url, [
        streamed_file(40 * MIB, mp4_head()), field_part("messageType", 4)], ann.token)
    assert_refused(reply, 413, "video may be at most 30 MB")
    assert partial_files(srv) == []


# ----- serving

async def test_files_are_served_with_ranges_types_and_as_attachments(server):
    ann = User(server, "Ann")
    video = mp4_head() + os.urandom(100_000)
    path = (await upload(server, ann, video, "clip.webm", 4)).json["data"]
    status, headers, data = get(server, path, {"Range": "bytes=100-199"})
    assert status == 206 and data == video[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(video)}"
    assert headers["Content-Type"] == "video/webm"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Disposition" not in headers

    html = b"<html><script>alert(1)</script></html>"
    path = (await upload(server, ann, html, "page.html", 3)).json["data"]
    status, headers, data = get(server, path)
    assert status == 200 and data == html
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"].startswith("attachment")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]

    for missing in ("/uploads/chat-messages/images/nope.webp", "/uploads/../conftest.py",
                    "/uploads/chat-messages/.partial/x", "/uploads/chat-messages"):
        status, headers, data = get(server, missing)
        assert status in (403, 404), missing
        assert json.loads(data)["success"] is False


async def test_documents_download_under_their_own_name(server):
    ann = User(server, "Ann")
    cases = {
        "report.pdf": 'attachment; filename="report.pdf"',
        "Résumé 2024.pdf": ('attachment; filename="Resume 2024.pdf"; '
                            "filename*=UTF-8''R%C3%A9sum%C3%A9%202024.pdf"),
        "Отчёт.docx": ('attachment; filename="download.docx"; '
                       "filename*=UTF-8''%D0%9E%D1%82%D1%87%D1%91%D1%82.docx"),
        "docs/notes; v2.txt": 'attachment; filename="notes; v2.txt"',
        # A right-to-left override would show "txt.eman" as the name's end.
        "\u202eevil\tname.txt": 'attachment; filename="evil name.txt"',
    }
    for filename, expected in cases.items():
        reply = await upload(server, ann, b"%PDF-1.4 hello", filename, 3)
        path = reply.json["data"]
        assert PATH.match(path), path        # the stored name stays random
        assert filename.rsplit(".", 1)[0] not in path
        status, headers, data = get(server, path)
        assert status == 200 and data == b"%PDF-1.4 hello"
        assert headers["Content-Disposition"] == expected, filename
    # A name that is only a path or nothing falls back to the stored name.
    path = (await upload(server, ann, b"data", "../..", 3)).json["data"]
    name = path.rsplit("/", 1)[1]
    assert get(server, path)[1]["Content-Disposition"] == f'attachment; filename="{name}"'
    # Media is shown inline, under no name.
    path = (await upload(server, ann, wav(), "Voice note.wav", 1)).json["data"]
    assert "Content-Disposition" not in get(server, path)[1]


# ----- media messages

async def test_the_documents_image_message_flow_end_to_end(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id, "accessToken": bob.token})

    upload_reply = await upload(server, ann, jpeg(2400, 1600), "beach.jpg", 2)
    file_path = upload_reply.json["data"]
    reply = await a.call("createMessage", {
        "message": file_path, "chatHeaderId": chat_id, "accessToken": ann.token,
        "messageType": 2, "caption": "Check out this image!"})
    assert reply["chatMessage"]["message"] == file_path
    assert reply["chatMessage"]["messageType"] == 2
    (got,) = await b.wait_for("message")
    assert got["chatMessage"]["message"] == file_path
    assert got["chatMessage"]["caption"] == "Check out this image!"
    im = stored_image(server, got["chatMessage"]["message"])
    assert im.size == (1920, 1280)

    # A video, as the document's second example.
    video = (await upload(server, ann, mp4_head(), "v.mp4", 4)).json["data"]
    reply = await a.call("createMessage", {
        "message": video, "chatHeaderId": chat_id, "accessToken": ann.token,
        "messageType": 4, "caption": "Watch this video!"})
    assert reply["chatMessage"]["message"] == video
    await b.wait_for("message", 2)


async def test_a_media_message_carries_only_its_senders_upload_of_that_type(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    image = (await upload(server, ann, jpeg(300, 200), "a.jpg", 2)).json["data"]
    bobs = (await upload(server, bob, jpeg(300, 200), "b.jpg", 2)).json["data"]

    async def refused(payload, words):
        reply = await a.call("createMessage", dict(
            {"chatHeaderId": chat_id, "accessToken": ann.token}, **payload))
        assert reply.get("code") == "VALIDATION", reply
        assert re.search(words, reply["error"], re.I), reply
        return reply

    await refused({"message": image, "messageType": 4}, "uploaded as images")
    await refused({"message": "/uploads/chat-messages/images/" + "A" * 32 + ".webp",
                   "messageType": 2}, "does not exist")
    await refused({"message": "/uploads/chat-messages/images/../../../etc/passwd",
                   "messageType": 2}, "path")
    await refused({"message": bobs, "messageType": 2}, "you uploaded")
    page = await a.call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["totalCount"] == 0

    # The sender's own upload may be sent twice (a forward), and edited to another.
    for _ in range(2):
        ok = await a.call("createMessage", {"chatHeaderId": chat_id, "message": image,
                                            "messageType": 2})
        assert ok["chatMessage"]["message"] == image
    other = (await upload(server, ann, jpeg(200, 300), "c.jpg", 2)).json["data"]
    edited = await a.call("updateMessage", {"id": ok["chatMessage"]["id"],
                                            "chatHeaderId": chat_id, "message": other})
    assert edited["chatMessage"]["message"] == other
    bad = await a.call("updateMessage", {"id": ok["chatMessage"]["id"],
                                         "chatHeaderId": chat_id, "message": bobs})
    assert bad["code"] == "VALIDATION"
    bad = await a.call("updateMessage", {"id": ok["chatMessage"]["id"],
                                         "chatHeaderId": chat_id, "message": "hello"})
    assert bad["code"] == "VALIDATION"
    # Bob may not edit Ann's message, whatever path he sends.
    bad = await b.call("updateMessage", {"id": ok["chatMessage"]["id"],
                                         "chatHeaderId": chat_id, "message": bobs})
    assert bad["code"] == "FORBIDDEN"


async def test_uploads_no_message_used_are_swept(make_server, store_kind, clients):
    # 3.6 s of grace: long enough for the used upload to become a message first even
    # on a loaded machine, short enough to watch the others go.
    srv = make_server(store_kind, "--upload-orphan-hours=0.001",
                      "--upload-cleanup-interval=0.3")
    ann, bob = User(srv, "Ann"), User(srv, "Bob")
    await register(ann, bob)
    a = await clients(ann)
    chat_id = await dm(a, bob)
    used = (await upload(srv, ann, wav(), "keep.wav", 1)).json["data"]
    ok = await a.call("createMessage", {"chatHeaderId": chat_id, "message": used,
                                        "messageType": 1})
    assert ok["chatMessage"]["message"] == used
    unused = (await upload(srv, ann, wav(), "drop.wav", 1)).json["data"]
    late = (await upload(srv, ann, wav(), "late.wav", 1)).json["data"]
    deadline = time.monotonic() + 30
    while (get(srv, unused)[0] != 404 or get(srv, late)[0] != 404) \
            and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert get(srv, unused)[0] == 404
    assert get(srv, late)[0] == 404
    assert get(srv, used)[0] == 200
    reply = await a.call("createMessage", {"chatHeaderId": chat_id, "message": late,
                                           "messageType": 1})
    assert reply["code"] == "VALIDATION"
    files = os.listdir(os.path.join(srv.upload_dir, "chat-messages", "audios"))
    assert files == [used.rsplit("/", 1)[1]]


async def test_deleting_or_replacing_the_last_message_of_an_upload_deletes_it(
        server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    a = await clients(ann)
    chat_id = await dm(a, bob)
    photo = (await upload(server, ann, jpeg(300, 200), "p.jpg", 2)).json["data"]
    ids = []
    for _ in range(2):  # sent twice, as a forward does
        reply = await a.call("createMessage", {"chatHeaderId": chat_id, "message": photo,
                                               "messageType": 2})
        ids.append(reply["chatMessage"]["id"])
    deleted = await a.call("removeMessage", {"id": ids[0], "chatHeaderId": chat_id})
    assert deleted["deletedIds"] == [ids[0]]
    assert get(server, photo)[0] == 200      # the second message still shows it
    deleted = await a.call("removeMessage", {"id": ids[1], "ids": [],
                                             "chatHeaderId": chat_id})
    assert deleted["deletedIds"] == [ids[1]]
    assert get(server, photo)[0] == 404
    assert not os.path.exists(os.path.join(server.upload_dir, photo[len("/uploads/"):]))
    reply = await a.call("createMessage", {"chatHeaderId": chat_id, "message": photo,
                                           "messageType": 2})
    assert reply["code"] == "VALIDATION"

    # Edited to another file: the old one goes, the new one stays, once per edit.
    note, other = [(await upload(server, ann, wav(), f"{n}.wav", 1)).json["data"]
                   for n in ("note", "other")]
    msg = (await a.call("createMessage", {"chatHeaderId": chat_id, "message": note,
                                          "messageType": 1}))["chatMessage"]
    same = await a.call("updateMessage", {"id": msg["id"], "chatHeaderId": chat_id,
                                          "message": note, "caption": "just a caption"})
    assert same["chatMessage"]["caption"] == "just a caption"
    assert get(server, note)[0] == 200
    edited = await a.call("updateMessage", {"id": msg["id"], "chatHeaderId": chat_id,
                                            "message": other})
    assert edited["chatMessage"]["message"] == other
    assert get(server, note)[0] == 404 and get(server, other)[0] == 200
    # A text message's deletion touches no upload; a media message's last one does.
    text = (await a.call("createMessage", {"chatHeaderId": chat_id,
                                           "message": other}))["chatMessage"]
    await a.call("removeMessage", {"ids": [text["id"]], "chatHeaderId": chat_id})
    assert get(server, other)[0] == 200
    await a.call("removeMessage", {"ids": [msg["id"]], "chatHeaderId": chat_id})
    assert get(server, other)[0] == 404


async def test_upgrading_counts_each_uploads_messages_and_frees_the_forgotten(store_kind):
    """v0004 on a database of the release before: uploads carried by messages get
    their count; those whose messages were deleted back then become orphans."""
    from conftest import new_database_url
    from syarah.store import DataStore, Database
    from syarah.store.migrations import available, current_version, migrate
    from syarah.types import User as Person

    url, cleanup = new_database_url(store_kind)
    db = await Database.connect(url, pool_size=2)
    try:
        await current_version(db)
        for version, name, statements in available():
            if version >= 4:
                break

            async def apply(txn, version=version, name=name, statements=statements):
                for statement in statements:
                    await txn.execute(db.engine.ddl(statement))
                await txn.execute("INSERT INTO schema_version (version, name, applied_ms)"
                                  " VALUES (?, ?, 0)", version, name)
            await db.run(apply)
        store = DataStore(db)
        ann, bob = Person(str(uuid.uuid4()), "Ann", None), Person(str(uuid.uuid4()), "Bob", None)
        for u in (ann, bob):
            await store.upsert_user(u, 1)
        chat = await store.get_or_create_individual_chat(ann.id, bob.id, 1)
        paths = {n: f"/uploads/chat-messages/images/{n * 32}.webp" for n in "ABC"}
        for n, path in paths.items():
            # As v0003 wrote them: every one was used by a message once.
            await db.execute("INSERT INTO uploads (path, user_id, message_type, size,"
                             " creation_ms, used_ms) VALUES (?, ?, 2, 1, 1, 1)",
                             path, ann.id)
        for path in (paths["A"], paths["A"], paths["B"]):
            await store.add_message(chat.id, ann, path, 2, None, None, 2)
        # Bob's text that happens to read like Ann's path counts for nothing.
        await store.add_message(chat.id, bob, paths["C"], 0, None, None, 2)
        assert await migrate(db) == ["v0004_upload_names"]
        got = {n: await store.get_upload(p) for n, p in paths.items()}
        assert [(got[n].use_count, got[n].used_ms) for n in "ABC"] == [
            (2, 1), (1, 1), (0, None)]
        assert await store.unused_uploads(10, 10) == [paths["C"]]
    finally:
        await db.close()
        cleanup()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_the_readme_curl_command_works(server, tmp_path):
    ann = User(server, "Ann")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg(640, 480))
    out = subprocess.run(
        ["curl", "-sS", "-H", f"Authorization: Bearer {ann.token}",
         "-F", f"file=@{photo}", "-F", "messageType=2",
         f"{server.url}/api/chat/uploadFile"],
        capture_output=True, timeout=30, check=True)
    body = json.loads(out.stdout)
    assert body["success"] is True and body["message"] is None
    assert PATH.match(body["data"]) and body["data"].endswith(".webp")
    # Over the audio limit: curl streams the file and gets the 413 envelope.
    big = tmp_path / "big.mp4"
    with open(big, "wb") as f:
        f.write(mp4_head())
        f.truncate(60 * MIB)
    out = subprocess.run(
        ["curl", "-sS", "-H", f"Authorization: Bearer {ann.token}",
         "-F", "messageType=1", "-F", f"file=@{big};filename=big.mp3",
         f"{server.url}/api/chat/uploadFile"],
        capture_output=True, timeout=30)
    body = json.loads(out.stdout)
    assert body == {"success": False, "data": None,
                    "message": "An audio file may be at most 50 MB."}




async def test_uploaded_bytes_are_counted_in_metrics(server):
    from test_production import sample, scrape

    ann = User(server, "Ann")
    before = sample(scrape(server), "syarah_upload_bytes_total")
    data = wav()
    reply = await upload(server, ann, data, "note.wav", 1)
    assert reply.json["success"] is True
    assert sample(scrape(server), "syarah_upload_bytes_total") - before == len(data)
