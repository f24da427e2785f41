//! What can go wrong with a store, in words that say where.

/// An error from a state store. Only the admin path (overrides) and
/// construction return them: reports and snapshots never fail, they
/// degrade (see [`StoreHealth`](crate::StoreHealth)).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A configuration value is nonsense.
    #[error("state store config: `{key}` {problem}")]
    BadConfig {
        /// The key, as an operator writes it.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The store did not answer, or answered with an error.
    #[error("state store {address} unreachable: {detail}")]
    Unreachable {
        /// Where the store is.
        address: String,
        /// What happened.
        detail: String,
    },
    /// The Redis store was started outside a tokio runtime, which its
    /// background task needs.
    #[error("the Redis state store must be started within a tokio runtime")]
    NoRuntime,
}
