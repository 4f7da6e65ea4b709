// The module the runtime loads (build/index.js). It wraps what worker-build made of the Rust
// worker (build/worker.js: workers-rs's entrypoint, glue and wasm) for the one case workers-rs
// leaves to the runtime: a trap of the wasm instance itself (stack overflow, out of memory,
// `unreachable`), which no `catch_unwind` stops.
//
// Why it exists (measured on workerd with a minimal workers-rs 0.8.7 worker built by
// `worker-build 0.8.5 --release --panic-unwind`): after a trap, workers-rs builds a fresh
// instance for the next request (kept here), but the requests whose futures lived in the dead
// instance are never answered: the trapping request hangs until workerd's hang detector answers
// "Internal Server Error", and a request still waiting for the origin hangs until the origin
// answers, then fails with "Cannot invoke closure from previous WASM instance". Here each of
// them gets a plain 500 at once, or, when the Rust side had asked for
// `ctx.passThroughOnException()` (PASS_THROUGH_ON_EXCEPTION), an error, so the runtime sends
// it to the origin instead. Panics never get this far: the Rust handler answers them itself.
import { WorkerEntrypoint } from "cloudflare:workers";
import RustWorker from "./worker.js";

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

export default class Edgeguard extends WorkerEntrypoint {
  fetch(request) {
    const ctx = this.ctx;
    let passing = false;
    // The context the Rust worker sees: the runtime's, with passThroughOnException observed.
    const observed = {
      waitUntil: (promise) => ctx.waitUntil(promise),
      passThroughOnException: () => {
        passing = true;
        ctx.passThroughOnException();
      },
      get props() {
        return ctx.props;
      },
    };
    return new Promise((resolve, reject) => {
      const fail = (error) => {
        inFlight.delete(fail);
        console.error("edgeguard: the wasm instance failed; a fresh one serves the next request:", error);
        if (passing) reject(error);
        else resolve(new Response(null, { status: 500 }));
      };
      inFlight.add(fail);
      try {
        new RustWorker(observed, this.env).fetch(request).then((response) => {
          inFlight.delete(fail);
          resolve(response);
        }, fail);
      } catch (error) {
        // Thrown before the handler started: the instance was already dead.
        fail(error);
      }
    });
  }
}
