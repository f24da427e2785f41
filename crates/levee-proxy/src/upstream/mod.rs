//! Talking to upstream endpoints: per-endpoint keep-alive pools, the request
//! body held for replay or streamed up (with its progress watched), and the
//! translation of their errors into [`levee_core::FailureKind`].

mod classify;
mod client_body;
mod connect;
pub(crate) mod http1;
mod pool;
mod progress;
mod request_body;
mod response_body;
mod shared_fields;
mod upload;
mod watched;

pub use classify::classify_body_error;
pub use client_body::ClientBody;
pub use connect::connect_from;
pub use pool::{
    ConnectError, EndpointPool, EndpointTls, PoolSettings, PooledConnection, SendFailure,
    into_h2_form,
};
pub use progress::UploadWatch;
pub use request_body::{BodyRead, ClientBodyFailed, ReplayCopy, RequestBody, read_for_replay};
pub use response_body::{ResponseBody, ResponseBodyError};
pub use shared_fields::SharedFields;
pub use upload::{Uploaded, send_streamed};
