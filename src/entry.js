// The module the Workers runtime loads. scripts/build.sh bundles it with wasm-bindgen's glue
// (./index.js, which instantiates build/index_bg.wasm once per isolate, at load) into
// build/index.js.
//
// The Rust handler (src/edge.rs `fetch`) always resolves to a response: panics are caught per
// request. What it cannot catch is a trap of the wasm instance itself (stack overflow, out of
// memory, `unreachable`): the glue then rejects or throws, marks the instance terminated, and its
// abort hook (src/edge/runtime.rs `start`) schedules a fresh instance for the next call, so one
// trap never takes the isolate down for good. The request that hit it gets a plain 500 here,
// unless PASS_THROUGH_ON_EXCEPTION had the Rust side call ctx.passThroughOnException(): then the
// error goes to the runtime, which sends the request to the origin instead.
import { fetch as handle } from "./index.js";

// Filled by src/edge/runtime.rs (`passThrough`): the contexts that asked for pass-through.
const passing = (globalThis.__edgeguardPassing ??= new WeakSet());

function failed(error, ctx) {
  console.error("edgeguard: the wasm instance failed; the next request gets a fresh one:", error);
  if (passing.has(ctx)) throw error;
  return new Response(null, { status: 500 });
}

export default {
  fetch(request, env, ctx) {
    try {
      return handle(request, env, ctx).catch((error) => failed(error, ctx));
    } catch (error) {
      return failed(error, ctx);
    }
  },
};
