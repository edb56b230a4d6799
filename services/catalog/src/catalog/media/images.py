"""Checking an uploaded image by its content and re-encoding it without its metadata."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from ember_shared.problems import Problem
from PIL import Image, ImageOps, UnidentifiedImageError

#: What Pillow must find inside the bytes (the file name and declared type are not trusted).
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
#: Refuse images whose pixel count could exhaust memory when decoded.
MAX_PIXELS = 40_000_000
OUTPUT_FORMAT = "WEBP"
OUTPUT_CONTENT_TYPE = "image/webp"
OUTPUT_EXTENSION = "webp"
#: Narrower copies made at upload beside the full picture, for the pages' ``srcset``: a phone's
#: two-up grid, a desktop card, a phone's full-width gallery.
VARIANT_WIDTHS = (320, 640, 960)


def variant_key(key: str, width: int) -> str:
    """``products/<digest>.webp`` -> ``products/<digest>-w640.webp``: the storefront derives the
    same names (and the gateway answers a size never made with the full picture)."""
    return f"{key.removesuffix('.' + OUTPUT_EXTENSION)}-w{width}.{OUTPUT_EXTENSION}"


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes
    width: int
    height: int
    content_type: str
    digest: str
    #: (width, WebP bytes) of each narrower copy; none wider than the picture itself.
    variants: tuple[tuple[int, bytes], ...] = ()

    @property
    def key(self) -> str:
        """Content-addressed: the same picture uploaded twice is stored once."""
        return f"products/{self.digest[:32]}.{OUTPUT_EXTENSION}"


def _decoding_errors() -> tuple[type[BaseException], ...]:
    return (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
    )


def _probe(data: bytes) -> tuple[str, int, int]:
    """The format and size Pillow finds in the bytes (headers only, nothing decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            return probe.format or "unknown", probe.width, probe.height
    except _decoding_errors():
        raise Problem(415, "unsupported-image", "That file is not an image we can read.") from None


def _encode(image: Image.Image) -> bytes:
    out = io.BytesIO()
    # Saving without exif=/icc_profile= drops the source's metadata (GPS included).
    image.save(out, OUTPUT_FORMAT, quality=85, method=4)
    return out.getvalue()


def _variants(image: Image.Image) -> tuple[tuple[int, bytes], ...]:
    made = []
    for width in VARIANT_WIDTHS:
        if width >= image.width:
            break
        height = max(1, round(image.height * width / image.width))
        made.append((width, _encode(image.resize((width, height), Image.Resampling.LANCZOS))))
    return tuple(made)


def _reencode(data: bytes, max_side: int) -> tuple[bytes, int, int, tuple[tuple[int, bytes], ...]]:
    try:
        with Image.open(io.BytesIO(data)) as checked:
            checked.verify()
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            if image.mode not in ("RGB", "RGBA"):
                has_alpha = "A" in image.getbands() or "transparency" in image.info
                image = image.convert("RGBA" if has_alpha else "RGB")
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            return _encode(image), image.width, image.height, _variants(image)
    except _decoding_errors():
        raise Problem(400, "invalid-image", "The image is damaged or truncated.") from None


def process_image(data: bytes, *, max_side: int) -> ProcessedImage:
    """Validate ``data`` as a JPEG, PNG or WebP and re-encode it as WebP, EXIF and ICC
    profiles dropped, orientation applied, scaled down to ``max_side``. Raises a Problem."""
    if not data:
        raise Problem(400, "invalid-image", "The uploaded file is empty.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image_format, width, height = _probe(data)
        if image_format not in ACCEPTED_FORMATS:
            raise Problem(
                415, "unsupported-image", "Upload a JPEG, PNG or WebP image.", format=image_format
            )
        if width * height > MAX_PIXELS:
            raise Problem(413, "image-too-large", "The image has too many pixels.")
        encoded, width, height, variants = _reencode(data, max_side)
    return ProcessedImage(
        data=encoded,
        width=width,
        height=height,
        content_type=OUTPUT_CONTENT_TYPE,
        digest=hashlib.sha256(encoded).hexdigest(),
        variants=variants,
    )
