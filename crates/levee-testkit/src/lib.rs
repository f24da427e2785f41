//! Test and benchmark tools for levee: a fault-injecting HTTP backend
//! ([`backend`]), its raw TCP counterpart ([`tcp_backend`]), a
//! closed-loop HTTP load generator ([`load`]), a holder of idle keep-alive
//! connections ([`idle`]), and dependencies for
//! self-health tests: a lying memcached and real Redis and memcached
//! servers ([`dependency`]).
//!
//! All run on real loopback sockets, so the gateway is tested the way it is
//! used: through the kernel's TCP stack, with real refusals, resets and
//! timeouts.

#![warn(missing_docs)]

pub mod backend;
pub mod dependency;
pub mod idle;
pub mod load;
pub mod tcp_backend;
