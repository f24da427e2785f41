//! Talking to upstream endpoints: the pooled HTTP client and the translation
//! of its errors into [`levee_core::FailureKind`].

mod classify;
mod client;

pub use classify::{classify_body_error, classify_error};
pub use client::{UpstreamClient, UpstreamClientSettings};
