// bridge-sw.js: the browser proxy's service worker, on the app origin (docs/browser.md).
//
// Every request of an app at /app/<label>/... is answered through the proxy console, the
// page that owns the peer connection: the worker sends it over a MessagePort the console
// handed it (through its relay frame) and streams the console's answer back, asking for the
// body a few pieces at a time (credits), so a large download never piles up in the browser.
// An absolute path (/static/app.css, a link to /login) belongs to the app of the page that
// asked; a navigation to one is redirected under that app's prefix so the page's own URL
// keeps it, and relative URLs resolve inside the app.

const APP_PATH = /^\/app\/([A-Za-z0-9][A-Za-z0-9._-]{0,63})(\/.*)?$/;
const OWN_FILES = new Set(['/bridge-sw.js', '/bridge-relay.js', '/bridge-relay.html', '/bridge-boot.js', '/bridge-shim.js']);
const SHIM = '<script src="/bridge-shim.js"></script>';
const DOCTYPE = /^\s*<!doctype[^>]*>/i;
const MAX_REQUEST_BODY_BYTES = 64 * 1024 * 1024; // an upload larger than this gets 413
const ACCEPT_MS = 5000; // a console that does not take a request by then is gone
const CONSOLE_WAIT_MS = 5000; // how long a request waits for a console to hand over a port
const BODY_CREDITS = 8; // body pieces the console may send ahead of the reader
const NULL_BODY_STATUSES = new Set([204, 205, 304]);
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

let consoles = []; // MessagePorts to consoles, newest first
let consoleArrived = null; // resolves when a console hands over a port
let nextId = 0;
const exchanges = new Map(); // request id -> what its port's messages drive

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('message', (event) => {
  if (event.data?.type === 'websocket') {
    event.waitUntil(passWebSocket(event));
    return;
  }
  const source = event.source;
  // Ports come from the relay only: the console's own frame on this origin.
  const fromRelay = source && new URL(source.url).pathname === '/bridge-relay.html' && source.frameType === 'nested';
  if (!fromRelay || event.data?.type !== 'console' || !event.ports[0]) return;
  const port = event.ports[0];
  port.onmessage = (message) => onConsoleMessage(port, message.data);
  consoles = [port, ...consoles.filter((known) => known !== port)];
  consoleArrived?.resolve();
  consoleArrived = null;
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin || OWN_FILES.has(url.pathname)) return; // the network's
  event.respondWith(answer(event).catch((error) => notice(502, `The proxy could not answer: ${error.message}`)));
});

async function answer(event) {
  const request = event.request;
  const url = new URL(request.url);
  const match = APP_PATH.exec(url.pathname);
  if (match && !match[2] && request.mode === 'navigate') {
    // /app/web is the app's root as /app/web/ is: with the slash, relative URLs stay inside.
    return Response.redirect(`${self.location.origin}/app/${match[1]}/${url.search}`, 308);
  }
  if (match) return forward(match[1], `${match[2] || '/'}${url.search}`, request);
  const app = await appOfAsker(event);
  if (!app) {
    if (url.pathname === '/') return fetch(request); // the bootstrap page, from the server
    return notice(404, `${url.pathname} is not an app's address: apps open under /app/<label>/ from the proxy console.`);
  }
  if (request.mode === 'navigate') {
    // 307 keeps the method and body: a form posted to /login reaches /app/<label>/login.
    return Response.redirect(`${self.location.origin}/app/${app}${url.pathname}${url.search}`, 307);
  }
  return forward(app, `${url.pathname}${url.search}`, request);
}

/** A page's WebSocket (bridge-shim.js): its port goes to a console, for the page's own app only. */
async function passWebSocket(event) {
  const [page] = event.ports;
  const inApp = event.source && APP_PATH.exec(new URL(event.source.url).pathname);
  if (!page || !inApp) return;
  const port = await consoleToTry(new Set());
  if (!port) {
    page.postMessage({ type: 'close', code: 1006, reason: 'no proxy console is open', wasClean: false });
    return;
  }
  const { path, protocols } = event.data;
  port.postMessage({ type: 'websocket', app: inApp[1], path: String(path), protocols: [...protocols].map(String) }, [page]);
}

/** The app of the page that made the request (its URL, or the referrer of a navigation). */
async function appOfAsker(event) {
  const client = event.clientId ? await self.clients.get(event.clientId) : null;
  for (const address of [client?.url, event.request.referrer]) {
    if (!address) continue;
    const url = new URL(address);
    const match = url.origin === self.location.origin && APP_PATH.exec(url.pathname);
    if (match) return match[1];
  }
  return null;
}

function notice(status, text) {
  const page = `<!doctype html><meta charset="utf-8"><title>${status}</title><p>${escapeHtml(text)}</p>`;
  return new Response(page, { status, headers: { 'content-type': 'text/html; charset=utf-8', 'x-homelab-p2p-proxy': 'notice' } });
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readBody(request) {
  if (['GET', 'HEAD'].includes(request.method) || !request.body) return null;
  const reader = request.body.getReader();
  const pieces = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_REQUEST_BODY_BYTES) {
      reader.cancel();
      return undefined;
    }
    pieces.push(value);
  }
  return new Blob(pieces).arrayBuffer();
}

