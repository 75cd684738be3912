"""Credentials out of server-supplied text (pure): the one redaction for error messages.

Servers echo requests in their errors: a FHIR OperationOutcome's diagnostics, an OAuth
`error_description`, Orthanc's `Message`/`Details`, an OpenAI-compatible server's
`error.message`. Some echo request headers, so our `Authorization` header would be printed.
`redact_credentials` is applied to every such text before it reaches an exception message,
by `fhir_adapters.errors`, `tools.imaging.dicomweb` and `tools.medgemma.openai_backend`.

What is replaced by `<redacted>`:
- the value of credential header lines (Authorization, Proxy-Authorization, X-API-Key,
  API-Key, Cookie, Set-Cookie), whatever the scheme: raw (`Authorization: Bearer x`, to the
  end of the line), JSON or Python-repr (`"authorization": "Basic x"`, the quoted value);
- `access_token`, `refresh_token`, `id_token`, `client_secret`, `client_assertion`,
  `api_key`, `password` (and `apikey`, `passwd`, `secret`, `token`) values in query strings,
  form bodies (`name=value`) and JSON or repr objects (`"name": "value"`);
- bare JWTs (`eyJ...`), `Bearer <token>` outside a header line, and `user:password@` in URLs.

Over-redaction is the accepted failure: the text only ever serves as a diagnostic.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["REDACTED", "redact_credentials"]

REDACTED: Final = "<redacted>"

_HEADERS: Final = r"(?:proxy-authorization|authorization|x-api-key|api-key|set-cookie|cookie)"
_PARAMS: Final = (
    r"(?:access_token|refresh_token|id_token|client_secret|client_assertion|api_key|apikey"
    r"|password|passwd)"
)
# Only in `name=value` form (a query string or form body): as plain words they are common.
_QUERY_ONLY: Final = r"(?:token|secret|key)"

# A quoted value: JSON or repr, or JSON inside a JSON string (quotes escaped once).
_VALUE: Final = r"""(?P<value>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|\\"(?:(?!\\").)*\\"|\\'(?:(?!\\').)*\\')"""
# "Authorization": "Bearer x"   'password': 'x'   \"access_token\": \"x\"
_QUOTED: Final = re.compile(
    rf"""(?i)(?P<name>(?<![\w-])\\?["'](?:{_HEADERS}|{_PARAMS})\\?["']\s*[:=]\s*){_VALUE}"""
)
# Authorization: Bearer x   (a raw header line, up to its end)
_RAW_HEADER: Final = re.compile(rf"""(?im)(?P<name>(?<![\w-]){_HEADERS}\s*:\s*)(?P<value>[^\r\n]*)""")
# access_token=x&...
_QUERY_PARAM: Final = re.compile(
    rf"""(?i)(?P<name>(?<![\w-])(?:{_PARAMS}|{_QUERY_ONLY})=)(?P<value>[^\s&"',;}}\]\\]+)"""
)
_JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)*")
# Bearer x outside a header line; the token has a digit or a symbol (not "Bearer authentication").
_BEARER: Final = re.compile(r"(?i)\b(?P<scheme>bearer)\s+(?=\S*[0-9._~+/=-])[A-Za-z0-9._~+/=-]+")
_USERINFO: Final = re.compile(r"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@?#]*@")


def _quoted(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[:2] if value.startswith("\\") else value[0]
    return f"{match['name']}{quote}{REDACTED}{quote}"


def _raw_header(match: re.Match[str]) -> str:
    value = match["value"]
    if not value.strip() or value.lstrip("\"'\\ ").startswith(REDACTED):
        return match[0]
    return match["name"] + REDACTED


def redact_credentials(text: str) -> str:
    """`text` with every credential it carries replaced by `<redacted>` (see the module docstring)."""
    if not text:
        return text
    text = _QUOTED.sub(_quoted, text)
    text = _RAW_HEADER.sub(_raw_header, text)
    text = _QUERY_PARAM.sub(lambda m: m["name"] + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    return _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
