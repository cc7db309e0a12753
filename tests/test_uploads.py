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
import tempfile
import time
import uuid
import zlib

import pillow_heif
import pytest
from PIL import Image, ImageDraw

from conftest import http_get, User, dm, register
from syarah.media.kinds import CONTENT_TYPES
from upload_client import (MIB, KeepAliveClient, field_part, file_part, post_multipart,
                           rss_kib, start_upload, streamed_file)

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


# ----- phone photo formats and colour profiles

# To write HEIC samples, as iPhones take them.
pillow_heif.register_heif_opener()


def photo(fmt: str, size=(640, 480), **save) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg(*size))).save(out, fmt, **save)
    return out.getvalue()


async def test_photos_in_every_format_phones_send_are_converted(server):
    ann = User(server, "Ann")
    for fmt, name in (("BMP", "IMG_1.bmp"), ("TIFF", "scan.tiff"), ("HEIF", "IMG_4032.HEIC"),
                      ("AVIF", "PXL_2026.avif"), ("PNG", "shot"), ("WEBP", "x.jpg")):
        status, body = await asyncio.to_thread(
            dart_upload, server, ann, {"messageType": 2}, photo(fmt), name)
        assert status == 200, (fmt, body)
        im = stored_image(server, body["data"])
        assert im.size == (640, 480), fmt
        # Left red, right blue, as the original: decoded, not just relabelled.
        red, blue = im.convert("RGB").getpixel((100, 240)), im.convert("RGB").getpixel((540, 240))
        assert red[0] > 150 and red[2] < 90 and blue[2] > 150 and blue[0] < 90, (fmt, red, blue)
    # A picture of more pixels than allowed is refused in these formats too.
    giant = io.BytesIO()
    Image.new("RGB", (8000, 7000)).save(giant, "TIFF", compression="tiff_deflate")
    status, body = await asyncio.to_thread(
        dart_upload, server, ann, {"messageType": 2}, giant.getvalue(), "big.tif")
    assert status == 413 and "pixels" in body["message"], body
    for data, name in ((b"8BPS" + os.urandom(4000), "layers.psd"),
                       (b"\x00\x00\x01\x00" + os.urandom(4000), "icon.ico")):
        status, body = await asyncio.to_thread(
            dart_upload, server, ann, {"messageType": 2}, data, name)
        assert status == 415 and "not an image of a known kind" in body["message"], body
    assert partial_files(server) == []


# Display P3: the DCI-P3 primaries with the D65 white and the sRGB tone curve.
P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
SRGB_PRIMARIES = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))
D65 = (0.3127, 0.3290)
D50_XYZ = (0.9642, 1.0, 0.8249)


