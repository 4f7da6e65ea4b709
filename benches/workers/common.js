// Shared by the JS bench workers: where to proxy to, and the small page shown instead of a 5xx.
// Kept tiny on purpose: the JS workers should cost what a careful hand-written worker costs.

/** The origin URL for this request: ORIGIN_URL + the request's path and query. */
export function target(request, env) {
  const url = new URL(request.url);
  return env.ORIGIN_URL + url.pathname + url.search;
}

/** Forwards the request as-is (method, headers, body), handing redirects to the client. */
export function forward(request, env) {
  return fetch(new Request(target(request, env), request), { redirect: "manual" });
}

/** The page the visitor sees instead of the origin's failure, quoting the event id. */
export function page(status, eventId) {
  const id = eventId || "";
  return new Response(
    `<!doctype html><title>${status}</title><h1>Something went wrong</h1><p>Reference: <code>${id}</code></p>`,
    {
      status,
      headers: {
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-store",
        "x-sentry-id": id,
      },
    },
  );
}
