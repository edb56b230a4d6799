"""Media stores: local disk by default; Cloudinary's signed upload API when MEDIA_STORE says so
(against a fake Cloudinary served over HTTP that checks the signature as Cloudinary does)."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from catalog.app import create_app
from catalog.media.store import (
    CloudinaryCredentials,
    LocalDiskStore,
    cloudinary_signature,
    media_store,
)
from catalog.settings import CatalogSettings
from catalog_testkit import assert_problem, running, served
from litestar import Litestar, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Response
from PIL import Image

API_KEY, API_SECRET, CLOUD = "123456789", "s3cr3t", "ember-demo"


@dataclass
class FakeCloudinary:
    """Cloudinary's upload endpoint: checks the signature, keeps what it was sent."""

    uploads: list[dict[str, Any]] = field(default_factory=list)
    refuse: bool = False

    def app(self) -> Litestar:
        @post("/v1_1/{cloud:str}/image/upload", status_code=200)
        async def upload(
            cloud: str,
            data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
        ) -> Response[Any]:
            fields = {k: v for k, v in data.items() if not isinstance(v, UploadFile)}
            file = data.get("file")
            signed = {k: v for k, v in fields.items() if k not in {"api_key", "signature", "file"}}
            expected = hashlib.sha1(
                ("&".join(f"{k}={v}" for k, v in sorted(signed.items())) + API_SECRET).encode()
            ).hexdigest()
            if (
                self.refuse
                or cloud != CLOUD
                or fields.get("api_key") != API_KEY
                or fields.get("signature") != expected
            ):
                return Response({"error": {"message": "Invalid Signature"}}, status_code=401)
            content = await file.read() if isinstance(file, UploadFile) else b""
            self.uploads.append({**fields, "bytes": content})
            public_id = fields["public_id"]
            return Response(
                {
                    "public_id": public_id,
                    "secure_url": f"https://res.cloudinary.test/{cloud}/image/upload/v1/{public_id}.webp",
                    "bytes": len(content),
                }
            )

        return Litestar([upload])


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 20), "olive").save(out, "PNG")
    return out.getvalue()


def test_the_signature_follows_cloudinarys_rule() -> None:
    # Cloudinary's documented example: public_id=sample_image&timestamp=1315060510 + secret.
    params = {"timestamp": "1315060510", "public_id": "sample_image", "eager": ""}
    expected = hashlib.sha1(b"public_id=sample_image&timestamp=1315060510abcd").hexdigest()
    assert cloudinary_signature(params, "abcd") == expected
    credentials = CloudinaryCredentials.from_url(f"cloudinary://{API_KEY}:{API_SECRET}@{CLOUD}")
    assert (credentials.api_key, credentials.api_secret, credentials.cloud_name) == (
        API_KEY,
        API_SECRET,
        CLOUD,
    )
    with pytest.raises(ValueError, match="CLOUDINARY_URL"):
        CloudinaryCredentials.from_url("https://example.com")


async def test_uploads_go_to_cloudinary_when_the_settings_say_so(
    tokens: Any, service_headers: Any
) -> None:
    fake = FakeCloudinary()
    admin, _ = tokens.admin()
    with served(fake.app()) as cloudinary_url:
        saved = {
            k: os.environ.get(k) for k in ("MEDIA_STORE", "CLOUDINARY_URL", "CLOUDINARY_API_BASE")
        }
        os.environ.update(
            {
                "MEDIA_STORE": "cloudinary",
                "CLOUDINARY_URL": f"cloudinary://{API_KEY}:{API_SECRET}@{CLOUD}",
                "CLOUDINARY_API_BASE": cloudinary_url,
            }
        )
        try:
            app = create_app()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        async with running(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://catalog.test"
            ) as client:
                response = await client.post(
                    "/api/admin/upload-image",
                    files={"file": ("bag.png", png(), "image/png")},
                    headers=tokens.bearer(admin),
                )
                assert response.status_code == 201, response.text
                body = response.json()
                assert body["url"].startswith(f"https://res.cloudinary.test/{CLOUD}/image/upload/")
                assert body["key"].startswith("ember/products/")
                assert len(fake.uploads) == 1
                assert fake.uploads[0]["bytes"][:4] == b"RIFF"  # the re-encoded WebP, not the PNG
                fake.refuse = True
                refused = await client.post(
                    "/api/admin/upload-image",
                    files={"file": ("bag.png", png(), "image/png")},
                    headers=tokens.bearer(admin),
                )
                assert_problem(refused, 502, "media-store-refused")


async def test_cloudinary_down_is_a_503_problem(tokens: Any) -> None:
    from catalog.media.store import CloudinaryStore
    from ember_shared.problems import Problem

    store = CloudinaryStore(
        CloudinaryCredentials(API_KEY, API_SECRET, CLOUD), api_base="http://127.0.0.1:9", folder="x"
    )
    with pytest.raises(Problem) as raised:
        await store.put("products/a.webp", b"RIFF", "image/webp")
    assert raised.value.status_code == 503
    await store.aclose()


async def test_local_disk_keeps_keys_inside_its_root(tmp_path: Path) -> None:
    store = LocalDiskStore(tmp_path / "media", "/media")
    stored = await store.put("products/abc.webp", b"RIFFdata", "image/webp")
    assert stored.url == "/media/products/abc.webp"
    assert (tmp_path / "media" / "products" / "abc.webp").read_bytes() == b"RIFFdata"
    with pytest.raises(ValueError, match="escapes"):
        await store.put("../outside.webp", b"x", "image/webp")
    await store.delete("products/abc.webp")
    assert not (tmp_path / "media" / "products" / "abc.webp").exists()


def test_the_store_is_chosen_by_settings(tmp_path: Path) -> None:
    local = media_store(CatalogSettings(media_store="local", media_root=tmp_path))
    assert isinstance(local, LocalDiskStore)
    with pytest.raises(ValueError, match="MEDIA_STORE"):
        media_store(CatalogSettings(media_store="s3"))
