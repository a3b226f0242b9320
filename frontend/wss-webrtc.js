// wss-webrtc.js: reach the services of a homelab from a web page, over WebRTC.
//
//   import { connect } from './wss-webrtc.js';
//   const bridge = await connect({ url, token, target: 'laptop', iceServers: [...] });
//   const response = await bridge.fetch('web', '/index.html');   // a standard Response
//   const channel = await bridge.openChannel('echo');             // an open RTCDataChannel
//
// A dependency-free ES module. Signaling is the project's wire protocol (docs/protocol.md)
// over a WebSocket; http:// services use the framing of docs/data-channels.md. Console
// lines start with [WSSWebRTC], as the troubleshooting guide expects.

const TAG = '[WSSWebRTC]';
const CHUNK_BYTES = 16 * 1024;
const HIGH_WATER_BYTES = 1024 * 1024; // stop sending while more than this is queued
const LOW_WATER_BYTES = 256 * 1024; // ... and resume below this
const REUSED_CHANNEL_MS = 5000; // a channel on a live connection opens in one round trip
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/** An Error with the signaling error code (or a step's name) in `code`. */
export class BridgeError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'BridgeError';
    this.code = code;
    Object.assign(this, details);
  }
}

/** Connect to `target` through the signaling service at `url`; resolves once the peer connection is up. */
export async function connect(options) {
  const bridge = new Bridge(options);
  await bridge.connect();
  return bridge;
}

function timeout(ms, step, what) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new BridgeError('timeout', `${what} did not happen within ${ms / 1000} s (step: ${step})`, { step })),
      ms,
    );
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

async function within(ms, step, what, work) {
  const limit = timeout(ms, step, what);
  try {
    return await Promise.race([work, limit.promise]);
  } finally {
    limit.cancel();
  }
}

function once(target, ...events) {
  return new Promise((resolve) => {
    const done = (event) => {
      for (const name of events) target.removeEventListener(name, done);
      resolve(event);
    };
    for (const name of events) target.addEventListener(name, done);
  });
}

export class Bridge extends EventTarget {
  constructor({ url, token, target = 'laptop', iceServers = [], iceTransportPolicy = 'all', timeoutMs = 20000 } = {}) {
    super();
    if (!/^wss?:\/\//.test(url || '')) {
      throw new BridgeError('bad_request', `url must be a ws:// or wss:// URL, not ${JSON.stringify(url)}`);
    }
    if (!token) throw new BridgeError('unauthorized', 'a token is required (homelab-p2p token issue --role client)');
    Object.assign(this, { url, token, target, iceServers, iceTransportPolicy, timeoutMs });
    this.pc = null;
    this.ws = null;
    this._state = { websocket: 'closed', ice: 'new', connection: 'new', pairType: null };
    this._negotiating = null;
    this._echo = null;
  }

  /** WebSocket, ICE and peer-connection states, and the selected pair's type (host, srflx, relay). */
  get state() {
    return { ...this._state };
  }

  _update(changes) {
    Object.assign(this._state, changes);
    this.dispatchEvent(new CustomEvent('statechange', { detail: this.state }));
  }

  /** The peer connection: the current one while it lives, else a new negotiation. */
  async connect() {
    const usable = this.pc && !['failed', 'closed', 'disconnected'].includes(this.pc.connectionState);
    if (usable) return this.pc;
    if (!this._negotiating) {
      if (this.pc) {
        console.log(`${TAG} Peer connection ${this.pc.connectionState}; negotiating a new one`);
        this.pc.close();
        this.pc = null;
      }
      this._negotiating = this._negotiate().finally(() => {
        this._negotiating = null;
      });
    }
    return this._negotiating;
  }