/** The request answered by a console with `app` open; a notice when none answers. */
async function forward(app, path, request) {
  const body = await readBody(request);
  if (body === undefined) return notice(413, `The request body is over ${MAX_REQUEST_BODY_BYTES / 1048576} MiB, the proxy's limit.`);
  const message = {
    type: 'request',
    app,
    method: request.method,
    path,
    headers: [...request.headers],
    navigate: request.mode === 'navigate',
  };
  const tried = new Set();
  for (;;) {
    const port = await consoleToTry(tried);
    if (!port) {
      return notice(503, `No proxy console has app '${app}' open: open it from the console (and keep the console's tab open).`);
    }
    tried.add(port);
    const response = await send(port, message, body ? body.slice(0) : null);
    if (response) return response;
  }
}

/** A console port not tried yet; asks the relays for one and waits a moment when none is left. */
async function consoleToTry(tried) {
  const untried = () => consoles.find((port) => !tried.has(port));
  if (untried()) return untried();
  consoleArrived ??= withResolvers();
  const arrived = consoleArrived.promise;
  for (const client of await self.clients.matchAll({ type: 'window', includeUncontrolled: true })) {
    if (new URL(client.url).pathname === '/bridge-relay.html') client.postMessage({ type: 'need-console' });
  }
  await Promise.race([arrived, delay(CONSOLE_WAIT_MS)]);
  return untried() || null;
}

/** The response from the console at `port`, or null when it is gone or has not `app` open. */
function send(port, message, body) {
  const id = ++nextId;
  const exchange = withResolvers();
  const state = { port, exchange, controller: null, accepted: false, credits: 0, navigate: message.navigate };
  exchanges.set(id, state);
  const gone = setTimeout(() => {
    if (state.accepted) return;
    consoles = consoles.filter((known) => known !== port); // a closed tab: its port stays silent
    finish(id);
    exchange.resolve(null);
  }, ACCEPT_MS);
  port.postMessage({ ...message, id, body }, body ? [body] : []);
  return exchange.promise.finally(() => clearTimeout(gone));
}

function finish(id) {
  exchanges.delete(id);
}

function onConsoleMessage(port, data) {
  const state = data && exchanges.get(data.id);
  if (!state || state.port !== port) return;
  const { exchange } = state;
  switch (data.type) {
    case 'accepted':
      state.accepted = true;
      break;
    case 'not-mine':
      finish(data.id);
      exchange.resolve(null);
      break;
    case 'head':
      exchange.resolve(respond(data, state, state.navigate));
      break;
    case 'chunk':
      state.credits -= 1;
      state.controller?.enqueue(new Uint8Array(data.data));
      break;
    case 'end':
      finish(data.id);
      state.controller?.close();
      break;
    case 'error':
      finish(data.id);
      if (state.controller) state.controller.error(new Error(data.message));
      else exchange.resolve(notice(502, data.message));
      break;
    default:
  }
}

function respond(head, state, navigate) {
  const { id, status, statusText, headers, location } = head;
  if (location && REDIRECT_STATUSES.has(status)) {
    finish(id);
    return Response.redirect(new URL(location, self.location.origin).href, status);
  }
  if (NULL_BODY_STATUSES.has(status) || head.noBody) {
    finish(id);
    return new Response(null, { status, statusText, headers });
  }
  const body = new ReadableStream(
    {
      start(controller) {
        state.controller = controller;
      },
      pull(controller) {
        // Room in the queue that no credit already covers: the console may send that much.
        const grant = controller.desiredSize - state.credits;
        if (grant <= 0) return;
        state.credits += grant;
        state.port.postMessage({ type: 'credit', id, pieces: grant });
      },
      cancel() {
        finish(id);
        state.port.postMessage({ type: 'cancel', id });
      },
    },
    { highWaterMark: BODY_CREDITS },
  );
  const html = headers.some(([name, value]) => name.toLowerCase() === 'content-type' && /text\/html/i.test(value));
  const shown = navigate && html ? body.pipeThrough(withShim()) : body;
  return new Response(shown, { status, statusText, headers: headers.filter(([name]) => !(navigate && html && name.toLowerCase() === 'content-length')) });
}

/** A page with bridge-shim.js first: right after its doctype (so it keeps its mode), or on top. */
function withShim() {
  let head = new Uint8Array(0);
  let done = false;
  const flush = (controller) => {
    const text = new TextDecoder('latin1').decode(head.subarray(0, 1024)); // the doctype is ASCII
    const doctype = DOCTYPE.exec(text);
    const at = doctype ? doctype[0].length : 0;
    controller.enqueue(head.subarray(0, at));
    controller.enqueue(new TextEncoder().encode(SHIM));
    controller.enqueue(head.subarray(at));
    done = true;
  };
  return new TransformStream({
    transform(chunk, controller) {
      if (done) {
        controller.enqueue(chunk);
        return;
      }
      const joined = new Uint8Array(head.length + chunk.length);
      joined.set(head);
      joined.set(chunk, head.length);
      head = joined;
      if (head.length >= 1024 || />/.test(new TextDecoder('latin1').decode(head))) flush(controller);
    },
    flush(controller) {
      if (!done) flush(controller);
    },
  });
}

function withResolvers() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
