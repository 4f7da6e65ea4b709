// @sentry/cloudflare doing edgeguard's job: proxy; a 5xx or a failed fetch sends one event and
// shows a page. Dedupe is off: by default it drops identical consecutive events without counting
// them, which would hide every 5xx after the first. Tracing stays at its default (off).
import * as Sentry from "@sentry/cloudflare";
import { forward, page } from "./common.js";

export default Sentry.withSentry(
  (env) => ({
    dsn: env.SENTRY_DSN,
    integrations: (defaults) => defaults.filter((i) => i.name !== "Dedupe"),
  }),
  {
    async fetch(request, env) {
      let response;
      try {
        response = await forward(request, env);
      } catch (error) {
        return page(502, Sentry.captureException(error));
      }
      if (response.status >= 500) {
        response.body?.cancel();
        return page(response.status, Sentry.captureMessage(`Origin answered ${response.status}`, "error"));
      }
      return response;
    },
  },
);
