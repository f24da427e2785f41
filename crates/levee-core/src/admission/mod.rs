//! Overload protection: a per-cluster concurrency limit with a bounded queue.
//!
//! Under overload a proxy can serve most requests fast or all of them late;
//! clients time out on late answers, so late is the same as failed (90%
//! answered fast beats 100% timing out). The rules, from Facebook's "Fail at
//! Scale" (adaptive LIFO + CoDel) and queueing theory (Kleinrock: past
//! saturation a queue only adds delay):
//!
//! - below `max_concurrency` a request is admitted at once;
//! - above it the request waits in a queue of at most `max_queue`, and is
//!   rejected at once when the queue is full: never an unbounded queue;
//! - while the queue keeps emptying it is FIFO and a request waits at most
//!   `queue_timeout`; once it has not been empty for `codel_interval` (a
//!   standing queue) it is LIFO, newest first, and a request waits at most
//!   `codel_target`;
//! - a request is shed at its deadline, not when a slot frees.
//!
//! [`Admission`] is the async limiter; the decisions live in a pure state
//! machine over [`tokio::time::Instant`] (`queue.rs`), unit-tested alone.
//! [`GradientLimit`] estimates an adaptive limit from round-trip times.

mod gradient;
mod limiter;
mod params;
mod priority;
mod queue;
mod rejected;

pub use gradient::{BadGradientParams, GradientLimit};
pub use limiter::{Admission, Permit};
pub use params::{AdmissionParams, AdmissionParamsBuilder, BadAdmissionParams};
pub use priority::{CLASSES, Priority, UnknownPriority};
pub use rejected::Rejected;
