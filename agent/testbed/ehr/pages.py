"""The stand-in's small HTML pages (patient picker, launcher index, error page): no scripts, no
external assets; every value escaped."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from urllib.parse import quote

from fastapi.responses import HTMLResponse

CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'self'"
_STYLE = "body{font-family:sans-serif;margin:2rem}button,a{margin:.2rem 0;display:block}"


def page(title: str, body: str, *, status: int = 200, csp: str = CSP) -> HTMLResponse:
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Content-Security-Policy": csp,
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
    """The cohort with one EHR-launch link per patient (for `make demo`), and the same launch
    inside an EHR-like frame."""
    items = "".join(
        f'<li><a href="/launch?patient={quote(pid)}" data-testid="launch-{escape(pid)}">{escape(name)}</a> '
        f'<a href="/frame?patient={quote(pid)}" data-testid="frame-{escape(pid)}">(in an EHR frame)</a></li>'
        for pid, name in links
    )
    return page("ChartAgent EHR stand-in", f"<p>Launch ChartAgent for a patient:</p><ul>{items}</ul>")


def frame_page(patient_id: str, app_origin: str) -> HTMLResponse:
    """An EHR screen that embeds the app: an iframe whose EHR launch runs inside the frame."""
    src = f"/launch?patient={quote(patient_id)}"
    body = (
        "<p>Patient chart (EHR stand-in). ChartAgent runs in the frame below.</p>"
        f'<iframe src="{src}" title="ChartAgent" data-testid="ehr-frame" '
        'style="width:100%;height:80vh;border:1px solid #888"></iframe>'
    )
    # The frame's launch passes through the stand-in (launch, authorize) and then the app.
    csp = f"{CSP}; frame-src 'self' {app_origin}"
    return page("EHR chart", body, csp=csp)
