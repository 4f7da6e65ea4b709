// A plain-JS stand-in for the edgeguard worker, written to the same contract.
// It exists only to check the e2e harness and tests themselves, without the
// Rust build:
//
//   EDGEGUARD_E2E_BUILD_DIR=tests/e2e/reference_worker cargo test --test e2e
//
// It is never deployed and is not the reference for anything but the tests.

const SDK = { name: "edgeguard", version: "0.0.0-reference" };

function parseDsn(dsn) {
  const m = /^(https?):\/\/([^:@\/\s]+)(?::[^@\/\s]*)?@([^\/\s:]+)(?::(\d+))?((?:\/[^\/\s]+)*)\/(\d+)$/.exec(dsn);
  if (!m) return null;
  const [, scheme, key, host, port, path, project] = m;
  return {
    key,
    url: `${scheme}://${host}${port ? ":" + port : ""}${path}/api/${project}/envelope/`,
  };
}

function config(env) {
  let timeout = 30000;
  if (env.ORIGIN_TIMEOUT_MS !== undefined) {
    const n = Number(env.ORIGIN_TIMEOUT_MS);
    if (/^\d+$/.test(env.ORIGIN_TIMEOUT_MS) && n > 0) timeout = n;
    else console.error("edgeguard: config: ORIGIN_TIMEOUT_MS is not a positive integer; using 30000");
  }
  let dsn = null;
  if (env.SENTRY_DSN) {
    dsn = parseDsn(env.SENTRY_DSN);
    if (!dsn) console.error("edgeguard: config: SENTRY_DSN does not parse; error reporting is off");
  }
  return {
    origin: new URL(env.ORIGIN_URL),
    timeout,
    dsn,
    environment: env.SENTRY_ENVIRONMENT || "production",
    release: env.SENTRY_RELEASE,
  };
}

function eventId() {
  return crypto.randomUUID().replace(/-/g, "");
}

function failurePage(req, status, reason, id) {
  const headers = { "Cache-Control": "no-store" };
  if (id) headers["X-Sentry-ID"] = id;
  if ((req.headers.get("Accept") || "").includes("application/json")) {
    headers["Content-Type"] = "application/json";
    return new Response(JSON.stringify({ status, reason, event_id: id }), { status, headers });
  }
  headers["Content-Type"] = "text/html; charset=utf-8";
  const ref = id ? `<p>Reference: <code>${id}</code></p>` : "";
  return new Response(`<!doctype html><title>${status}</title><h1>Something went wrong</h1><p>${reason}</p>${ref}`, { status, headers });
}

function envelope(cfg, id, req, status, type, mech, message) {
  const url = new URL(req.url);
  const event = {
    event_id: id,
    timestamp: Date.now() / 1000,
    platform: "other",
    level: "error",
    environment: cfg.environment,
    sdk: SDK,
    tags: status ? { status: String(status) } : {},
    request: { method: req.method, url: url.origin + url.pathname },
    exception: { values: [{ type, value: message, mechanism: { type: mech, handled: true, synthetic: true } }] },
    contexts: status ? { response: { type: "response", status_code: status } } : {},
  };
  if (cfg.release) event.release = cfg.release;
  const payload = new TextEncoder().encode(JSON.stringify(event));
  const head = JSON.stringify({ event_id: id, sent_at: new Date().toISOString(), sdk: SDK });
  const item = JSON.stringify({ type: "event", length: payload.length });
  const pre = new TextEncoder().encode(head + "\n" + item + "\n");
  const out = new Uint8Array(pre.length + payload.length + 1);
  out.set(pre, 0);
  out.set(payload, pre.length);
  out[out.length - 1] = 10;
  return out;
}

function report(ctx, cfg, req, status, type, mech, message) {
  if (!cfg.dsn) return null;
  const id = eventId();
  const body = envelope(cfg, id, req, status, type, mech, message);
  ctx.waitUntil(
    fetch(cfg.dsn.url, {
      method: "POST",
      headers: {
        "Content-Type": "application/x-sentry-envelope",
        "X-Sentry-Auth": `Sentry sentry_version=7, sentry_client=${SDK.name}/${SDK.version}, sentry_key=${cfg.dsn.key}`,
      },
      body,
    }).then((r) => r.arrayBuffer()).catch((e) => console.error("edgeguard: sentry send failed:", String(e))),
  );
  return id;
}

export default {
  async fetch(req, env, ctx) {
    const cfg = config(env);
    const url = new URL(req.url);
    const target = new URL(cfg.origin);
    target.pathname = cfg.origin.pathname.replace(/\/$/, "") + url.pathname;
    target.search = url.search;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort("timeout"), cfg.timeout);
    let resp;
    try {
      resp = await fetch(target, { method: req.method, headers: req.headers, body: req.body, redirect: "manual", signal: ac.signal });
    } catch (e) {
      const timedOut = ac.signal.aborted;
      const [status, type, mech, reason] = timedOut
        ? [504, "OriginTimeout", "origin_timeout", "The origin did not answer in time."]
        : [502, "OriginUnreachable", "origin_unreachable", "The origin could not be reached."];
      const id = report(ctx, cfg, req, status, type, mech, reason);
      return failurePage(req, status, reason, id);
    } finally {
      clearTimeout(timer);
    }
    if (resp.status >= 500) {
      const reason = "The origin failed to answer this request.";
      ctx.waitUntil(resp.body ? resp.body.cancel() : Promise.resolve());
      const id = report(ctx, cfg, req, resp.status, "OriginStatus", "origin_status", `origin answered ${resp.status}`);
      return failurePage(req, resp.status, reason, id);
    }
    return resp;
  },
};
