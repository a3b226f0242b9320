// wss-webrtc.js: reach the services of a homelab from a web page, over WebRTC.
//
//   import { connect } from './wss-webrtc.js';
//   const bridge = await connect({ url, credential, target: 'laptop', iceServers: [...] });
//   bridge.homelab;                                               // {name, id, expiresAt}, verified
//   const response = await bridge.fetch('web', '/index.html');   // a standard Response
//   const channel = await bridge.openChannel('echo');             // an open RTCDataChannel
//
// A dependency-free ES module. Signaling is the project's wire protocol (docs/protocol.md)
// over a WebSocket; http:// services use the framing of docs/data-channels.md. Console
// lines start with [WSSWebRTC], as the troubleshooting guide expects.
//
// Signaling is trusted for delivery only (docs/security.md): the offer carries the client's
// certificate and its Ed25519 signature over the offer's DTLS fingerprints, and the answer
// is applied only once its homelab certificate and signature check out (WebCrypto, which
// exists only in secure contexts: https:// or localhost).

const TAG = '[WSSWebRTC]';
const CHUNK_BYTES = 16 * 1024;
const HIGH_WATER_BYTES = 1024 * 1024; // stop sending while more than this is queued
const LOW_WATER_BYTES = 256 * 1024; // ... and resume below this
const REUSED_CHANNEL_MS = 5000; // a channel on a live connection opens in one round trip
// Channels open at once on one connection; more wait their turn. The homelab refuses a peer's
// channels past its max_channels_per_peer (64 by default, the echo channel and channels
// still closing included), and a page of 50 images asks for 50 at once through the proxy.
const MAX_CHANNELS = 32;
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
  constructor({
    url,
    token,
    credential,
    target = 'laptop',
    iceServers = [],
    iceTransportPolicy = 'all',
    timeoutMs = 20000,
    maxChannels = MAX_CHANNELS,
  } = {}) {
    super();
    if (!/^wss?:\/\//.test(url || '')) {
      throw new BridgeError('bad_request', `url must be a ws:// or wss:// URL, not ${JSON.stringify(url)}`);
    }
    const held = readCredential(credential);
    token = token || held.fields.signaling_token;
    if (!token) {
      throw new BridgeError(
        'unauthorized',
        'no signaling token: give token, or a credential issued with --secret-file (its signaling_token)',
      );
    }
    Object.assign(this, { url, token, target, iceServers, iceTransportPolicy, timeoutMs, maxChannels });
    this._budgets = new WeakMap(); // peer connection -> {open, waiting}: its channels in use
    this._credential = held; // never exposed: it holds the private key
    this._keys = null; // the WebCrypto keys, imported on the first negotiation
    /** The homelab the current connection's answer proved to be: {name, id, expiresAt}. */
    this.homelab = null;
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
        this._retire(this.pc);
        this.pc = null;
      }
      this._negotiating = this._negotiate().finally(() => {
        this._negotiating = null;
      });
    }
    return this._negotiating;
  }

  async _negotiate() {
    const keys = await this._importKeys();
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
      const offer = pc.localDescription.sdp;
      const at = Math.floor(Date.now() / 1000);
      const proof = await subtle().sign(ED25519, keys.own, offerStatement(this.target, at, offer));
      console.log(`${TAG} Generated WebRTC signal: offer`);
      this._signal({ type: 'offer', sdp: offer, identity: { certificate: this._credential.text, proof: toB64url(proof), at } });
      offerSent = true;
      pending.forEach((data) => this._signal(data));
      const answer = await within(this.timeoutMs, 'answer', `An answer from ${this.target}`, Promise.race([answered, failed]));
      console.log(`${TAG} Received WebRTC signal: answer`);
      const homelab = await this._checkAnswer(keys, offer, answer); // before anything reaches the peer
      await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      await within(this.timeoutMs, 'ice', 'WebRTC connection (ICE and DTLS)', Promise.race([this._connected(pc), failed]));
      await within(this.timeoutMs, 'channel', 'The echo channel opening', Promise.race([this._opened(echo, 'echo'), failed]));
      this.pc = pc;
      this._echo = echo;
      this.homelab = homelab;
      await this._notePairType(pc);
      console.log(`${TAG} Peer connection established (${this._state.pairType || 'unknown'} candidate pair)`);
      return pc;
    } catch (error) {
      // The homelab made a peer for the offer: the bye drops it now, not at its deadline.
      if (offerSent) this._signal({ type: 'bye' });
      pc.close();
      console.error(`${TAG} Connection to ${this.target} failed: ${error.message}`);
      throw error;
    } finally {
      this._rejectNegotiation = this._resolveAnswer = null;
      ws.close(); // signaling is only needed to negotiate; a lost connection negotiates again
    }
  }

  /** The credential's keys in WebCrypto (imported once, not extractable); its expiry checked. */
  async _importKeys() {
    const { claims } = this._credential;
    if (claims.e * 1000 <= Date.now()) {
      throw new BridgeError(
        'bad_credential',
        `your credential (client '${claims.n}', credential ${claims.i}) expired at ${isoDate(claims.e)}; ask the operator for a new one`,
      );
    }
    this._keys ??= importKeys(this._credential).catch((error) => {
      this._keys = null;
      throw error;
    });
    return this._keys;
  }

  /** The homelab's {name, id, expiresAt} if the answer is its own, to this very offer. */
  async _checkAnswer(keys, offer, answer) {
    let homelab;
    try {
      homelab = await verifyAnswer(keys, this._credential.claims.i, this.target, offer, answer);
    } catch (error) {
      throw new BridgeError(
        'identity',
        `the answer is not from homelab '${this.target}': ${error.message}. Nothing was sent to it. ` +
          'If this repeats, the signaling service (or something on its path) is forging answers; tell the operator.',
        { step: 'identity' },
      );
    }
    console.log(
      `${TAG} Verified homelab '${homelab.name}' (credential ${homelab.id}), certified until ${homelab.expiresAt.toISOString()}`,
    );
    return homelab;
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
    if (signal.type === 'answer') this._resolveAnswer?.({ sdp: signal.sdp, identity: signal.identity });
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
    // Chrome may deliver a channel's first messages before its 'open' event: a homelab's
    // refusal, or the first bytes of a service that speaks first (an SSH banner). They are
    // held here, and handed on once the caller has its listeners (see _handOn).
    let refusal = null;
    const early = [];
    const hold = (event) => {
      event.stopImmediatePropagation();
      early.push(event.data);
      const message = !refusal && typeof event.data === 'string' ? safeParse(event.data) : null;
      if (message?.error) refusal = message;
    };
    channel.addEventListener('message', hold);
    const work = once(channel, 'open', 'close').then((event) => {
      // A refusal before 'open' is the answer (nobody else listens yet, and the homelab waits
      // for us to close).
      if (refusal) {
        channel.removeEventListener('message', hold);
        channel.close();
        throw new BridgeError(refusal.error, refusal.message, { service: label });
      }
      if (event.type === 'open') {
        this._handOn(channel, hold, early);
        return channel;
      }
      channel.removeEventListener('message', hold);
      throw new BridgeError('channel_closed', `the data channel ${label} closed as it opened`, { service: label });
    });
    return within(ms || this.timeoutMs, 'channel', `The data channel ${label} opening`, work).catch((error) => {
      channel.removeEventListener('message', hold);
      throw error;
    });
  }

  /**
   * Hand the messages held before 'open' to the caller's listeners, in order with those that
   * follow: after a task, by which time the caller (awaiting openChannel) has attached them;
   * `hold` keeps holding until then, so nothing overtakes them.
   */
  _handOn(channel, hold, early) {
    setTimeout(() => {
      channel.removeEventListener('message', hold);
      for (const data of early) channel.dispatchEvent(new MessageEvent('message', { data }));
    }, 0);
  }

  /** An open RTCDataChannel to `service` (echo, or a tcp:// service of the homelab). */
  async openChannel(service) {
    const before = this.pc;
    const pc = await this.connect();
    const fresh = pc !== before; // negotiated by this call: it may take the whole timeout
    await this._claimChannel(pc);
    if (pc !== this.pc) return this.openChannel(service); // replaced while it waited its turn
    const channel = pc.createDataChannel(service);
    channel.binaryType = 'arraybuffer';
    channel.addEventListener('close', () => this._releaseChannel(pc), { once: true });
    try {
      await this._opened(channel, service, fresh ? this.timeoutMs : REUSED_CHANNEL_MS);
    } catch (error) {
      if (error.code !== 'timeout' || fresh) throw error;
      console.log(`${TAG} The peer connection stopped answering; negotiating a new one`);
      this._retire(pc);
      return this.openChannel(service);
    }
    // A refusal arrives as a text message followed by close, on an already open channel too.
    return channel;
  }

  /** Resolves once a channel may be opened on `pc` (at most maxChannels open at once). */
  _claimChannel(pc) {
    if (!this._budgets.has(pc)) this._budgets.set(pc, { open: 0, waiting: [] });
    const budget = this._budgets.get(pc);
    if (budget.open < this.maxChannels) {
      budget.open += 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => budget.waiting.push(resolve));
  }

  /** A channel of `pc` has closed: its place goes to the next waiting one. */
  _releaseChannel(pc) {
    const budget = this._budgets.get(pc);
    const next = budget?.waiting.shift();
    if (next) next(); // the place passes on: the count stays
    else if (budget) budget.open -= 1;
  }

  /** Close `pc` for good; calls waiting for one of its channels try the next connection. */
  _retire(pc) {
    pc.close();
    const budget = this._budgets.get(pc);
    this._budgets.delete(pc);
    budget?.waiting.splice(0).forEach((resolve) => resolve());
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
    // The browser's own Request normalizes the request: forbidden headers go as fetch() drops them.
    const request = new Request(new URL(path.startsWith('/') ? path : '/', 'http://homelab.invalid'), init);
    const { status, statusText, headers, body } = await this.exchange(service, {
      method: request.method,
      path,
      headers: [...request.headers],
      body: request.body,
    });
    return new Response(NULL_BODY_STATUSES.has(status) || request.method === 'HEAD' ? null : body, {
      status,
      statusText,
      headers,
    });
  }

  /**
   * One HTTP exchange with the homelab's http:// service `service`, as it is on the wire:
   * `headers` are [name, value] pairs sent as given (the homelab drops hop-by-hop ones), and
   * the answer is {status, statusText, headers: [[name, value], ...], body: ReadableStream},
   * Set-Cookie included. The browser proxy uses it; pages should use fetch().
   */
  async exchange(service, { method = 'GET', path = '/', headers = [], body = null } = {}) {
    if (!path.startsWith('/')) throw new BridgeError('bad_request', `the path must start with '/', not ${JSON.stringify(path)}`);
    const channel = await this.openChannel(service);
    const head = receiveHead(channel, this.timeoutMs);
    channel.send(JSON.stringify({ method, path, headers }));
    if (body) await sendBody(channel, body);
    channel.send(JSON.stringify({ end: true }));
    return head;
  }

  /**
   * A WebSocket of the homelab's http:// service `service` at `path`, over a data channel of
   * its own (framing version 2, docs/data-channels.md). It behaves as a browser WebSocket:
   * `open`, `message`, `error` and `close` events, send(), close(), readyState, protocol.
   */
  openWebSocket(service, path = '/', { protocols = [], headers = [] } = {}) {
    if (!path.startsWith('/')) throw new BridgeError('bad_request', `the path must start with '/', not ${JSON.stringify(path)}`);
    const socket = new ChannelWebSocket(`${service}${path}`);
    const wanted = [...headers];
    if (protocols.length) wanted.push(['sec-websocket-protocol', protocols.join(', ')]);
    this.openChannel(service).then(
      (channel) => socket._attach(channel, path, wanted, this.timeoutMs),
      (error) => socket._fail(1006, error.message),
    );
    return socket;
  }

  /** Close the peer connection and the signaling connection. */
  close() {
    this.ws?.close();
    if (this.pc) this._retire(this.pc);
    this.pc = null;
    this.homelab = null;
    this._update({ connection: 'closed', ice: 'closed' });
    this.dispatchEvent(new Event('close'));
  }
}

