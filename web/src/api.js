// The one door to corrald's REST API (/api/v1, JSON in the proto's field names) and its
// websockets. It keeps the session token in sessionStorage and turns every 401 into a trip
// back to the login page with the server's words; it never invents an error message of its own
// when the server gave one.

const TOKEN_KEY = 'corral.token';
const USER_KEY = 'corral.user';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = () => {};

/** The app registers what a 401 does (back to login, with the message). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function currentUser() {
  return sessionStorage.getItem(USER_KEY);
}

export function forgetSession() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
}

function query(params) {
  if (!params) return '';
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function errorOf(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    // Not JSON (a proxy's page, an empty body): the status line is all there is.
  }
  const message = body && body.message ? body.message : `${res.status} ${res.statusText}`.trim();
  return new ApiError(res.status, body && body.code, message);
}

/**
 * One request. `path` is below /api/v1. Resolves to the parsed JSON answer; rejects with an
 * ApiError carrying the server's message.
 */
export async function api(method, path, { body, params } = {}) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(`/api/v1${path}${query(params)}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'NETWORK', `The server could not be reached: ${e.message}`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && path !== '/login') {
      forgetSession();
      onUnauthorized(err.message);
    }
    throw err;
  }
  const text = await res.text();
  return text ? JSON.parse(text) : {};
}

export const get = (path, params) => api('GET', path, { params });
export const post = (path, body = {}, params) => api('POST', path, { body, params });
export const patch = (path, body) => api('PATCH', path, { body });
export const put = (path, body) => api('PUT', path, { body });
export const del = (path, params) => api('DELETE', path, { params });

export async function login(user, password) {
  const answer = await post('/login', { user, password });
  sessionStorage.setItem(TOKEN_KEY, answer.token);
  sessionStorage.setItem(USER_KEY, answer.user || user);
  return answer;
}

export async function logout() {
  try {
    await post('/logout');
  } finally {
    forgetSession();
  }
}

/** A path segment: VM, host and user names go into URLs escaped. */
export const seg = (s) => encodeURIComponent(s);

/** wss://this-host/api/v1/... */
export function wsUrl(path, params) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/api/v1${path}${query(params)}`;
}

/** Browsers cannot set headers on a websocket: the token travels as a subprotocol. */
export function wsProtocols() {
  return ['binary', `corral.bearer.${token() || ''}`];
}
