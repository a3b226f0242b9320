// The demo page: connect, show the bridge's state, load a page of the homelab's web service.
// Fields can be prefilled from the URL's fragment: #url=...&token=...&target=...&ice=...
// (a fragment never reaches any server); `make demo` prints such a link.
import { connect } from './wss-webrtc.js';

const $ = (id) => document.getElementById(id);
let bridge = null;
let pingTimer = null;

function prefill() {
  const given = new URLSearchParams(location.hash.slice(1));
  const served = location.protocol.startsWith('http') && location.host;
  $('url').value = given.get('url') || (served ? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/prod` : '');
  for (const field of ['token', 'target', 'ice']) if (given.has(field)) $(field).value = given.get(field);
}

function show(state) {
  $('state-websocket').textContent = state.websocket;
  $('state-ice').textContent = state.ice;
  $('state-connection').textContent = state.connection;
  $('state-pair').textContent = state.pairType || '-';
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
      token: $('token').value.trim(),
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
