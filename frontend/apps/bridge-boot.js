// The app origin's bootstrap page: the server sends it for an app's path that the service
// worker did not answer (its first visit, or a reload that bypassed it). It installs the
// worker and loads the path again, once, so the worker answers it this time.
(async () => {
  const notice = document.getElementById('notice');
  if (!location.pathname.startsWith('/app/')) return;
  if (!('serviceWorker' in navigator)) {
    notice.textContent = 'This browser offers no service workers here: the app origin must be https:// or localhost.';
    return;
  }
  const tried = new URLSearchParams(location.hash.slice(1)).has('bridge-reloaded');
  await navigator.serviceWorker.register('/bridge-sw.js', { scope: '/' });
  await navigator.serviceWorker.ready;
  if (navigator.serviceWorker.controller && !tried) {
    location.replace(`${location.pathname}${location.search}#bridge-reloaded`);
    return;
  }
  if (!navigator.serviceWorker.controller && !tried) {
    navigator.serviceWorker.addEventListener('controllerchange', () => location.reload(), { once: true });
    return;
  }
  notice.textContent = 'The proxy did not take this page over: open it from the proxy console.';
})();
