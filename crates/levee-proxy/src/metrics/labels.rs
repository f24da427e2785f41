//! Label sets shared by metric families that live with their stages (the
//! rate limit, the throttle, admission): in a file of their own so that
//! those stages need nothing else of `metrics`, which gathers their
//! families.

use prometheus_client::encoding::EncodeLabelSet;

/// The labels of a per-cluster series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ClusterLabels {
    pub(crate) cluster: String,
}
