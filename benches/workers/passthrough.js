// The baseline: a no-op JS pass-through to the origin, no error reporting.
import { forward } from "./common.js";

export default {
  fetch(request, env) {
    return forward(request, env);
  },
};
