// textslash page service worker: keeps the page's own files so a revisit loads offline.
// Only the page's files are cached (documents, scripts, styles, the wasm, config.json, the
// manifest and icon); API calls are never cached, even when they share the origin (the demo).
const CACHE = "textslash-page-v1";

// The first visit's files are fetched before this worker controls the page, so they never pass
// through its fetch handler: install fetches the page itself and keeps every file its tags name
// (in href, src or content attributes: not names inside its inline scripts, such as the
// wasm-bindgen glue's default file name, which is no file here).
const ALWAYS = ["./", "config.json", "manifest.webmanifest", "icon.svg"];
const NAMED_FILE = /(?:href|src|content)=["']([^"'\s<>]+\.(?:js|wasm|css|svg|webmanifest|json))["']/g;

async function precache() {
  const cache = await caches.open(CACHE);
  const index = await fetch("./", { cache: "no-cache" });
  if (!index.ok) return;
  const html = await index.clone().text();
  await cache.put("./", index);
  const named = [...html.matchAll(NAMED_FILE)].map((match) => match[1]);
  const files = [...new Set([...ALWAYS.slice(1), ...named])].filter((file) =>
    isInScope(new URL(file, self.registration.scope))
  );
  // One missing file must not stop the rest (config.json is optional).
  await Promise.all(files.map((file) => cache.add(file).catch(() => {})));
}

self.addEventListener("install", (event) => {
  event.waitUntil(precache().catch(() => {}).then(() => self.skipWaiting()));
});
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function isInScope(url) {
  return (
    url.origin === self.location.origin &&
    url.pathname.startsWith(new URL(self.registration.scope).pathname)
  );
}

function isPageFile(request) {
  if (request.method !== "GET") return false;
  const url = new URL(request.url);
  if (!isInScope(url)) return false;
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
      .catch(() =>
        caches
          .match(request, { ignoreSearch: true })
          .then((cached) => cached || Response.error())
      )
  );
});
