//! `GET /`: the dashboard, one self-contained page (no build step, no CDN:
//! `dashboard.html` is compiled into the binary), fed by one server-sent
//! event stream, `GET /dashboard/stream`: the clusters' history when it
//! opens, then once a second the whole `/status` document, each cluster's
//! latest sample and the new events. One stream per open page, however many
//! panels it shows: no polling.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::Stream;
use futures_util::stream::{self, StreamExt};
use serde_json::json;

use super::status;
use crate::gateway::GatewayState;

/// Events sent when a page opens: the timeline's length.
const EVENTS_SHOWN: usize = 50;

const PAGE: &str = include_str!("dashboard.html");

/// The dashboard's routes.
pub(super) fn routes() -> Router<Arc<GatewayState>> {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/dashboard/stream", get(updates))
}

async fn updates(
    State(state): State<Arc<GatewayState>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = state.events.since(0, EVENTS_SHOWN);
    let after = events.last().map_or(0, |event| event.id);
    let opening = event(
        "history",
        &json!({ "clusters": state.history.all(), "events": events }),
    );
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let every_second = stream::unfold(
        (state, after, ticks),
        |(state, after, mut ticks)| async move {
            ticks.tick().await;
            // Shutdown waits for open requests: a stream must end, not hold it.
            if state.is_draining() {
                return None;
            }
            let events = state.events.since(after, EVENTS_SHOWN);
            let after = events.last().map_or(after, |event| event.id);
            let update = event(
                "update",
                &json!({
                    "status": status::document(&state),
                    "samples": state.history.latest(),
                    "events": events,
                }),
            );
            Some((update, (state, after, ticks)))
        },
    );
    Sse::new(stream::once(async { opening }).chain(every_second)).keep_alive(KeepAlive::default())
}

fn event(name: &str, data: &serde_json::Value) -> Result<Event, Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}