def _inverse3(m):
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return [[(e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det],
            [(f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det],
            [(d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det]]


def _mul(m, n):
    return [[sum(m[r][k] * n[k][c] for k in range(3)) for c in range(3)] for r in range(3)]


def _apply(m, v):
    return [sum(m[r][k] * v[k] for k in range(3)) for r in range(3)]


def rgb_to_xyz(primaries, white):
    """The RGB to XYZ matrix of a colour space given by its chromaticities."""
    cols = [[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]
    m = [[cols[c][r] for c in range(3)] for r in range(3)]
    wx, wy = white
    scale = _apply(_inverse3(m), [wx / wy, 1.0, (1 - wx - wy) / wy])
    return [[m[r][c] * scale[c] for c in range(3)] for r in range(3)]


def bradford(src_white_xyz, dst_white_xyz):
    b = [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]]
    s, d = _apply(b, src_white_xyz), _apply(b, dst_white_xyz)
    return _mul(_inverse3(b), _mul([[d[0] / s[0], 0, 0], [0, d[1] / s[1], 0],
                                    [0, 0, d[2] / s[2]]], b))


def display_p3_icc() -> bytes:
    """A Display P3 ICC v4 profile, written from its definition: matrix and curves."""
    def s15(v):
        return struct.pack(">i", round(v * 65536))

    def xyz(v):
        return b"XYZ \0\0\0\0" + b"".join(s15(c) for c in v)

    def mluc(text):
        data = text.encode("utf-16-be")
        return (b"mluc\0\0\0\0" + struct.pack(">II", 1, 12) + b"enUS"
                + struct.pack(">II", len(data), 28) + data)
    d65 = (D65[0] / D65[1], 1.0, (1 - D65[0] - D65[1]) / D65[1])
    m = _mul(bradford(d65, D50_XYZ), rgb_to_xyz(P3_PRIMARIES, D65))
    # The sRGB curve as parametric function 3: g, a, b, c, d.
    trc = b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(
        s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
    tags = [(b"desc", mluc("Display P3 (test)")), (b"cprt", mluc("none")),
            (b"wtpt", xyz(D50_XYZ)), (b"rXYZ", xyz([r[0] for r in m])),
            (b"gXYZ", xyz([r[1] for r in m])), (b"bXYZ", xyz([r[2] for r in m])),
            (b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x04300000)
              + b"mntrRGB XYZ " + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp"
              + b"\0" * 24 + struct.pack(">I", 0) + b"".join(s15(c) for c in D50_XYZ)
              + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def p3_to_srgb(rgb):
    """The sRGB value of a Display P3 colour, from the two spaces' definitions."""
    def decode(v):
        v /= 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    def encode(v):
        v = min(1.0, max(0.0, v))
        return 255 * (12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055)
    m = _mul(_inverse3(rgb_to_xyz(SRGB_PRIMARIES, D65)), rgb_to_xyz(P3_PRIMARIES, D65))
    return tuple(encode(v) for v in _apply(m, [decode(c) for c in rgb]))


async def test_a_display_p3_photo_keeps_its_colours_in_srgb(server):
    ann = User(server, "Ann")
    icc = display_p3_icc()
    # A warm orange and a teal, inside sRGB's gamut once converted, and a P3 green
    # beyond it: the first two change by tens of levels, the last is clipped.
    colours = [(230, 120, 60), (40, 160, 150), (0, 255, 0)]
    for fmt, save in (("JPEG", {"quality": 95, "subsampling": 0}), ("PNG", {}),
                      ("HEIF", {"quality": 95})):
        im = Image.new("RGB", (300, 100))
        for i, colour in enumerate(colours):
            im.paste(colour, (i * 100, 0, i * 100 + 100, 100))
        out = io.BytesIO()
        im.save(out, fmt, icc_profile=icc, **save)
        status, body = await asyncio.to_thread(
            dart_upload, server, ann, {"messageType": 2}, out.getvalue(), "p3")
        assert status == 200, (fmt, body)
        stored = stored_image(server, body["data"])
        assert "icc_profile" not in stored.info
        stored = stored.convert("RGB")
        for i, colour in enumerate(colours):
            got = stored.getpixel((i * 100 + 50, 50))
            want = p3_to_srgb(colour)
            assert all(abs(g - w) <= 6 for g, w in zip(got, want)), (fmt, colour, got, want)
        # The naive copy differs measurably: the conversion happened.
        got = stored.getpixel((50, 50))
        assert max(abs(g - c) for g, c in zip(got, colours[0])) >= 20, (fmt, got)


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
    assert_refused(reply, 415, "not an image of a known kind")
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


# What ffmpeg writes for each container of the document's lists: (message type,
# ffmpeg arguments, the extension it must be stored under).
MEDIA_SAMPLES = {
    "mp3": (1, ["-c:a", "libmp3lame"], "mp3"),
    "wav": (1, [], "wav"),
    "ogg": (1, ["-c:a", "libopus"], "ogg"),
    "m4a": (1, ["-c:a", "aac"], "m4a"),
    "aac": (1, ["-c:a", "aac", "-f", "adts"], "aac"),
    "flac": (1, [], "flac"),
    "wma": (1, ["-c:a", "wmav2"], "wma"),
    "mp4": (4, ["-c:v", "libx264", "-pix_fmt", "yuv420p"], "mp4"),
    "mov": (4, ["-c:v", "libx264", "-pix_fmt", "yuv420p"], "mov"),
    "avi": (4, ["-c:v", "mpeg4"], "avi"),
    "wmv": (4, ["-c:v", "wmv2"], "wmv"),
    "flv": (4, ["-c:v", "flv"], "flv"),
    "webm": (4, ["-c:v", "libvpx"], "webm"),
    "mkv": (4, ["-c:v", "libx264"], "mkv"),
}


@functools.cache
def media_sample(container: str) -> bytes:
    """A second of real encoder output in ``container``."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "the upload tests need ffmpeg (apt-get install ffmpeg)"
    message_type, args, ext = MEDIA_SAMPLES[container]
    source = (["-f", "lavfi", "-i", "sine=frequency=440:duration=1"] if message_type == 1
              else ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1"])
    folder = tempfile.mkdtemp(prefix="syarah-media-")
    out = os.path.join(folder, "sample." + container)
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *source, *args,
                    out], check=True, timeout=60)
    with open(out, "rb") as f:
        data = f.read()
    shutil.rmtree(folder)
    return data


def dart_upload(server, user, fields, data, filename):
    client = KeepAliveClient(server.url, user.token)
    try:
        status, headers, body = client.upload(fields, data, filename)
    finally:
        client.close()
    return status, json.loads(body)


async def test_dart_uploads_of_audio_and_video_are_judged_by_their_content(server):
    """Flutter sends every file as application/octet-stream under its path's basename,
    which often has no extension or the wrong one; the stored extension is what the
    content is."""
    ann = User(server, "Ann")
    for container, (message_type, _, ext) in MEDIA_SAMPLES.items():
        data = media_sample(container)
        wrong = "mp4" if container != "mp4" else "mov"
        for filename in (f"VID_20261202_{container}", f"recording.{wrong}",
                         f"clip.{container}"):
            status, body = await asyncio.to_thread(
                dart_upload, server, ann, {"messageType": message_type}, data, filename)
            assert status == 200, (container, filename, body)
            path = body["data"]
            assert PATH.match(path) and path.endswith("." + ext), (container, filename, path)
            served = get(server, path)
            assert served[0] == 200 and served[2] == data
            assert served[1]["Content-Type"] == CONTENT_TYPES[ext]


async def test_audio_and_video_outside_the_documents_lists_are_refused(server):
    ann = User(server, "Ann")
    # Nothing that is not a media container gets through, whatever it is called.
    for data, name, message_type in ((ELF, "clip.mp4", 4), (ELF, "note", 1),
                                     (b"%PDF-1.4\n" * 2000, "voice.m4a", 1)):
        status, body = await asyncio.to_thread(
            dart_upload, server, ann, {"messageType": message_type}, data, name)
        assert status == 415 and body["success"] is False and body["data"] is None
        assert "not a" in body["message"], body
    # A video container sent as audio is stored as audio of that family; an audio-only
    # file is no video: a WAV sent as a video is refused.
    status, body = await asyncio.to_thread(
        dart_upload, server, ann, {"messageType": 4}, media_sample("wav"), "clip.mp4")
    assert status == 415 and "not a video" in body["message"], body
    assert partial_files(server) == []


async def test_a_keep_alive_client_goes_on_after_a_refused_upload(make_server, store_kind):
    """A refusal that comes before the body's end closes the connection; it says so
    (Connection: close), so the client's next request goes on a new connection instead
    of failing on the closed one."""
    srv = make_server(store_kind, "--upload-max-audio-mb=1")
    ann = User(srv, "Ann")

    def refuse_then_go_on(fields, data, filename, status):
        client = KeepAliveClient(srv.url, ann.token)
        try:
            got, headers, body = client.upload(fields, data, filename)
            assert got == status, (got, body)
            # The next request and upload on the same client.
            assert client.request("GET", "/healthz")[0] == 200
            assert headers.get("connection", "").lower() == "close", headers
            ok, _, body = client.upload({"messageType": 1}, wav(), "note.wav")
            assert ok == 200, body
            return client.connections
        finally:
            client.close()

    cases = [({"messageType": 4}, ELF * 40, "clip.mp4", 415),
             ({"messageType": 1}, b"ID3\x03\x00" + os.urandom(3 * MIB), "long.mp3", 413)]
    for fields, data, filename, status in cases:
        connections = await asyncio.to_thread(refuse_then_go_on, fields, data, filename,
                                              status)
        assert connections == 2


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
    video = media_sample("webm")
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


async def test_a_media_message_updated_and_removed_at_once_keeps_every_upload_count(
        server, clients):
    """updateMessage (to another file) and removeMessage of one message at the same
    moment, many times: whichever wins, each upload counts exactly the messages that
    carry it, and a file another message still carries is never deleted."""
    from syarah.store import open_store

    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    a, a2 = await clients(ann), await clients(ann)
    chat_id = await dm(a, bob)
    first, second = [(await upload(server, ann, wav(), f"{n}.wav", 1)).json["data"]
                     for n in ("first", "second")]
    for path in (first, second):   # kept by a message of their own throughout
        await a.call("createMessage", {"chatHeaderId": chat_id, "message": path,
                                       "messageType": 1})
    answers = []
    for i in range(30):
        created = await a.call("createMessage", {"chatHeaderId": chat_id,
                                                 "message": first, "messageType": 1})
        # Refused when an earlier round deleted the file its keeper message carries.
        assert "chatMessage" in created, (i, created, answers)
        msg = created["chatMessage"]

        async def remove(delay=(i % 6) * 0.002):
            await asyncio.sleep(delay)
            return await a2.call("removeMessage", {"id": msg["id"],
                                                   "chatHeaderId": chat_id})
        updated, removed = await asyncio.gather(
            a.call("updateMessage", {"id": msg["id"], "chatHeaderId": chat_id,
                                     "message": second}), remove())
        assert removed["deletedIds"] == [msg["id"]], removed
        assert "chatMessage" in updated or updated["code"] == "NOT_FOUND", updated
        answers.append("updated" if "chatMessage" in updated else "not found")

    store = await open_store(server.database_url, pool_size=1, run_migrations=False)
    try:
        counts = [(await store.get_upload(p)).use_count for p in (first, second)]
    finally:
        await store.close()
    assert counts == [1, 1], (counts, answers)
    assert get(server, first)[0] == 200 and get(server, second)[0] == 200


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
        # The messages as that release stored them (today's writes fill columns
        # that later migrations add).
        for author, path, kind in ((ann, paths["A"], 2), (ann, paths["A"], 2),
                                   (ann, paths["B"], 2),
                                   # Bob's text that reads like Ann's path counts for nothing.
                                   (bob, paths["C"], 0)):
            await db.execute("INSERT INTO messages (chat_header_id, user_id, message,"
                             " message_type, creation_ms) VALUES (?, ?, ?, ?, 2)",
                             chat.id, author.id, path, kind)
        assert (await migrate(db))[0] == "v0004_upload_names"
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


# ----- one account cannot fill the disk or hold connections

def mp3_like(size: int) -> bytes:
    return b"ID3\x03\x00" + os.urandom(size - 5)


async def test_uploads_in_flight_per_user_are_capped(make_server, store_kind):
    srv = make_server(store_kind, env={"SYARAH_UPLOAD_MAX_IN_FLIGHT": "2"})
    ann, bob = User(srv, "Ann"), User(srv, "Bob")
    held = [await start_upload(srv.url, ann.token, 50 * MIB, first=mp4_head())
            for _ in range(2)]
    try:
        await asyncio.sleep(0.5)
        # A third at the same time is refused before its body; someone else's is not.
        reply = await upload(srv, ann, mp3_like(64 * 1024), "note.mp3", 1)
        assert_refused(reply, 429, "at most 2 uploads at once")
        assert reply.headers.get("connection") == "close"
        reply = await upload(srv, bob, mp3_like(64 * 1024), "note.mp3", 1)
        assert reply.status == 200, reply.body
    finally:
        for _, writer in held:
            writer.close()
    # Once they end, however they end, the slots are free again.
    for _ in range(50):
        await asyncio.sleep(0.2)
        reply = await upload(srv, ann, mp3_like(64 * 1024), "note.mp3", 1)
        if reply.status == 200:
            break
    assert reply.status == 200, reply.body
    assert partial_files(srv) == []


async def test_bytes_uploaded_per_day_are_capped_across_restarts(make_server, store_kind):
    env = {"SYARAH_UPLOAD_BYTES_PER_DAY": str(3 * MIB)}
    srv = make_server(store_kind, env=env)
    ann, bob = User(srv, "Ann"), User(srv, "Bob")
    for _ in range(3):
        reply = await upload(srv, ann, mp3_like(MIB - 4096), "note.mp3", 1)
        assert reply.status == 200, reply.body
    reply = await upload(srv, ann, mp3_like(MIB - 4096), "note.mp3", 1)
    assert_refused(reply, 429, "per day")
    # Declared up front, the refusal comes before the body.
    reply = await post_multipart(srv.url, [
        field_part("messageType", 4), streamed_file(40 * MIB, mp4_head())], ann.token,
        slow_after=0)
    assert_refused(reply, 429, "per day")
    assert reply.sent < 40 * MIB
    assert (await upload(srv, bob, mp3_like(MIB), "note.mp3", 1)).status == 200
    # The count is in the store: a restarted server (or another node) knows it.
    srv.stop()
    again = make_server(store_kind, env=env, database_url=srv.database_url)
    reply = await upload(again, ann, mp3_like(64 * 1024), "note.mp3", 1)
    assert_refused(reply, 429, "per day")
    assert partial_files(again) == []


async def wait_closed(reader, limit: float) -> tuple[float, bytes]:
    """Seconds until the server ends the connection, and what it said before."""
    started = time.monotonic()
    said = bytearray()
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), limit)
        except ConnectionError:
            break
        if not chunk:
            break
        said += chunk
    return time.monotonic() - started, bytes(said)


async def test_trickling_clients_are_cut_off(make_server, store_kind):
    srv = make_server(store_kind, env={
        "SYARAH_HTTP_IDLE_TIMEOUT": "2", "SYARAH_HTTP_BODY_TIMEOUT": "4",
        "SYARAH_UPLOAD_MIN_RATE_KIB": "64", "SYARAH_UPLOAD_RATE_WINDOW": "2"})
    ann = User(srv, "Ann")
    host, port = "127.0.0.1", srv.port
    stop = asyncio.Event()

    async def trickle(writer, data: bytes, every: float):
        try:
            for i in range(len(data)):
                if stop.is_set():
                    return
                writer.write(data[i:i + 1])
                await writer.drain()
                await asyncio.sleep(every)
        except (ConnectionError, OSError):
            pass

    async def measure(what, reader, writer, trickled: bytes, every: float):
        task = asyncio.ensure_future(trickle(writer, trickled, every))
        try:
            took, said = await wait_closed(reader, 60)
        finally:
            task.cancel()
            writer.close()
        print(f"\n{what}: cut off after {took:.1f}s; answered {said[:60]!r}")
        return took, said

    # Headers one byte at a time.
    reader, writer = await asyncio.open_connection(host, port)
    took, said = await measure(
        "trickled headers", reader, writer,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000, 0.2)
    assert took < 30 and said == b""
    # An upload's body at a few bytes a second: answered, then closed.
    reader, writer = await start_upload(srv.url, ann.token, 10 * MIB, first=mp4_head())
    took, said = await measure("trickled upload body", reader, writer, b"x" * 10_000, 0.05)
    assert took < 30 and said.startswith(b"HTTP/1.1 408"), said
    assert b'"success": false' in said and b"Connection: close" in said
    # Any other request's body.
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /api/friendships HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nContent-Length: 5000\r\n\r\n")
    took, said = await measure("trickled JSON body", reader, writer, b" " * 5000, 0.2)
    assert took < 30
    stop.set()
    assert partial_files(srv) == []
    # A normal upload still goes through.
    reply = await upload(srv, ann, media_sample("mp4"), "clip.mp4", 4)
    assert reply.status == 200, reply.body


async def test_the_day_count_cannot_be_passed_by_uploads_finishing_together(store_kind):
    """Two nodes finishing uploads of one user at the same moment: the store admits
    exactly what fits; past days are dropped."""
    from conftest import new_database_url
    from syarah.store import DataStore, Database
    from syarah.store.migrations import migrate

    url, cleanup = new_database_url(store_kind)
    nodes = [await Database.connect(url, pool_size=8) for _ in range(2)]
    try:
        await migrate(nodes[0])
        stores = [DataStore(db) for db in nodes]
        # Many at once on the user's first upload of the day, several times over:
        # creating the day's row while others wait to add to it once deadlocked
        # InnoDB past the store's retries.
        for _ in range(5):
            user = str(uuid.uuid4())
            admitted = await asyncio.gather(*(
                stores[i % 2].count_uploaded_bytes(user, 20000, MIB, 3 * MIB)
                for i in range(16)))
            assert sorted(admitted) == [False] * 13 + [True] * 3
            assert await stores[1].uploaded_bytes(user, 20000) == 3 * MIB
        assert not await stores[0].count_uploaded_bytes(user, 20000, 4 * MIB, 3 * MIB)
        assert await stores[0].uploaded_bytes(user, 20000) == 3 * MIB
        assert await stores[0].count_uploaded_bytes(user, 20001, MIB, 3 * MIB)
        await stores[0].forget_uploaded_bytes_before(20001)
        assert await stores[0].uploaded_bytes(user, 20000) == 0
        assert await stores[0].uploaded_bytes(user, 20001) == MIB
    finally:
        for db in nodes:
            await db.close()
        cleanup()