  async _negotiate() {
    const ws = await this._openSignaling();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy });
    const failed = new Promise((_, reject) => {
      this._rejectNegotiation = reject;
    });
    failed.catch(() => {});
    const answered = new Promise((resolve) => {
      this._resolveAnswer = resolve;
    });
    this._watch(pc);
    const pending = []; // candidates found before the offer went out
    let offerSent = false;
    pc.onicecandidate = ({ candidate }) => {
      const data = { type: 'candidate', candidate: candidate ? candidate.toJSON() : { candidate: '' } };
      if (offerSent) this._signal(data);
      else pending.push(data);
    };
    try {
      const echo = pc.createDataChannel('echo');
      await pc.setLocalDescription(await pc.createOffer());
      console.log(`${TAG} Generated WebRTC signal: offer`);
      this._signal({ type: 'offer', sdp: pc.localDescription.sdp });
      offerSent = true;
      pending.forEach((data) => this._signal(data));
      const answer = await within(this.timeoutMs, 'answer', `An answer from ${this.target}`, Promise.race([answered, failed]));
      console.log(`${TAG} Received WebRTC signal: answer`);
      await pc.setRemoteDescription(answer);
      await within(this.timeoutMs, 'ice', 'WebRTC connection (ICE and DTLS)', Promise.race([this._connected(pc), failed]));
      await within(this.timeoutMs, 'channel', 'The echo channel opening', Promise.race([this._opened(echo, 'echo'), failed]));
      this.pc = pc;
      this._echo = echo;
      await this._notePairType(pc);
      console.log(`${TAG} Peer connection established (${this._state.pairType || 'unknown'} candidate pair)`);
      return pc;
    } catch (error) {
      pc.close();
      console.error(`${TAG} Connection to ${this.target} failed: ${error.message}`);
      throw error;
    } finally {
      this._rejectNegotiation = this._resolveAnswer = null;
      ws.close(); // signaling is only needed to negotiate; a lost connection negotiates again
    }
  }

  _openSignaling() {
    const separator = this.url.includes('?') ? '&' : '?';
    const ws = new WebSocket(`${this.url}${separator}token=${encodeURIComponent(this.token)}`);
    this.ws = ws;
    this._update({ websocket: 'connecting' });
    ws.onmessage = (event) => this._onSignalingMessage(event.data);
    ws.onclose = () => {
      this._update({ websocket: 'closed' });
      // Closed by signaling (or the network) while an answer is still awaited.
      this._rejectNegotiation?.(
        new BridgeError('websocket_closed', `the signaling connection to ${this.url} closed during negotiation`, {
          step: 'answer',
        }),
      );
    };
    const opened = new Promise((resolve, reject) => {
      ws.onopen = () => {
        console.log(`${TAG} WebSocket connected`);
        this._update({ websocket: 'open' });
        resolve(ws);
      };
      ws.onerror = () => {
        const message =
          `WebSocket connection failed: ${this.url} refused or could not be reached; verify the URL ` +
          '(wss://<api-id>.execute-api.<region>.amazonaws.com/prod, or ws://HOST:8765/prod), the network and the token';
        console.error(`${TAG} ${message}`);
        reject(new BridgeError('websocket_failed', message, { step: 'websocket' }));
      };
    });
    return within(this.timeoutMs, 'websocket', `The WebSocket connection to ${this.url}`, opened).catch((error) => {
      ws.close();
      throw error;
    });
  }

  _signal(data) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ action: 'sendSignal', to: this.target, data }));
    }
  }

  _onSignalingMessage(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      console.warn(`${TAG} Ignored a signaling message that is not JSON`);
      return;
    }
    if (message && message.error) {
      console.error(`${TAG} Signaling error ${message.error}: ${message.message}`);
      this._rejectNegotiation?.(new BridgeError(message.error, message.message || message.error, { target: message.target }));
      return;
    }
    const data = message && message.action === 'sendSignal' ? message.data : null;
    const signal = typeof data === 'string' ? safeParse(data) : data;
    if (!signal || typeof signal !== 'object') return;
    if (signal.type === 'answer') this._resolveAnswer?.({ type: 'answer', sdp: signal.sdp });
    else if (signal.type === 'error') {
      this._rejectNegotiation?.(new BridgeError(signal.code || 'refused', signal.message || 'the homelab refused the connection'));
    }
  }

  _watch(pc) {
    pc.addEventListener('iceconnectionstatechange', () => {
      console.log(`${TAG} ICE connection state: ${pc.iceConnectionState}`);
      this._update({ ice: pc.iceConnectionState });
      if (pc === this.pc && ['connected', 'completed'].includes(pc.iceConnectionState)) this._notePairType(pc);
    });
    pc.addEventListener('connectionstatechange', () => this._update({ connection: pc.connectionState }));
  }

  _connected(pc) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pc.connectionState === 'connected') resolve();
        else if (['failed', 'closed'].includes(pc.connectionState)) {
          reject(
            new BridgeError(
              'ice_failed',
              'WebRTC connection failed: no network path to the homelab; configure a TURN server if behind restrictive NAT and let UDP through the firewall',
              { step: 'ice' },
            ),
          );
        } else return;
        pc.removeEventListener('connectionstatechange', check);
      };
      pc.addEventListener('connectionstatechange', check);
      check();
    });
  }

  async _notePairType(pc) {
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((report) => {
      if (report.type === 'transport' && report.selectedCandidatePairId) pair = stats.get(report.selectedCandidatePairId);
    });
    if (!pair) stats.forEach((report) => { if (report.type === 'candidate-pair' && report.nominated && report.state === 'succeeded') pair = report; });
    const local = pair && stats.get(pair.localCandidateId);
    const remote = pair && stats.get(pair.remoteCandidateId);
    const types = [local?.candidateType, remote?.candidateType];
    // A pair is as indirect as its most indirect end: relay beats srflx/prflx beats host.
    const pairType = types.includes('relay') ? 'relay' : types.find((t) => t && t !== 'host') || types[0] || null;
    if (pairType !== this._state.pairType) this._update({ pairType });
  }

  async _opened(channel, label, ms) {
    if (channel.readyState === 'open') return channel;
    let refusal = null;
    channel.addEventListener('message', (event) => {
      if (typeof event.data === 'string') refusal = safeParse(event.data);
    });
    const work = once(channel, 'open', 'close').then((event) => {
      if (event.type === 'open') return channel;
      if (refusal && refusal.error) throw new BridgeError(refusal.error, refusal.message, { service: label });
      throw new BridgeError('channel_closed', `the data channel ${label} closed as it opened`, { service: label });
    });
    return within(ms || this.timeoutMs, 'channel', `The data channel ${label} opening`, work);
  }

  /** An open RTCDataChannel to `service` (echo, or a tcp:// service of the homelab). */
  async openChannel(service) {
    const before = this.pc;
    const pc = await this.connect();
    const fresh = pc !== before; // negotiated by this call: it may take the whole timeout
    const channel = pc.createDataChannel(service);
    channel.binaryType = 'arraybuffer';
    try {
      await this._opened(channel, service, fresh ? this.timeoutMs : REUSED_CHANNEL_MS);
    } catch (error) {
      if (error.code !== 'timeout' || fresh) throw error;
      console.log(`${TAG} The peer connection stopped answering; negotiating a new one`);
      pc.close();
      return this.openChannel(service);
    }
    // A refusal arrives as a text message followed by close, on an already open channel too.
    return channel;
  }

  /** Round-trip time in milliseconds through the homelab's echo channel. */
  async ping() {
    await this.connect();
    const echo = this._echo;
    const nonce = `ping-${performance.now()}`;
    const started = performance.now();
    const answered = new Promise((resolve) => {
      const listen = (event) => {
        if (event.data === nonce) {
          echo.removeEventListener('message', listen);
          resolve(performance.now() - started);
        }
      };
      echo.addEventListener('message', listen);
    });
    echo.send(nonce);
    return within(this.timeoutMs, 'echo', 'An echo from the homelab', answered);
  }

  /** A standard Response from the homelab's http:// service `service`. */
  async fetch(service, path = '/', init = {}) {
    if (!path.startsWith('/')) throw new BridgeError('bad_request', `the path must start with '/', not ${JSON.stringify(path)}`);
    const request = new Request(new URL(path, 'http://homelab.invalid'), init);
    const channel = await this.openChannel(service);
    const head = receiveHead(channel, this.timeoutMs);
    channel.send(JSON.stringify({ method: request.method, path, headers: [...request.headers] }));
    if (request.body) {
      const reader = request.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        for (let offset = 0; offset < value.byteLength; offset += CHUNK_BYTES) {
          await drained(channel);
          channel.send(value.subarray(offset, offset + CHUNK_BYTES));
        }
      }
    }
    channel.send(JSON.stringify({ end: true }));
    const { status, statusText, headers, body } = await head;
    return new Response(NULL_BODY_STATUSES.has(status) || request.method === 'HEAD' ? null : body, {
      status,
      statusText,
      headers,
    });
  }

  /** Close the peer connection and the signaling connection. */
  close() {
    this.ws?.close();
    this.pc?.close();
    this.pc = null;
    this._update({ connection: 'closed', ice: 'closed' });
    this.dispatchEvent(new Event('close'));
  }
}

