//! Latency estimators.

mod peak_ewma;

pub use peak_ewma::PeakEwma;
