// The service's JSON API, same origin, with the session cookie. Unsafe methods carry the
// session's CSRF token in `X-CSRF-Token` (double submit, checked by the service).

let csrfToken = null;

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

export function setCsrf(token) {
  csrfToken = token || null;
}

function headers(unsafe, extra = {}) {
  const out = { Accept: "application/json", ...extra };
  if (unsafe && csrfToken) out["X-CSRF-Token"] = csrfToken;
  return out;
}

async function failure(response) {
  let detail = "";
  try {
    const body = await response.json();
    detail = typeof body.detail === "string" ? body.detail : "";
  } catch {
    detail = "";
  }
  return new ApiError(response.status, detail || `${response.status} ${response.statusText}`);
}

export async function getJson(path) {
  const response = await fetch(path, { headers: headers(false), credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return response.json();
}

export async function postJson(path, body = {}) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers(true, { "Content-Type": "application/json" }),
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

/** POST that answers with a server-sent event stream (the response is returned unread). */
export async function postForStream(path, body, signal) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers(true, { "Content-Type": "application/json", Accept: "text/event-stream" }),
    credentials: "same-origin",
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  return response;
}
