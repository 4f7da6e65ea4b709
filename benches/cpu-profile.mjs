// Samples V8's CPU profiler in a running workerd (started with --inspector-addr) for a while,
// then prints where the time went: the top functions by self time and by inclusive time.
// usage: node cpu-profile.mjs <inspector port> <seconds> <out.cpuprofile> [rows]
// The .cpuprofile opens in Chrome DevTools (Performance panel) for the full call tree.
import { writeFileSync } from "node:fs";

const [port, seconds, out, rowsArg] = process.argv.slice(2);
const rows = Number(rowsArg || 25);
const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
let lastId = 0;
const pending = new Map();
ws.onmessage = (message) => {
  const data = JSON.parse(message.data);
  pending.get(data.id)?.(data);
  pending.delete(data.id);
};
await new Promise((resolve, reject) => {
  ws.onopen = resolve;
  ws.onerror = reject;
});
const call = (method, params = {}) =>
  new Promise((resolve) => {
    const id = ++lastId;
    pending.set(id, resolve);
    ws.send(JSON.stringify({ id, method, params }));
  });

await call("Profiler.enable");
await call("Profiler.setSamplingInterval", { interval: 50 }); // µs
await call("Profiler.start");
await new Promise((resolve) => setTimeout(resolve, Number(seconds) * 1000));
const { result } = await call("Profiler.stop");
ws.close();
const profile = result.profile;
writeFileSync(out, JSON.stringify(profile));

const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children || []) parent.set(c, n.id);
const label = (n) => {
  const f = n.callFrame;
  const name = (f.functionName || "(anonymous)").slice(0, 110);
  const where = f.url ? ` ${f.url.split("/").pop()}` : "";
  return name + where;
};
const hits = new Map();
for (const s of profile.samples) hits.set(s, (hits.get(s) || 0) + 1);
const self = new Map();
const inclusive = new Map();
let total = 0;
let idle = 0;
for (const [id, count] of hits) {
  const key = label(nodes.get(id));
  total += count;
  if (key.startsWith("(idle)")) idle += count;
  self.set(key, (self.get(key) || 0) + count);
  const seen = new Set();
  for (let x = id; x !== undefined; x = parent.get(x)) {
    const k = label(nodes.get(x));
    if (!seen.has(k)) inclusive.set(k, (inclusive.get(k) || 0) + count);
    seen.add(k);
  }
}
const busy = total - idle;
const table = (title, map) => {
  console.log(`\n${title} (% of busy samples)`);
  for (const [k, v] of [...map].filter(([k]) => !k.startsWith("(idle)") && !k.startsWith("(root)"))
    .sort((a, b) => b[1] - a[1]).slice(0, rows)) {
    console.log(`${((100 * v) / busy).toFixed(1).padStart(6)}  ${k}`);
  }
};
console.log(`${total} samples, ${idle} idle; profile written to ${out}`);
table("self time", self);
table("inclusive time", inclusive);
