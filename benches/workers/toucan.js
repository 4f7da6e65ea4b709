// toucan-js doing edgeguard's job: proxy; a 5xx or a failed fetch sends one event and shows a page.
// The client is built per request, as toucan-js's README does.
import { Toucan } from "toucan-js";
import { forward, page } from "./common.js";

export default {
  async fetch(request, env, ctx) {
    const sentry = new Toucan({ dsn: env.SENTRY_DSN, context: ctx, request });
    let response;
    try {
      response = await forward(request, env);
    } catch (error) {
      return page(502, sentry.captureException(error));
    }
    if (response.status >= 500) {
      response.body?.cancel();
      return page(response.status, sentry.captureMessage(`Origin answered ${response.status}`, "error"));
    }
    return response;
  },
};
