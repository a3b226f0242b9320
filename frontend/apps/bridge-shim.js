// bridge-shim.js: the proxy's service worker puts this script first in every page of an app
// (docs/browser.md). A service worker sees no WebSocket handshake, so WebSocket is replaced
// here by one that rides a data channel: the page hands the worker a MessagePort, the worker
// passes it to the proxy console, and the console opens the socket through the homelab
// (framing version 2) and relays it over that port. Sockets to other hosts stay native.
(() => {
  const APP_PATH = /^\/app\/([A-Za-z0-9][A-Za-z0-9._-]{0,63})(\/.*)?$/;
  const here = APP_PATH.exec(location.pathname);
  const worker = navigator.serviceWorker?.controller;
  if (!here || !worker) return;
  const NativeWebSocket = window.WebSocket;

  /** The path inside this app that a WebSocket URL names, or null for another place. */
  function pathInApp(url) {
    const target = new URL(url, location.href);
    if (target.host !== location.host) return null;
    const inApp = APP_PATH.exec(target.pathname);
    if (!inApp) return `${target.pathname}${target.search}`;
    return inApp[1] === here[1] ? `${inApp[2] || '/'}${target.search}` : null;
  }

  class WebSocket extends EventTarget {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url, protocols = []) {
      const path = pathInApp(url);
      if (path === null) return new NativeWebSocket(url, protocols);
      super();
      const target = new URL(url, location.href);
      target.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
      this.url = target.href;
      this.readyState = WebSocket.CONNECTING;
      this.protocol = '';
      this.extensions = '';
      this.binaryType = 'blob';
      this.bufferedAmount = 0;
      for (const type of ['open', 'message', 'error', 'close']) this[`on${type}`] = null;
      const link = new MessageChannel();
      this._port = link.port1;
      this._port.onmessage = (event) => this._receive(event.data);
      const wanted = typeof protocols === 'string' ? [protocols] : [...protocols];
      console.log(`[proxy] WebSocket ${path} through the homelab`);
      worker.postMessage({ type: 'websocket', path, protocols: wanted }, [link.port2]);
    }

    _emit(event) {
      this.dispatchEvent(event);
      this[`on${event.type}`]?.call(this, event);
    }

    _receive(message) {
      if (message.type === 'open') {
        this.readyState = WebSocket.OPEN;
        this.protocol = message.protocol || '';
        this._emit(new Event('open'));
      } else if (message.type === 'message') {
        const data = typeof message.data === 'string' || this.binaryType === 'arraybuffer' ? message.data : new Blob([message.data]);
        this._emit(new MessageEvent('message', { data, origin: new URL(this.url).origin }));
      } else if (message.type === 'error') {
        this._emit(new Event('error'));
      } else if (message.type === 'close') {
        this.readyState = WebSocket.CLOSED;
        this._port.close();
        this._emit(new CloseEvent('close', { code: message.code, reason: message.reason, wasClean: message.wasClean }));
      }
    }

    send(data) {
      if (this.readyState === WebSocket.CONNECTING) throw new DOMException('the WebSocket is not open yet', 'InvalidStateError');
      if (this.readyState !== WebSocket.OPEN) return;
      if (data instanceof Blob) data.arrayBuffer().then((buffer) => this._port.postMessage({ type: 'send', data: buffer }));
      else if (ArrayBuffer.isView(data)) this._port.postMessage({ type: 'send', data: data.slice().buffer });
      else this._port.postMessage({ type: 'send', data: data instanceof ArrayBuffer ? data : String(data) });
    }

    close(code, reason = '') {
      if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
        throw new DOMException(`the close code must be 1000 or 3000-4999, not ${code}`, 'InvalidAccessError');
      }
      if (this.readyState >= WebSocket.CLOSING) return;
      this.readyState = WebSocket.CLOSING;
      this._port.postMessage({ type: 'close', code: code ?? 1000, reason });
    }
  }

  window.WebSocket = WebSocket;
})();
