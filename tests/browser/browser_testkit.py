"""A shopper's browser window for the browser tests."""

from __future__ import annotations

from typing import Any

from playwright.async_api import BrowserContext, Page


class Person:
    """One shopper's browser window, with what it printed to its console."""

    def __init__(self, context: BrowserContext, page: Page, base_url: str) -> None:
        self.context = context
        self.page = page
        self.base_url = base_url
        self.console: list[str] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    async def open(self, path: str) -> Any:
        return await self.page.goto(self.base_url + path)

    def csp_violations(self) -> list[str]:
        return [line for line in self.console if "Content Security Policy" in line]
