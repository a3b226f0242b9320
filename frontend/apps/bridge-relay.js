// The relay: a hidden frame of the proxy console on the app origin. It installs the proxy's
// service worker and hands it message ports that reach the console, which owns the peer
// connection (a service worker cannot hold one). The server lets only the console's origin
// frame this page (CSP frame-ancestors), and the relay takes ports from its parent only.
(async () => {
  if (window.parent === window) {
    document.body.textContent = 'The proxy console opens this page in a frame of its own.';
    return;
  }
  const registration = await navigator.serviceWorker.register('/bridge-sw.js', { scope: '/' });
  await navigator.serviceWorker.ready;
  window.addEventListener('message', (event) => {
    if (event.source !== window.parent || event.data?.type !== 'console-port' || !event.ports[0]) return;
    (registration.active || navigator.serviceWorker.controller)?.postMessage({ type: 'console' }, [event.ports[0]]);
  });
  // The worker asks again when the browser stopped it (an idle worker loses its memory).
  navigator.serviceWorker.addEventListener('message', (event) => {
    if (event.data?.type === 'need-console') window.parent.postMessage({ type: 'relay-ready' }, '*');
  });
  window.parent.postMessage({ type: 'relay-ready' }, '*');
})();