// --- WebSockets over a data channel: framing version 2 --------------------------------------

const FRAMING_VERSION = 2;
const WS_TEXT = 1;
const WS_BINARY = 2;
const WS_MORE = 0x80; // on every piece of a message but its last
const WS_PIECE_BYTES = CHUNK_BYTES - 1; // a piece is the kind byte and this much of the message
const MAX_WEBSOCKET_MESSAGE_BYTES = 1024 * 1024;

/** What openWebSocket returns: a WebSocket's interface over one data channel. */
export class ChannelWebSocket extends EventTarget {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;

  constructor(name) {
    super();
    this.url = name;
    this.readyState = ChannelWebSocket.CONNECTING;
    this.protocol = '';
    this.extensions = '';
    this.binaryType = 'blob';
    this._channel = null;
    this._queue = Promise.resolve();
    this._pieces = [];
    this._kind = 0;
    this._size = 0;
    for (const type of ['open', 'message', 'error', 'close']) this[`on${type}`] = null;
  }

  get bufferedAmount() {
    return this._channel ? this._channel.bufferedAmount : 0;
  }

  _emit(event) {
    this.dispatchEvent(event);
    this[`on${event.type}`]?.call(this, event);
  }

  _attach(channel, path, headers, timeoutMs) {
    this._channel = channel;
    if (this.readyState === ChannelWebSocket.CLOSED) {
      channel.close();
      return;
    }
    const limit = setTimeout(() => this._fail(1006, `no answer to the WebSocket upgrade within ${timeoutMs / 1000} s`), timeoutMs);
    channel.addEventListener('message', (event) => {
      if (typeof event.data !== 'string') {
        this._piece(new Uint8Array(event.data));
        return;
      }
      const message = safeParse(event.data) || {};
      if (this.readyState === ChannelWebSocket.CONNECTING && typeof message.status === 'number') {
        clearTimeout(limit);
        this._opened(message);
      } else if (typeof message.close === 'number') {
        this._closed(message.close, String(message.reason || ''), true);
      } else if (message.error) {
        clearTimeout(limit);
        this._fail(1006, `${message.error}: ${message.message || ''}`);
      }
    });
    channel.addEventListener('close', () => {
      clearTimeout(limit);
      this._closed(1006, 'the data channel closed', false);
    });
    channel.send(JSON.stringify({ v: FRAMING_VERSION, method: 'GET', path, headers, upgrade: 'websocket' }));
    channel.send(JSON.stringify({ end: true }));
  }

