// The proxy console (proxy.html): it holds the credential and the peer connection, and opens
// the homelab's http:// services as whole web apps in frames of the app origin, where the
// proxy's service worker answers every request through this page (docs/browser.md).
//
//   console (this origin)          app origin (another port or host)
//   credential, RTCPeerConnection  /bridge-relay.html: installs the worker, passes it our ports
//   cookie jars, one per app       /app/<label>/...: the app; its requests go to the worker,
//                                  which sends them here over a MessagePort
import { setUpConnectForm, describeError } from './connect-form.js';
import { CookieJar } from './cookie-jar.js';
import { connect, describeCredential } from './wss-webrtc.js';

const $ = (id) => document.getElementById(id);
const LABEL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const PING_EVERY_MS = 5000; // how often the console checks that the homelab still answers
const PING_LIMIT_MS = 5000; // ... and how long an answer may take before it reconnects
const RECONNECT_DELAYS_MS = [1000, 2000, 5000, 10000, 30000];
// Request headers that are the browser's business or would tell the app the proxy's address.
const DROPPED_REQUEST_HEADERS = new Set(['cookie', 'origin', 'referer', 'host']);
const MAX_SOCKET_BUFFER_BYTES = 8 * 1024 * 1024; // unsent WebSocket bytes a page may queue
const DECODED = new Set(['gzip', 'deflate']); // a worker's response is never decoded by the browser

const formOptions = setUpConnectForm({ onError: showError });
const apps = new Map(); // label -> {jar, frame, tab}
let appsOrigin = null;
let relay = null; // the relay frame's window, once it is ready
let bridge = null;
let wanted = false; // the person asked to be connected (and has not disconnected)
let reconnecting = null;
let pingTimer = null;

function showError(text) {
  $('error').textContent = text;
}

/** The console's one-word state: disconnected, connecting, direct, relayed or reconnecting. */
function showLink(state) {
  $('link-state').dataset.state = state;
  $('link-state').textContent = state;
  const homelab = bridge?.homelab;
  $('homelab').textContent = homelab && state !== 'disconnected' ? `${homelab.name} (credential ${homelab.id})` : '';
}

function linkOf(state) {
  if (reconnecting) return 'reconnecting'; // the old connection's states are stale meanwhile
  if (state.connection !== 'connected') return 'connecting';
  return state.pairType === 'relay' ? 'relayed' : 'direct';
}

async function findAppsOrigin() {
  const given = new URLSearchParams(location.hash.slice(1)).get('apps');
  if (given) return new URL(given).origin;
  const response = await fetch('/proxy-config.json');
  if (!response.ok) throw new Error('this server names no app origin: give it as #apps=URL (docs/browser.md)');
  return new URL((await response.json()).appsOrigin).origin;
}

function startRelay() {
  const frame = document.createElement('iframe');
  frame.hidden = true;
  frame.title = 'proxy relay';
  frame.src = `${appsOrigin}/bridge-relay.html`;
  document.body.append(frame);
  window.addEventListener('message', (event) => {
    if (event.source !== frame.contentWindow || event.origin !== appsOrigin || event.data?.type !== 'relay-ready') return;
    // A port for the worker (again, when the browser stopped it and it lost the last one).
    const channel = new MessageChannel();
    channel.port1.onmessage = (message) => serve(channel.port1, message.data, message.ports);
    frame.contentWindow.postMessage({ type: 'console-port' }, appsOrigin, [channel.port2]);
    relay = frame.contentWindow;
    $('open').disabled = !bridge;
  });
}

// --- connecting, and staying connected -----------------------------------------------------

async function connectNow() {
  showLink('connecting');
  bridge = await connect(formOptions());
  bridge.addEventListener('statechange', (event) => {
    showLink(linkOf(event.detail));
    if (['failed', 'closed', 'disconnected'].includes(event.detail.connection)) reconnectSoon();
  });
  showLink(linkOf(bridge.state));
  clearInterval(pingTimer);
  pingTimer = setInterval(checkAlive, PING_EVERY_MS);
}

async function checkAlive() {
  if (!bridge || reconnecting) return;
  const limit = new Promise((_, reject) => setTimeout(() => reject(new Error('no echo')), PING_LIMIT_MS));
  try {
    await Promise.race([bridge.ping(), limit]);
  } catch {
    console.log('[proxy] The homelab stopped answering; reconnecting');
    bridge.pc?.close();
    reconnectSoon();
  }
}

