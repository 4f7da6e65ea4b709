// The module the Workers runtime loads. scripts/build.sh bundles it with wasm-bindgen's glue
// (./index.js, which instantiates build/index_bg.wasm once per isolate, at load) into
// build/index.js.
//
// The Rust handler (src/edge.rs `fetch`) always resolves to a response: panics are caught per
// request. What it cannot catch is a trap of the wasm instance itself (stack overflow, out of
// memory, `unreachable`). The glue then marks the instance terminated and calls the abort hook
// (src/edge/runtime.rs `on_abort`), which schedules a fresh instance for the next call: one trap
// never takes the isolate down for good. But the requests in flight on the dead instance would
// never be answered (their futures lived in it; the runtime would cancel them as hung, if ever),
// and the trap itself escapes from a callback, not from `handle`. So the runtime's `error` and
// `unhandledrejection` events are watched for a trap, and every request in flight then gets a
// plain 500, or, when PASS_THROUGH_ON_EXCEPTION had the Rust side call
// ctx.passThroughOnException(), an error, so the runtime sends it to the origin instead.
import { fetch as handle } from "./index.js";

// Filled by src/edge/runtime.rs (`passThrough`): the contexts that asked for pass-through.
const passing = (globalThis.__edgeguardPassing ??= new WeakSet());
// The requests in flight: each one's failure answer.
const inFlight = new Set();

// A trap: what only wasm throws (RuntimeError) or a stack overflow inside wasm.
function isTrap(error) {
  return (
    error instanceof WebAssembly.RuntimeError ||
    (error instanceof RangeError && String(error.stack).includes("wasm-function"))
  );
}

function trapped(error) {
  if (!isTrap(error)) return;
  const failing = [...inFlight];
  inFlight.clear();
  for (const fail of failing) fail(error);
}

addEventListener("error", (event) => trapped(event.error));
addEventListener("unhandledrejection", (event) => trapped(event.reason));

export default {
  fetch(request, env, ctx) {
    return new Promise((resolve, reject) => {
      const fail = (error) => {
        inFlight.delete(fail);
        console.error("edgeguard: the wasm instance failed; a fresh one serves the next request:", error);
        if (passing.has(ctx)) reject(error);
        else resolve(new Response(null, { status: 500 }));
      };
      inFlight.add(fail);
      try {
        handle(request, env, ctx).then((response) => {
          inFlight.delete(fail);
          resolve(response);
        }, fail);
      } catch (error) {
        // Thrown before the handler started: the instance was already dead.
        fail(error);
      }
    });
  },
};