  _opened(head) {
    if (head.status !== 101) {
      const why = (head.v || 1) < FRAMING_VERSION
        ? "the homelab's bridge does not tunnel WebSockets (it predates framing version 2); update homelab-p2p-bridge on the homelab"
        : `the service refused the WebSocket: HTTP ${head.status} ${head.statusText || ''}`.trim();
      this._fail(1006, why);
      return;
    }
    const accepted = (head.headers || []).find(([name]) => name.toLowerCase() === 'sec-websocket-protocol');
    this.protocol = accepted ? accepted[1] : '';
    this.readyState = ChannelWebSocket.OPEN;
    this._emit(new Event('open'));
  }

  _piece(bytes) {
    if (this.readyState !== ChannelWebSocket.OPEN || bytes.length === 0) return;
    const kind = bytes[0] & ~WS_MORE;
    if ((kind !== WS_TEXT && kind !== WS_BINARY) || (this._kind && kind !== this._kind)) {
      this.close(1002, 'a piece of another kind in the middle of a message');
      return;
    }
    this._kind = kind;
    this._size += bytes.length - 1;
    if (this._size > MAX_WEBSOCKET_MESSAGE_BYTES) {
      this.close(1009, 'message too long');
      return;
    }
    this._pieces.push(bytes.subarray(1));
    if (bytes[0] & WS_MORE) return;
    const whole = new Blob(this._pieces);
    this._pieces = [];
    this._kind = 0;
    this._size = 0;
    // Decoding is asynchronous: the queue keeps messages (and the close) in their order.
    const data = kind === WS_TEXT ? whole.text() : this.binaryType === 'arraybuffer' ? whole.arrayBuffer() : whole;
    this._inOrder(async () => this._emit(new MessageEvent('message', { data: await data })));
  }

