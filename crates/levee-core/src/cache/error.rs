//! Why a `get` returned no value.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The loader's error, shared by every caller that waited on the same fill.
/// Type-erased because one fill answers callers that each passed their own
/// loader; [`downcast_ref`](Self::downcast_ref) recovers the concrete type.
#[derive(Clone)]
pub struct LoadError(Arc<dyn Error + Send + Sync + 'static>);

impl LoadError {
    pub(super) fn new<E: Error + Send + Sync + 'static>(error: E) -> LoadError {
        LoadError(Arc::new(error))
    }

    /// The loader's error as its own type, if it is an `E`.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref::<E>()
    }
}

impl fmt::Debug for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for LoadError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

/// A `get` that found no servable value and could not load one. When a
/// stale value within `stale_if_error` exists, none of these is returned:
/// the stale value is served instead.
#[derive(Clone, Debug)]
pub enum CacheError {
    /// The loader failed (this caller's, or the one it waited on).
    Load(LoadError),
    /// The fill did not finish within `fill_wait`. It goes on in the
    /// background and stores its result when it does.
    FillTimeout {
        /// How long the caller waited.
        waited: Duration,
    },
    /// The fill ended without a result: its loader panicked or its runtime
    /// shut down.
    FillAbandoned,
}

impl CacheError {
    /// A short stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            CacheError::Load(_) => "load_failed",
            CacheError::FillTimeout { .. } => "fill_timeout",
            CacheError::FillAbandoned => "fill_abandoned",
        }
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Load(error) => write!(f, "cache fill failed: {error}"),
            CacheError::FillTimeout { waited } => write!(
                f,
                "cache fill did not finish within {}ms",
                waited.as_millis()
            ),
            CacheError::FillAbandoned => f.write_str("cache fill ended without a result"),
        }
    }
}

impl Error for CacheError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            CacheError::Load(error) => Some(error),
            _ => None,
        }
    }
}