/** Negotiate again until it works (or the person disconnects), waiting longer each time. */
function reconnectSoon() {
  if (!wanted || reconnecting) return;
  reconnecting = (async () => {
    showLink('reconnecting');
    for (let attempt = 0; wanted; attempt += 1) {
      try {
        await bridge.connect();
        showError('');
        break;
      } catch (error) {
        showError(`reconnecting: ${describeError(error)}`);
        const wait = RECONNECT_DELAYS_MS[Math.min(attempt, RECONNECT_DELAYS_MS.length - 1)];
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
    reconnecting = null;
    if (bridge) showLink(linkOf(bridge.state));
  })();
}

$('connect-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  showError('');
  $('connect').disabled = true;
  wanted = true;
  try {
    await connectNow();
    $('connect-form').hidden = true; // room for the apps; Disconnect brings it back
    $('disconnect').hidden = false;
    $('open').disabled = !relay;
  } catch (error) {
    wanted = false;
    bridge = null;
    showLink('disconnected');
    showError(describeError(error));
    $('connect').disabled = false;
  }
});

$('disconnect').addEventListener('click', () => {
  wanted = false;
  clearInterval(pingTimer);
  bridge?.close();
  bridge = null;
  showLink('disconnected');
  $('connect-form').hidden = false;
  $('connect').disabled = false;
  $('disconnect').hidden = $('open').disabled = true;
});

// --- apps, each in a tab -------------------------------------------------------------------

$('open-form').addEventListener('submit', (event) => {
  event.preventDefault();
  showError('');
  const label = $('service').value.trim();
  const path = $('path').value.trim() || '/';
  if (!LABEL.test(label)) {
    showError(`'${label}' is not a service label (letters, digits, '.', '_' and '-', at most 64)`);
    return;
  }
  const { services, name } = describeCredential(formOptions().credential);
  if (!services.includes('*') && !services.includes(label)) {
    showError(`your credential (${name}) does not allow service '${label}'; it allows: ${services.join(', ')}`);
    return;
  }
  openApp(label, path.startsWith('/') ? path : `/${path}`);
});

function openApp(label, path) {
  let app = apps.get(label);
  if (!app) {
    const frame = document.createElement('iframe');
    frame.title = `app ${label}`;
    frame.name = `app-${label}`;
    const tab = document.createElement('button');
    tab.type = 'button';
    tab.textContent = label;
    tab.addEventListener('click', () => select(label));
    app = { jar: new CookieJar(), frame, tab };
    apps.set(label, app);
    $('tabs').append(tab);
    $('views').append(frame);
  }
  app.frame.src = `${appsOrigin}/app/${label}${path}`;
  select(label);
}

function select(label) {
  for (const [name, app] of apps) {
    app.frame.hidden = name !== label;
    app.tab.setAttribute('aria-selected', String(name === label));
  }
}

// --- answering the service worker ----------------------------------------------------------

/** One request of an app, from the worker: through the bridge, its answer streamed back. */
async function serve(port, request, ports) {
  if (request?.type === 'credit' || request?.type === 'cancel') {
    streams.get(request.id)?.[request.type](request.pieces);
    return;
  }
  if (request?.type === 'websocket' && ports?.[0]) {
    relayWebSocket(request, ports[0]);
    return;
  }
  if (request?.type !== 'request') return;
  const { id, app: label, method, path, headers, body } = request;
  const app = apps.get(label);
  if (!app || !bridge) {
    port.postMessage({ type: 'not-mine', id });
    return;
  }
  port.postMessage({ type: 'accepted', id });
  const sent = headers.filter(([name]) => !DROPPED_REQUEST_HEADERS.has(name.toLowerCase()));
  const cookie = app.jar.header(path);
  if (cookie) sent.push(['cookie', cookie]);
  let reply;
  try {
    reply = await bridge.exchange(label, { method, path, headers: sent, body: body ? new Uint8Array(body) : null });
  } catch (error) {
    port.postMessage({ type: 'error', id, message: `${label}: ${describeError(error)}` });
    return;
  }
  const encodingHeader = reply.headers.find(([name]) => name.toLowerCase() === 'content-encoding');
  const encoding = encodingHeader && DECODED.has(encodingHeader[1].trim().toLowerCase()) ? encodingHeader[1].trim().toLowerCase() : null;
  const kept = [];
  let location = null;
  for (const [name, value] of reply.headers) {
    const lower = name.toLowerCase();
    if (lower === 'set-cookie') app.jar.store(value, path);
    else if (lower === 'location') location = appLocation(label, path, value);
    // A decoded body has neither its encoding nor its encoded length any more.
    else if (!(encoding && (lower === 'content-encoding' || lower === 'content-length'))) kept.push([name, value]);
  }
  if (location) kept.push(['location', location]);
  const noBody = method === 'HEAD';
  port.postMessage({ type: 'head', id, status: reply.status, statusText: reply.statusText, headers: kept, location, noBody });
  const stream = encoding ? reply.body.pipeThrough(new DecompressionStream(encoding)) : reply.body;
  if (noBody || (location && [301, 302, 303, 307, 308].includes(reply.status))) {
    stream.cancel().catch(() => {});
    return;
  }
  await streamBody(port, id, stream);
}

/** A page's WebSocket (bridge-shim.js), opened through the homelab and relayed over `page`. */
function relayWebSocket({ app: label, path, protocols }, page) {
  const app = apps.get(label);
  if (!app || !bridge) {
    page.postMessage({ type: 'close', code: 1006, reason: `app '${label}' is not open in this console`, wasClean: false });
    return;
  }
  console.log(`[proxy] ${label}: WebSocket ${path}`);
  const cookie = app.jar.header(path);
  let socket;
  try {
    socket = bridge.openWebSocket(label, path, { protocols, headers: cookie ? [['cookie', cookie]] : [] });
  } catch (error) {
    page.postMessage({ type: 'close', code: 1006, reason: error.message, wasClean: false });
    return;
  }
  socket.binaryType = 'arraybuffer';
  socket.onopen = () => page.postMessage({ type: 'open', protocol: socket.protocol });
  socket.onmessage = ({ data }) => page.postMessage({ type: 'message', data }, typeof data === 'string' ? [] : [data]);
  socket.onerror = () => page.postMessage({ type: 'error' });
  socket.onclose = ({ code, reason, wasClean }) => {
    page.postMessage({ type: 'close', code, reason, wasClean });
    page.close();
  };
  page.onmessage = ({ data }) => {
    const payload = data?.data;
    if (data?.type === 'send' && socket.readyState === 1 && (typeof payload === 'string' || payload instanceof ArrayBuffer)) {
      // A page that sends faster than the channel drains would grow the console's memory.
      if (socket.bufferedAmount > MAX_SOCKET_BUFFER_BYTES) socket.close(1008, 'the page sends faster than the homelab takes it');
      else socket.send(payload);
    }
    else if (data?.type === 'close') socket.close(data.code, data.reason);
  };
}

/** Where a redirect of app `label` goes, seen from the app origin: inside the app when it is. */
function appLocation(label, path, value) {
  const backend = new URL(path, 'http://homelab.invalid');
  let target;
  try {
    target = new URL(value, backend);
  } catch {
    return null;
  }
  // The app's own addresses: relative ones, and absolute ones to where the homelab reaches it.
  const own = target.host === backend.host || ['localhost', '127.0.0.1', '[::1]'].includes(target.hostname);
  if (!own) return target.href; // another site: the frame leaves the proxy, as on the LAN
  return `${appsOrigin}/app/${label}${target.pathname}${target.search}${target.hash}`;
}

const streams = new Map(); // request id -> {credit, cancel}

/** Send `body` to the worker a piece per credit it grants, so it never holds more than it asked. */
async function streamBody(port, id, body) {
  const reader = body.getReader();
  let credits = 0;
  let wake = null;
  let cancelled = false;
  streams.set(id, {
    credit(pieces) {
      credits += Number(pieces) || 0;
      wake?.();
    },
    cancel() {
      // A read may be waiting on the homelab (an idle event stream): end it now too.
      cancelled = true;
      reader.cancel().catch(() => {});
      wake?.();
    },
  });
  try {
    for (;;) {
      while (credits <= 0 && !cancelled) await new Promise((resolve) => { wake = resolve; });
      if (cancelled) return;
      const { done, value } = await reader.read();
      if (cancelled) return;
      if (done) {
        port.postMessage({ type: 'end', id });
        return;
      }
      credits -= 1;
      const piece = value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength);
      port.postMessage({ type: 'chunk', id, data: piece }, [piece]);
    }
  } catch (error) {
    port.postMessage({ type: 'error', id, message: describeError(error) });
  } finally {
    streams.delete(id);
  }
}

try {
  appsOrigin = await findAppsOrigin();
  startRelay();
} catch (error) {
  showError(`The proxy cannot open apps: ${error.message}`);
}