  send(data) {
    if (this.readyState === ChannelWebSocket.CONNECTING) throw new DOMException('the WebSocket is not open yet', 'InvalidStateError');
    if (this.readyState !== ChannelWebSocket.OPEN) return;
    const text = typeof data === 'string';
    const write = (bytes) => {
      if (bytes.length > MAX_WEBSOCKET_MESSAGE_BYTES) {
        this.close(1009, 'message too long');
        return;
      }
      const kind = text ? WS_TEXT : WS_BINARY;
      for (let offset = 0; offset < bytes.length || offset === 0; offset += WS_PIECE_BYTES) {
        const part = bytes.subarray(offset, offset + WS_PIECE_BYTES);
        const piece = new Uint8Array(part.length + 1);
        piece[0] = offset + WS_PIECE_BYTES < bytes.length ? kind | WS_MORE : kind;
        piece.set(part, 1);
        this._channel.send(piece);
        if (bytes.length === 0) break;
      }
    };
    if (text) write(new TextEncoder().encode(data));
    else if (data instanceof Blob) data.arrayBuffer().then((buffer) => write(new Uint8Array(buffer)));
    else if (data instanceof ArrayBuffer) write(new Uint8Array(data));
    else write(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  close(code = 1000, reason = '') {
    if (this.readyState >= ChannelWebSocket.CLOSING) return;
    if (this.readyState === ChannelWebSocket.CONNECTING || !this._channel) {
      this._closed(1006, 'closed before it opened', false);
      this._channel?.close();
      return;
    }
    this.readyState = ChannelWebSocket.CLOSING;
    this._channel.send(JSON.stringify({ close: code, reason }));
  }

  _fail(code, reason) {
    if (this.readyState === ChannelWebSocket.CLOSED) return;
    console.warn(`${TAG} WebSocket ${this.url}: ${reason}`);
    this._emit(new Event('error'));
    this._closed(code, reason, false);
  }

  _closed(code, reason, wasClean) {
    if (this.readyState === ChannelWebSocket.CLOSED) return;
    this.readyState = ChannelWebSocket.CLOSED;
    this._channel?.close();
    this._inOrder(() => this._emit(new CloseEvent('close', { code, reason, wasClean })));
  }

  _inOrder(deliver) {
    this._queue = this._queue.then(deliver).catch(() => {});
  }
}

// --- identity: the formats of p2p_protocol/identity.py, signed and checked with WebCrypto ----

const ED25519 = { name: 'Ed25519' };
// A PKCS#8 Ed25519 private key is this DER header followed by the 32-byte seed (RFC 8410).
const PKCS8_ED25519_PREFIX = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
const KEY_CHARS = 43; // 32 bytes in unpadded base64url
const SIGNATURE_CHARS = 86; // 64 bytes
// Python's str.splitlines() breaks, so both sides see the same lines.
const LINE_BREAK = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/;
const FINGERPRINT = /^a=fingerprint:(\S+) ([0-9A-Fa-f:]+)\s*$/;

function subtle() {
  if (!globalThis.crypto?.subtle) {
    throw new BridgeError(
      'insecure_context',
      `this page (${globalThis.location?.origin}) is not a secure context, so the browser offers no WebCrypto to sign with: ` +
        'load it over https://, or from localhost',
    );
  }
  return crypto.subtle;
}

function toB64url(bytes) {
  const binary = String.fromCharCode(...new Uint8Array(bytes));
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The bytes of canonical unpadded base64url `text`; an Error naming `what` otherwise. */
function fromB64url(text, what, chars) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]+$/.test(text)) throw new Error(`${what} is not base64url`);
  if (chars !== undefined && text.length !== chars) throw new Error(`${what} is ${text.length} characters long, not ${chars}`);
  let bytes;
  try {
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((text.length + 3) % 4));
    bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  } catch {
    throw new Error(`${what} has a length no base64url text has`);
  }
  if (toB64url(bytes) !== text) throw new Error(`${what} is not canonical base64url (it was altered)`);
  return bytes;
}

