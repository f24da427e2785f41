//! The response cache of a cluster: which responses may be stored, and for
//! how long.

pub mod policy;
