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

// Hop-by-hop headers (RFC 9110 7.6.1) and the loop marker: the same contract as src/forward.rs.
const HOP = ["connection", "proxy-connection", "keep-alive", "te", "trailer", "transfer-encoding",
  "upgrade", "proxy-authorization", "proxy-authenticate"];
const LOOP = "edgeguard-via";
const list = (v) => (v || "").split(",").map((t) => t.trim()).filter((t) => t);

function hopByHop(headers, keepUpgrade) {
  const drop = new Set();
  for (const name of ["connection", "proxy-connection"]) {
    for (const t of list(headers.get(name))) if (t.toLowerCase() !== "close") drop.add(t.toLowerCase());
  }
  for (const h of HOP) if (headers.has(h)) drop.add(h);
  if (keepUpgrade) drop.delete("upgrade");
  return drop;
}

function loopToken(cfg) {
  let h = 0x811c9dc5;
  const base = "url:" + cfg.origin.protocol.replace(":", "") + "://" + cfg.origin.host +
    cfg.origin.pathname.replace(/\/$/, "");
  for (const b of new TextEncoder().encode(base)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

function forwardHeaders(req, url, token) {
  const marker = list(req.headers.get(LOOP));
  if (marker.some((t) => t.toLowerCase() === token)) return null;
  const websocket = req.method === "GET" &&
    list(req.headers.get("upgrade")).some((t) => t.toLowerCase() === "websocket");
  const out = new Headers(req.headers);
  for (const name of hopByHop(req.headers, websocket)) out.delete(name);
  out.delete("host");
  const ip = req.headers.get("cf-connecting-ip");
  const xff = out.get("x-forwarded-for");
  if (ip && !(xff && list(xff).at(-1) === ip)) out.set("x-forwarded-for", xff ? `${xff}, ${ip}` : ip);
  out.set("x-forwarded-proto", url.protocol.replace(":", ""));
  out.set("x-forwarded-host", url.host);
  out.set(LOOP, marker.length ? `${marker.join(", ")}, ${token}` : token);
  return out;
}

function withoutHopByHop(resp) {
  if (resp.status === 101) return resp;
  const drop = hopByHop(resp.headers, false);
  if (!drop.size) return resp;
  const headers = new Headers(resp.headers);
  for (const name of drop) headers.delete(name);
  const body = [204, 205, 304].includes(resp.status) ? null : resp.body;
  return new Response(body, { status: resp.status, statusText: resp.statusText, headers });
}

async function failingBodySize(resp) {
  const length = resp.headers.get("content-length");
  if (!resp.body) return undefined;
  if (length !== null) {
    await resp.body.cancel();
    return Number(length);
  }
  const reader = resp.body.getReader();
  let seen = 0;
  const deadline = new Promise((r) => setTimeout(() => r("timeout"), 100));
  for (;;) {
    const chunk = await Promise.race([reader.read(), deadline]);
    if (chunk === "timeout" || seen + (chunk.value ? chunk.value.length : 0) >= 65536) {
      reader.cancel();
      return undefined;
    }
    if (chunk.done) return seen;
    seen += chunk.value.length;
  }
}

function eventId() {
  return crypto.randomUUID().replace(/-/g, "");
}

function failurePage(req, status, reason, id, retryAfter) {
  const headers = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
  };
  if (id) headers["X-Sentry-ID"] = id;
  if (retryAfter && status === 503) headers["Retry-After"] = retryAfter;
  const head = req.method === "HEAD";
  if ((req.headers.get("Accept") || "").includes("application/json")) {
    headers["Content-Type"] = "application/json";
    const ray = req.headers.get("cf-ray") || undefined;
    const json = JSON.stringify({ status, reason, event_id: id, ray_id: ray });
    return new Response(head ? null : json, { status, headers });
  }
  headers["Content-Type"] = "text/html; charset=utf-8";
  if (head) return new Response(null, { status, headers });
  const ref = id ? `<p>Reference: <code>${id}</code></p>` : "";
  return new Response(`<!doctype html><title>${status}</title><h1>Something went wrong</h1><p>${reason}</p>${ref}`, { status, headers });
}

function envelope(cfg, id, req, status, type, mech, message, bodySize) {
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
  if (bodySize !== undefined) event.contexts.response.body_size = bodySize;
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

function report(ctx, cfg, req, status, type, mech, message, bodySize) {
  if (!cfg.dsn) return null;
  const id = eventId();
  const body = envelope(cfg, id, req, status, type, mech, message, bodySize);
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
    const headers = forwardHeaders(req, url, loopToken(cfg));
    if (!headers) return failurePage(req, 508, "This request looped back to edgeguard.", null);
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort("timeout"), cfg.timeout);
    let resp;
    try {
      resp = await fetch(target, { method: req.method, headers, body: req.body, redirect: "manual", signal: ac.signal });
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
      const size = await failingBodySize(resp);
      const id = report(ctx, cfg, req, resp.status, "OriginStatus", "origin_status", `origin answered ${resp.status}`, size);
      return failurePage(req, resp.status, reason, id, resp.headers.get("retry-after"));
    }
    return withoutHopByHop(resp);
  },
};
