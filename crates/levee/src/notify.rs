//! systemd `Type=notify`: READY=1 once every listener is bound, STOPPING=1
//! when shutdown begins. Without `NOTIFY_SOCKET` (not run by systemd) both
//! do nothing.

use sd_notify::NotifyState;

/// Every listener is bound and levee serves.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}
