//! The proxy path's decisions: where a request goes (`origin`), which headers change on the way
//! there and back (`forward`), and which answers are failures and how each is described
//! (`outcome`). Pure: the edge carries them out against the runtime.

pub mod forward;
pub mod origin;
pub mod outcome;
