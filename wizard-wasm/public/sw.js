// textslash page service worker: keeps the page's own files so a revisit loads offline.
// Only the page's files are cached (documents, scripts, styles, the wasm, config.json, the
// manifest and icon); API calls are never cached, even when they share the origin (the demo).
const CACHE = "textslash-page-v1";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function isPageFile(request) {
  if (request.method !== "GET") return false;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return false;
  if (!url.pathname.startsWith(new URL(self.registration.scope).pathname)) return false;
  if (["document", "script", "style", "manifest", "image"].includes(request.destination)) return true;
  return url.pathname.endsWith(".wasm") || url.pathname.endsWith("/config.json");
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (!isPageFile(request)) return;
  // Network first, so a new version is picked up at once; the cache when offline.
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(request, copy));
        }
        return response;
      })
      .catch(() => caches.match(request).then((cached) => cached || Response.error()))
  );
});
