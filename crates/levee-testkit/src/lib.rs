//! Test and benchmark tools for levee: a fault-injecting HTTP backend
//! ([`backend`]), its raw TCP counterpart ([`tcp_backend`]), a
//! closed-loop HTTP load generator ([`load`]), a holder of idle keep-alive
//! connections ([`idle`]), dependencies for self-health tests: a lying
//! memcached and real Redis and memcached servers ([`dependency`]), and a
//! DNS server whose answers a test changes as it runs ([`dns`]).
//!
//! All run on real loopback sockets, so the gateway is tested the way it is
//! used: through the kernel's TCP and UDP stacks, with real refusals, resets
//! and timeouts.

#![warn(missing_docs)]

pub mod backend;
pub mod dependency;
pub mod dns;
pub mod idle;
pub mod load;
pub mod tcp_backend;
