// The public HTTP API, as the console uses it.  Everything the page shows comes
// from these routes, so a script can get the same data (see the README's HTTP API).
//
// The API key (for control, and for reads when the service requires it) is kept in
// sessionStorage: it survives a reload but not the tab, and never goes into a URL.

const KEY_ITEM = "odpm.apiKey";
export const API = "/api/v1";

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** An HTTP error carrying the status and the API's one-line `detail`. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function detailOf(resp) {
  try {
    const body = await resp.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail) && body.detail.length) return body.detail[0].msg;
  } catch {
    /* not JSON */
  }
  return `${resp.status} ${resp.statusText}`;
}

/** GET a JSON resource; throws ApiError (404 included) with the API's message. */
export async function getJSON(path, { signal } = {}) {
  const resp = await fetch(API + path, { headers: authHeaders(), signal });
  if (!resp.ok) throw new ApiError(resp.status, await detailOf(resp));
  return resp.json();
}

/** GET that answers null for a 404 (nothing stored yet, or a route this service lacks). */
export async function getOptional(path, opts) {
  try {
    return await getJSON(path, opts);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

/** PUT/POST a JSON body with the key; throws ApiError with the API's message. */
export async function send(method, path, body) {
  const resp = await fetch(API + path, {
    method,
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) throw new ApiError(resp.status, await detailOf(resp));
  return resp.json();
}