/** `hpc1.<payload>.<signature>` split, its claims decoded (not verified); an Error says why not. */
function parseCertificate(text) {
  const parts = typeof text === 'string' ? text.split('.') : [];
  if (parts.length !== 3 || parts[0] !== 'hpc1') throw new Error('the certificate is not an hpc1.<payload>.<signature>');
  const claims = safeParse(new TextDecoder().decode(fromB64url(parts[1], "the certificate's payload")));
  const valid =
    claims &&
    ['k', 'n', 'p'].every((key) => typeof claims[key] === 'string') &&
    /^[0-9a-f]{16}$/.test(claims.i) &&
    Number.isInteger(claims.e);
  if (!valid) throw new Error("the certificate's payload is not a certificate's claims");
  return {
    signedPart: `${parts[0]}.${parts[1]}`,
    claims,
    signature: fromB64url(parts[2], "the certificate's signature", SIGNATURE_CHARS),
  };
}

/** A client credential (its JSON text or object) read, not yet imported; BridgeError if it is not one. */
function readCredential(credential) {
  const fields = typeof credential === 'string' ? safeParse(credential) : credential;
  const complete = fields && ['certificate', 'key', 'operator'].every((key) => typeof fields[key] === 'string');
  if (!complete) {
    throw new BridgeError(
      'bad_credential',
      'a credential is required: the JSON that `homelab-p2p credential issue --kind client` writes (certificate, key, operator)',
    );
  }
  let claims;
  try {
    claims = parseCertificate(fields.certificate).claims;
  } catch (error) {
    throw new BridgeError('bad_credential', `the credential is not usable: ${error.message}`);
  }
  if (claims.k !== 'client') {
    throw new BridgeError('bad_credential', `the credential is a ${claims.k}'s, not a client's: load the client's credential file`);
  }
  if (!Array.isArray(claims.h) || !Array.isArray(claims.s)) {
    throw new BridgeError('bad_credential', "the credential is not usable: its certificate lists no homelabs and services");
  }
  return { fields, claims, text: fields.certificate };
}

