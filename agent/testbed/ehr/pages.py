"""The stand-in's small HTML pages (patient picker, launcher index, error page): no scripts, no
external assets; every value escaped."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from fastapi.responses import HTMLResponse

CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'self'"
_STYLE = "body{font-family:sans-serif;margin:2rem}button,a{margin:.2rem 0;display:block}"


def page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


def error_page(message: str) -> HTMLResponse:
    return page("Authorization failed", f"<p>{escape(message)}</p>", status=400)


def picker_page(request_handle: str, patients: Iterable[tuple[str, str]]) -> HTMLResponse:
    """One button per patient (data-testid="pick-<id>"); the choice is POSTed to /auth/pick."""
    buttons = "".join(
        f'<button type=submit name=patient value="{escape(pid)}" data-testid="pick-{escape(pid)}">'
        f"{escape(name)}</button>"
        for pid, name in patients
    )
    form = (
        '<form method=post action="/auth/pick">'
        f'<input type=hidden name=request value="{escape(request_handle)}">'
        f"{buttons or '<p>No patients on the FHIR server.</p>'}</form>"
    )
    return page("Choose a patient", form)


def launcher_page(links: Iterable[tuple[str, str]]) -> HTMLResponse:
    """The cohort with one EHR-launch link per patient (for `make demo`)."""
    items = "".join(
        f'<li><a href="{escape(href)}" data-testid="launch-{escape(pid)}">{escape(name)}</a></li>'
        for pid, name, href in ((p, n, f"/launch?patient={p}") for p, n in links)
    )
    return page("ChartAgent EHR stand-in", f"<p>Launch ChartAgent for a patient:</p><ul>{items}</ul>")
