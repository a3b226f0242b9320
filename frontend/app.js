// The demo page: connect, show the bridge's state, load a page of the homelab's web service
// (the whole app opens through proxy.html instead).
import { setUpConnectForm, describeError } from './connect-form.js';
import { connect } from './wss-webrtc.js';

const $ = (id) => document.getElementById(id);
let bridge = null;
let pingTimer = null;
const formOptions = setUpConnectForm({ onError: (text) => { $('error').textContent = text; } });

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
    bridge = await connect(formOptions());
    bridge.addEventListener('statechange', (e) => show(e.detail));
    show(bridge.state);
    $('disconnect').disabled = $('load').disabled = false;
    await measure();
    pingTimer = setInterval(measure, 5000);
  } catch (error) {
    $('error').textContent = describeError(error);
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
    $('fetch-status').textContent = describeError(error);
  }
});

