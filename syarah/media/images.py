"""Photos as chat messages show them: decoded safely, upright, in sRGB, without
metadata, fitted inside 1920x1920 and saved as WebP. Animated images stay animated.

Everything here is blocking CPU work: the service runs it in an executor.
"""

from __future__ import annotations

import io
import math
import os
import warnings

import pillow_heif
from PIL import Image, ImageCms, ImageOps, ImageSequence, UnidentifiedImageError

from syarah.errors import ChatError, PayloadTooLarge, UnsupportedMedia, Validation

# Formats that cameras, phones and the web produce: iPhones take HEIC (read through
# pillow-heif), Android phones may take AVIF (read by Pillow itself). The others Pillow
# knows (PSD, EPS, ICO, ...) are rarely sent as chat photos and carry most of the
# decoder history.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF")
FORMAT_NAMES = "JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC, AVIF"
# Several pictures in one of these are pages or a burst, not an animation: the first
# is the photo.
STILL_FORMATS = ("TIFF", "HEIF")
MAX_SIDE = 1920
QUALITY = 82
# An animation's frames are held decoded until the WebP encoder takes them all: their
# pixels together are kept under this (about 128 MiB as RGBA), shrinking the frames
# further when needed.
ANIMATION_PIXEL_BUDGET = 32_000_000
MAX_FRAMES = 1000
# Decoding every frame of a canvas costs its pixels each time: a many-frame giant
# canvas is refused like a bomb.
DECODE_BUDGET_FACTOR = 10
# Browsers show GIF frames of 0-10 ms for 100 ms; WebP players would not.
MIN_FRAME_MS = 20
DEFAULT_FRAME_MS = 100

# Oversized images are refused below, by an explicit check; Pillow's warning for them
# would only add noise to the log.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)
# HEIF through Pillow's own opener, so Image.open's bomb check and formats= apply. Its
# AVIF reader stays off: Pillow reads AVIF.
pillow_heif.register_heif_opener()
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def configure(max_pixels: int) -> None:
    # Pillow raises DecompressionBombError for more than twice this while reading the
    # header; convert() refuses anything above max_pixels itself.
    Image.MAX_IMAGE_PIXELS = max_pixels


def convert_to_webp(src: str, dst: str, max_pixels: int) -> tuple[int, int]:
    """Write ``src`` as a WebP at ``dst``; returns its size. Raises a ChatError that
    says what is wrong with the picture; ``dst`` is left absent then."""
    try:
        with Image.open(src, formats=FORMATS) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise _too_many_pixels(width, height, max_pixels)
            frames = getattr(im, "n_frames", 1) if getattr(im, "is_animated", False) else 1
            if im.format in STILL_FORMATS:
                frames = 1
            if frames > 1:
                return _animated(im, dst, frames, max_pixels)
            return _still(im, dst)
    except ChatError:
        _remove(dst)
        raise
    except Image.DecompressionBombError:
        _remove(dst)
        raise PayloadTooLarge("The image has too many pixels to be decoded safely.")
    except UnidentifiedImageError:
        _remove(dst)
        raise UnsupportedMedia(f"That file is not an image of a known kind "
                               f"({FORMAT_NAMES}).")
    except MemoryError:
        _remove(dst)
        raise PayloadTooLarge("The image is too large to be converted.")
    except Exception:
        # Truncated or damaged data surfaces as OSError, SyntaxError, ValueError,
        # EOFError or worse from a decoder; all mean the same to the sender.
        _remove(dst)
        raise Validation("The image is damaged or incomplete and could not be read.")


def _too_many_pixels(width: int, height: int, max_pixels: int) -> ChatError:
    return PayloadTooLarge(
        f"The image is {width}x{height} pixels; at most {max_pixels:,} pixels are "
        "accepted.")


def _flatten(im: Image.Image) -> Image.Image:
    """RGB, or RGBA when the picture has transparency: what WebP stores."""
    if im.mode in ("RGB", "RGBA"):
        return im
    if im.mode in ("LA", "PA", "La") or "transparency" in im.info:
        return im.convert("RGBA")
    return im.convert("RGB")


def _srgb_transform(im: Image.Image, mode: str):
    """A transform from the picture's embedded colour profile to sRGB for pixels of
    ``mode``, or None when it has none, or one that cannot be used. The profile is
    dropped with the rest of the metadata, and untagged pixels are shown as sRGB: a
    Display P3 photo would look washed out without this."""
    icc = im.info.get("icc_profile")
    if not icc:
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.buildTransform(source, _SRGB, mode, "RGBA" if "A" in mode else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        # A damaged or mismatched profile (a grey one on colour pixels): the pixels
        # are kept as they are.
        return None


def _to_srgb(im: Image.Image) -> Image.Image:
    """RGB or RGBA pixels in sRGB."""
    if im.mode in ("CMYK", "L", "RGB", "RGBA"):
        transform = _srgb_transform(im, im.mode)
        if transform is not None:
            return ImageCms.applyTransform(im, transform)
    out = _flatten(im)
    transform = _srgb_transform(im, out.mode)
    return ImageCms.applyTransform(out, transform) if transform is not None else out


def _still(im: Image.Image, dst: str) -> tuple[int, int]:
    if im.format == "JPEG":
        # Let libjpeg decode at a reduced scale that still covers 1920x1920: a 48 MP
        # photo then needs a quarter of the memory.
        im.draft("RGB", (MAX_SIDE, MAX_SIDE))
    im.load()
    # A copy without the orientation: what the camera meant, upright.
    upright = ImageOps.exif_transpose(im)
    out = _to_srgb(upright)
    out.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    # No exif=, icc_profile= or xmp= given: the WebP carries pixels only (no GPS).
    out.save(dst, "WEBP", quality=QUALITY, method=4)
    return out.size


def _animated(im: Image.Image, dst: str, frames: int, max_pixels: int) -> tuple[int, int]:
    width, height = im.size
    if frames > MAX_FRAMES:
        raise PayloadTooLarge(f"The animation has {frames} frames; at most {MAX_FRAMES}.")
    if frames * width * height > DECODE_BUDGET_FACTOR * max_pixels:
        raise PayloadTooLarge("The animation has too many large frames to be converted.")
    scale = min(1.0, MAX_SIDE / width, MAX_SIDE / height,
                math.sqrt(ANIMATION_PIXEL_BUDGET / (frames * width * height)))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    out, durations = [], []
    transform = _srgb_transform(im, "RGBA")
    for frame in ImageSequence.Iterator(im):
        duration = frame.info.get("duration") or DEFAULT_FRAME_MS
        durations.append(DEFAULT_FRAME_MS if duration < MIN_FRAME_MS else int(duration))
        rgba = frame.convert("RGBA")
        if transform is not None:
            rgba = ImageCms.applyTransform(rgba, transform)
        out.append(rgba if rgba.size == size else
                   rgba.resize(size, Image.Resampling.LANCZOS))
    out[0].save(dst, "WEBP", save_all=True, append_images=out[1:], duration=durations,
                loop=im.info.get("loop", 0), quality=QUALITY, method=4)
    return size


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
