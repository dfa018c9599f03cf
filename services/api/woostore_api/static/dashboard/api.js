// The HTTP client of the REST API, and the session its requests belong to.
//
// The key is sent once, to POST /session (see session.js); from then on an HttpOnly cookie
// authenticates, so no script (nor an injected one) can read a credential from this page.

export const API_BASE = '/api/v1';

let session = 0; // bumped when a session ends, so late responses from the old one are dropped
let whoami = null; // GET /session's answer while signed in: actor, role, tenant
let onExpired = () => {};

export class ApiError extends Error {
  constructor(problem) {
    super(formatProblem(problem));
    this.problem = problem;
  }
}

// Thrown when the session ended (401 or sign-out) so callers just stop.
export class SessionEnded extends Error {}

export function isSignedIn() {
  return whoami !== null;
}

// Who is signed in: { actor, role, tenant_id, tenant_name }, or null.
export function caller() {
  return whoami;
}

export function isAdmin() {
  return whoami?.role === 'admin';
}

export function beginSession(signedInAs) {
  whoami = signedInAs;
}

export function endSession() {
  session += 1;
  whoami = null;
}

// `path` with the query `params` (null, undefined and '' left out; arrays repeated).
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== null && one !== undefined && one !== '') query.append(name, one);
    }
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

// What to do when the API answers 401: the session expired or its key was revoked.
export function whenSessionExpires(handler) {
  onExpired = handler;
}

export async function api(method, path, body) {
  const current = session;
  const headers = { Accept: 'application/json, application/problem+json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';

  let response;
  try {
    response = await fetch(API_BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'same-origin',
    });
  } catch {
    throw new ApiError({ title: 'Network error', detail: 'Could not reach the WooStore API.' });
  }
  if (current !== session) throw new SessionEnded();
  if (response.status === 401) {
    onExpired();
    throw new SessionEnded();
  }
  const payload = await readJson(response);
  if (current !== session) throw new SessionEnded(); // signed out while the body came
  if (!response.ok) throw new ApiError(toProblem(response, payload));
  return payload;
}

async function readJson(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function toProblem(response, payload) {
  if (payload && typeof payload === 'object' && (payload.title || payload.detail)) return payload;
  return { status: response.status, title: `Request failed (${response.status})`, detail: response.statusText };
}

function formatProblem(problem) {
  const title = problem?.title || 'Error';
  let detail = problem?.detail;
  // Tolerate validation lists (FastAPI-style `detail: [{msg}]`) in case the backend leaks them.
  if (Array.isArray(detail)) detail = detail.map((d) => d?.msg ?? String(d)).join('; ');
  // The API's detail already names each invalid field: its errors list repeats them.
  const extra = !detail && Array.isArray(problem?.errors)
    ? problem.errors.map((e) => e?.detail ?? e?.message ?? e?.msg).filter(Boolean)
    : [];
  const parts = [detail, ...extra].filter(Boolean);
  return parts.length ? `${title}: ${parts.join('; ')}` : title;
}
