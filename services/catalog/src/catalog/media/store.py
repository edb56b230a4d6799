"""Where product images are kept: local disk (served by Caddy under ``/media/``) or Cloudinary.

Both answer the same interface; ``MEDIA_STORE`` picks one. Keys are content hashes, so a put
of the same picture twice is harmless.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import httpx
import structlog
from ember_shared.problems import Problem

from catalog.settings import CatalogSettings

log = structlog.get_logger("catalog.media")


@dataclass(frozen=True)
class StoredMedia:
    key: str
    url: str


class MediaStore(Protocol):
    name: str

    async def put(self, key: str, data: bytes, content_type: str) -> StoredMedia: ...

    async def delete(self, key: str) -> None: ...


class LocalDiskStore:
    """Files under ``root``; the public URL is ``url_prefix`` + key (Caddy serves the folder)."""

    name = "local"

    def __init__(self, root: Path, url_prefix: str = "/media/") -> None:
        self.root = root
        self.url_prefix = url_prefix if url_prefix.endswith("/") else url_prefix + "/"

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"media key escapes the media root: {key!r}")
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> StoredMedia:
        await asyncio.to_thread(self._write, key, data)
        return StoredMedia(key=key, url=self.url_prefix + key)

    def _write(self, key: str, data: bytes) -> None:
        path = self.path_of(key)
        if path.exists() and path.stat().st_size == len(data):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so Caddy never serves half a file.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        temporary.replace(path)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(lambda: self.path_of(key).unlink(missing_ok=True))


@dataclass(frozen=True)
class CloudinaryCredentials:
    api_key: str
    api_secret: str
    cloud_name: str

    @classmethod
    def from_url(cls, url: str) -> CloudinaryCredentials:
        """``cloudinary://<api_key>:<api_secret>@<cloud_name>``, as Cloudinary's console shows it."""
        parts = urlsplit(url)
        if (
            parts.scheme != "cloudinary"
            or not parts.username
            or not parts.password
            or not parts.hostname
        ):
            raise ValueError(
                "CLOUDINARY_URL must look like cloudinary://<key>:<secret>@<cloud_name>"
            )
        return cls(unquote(parts.username), unquote(parts.password), parts.hostname)


def cloudinary_signature(params: dict[str, str], api_secret: str) -> str:
    """Cloudinary's request signature: the parameters sorted by name, ``a=1&b=2``, followed by
    the API secret, SHA-1 in hex (``file``, ``api_key``, ``resource_type`` are not signed)."""
    signed = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if v != "")
    return hashlib.sha1((signed + api_secret).encode(), usedforsecurity=False).hexdigest()


class CloudinaryStore:
    """Cloudinary's upload API over HTTP (signed uploads); ``api_base`` points at a stand-in
    in tests."""

    name = "cloudinary"

    def __init__(
        self,
        credentials: CloudinaryCredentials,
        *,
        api_base: str = "https://api.cloudinary.com",
        folder: str = "ember",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.credentials = credentials
        self.api_base = api_base.rstrip("/")
        self.folder = folder.strip("/")
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(20.0))

    def _public_id(self, key: str) -> str:
        stem = key.rsplit(".", 1)[0]
        return f"{self.folder}/{stem}" if self.folder else stem

    def _signed(self, params: dict[str, str]) -> dict[str, str]:
        params = {**params, "timestamp": str(int(time.time()))}
        return {
            **params,
            "api_key": self.credentials.api_key,
            "signature": cloudinary_signature(params, self.credentials.api_secret),
        }

    async def put(self, key: str, data: bytes, content_type: str) -> StoredMedia:
        url = f"{self.api_base}/v1_1/{self.credentials.cloud_name}/image/upload"
        form = self._signed({"public_id": self._public_id(key), "overwrite": "false"})
        try:
            response = await self._client.post(
                url, data=form, files={"file": (key, data, content_type)}
            )
        except httpx.HTTPError as exc:
            log.warning("cloudinary_upload_failed", error=str(exc))
            raise Problem(
                503, "media-store-unavailable", "The image store did not answer; try again."
            ) from None
        if response.status_code >= 400:
            log.warning(
                "cloudinary_upload_refused", status=response.status_code, body=response.text[:300]
            )
            raise Problem(502, "media-store-refused", "The image store refused the upload.")
        body = response.json()
        return StoredMedia(key=str(body["public_id"]), url=str(body["secure_url"]))

    async def delete(self, key: str) -> None:
        url = f"{self.api_base}/v1_1/{self.credentials.cloud_name}/image/destroy"
        response = await self._client.post(url, data=self._signed({"public_id": key}))
        response.raise_for_status()

    async def aclose(self) -> None:
        await self._client.aclose()


def media_store(settings: CatalogSettings) -> MediaStore:
    if settings.media_store == "cloudinary":
        return CloudinaryStore(
            CloudinaryCredentials.from_url(settings.cloudinary_url),
            api_base=settings.cloudinary_api_base,
            folder=settings.cloudinary_folder,
        )
    if settings.media_store != "local":
        raise ValueError(
            f"MEDIA_STORE must be 'local' or 'cloudinary', not {settings.media_store!r}"
        )
    return LocalDiskStore(settings.media_root, settings.media_url_prefix)
