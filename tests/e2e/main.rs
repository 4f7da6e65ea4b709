//! End-to-end tests: the built worker (`build/index.js` + wasm) under a real
//! `workerd`, in front of a real local origin, reporting to a strict fake
//! Sentry. One binary, one module per area (after rust-analyzer's `tests/it`).
//!
//! Run: `scripts/build.sh && cargo test --test e2e`.
//! Harness check without the Rust build:
//! `EDGEGUARD_E2E_BUILD_DIR=tests/e2e/reference_worker cargo test --test e2e`.

// The harness runs on the host, where the real clock is the right one: a
// workspace ban on `Instant::now` (meant for wasm code) does not apply here.
#![allow(clippy::disallowed_methods)]

mod support;

mod browser;
mod bugsink;
mod config;
mod content;
mod delivery;
mod failures;
mod floodcap;
mod forwarding;
mod harness;
mod page;
mod proxy;
mod reporting;
mod security;
mod streaming;
mod tracing;
mod tunnel;
mod websocket;
