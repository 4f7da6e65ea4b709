// The floor: the least a worker doing edgeguard's job can cost, with no SDK. Proxy; a 5xx or a
// failed fetch gets a random event id, one minimal envelope POSTed in waitUntil, and the small
// page. No request data, no scrubbing, no rate limits, no retry, no timeout: what no reporter
// can go below on this runtime (the second fetch, the page, the waitUntil), so what is left
// between a reporter and this row is the reporter's own work.
import { forward, page } from "./common.js";

/** `https://<key>@<host>/<project>` → the envelope URL and the auth header. */
function endpoint(dsn) {
  const url = new URL(dsn);
  const project = url.pathname.slice(1);
  return {
    url: `${url.protocol}//${url.host}/api/${project}/envelope/`,
    auth: `Sentry sentry_version=7, sentry_client=floor/0, sentry_key=${url.username}`,
  };
}

/** Sends one event (a message) after the response, and returns its id for the page. */
function report(env, ctx, message) {
  const id = crypto.randomUUID().replaceAll("-", "");
  const { url, auth } = endpoint(env.SENTRY_DSN);
  const event = { event_id: id, level: "error", message, platform: "javascript", timestamp: Date.now() / 1000 };
  const body = `{"event_id":"${id}"}\n{"type":"event"}\n${JSON.stringify(event)}\n`;
  ctx.waitUntil(
    fetch(url, { method: "POST", headers: { "x-sentry-auth": auth }, body }).then(
      (r) => r.body?.cancel(),
      () => {},
    ),
  );
  return id;
}

export default {
  async fetch(request, env, ctx) {
    let response;
    try {
      response = await forward(request, env);
    } catch (error) {
      return page(502, report(env, ctx, String(error)));
    }
    if (response.status >= 500) {
      response.body?.cancel();
      return page(response.status, report(env, ctx, `Origin answered ${response.status}`));
    }
    return response;
  },
};
