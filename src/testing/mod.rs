//! Test doubles for the storage seam (cargo feature `testing`): an in-memory replica and a
//! fault-injecting wrapper around any replica client.
//!
//! They let a test drive the engine through every failure a store can see — a request that
//! fails, hangs, or takes effect while its answer is lost; a read cut off half-way — at a
//! chosen call, deterministically, without a network:
//!
//! ```
//! use std::sync::Arc;
//! use litestream::testing::{Call, Fault, FaultClient, MemoryClient};
//! use litestream::ReplicaClient;
//!
//! let memory = Arc::new(MemoryClient::new());
//! let faulty = FaultClient::new(memory.clone());
//! faulty.inject(Call::Write, 0, Fault::Fail); // the first upload fails
//! // hand `Arc::new(faulty)` to a `Replica`; inspect `memory` afterwards
//! # let _: Arc<dyn ReplicaClient> = Arc::new(faulty);
//! ```
//!
//! | file | owns |
//! |---|---|
//! | `memory.rs` | [`MemoryClient`]: a replica held in memory |
//! | `fault.rs` | [`FaultClient`]: failures, hangs, lost answers and latency on chosen calls |

mod fault;
mod memory;

pub use fault::{Call, Fault, FaultClient, Injected};
pub use memory::MemoryClient;
