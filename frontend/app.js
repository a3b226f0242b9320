// The demo page: connect, show the bridge's state, load a page of the homelab's web service.
// Fields can be prefilled from the URL's fragment: #url=...&target=...&ice=... (a fragment
// never reaches any server); `make demo` prints such a link. The credential is a secret: it
// is read from a file or pasted, kept in this tab (sessionStorage), and never put in a URL.
import { connect, describeCredential } from './wss-webrtc.js';

const $ = (id) => document.getElementById(id);
const STORED_CREDENTIAL = 'homelab-p2p credential';
let bridge = null;
let pingTimer = null;

function prefill() {
  const given = new URLSearchParams(location.hash.slice(1));
  const served = location.protocol.startsWith('http') && location.host;
  $('url').value = given.get('url') || (served ? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/prod` : '');
  for (const field of ['target', 'ice']) if (given.has(field)) $(field).value = given.get(field);
  if (given.has('token')) {
    $('error').textContent = 'This link carries a token, which this page no longer takes: load your credential file instead.';
  }
  $('credential').value = sessionStorage.getItem(STORED_CREDENTIAL) || '';
  summarize();
}

/** Say whose credential the field holds, and keep it for this tab only. */
function summarize() {
  const text = $('credential').value.trim();
  $('credential-summary').textContent = '';
  if (!text) {
    sessionStorage.removeItem(STORED_CREDENTIAL);
    return;
  }
  try {
    const held = describeCredential(text);
    const services = held.services.includes('*') ? 'every service' : held.services.join(', ');
    $('credential-summary').textContent =
      `client '${held.name}' (credential ${held.id}): homelabs ${held.homelabs.join(', ')}; ${services}; ` +
      `until ${held.expiresAt.toISOString()}`;
    sessionStorage.setItem(STORED_CREDENTIAL, text);
  } catch (error) {
    $('credential-summary').textContent = error.message;
  }
}

$('credential').addEventListener('input', summarize);
$('credential-file').addEventListener('change', async () => {
  const file = $('credential-file').files[0];
  if (!file) return;
  $('credential').value = await file.text();
  $('credential-file').value = ''; // the text is in the field; the file need not stay picked
  summarize();
});

function show(state) {
  $('state-websocket').textContent = state.websocket;
  $('state-ice').textContent = state.ice;
  $('state-connection').textContent = state.connection;
  $('state-pair').textContent = state.pairType || '-';
  const homelab = bridge?.homelab;
  $('state-homelab').textContent = homelab
    ? `${homelab.name} (credential ${homelab.id}), certified until ${homelab.expiresAt.toISOString()}`
    : '-';
}

async function measure() {
  try {
    $('state-rtt').textContent = `${(await bridge.ping()).toFixed(1)} ms`;
  } catch (error) {
    $('state-rtt').textContent = `- (${error.message})`;
  }
}

$('connect-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('error').textContent = '';
  $('connect').disabled = true;
  try {
    bridge = await connect({
      url: $('url').value.trim(),
      credential: $('credential').value.trim(),
      target: $('target').value.trim() || 'laptop',
      iceServers: JSON.parse($('ice').value || '[]'),
    });
    bridge.addEventListener('statechange', (e) => show(e.detail));
    show(bridge.state);
    $('disconnect').disabled = $('load').disabled = false;
    await measure();
    pingTimer = setInterval(measure, 5000);
  } catch (error) {
    $('error').textContent = `${error.code ? `${error.code}: ` : ''}${error.message}`;
    $('connect').disabled = false;
  }
});

$('disconnect').addEventListener('click', () => {
  clearInterval(pingTimer);
  bridge?.close();
  bridge = null;
  $('state-homelab').textContent = '-';
  $('connect').disabled = false;
  $('disconnect').disabled = $('load').disabled = true;
});

$('fetch-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('fetch-status').textContent = 'loading...';
  try {
    const response = await bridge.fetch($('service').value.trim(), $('path').value.trim() || '/');
    const type = response.headers.get('content-type') || '';
    const text = await response.text();
    $('fetch-status').textContent = `${response.status} ${response.statusText}, ${text.length} characters`;
    const html = type.includes('html');
    $('view').hidden = !html;
    $('text-view').hidden = html;
    if (html) $('view').srcdoc = text;
    else $('text-view').textContent = text;
  } catch (error) {
    $('fetch-status').textContent = `${error.code ? `${error.code}: ` : ''}${error.message}`;
  }
});

prefill();