/** What a credential certifies, without its key: {kind, name, id, expiresAt, homelabs, services}. */
export function describeCredential(credential) {
  const { claims } = readCredential(credential);
  return { kind: claims.k, name: claims.n, id: claims.i, expiresAt: new Date(claims.e * 1000), homelabs: claims.h, services: claims.s };
}

async function importKeys({ fields, claims }) {
  const api = subtle();
  try {
    const seed = fromB64url(fields.key, "the credential's key", KEY_CHARS);
    const pkcs8 = new Uint8Array(PKCS8_ED25519_PREFIX.length + seed.length);
    pkcs8.set(PKCS8_ED25519_PREFIX);
    pkcs8.set(seed, PKCS8_ED25519_PREFIX.length);
    const own = await api.importKey('pkcs8', pkcs8, ED25519, false, ['sign']);
    if (!fields.operator.startsWith('hpk1.')) throw new Error("its operator key is not an hpk1.<key> text");
    const operatorRaw = fromB64url(fields.operator.slice(5), "its operator key", KEY_CHARS);
    const operator = await api.importKey('raw', operatorRaw, ED25519, false, ['verify']);
    // The key must be the certificate's: a mismatch would only surface as the homelab's refusal.
    const certified = await api.importKey('raw', fromB64url(claims.p, "its certificate's key", KEY_CHARS), ED25519, false, ['verify']);
    const probe = new TextEncoder().encode('homelab-p2p key check');
    if (!(await api.verify(ED25519, certified, await api.sign(ED25519, own, probe), probe))) {
      throw new Error('its key does not belong to its certificate');
    }
    return { own, operator };
  } catch (error) {
    if (error.name === 'NotSupportedError') {
      throw new BridgeError('unsupported_browser', 'this browser has no Ed25519 in WebCrypto (Chrome 137, Firefox 129, Safari 17 and later have)');
    }
    throw new BridgeError('bad_credential', `the credential is not usable: ${error.message}`);
  }
}

