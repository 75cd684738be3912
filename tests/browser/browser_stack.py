"""What the browser tests share: the deployment and patients they work on, a recorder of what the
browser did, and the screenshots the README shows."""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ehr_fixtures import EhrStandin
from playwright.sync_api import ConsoleMessage, Frame, Locator, Page, Request

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Asked to save a note, the scripted planner proposes this text.
SAVE_NOTE = "save this as a note"
NOTE_TEXT = "HbA1c reviewed in the SMART app's chat."


@dataclass(frozen=True)
class Patients:
    """The cohort's patients by role: two summarized (their AI results wait for review), one never
    summarized, and the one the chat is asked about."""

    approve: str
    reject: str
    fresh: str
    chat: str
    # The chat's citation: the newest HbA1c of `chat` and its value.
    a1c_reference: str
    a1c_value: float


@dataclass(frozen=True)
class Deployment:
    fhir_url: str  # sekmet itself (checks read the truth behind the proxy)
    ehr_url: str
    app_url: str
    # The stand-in's launch flow without a browser: tokens for an MCP client (token_for).
    ehr: EhrStandin

    def launch_url(self, patient_id: str) -> str:
        return f"{self.ehr_url}/launch?patient={patient_id}"


@dataclass
class Recorder:
    """What the browser did, in order: every request (each hop of a redirect chain is one) and
    every committed navigation of any frame, as ("request" | "navigation", url); console
    messages and page errors."""

    events: list[tuple[str, str]] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def on_request(self, request: Request) -> None:
        self.events.append(("request", request.url))

    def on_navigation(self, frame: Frame) -> None:
        self.events.append(("navigation", frame.url))

    def on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def after(self, marker: str) -> tuple[list[str], list[str]]:
        """Request and navigation URLs after the first request to a URL containing `marker`."""
        first = next(i for i, (kind, url) in enumerate(self.events) if kind == "request" and marker in url)
        later = self.events[first + 1 :]
        return [u for k, u in later if k == "request"], [u for k, u in later if k == "navigation"]


def screenshot(page: Page, name: str, *, show: Locator | None = None) -> Path:
    """Take what the viewport shows (scrolled to `show` first) as <name>.png. The README's pictures
    of the app are retaken with CHARTAGENT_SCREENSHOTS=1 (into docs/screenshots/); otherwise the
    picture goes to a temporary folder, so that a test run leaves the tree as it was."""
    folder = SCREENSHOTS if os.environ.get("CHARTAGENT_SCREENSHOTS") == "1" else _scratch()
    folder.mkdir(parents=True, exist_ok=True)
    if show is not None:
        show.scroll_into_view_if_needed()
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@functools.cache
def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="chartagent-screenshots-"))