function safeParse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Wait while the channel holds more than the high-water mark unsent. */
function drained(channel) {
  if (channel.bufferedAmount <= HIGH_WATER_BYTES) return Promise.resolve();
  channel.bufferedAmountLowThreshold = LOW_WATER_BYTES;
  return once(channel, 'bufferedamountlow', 'close');
}

/** The response head, then its body as a ReadableStream of the binary messages that follow. */
function receiveHead(channel, timeoutMs) {
  return new Promise((resolve, reject) => {
    let controller = null;
    const body = new ReadableStream({
      start(c) {
        controller = c;
      },
    });
    const limit = setTimeout(
      () => reject(new BridgeError('timeout', `no response within ${timeoutMs / 1000} s (step: response)`, { step: 'response' })),
      timeoutMs,
    );
    let head = null;
    let finished = false;
    channel.addEventListener('message', (event) => {
      if (typeof event.data !== 'string') {
        controller.enqueue(new Uint8Array(event.data));
        return;
      }
      const message = safeParse(event.data) || {};
      if (message.error) {
        const error = new BridgeError(message.error, message.message || message.error);
        finished = true;
        if (head) controller.error(error);
        else reject(error);
        clearTimeout(limit);
        channel.close();
      } else if (message.end) {
        finished = true;
        controller.close();
        channel.close();
      } else if (typeof message.status === 'number' && !head) {
        clearTimeout(limit);
        head = { status: message.status, statusText: message.statusText || '', headers: message.headers || [], body };
        resolve(head);
      }
    });
    channel.addEventListener('close', () => {
      clearTimeout(limit);
      if (finished) return;
      const error = new BridgeError('channel_closed', 'the homelab closed the request channel before the response ended');
      if (head) controller.error(error);
      else reject(error);
    });
  });
}
