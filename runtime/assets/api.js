// The API client: JSON over fetch, the session cookie sent by the browser,
// and the session's CSRF token sent back on every request that changes something.

let csrf = null;

/** An error from the server, with its code, sentence and field path. */
export class ApiError extends Error {
  constructor(status, body) {
    const first = (body && body.error) || {};
    super(first.message || `the server answered ${status}`);
    this.status = status;
    this.code = first.code || 'http_' + status;
    this.path = first.path || '';
    this.errors = (body && body.errors) || (body && body.error ? [body.error] : []);
  }
}

export function setCsrf(token) {
  csrf = token || null;
}

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, { error: { code: 'unreachable', message: `statflow does not answer (${e.message}); is it running?` } });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { error: { code: 'not_json', message: text.slice(0, 300) } };
  }
  if (!response.ok) {
    const err = new ApiError(response.status, json);
    if (response.status === 401 && onSignedOut) onSignedOut(err);
    throw err;
  }
  return json;
}

let onSignedOut = null;
/** Called with the error when the server says the session is gone. */
export function whenSignedOut(f) {
  onSignedOut = f;
}

export const api = {
  get: (path) => call('GET', path),
  post: (path, body) => call('POST', path, body ?? {}),
  put: (path, body) => call('PUT', path, body),
  del: (path) => call('DELETE', path),
};

/** Signs in with a token; remembers the CSRF token. */
export async function signIn(token) {
  const answer = await call('POST', '/v1/session', { token: token.trim() });
  setCsrf(answer.csrf);
  return answer.user;
}

/** Who is signed in (null when nobody), remembering the CSRF token. */
export async function whoAmI() {
  try {
    const answer = await call('GET', '/v1/session');
    setCsrf(answer.csrf);
    return answer;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

export async function signOut() {
  try {
    await call('DELETE', '/v1/session');
  } finally {
    setCsrf(null);
  }
}

let catalogCache = null;
/** The catalog of the running topology (fetched once). */
export async function catalog() {
  if (!catalogCache) catalogCache = await api.get('/v1/catalog');
  return catalogCache;
}

/** Runs a query; rejects with an ApiError holding every validation error. */
export function query(body) {
  return api.post('/v1/query', body);
}
