// The cookies of one app opened through the proxy (RFC 6265, the parts a single host needs).
//
// The proxy console keeps one jar per app, in its own memory: an app's Set-Cookie never
// reaches the browser's cookie store (a service worker's responses cannot set cookies) nor
// another app's requests, and the app origin's storage, which every app can read, holds none.
// Domain, Secure and SameSite do not apply to one app behind one proxy; HttpOnly holds by
// construction (the app's scripts never see the jar).

const MAX_COOKIES = 180; // per app, as browsers allow per domain
const MAX_COOKIE_BYTES = 4096; // name, value and attributes, as browsers allow

export class CookieJar {
  constructor() {
    this._cookies = new Map(); // "path\0name" -> {name, value, path, expires (ms or Infinity)}
  }

  /** Take a Set-Cookie header that answered a request for `requestPath`; false if refused. */
  store(header, requestPath, now = Date.now()) {
    if (header.length > MAX_COOKIE_BYTES) return false;
    const [pair, ...attributes] = header.split(';');
    const equals = pair.indexOf('=');
    if (equals < 0) return false;
    const name = pair.slice(0, equals).trim();
    const value = pair.slice(equals + 1).trim();
    if (!name) return false;
    let path = defaultPath(requestPath);
    let expires = Infinity;
    for (const attribute of attributes) {
      const [key, ...rest] = attribute.split('=');
      const argument = rest.join('=').trim();
      switch (key.trim().toLowerCase()) {
        case 'path':
          if (argument.startsWith('/')) path = argument;
          break;
        case 'max-age':
          if (/^-?\d+$/.test(argument)) expires = now + Number(argument) * 1000;
          break;
        case 'expires':
          if (expires === Infinity && !Number.isNaN(Date.parse(argument))) expires = Date.parse(argument);
          break;
        default:
      }
    }
    const key = `${path}\0${name}`;
    this._cookies.delete(key); // a replaced cookie moves to the end: the oldest go first
    if (expires <= now) return true; // how a server deletes a cookie
    this._cookies.set(key, { name, value, path, expires });
    while (this._cookies.size > MAX_COOKIES) this._cookies.delete(this._cookies.keys().next().value);
    return true;
  }

  /** The Cookie header for a request of `requestPath` (path and query), or '' when none apply. */
  header(requestPath, now = Date.now()) {
    const path = requestPath.split('?')[0];
    const sent = [];
    for (const [key, cookie] of this._cookies) {
      if (cookie.expires <= now) this._cookies.delete(key);
      else if (pathMatches(path, cookie.path)) sent.push(cookie);
    }
    // Longer paths first (RFC 6265 5.4), then as they were set.
    sent.sort((a, b) => b.path.length - a.path.length);
    return sent.map(({ name, value }) => `${name}=${value}`).join('; ');
  }
}

function defaultPath(requestPath) {
  const path = requestPath.split('?')[0];
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

function pathMatches(requestPath, cookiePath) {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}
