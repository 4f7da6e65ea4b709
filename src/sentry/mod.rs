//! The Sentry protocol as plain data: the DSN and its auth header (`dsn`), the event
//! (`event`, with `route` for grouping and `limits` for Sentry's size limits), envelopes
//! (`envelope`), ids and timestamps (`id`, `time`), trace propagation (`trace`) and the
//! edge hop's transaction (`transaction`), and the transport's decisions: rate limits
//! (`ratelimit`) and what is admitted, dropped and counted (`delivery`). Nothing here sends: the
//! edge's transport posts the bytes.

pub mod delivery;
pub mod dsn;
pub mod envelope;
pub mod event;
pub mod floodcap;
pub mod id;
pub mod limits;
pub mod ratelimit;
pub mod route;
pub mod time;
pub mod trace;
pub mod transaction;
pub mod tunnel;