/** Every DTLS fingerprint of an SDP, "sha-256 AB:CD:...", each once, sorted (sdp_fingerprints). */
function sdpFingerprints(sdp) {
  const found = new Set();
  for (const line of sdp.split(LINE_BREAK)) {
    const match = FINGERPRINT.exec(line);
    if (match) found.add(`${match[1].toLowerCase()} ${match[2].toUpperCase()}`);
  }
  return [...found].sort();
}

function statement(lines) {
  return new TextEncoder().encode(lines.map((line) => `${line}\n`).join(''));
}

function offerStatement(homelab, at, offer) {
  return statement(['homelab-p2p offer v1', `to ${homelab}`, `at ${at}`, ...sdpFingerprints(offer).map((fp) => `fingerprint ${fp}`)]);
}

function answerStatement(clientId, offer, answer) {
  return statement([
    'homelab-p2p answer v1',
    `client ${clientId}`,
    ...sdpFingerprints(offer).map((fp) => `offer-fingerprint ${fp}`),
    ...sdpFingerprints(answer).map((fp) => `answer-fingerprint ${fp}`),
  ]);
}

function isoDate(epochSeconds) {
  return new Date(epochSeconds * 1000).toISOString();
}

/** The homelab's {name, id, expiresAt} if `answer` is its signed answer to `offer`; an Error says why not. */
async function verifyAnswer(keys, clientId, target, offer, answer) {
  const api = subtle();
  if (typeof answer.sdp !== 'string') throw new Error('it carries no SDP');
  const identity = answer.identity;
  if (!identity || typeof identity !== 'object') throw new Error('it carries no credential (no "identity" field)');
  if (typeof identity.certificate !== 'string' || typeof identity.proof !== 'string') {
    throw new Error('its "identity" field needs a certificate and a proof (strings)');
  }
  const certificate = parseCertificate(identity.certificate);
  const signedPart = new TextEncoder().encode(certificate.signedPart);
  if (!(await api.verify(ED25519, keys.operator, certificate.signature, signedPart))) {
    throw new Error("its certificate is not signed by your operator's key (another operator, or altered)");
  }
  const { k: kind, n: name, i: id, e: expiry } = certificate.claims;
  const shown = name.slice(0, 64); // the sender's text, in a message: kept short
  if (kind !== 'homelab') throw new Error(`its certificate is a ${kind.slice(0, 16)}'s, not a homelab's`);
  if (name !== target) throw new Error(`its certificate is homelab '${shown}''s, not '${target}''s`);
  if (expiry * 1000 <= Date.now()) throw new Error(`the credential of homelab '${shown}' (credential ${id}) expired at ${isoDate(expiry)}`);
  const holder = await api.importKey('raw', fromB64url(certificate.claims.p, "its certificate's key", KEY_CHARS), ED25519, false, ['verify']);
  const signature = fromB64url(identity.proof, 'its proof', SIGNATURE_CHARS);
  if (!(await api.verify(ED25519, holder, signature, answerStatement(clientId, offer, answer.sdp)))) {
    throw new Error(
      `its proof is not homelab '${shown}' (credential ${id})'s signature over this very SDP (altered on the way, or replayed into another session)`,
    );
  }
  return { name, id, expiresAt: new Date(expiry * 1000) };
}

function safeParse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** A request body (a ReadableStream, an ArrayBuffer or a typed array) in 16 KiB messages. */
async function sendBody(channel, body) {
  const send = async (bytes) => {
    for (let offset = 0; offset < bytes.byteLength; offset += CHUNK_BYTES) {
      await drained(channel);
      channel.send(bytes.subarray(offset, offset + CHUNK_BYTES));
    }
  };
  if (!(body instanceof ReadableStream)) {
    await send(body instanceof ArrayBuffer ? new Uint8Array(body) : new Uint8Array(body.buffer, body.byteOffset, body.byteLength));
    return;
  }
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    await send(value);
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
    let finished = false;
    const body = new ReadableStream({
      start(c) {
        controller = c;
      },
      cancel() {
        // The reader is gone (a page closed its event stream): the homelab stops sending.
        finished = true;
        channel.close();
      },
    });
    const limit = setTimeout(
      () => reject(new BridgeError('timeout', `no response within ${timeoutMs / 1000} s (step: response)`, { step: 'response' })),
      timeoutMs,
    );
    let head = null;
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
