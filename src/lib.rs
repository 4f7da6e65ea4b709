//! edgeguard: a Cloudflare Worker that proxies every request to an origin and, when the origin
//! fails (5xx, unreachable, timeout) or edgeguard itself fails, reports the failure to Sentry and
//! answers the visitor with a friendly page that quotes the event ID.
//!
//! The crate is split in two on purpose (see ARCHITECTURE.md):
//! - the **pure core** (every module but `edge`): config, DSN, event and envelope building,
//!   scrubbing, outcome classification, page rendering. It never reads a clock, a random source or
//!   the network: time and ids are passed in, so all of it is unit-tested on the host.
//! - the **edge** (`edge`, wasm32 only): the one module that talks to the Workers runtime.
//!
//! Request-path code must not panic: `unwrap`, `expect`, `panic!` and unchecked indexing are
//! denied outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod config;
pub mod decimal;
pub mod feedback;
pub mod fnv;
pub mod hex;
pub mod page;
pub mod privacy;
pub mod proxy;
pub mod sentry;

#[cfg(target_arch = "wasm32")]
mod edge;

/// The name edgeguard reports itself as, in the `sdk` block and the `X-Sentry-Auth` client.
pub const SDK_NAME: &str = "edgeguard";
/// edgeguard's own version, from Cargo.toml.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
