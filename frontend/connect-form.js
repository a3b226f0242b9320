// The connect form that index.html and proxy.html share: signaling URL, credential, target,
// ICE servers. Fields can be prefilled from the URL's fragment: #url=...&target=...&ice=...
// (a fragment never reaches any server); `make demo` prints such links. The credential is a
// secret: it is read from a file or pasted, kept in this tab (sessionStorage), and never put
// in a URL.
import { describeCredential } from './wss-webrtc.js';

const $ = (id) => document.getElementById(id);
const STORED_CREDENTIAL = 'homelab-p2p credential';
// Constant markup (nothing of the user's goes in it): the pages' <form id="connect-form">.
const FIELDS = `<fieldset>
  <legend>Signaling</legend>
  <label>Signaling URL <input id="url" required placeholder="wss://<api-id>.execute-api.<region>.amazonaws.com/prod"></label>
  <label>Credential file <input id="credential-file" type="file" accept=".json,application/json"></label>
  <label>or its text <textarea id="credential" rows="3" required autocomplete="off" spellcheck="false"
    placeholder="the JSON that homelab-p2p credential issue --kind client writes; kept in this tab only"></textarea></label>
  <p id="credential-summary"></p>
  <label>Target <input id="target" value="laptop"></label>
  <label>ICE servers (JSON) <input id="ice" value="[]"></label>
  <button id="connect" type="submit">Connect</button>
</fieldset>`;

/** Put the fields in the page's connect form and fill them; returns what connect() takes from them. */
export function setUpConnectForm({ onError }) {
  $('connect-form').innerHTML = FIELDS;
  const given = new URLSearchParams(location.hash.slice(1));
  const served = location.protocol.startsWith('http') && location.host;
  $('url').value = given.get('url') || (served ? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/prod` : '');
  if (served && !given.get('url')) preferServedSignalingUrl($('url').value);
  for (const field of ['target', 'ice']) if (given.has(field)) $(field).value = given.get(field);
  if (given.has('token')) {
    onError('This link carries a token, which this page no longer takes: load your credential file instead.');
  }
  $('credential').value = sessionStorage.getItem(STORED_CREDENTIAL) || '';
  summarize();
  $('credential').addEventListener('input', summarize);
  $('credential-file').addEventListener('change', async () => {
    const file = $('credential-file').files[0];
    if (!file) return;
    $('credential').value = await file.text();
    $('credential-file').value = ''; // the text is in the field; the file need not stay picked
    summarize();
  });
  return () => ({
    url: $('url').value.trim(),
    credential: $('credential').value.trim(),
    target: $('target').value.trim() || 'laptop',
    iceServers: JSON.parse($('ice').value || '[]'),
  });
}

/**
 * The server's own word on where signaling is (/proxy-config.json): on AWS the pages and the
 * WebSocket API have different hosts. It replaces the guess unless the user changed it.
 */
async function preferServedSignalingUrl(guess) {
  try {
    const response = await fetch('/proxy-config.json');
    if (!response.ok) return;
    const { signalingUrl } = await response.json();
    if (typeof signalingUrl === 'string' && /^wss?:\/\//.test(signalingUrl) && $('url').value === guess) {
      $('url').value = signalingUrl;
    }
  } catch {
    // No such file here (an older gateway): the guess stays.
  }
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

/** An error as the pages show it: its code, then its message. */
export function describeError(error) {
  return `${error.code ? `${error.code}: ` : ''}${error.message}`;
}
