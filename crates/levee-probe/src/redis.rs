//! Redis probe, with the `redis` crate: `SET key value PX ttl`, then `GET`.

use redis::AsyncCommands;

use crate::{PROBE_KEY_TTL, ProbeError};

pub(crate) async fn probe(address: &str, key: &str, value: &str) -> Result<(), ProbeError> {
    let client = redis::Client::open(format!("redis://{address}/")).map_err(redis_error)?;
    // A new connection per run: a pooled one could outlive a server that
    // stopped accepting new clients.
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .map_err(redis_error)?;
    let ttl = u64::try_from(PROBE_KEY_TTL.as_millis()).unwrap_or(u64::MAX);
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("PX")
        .arg(ttl)
        .query_async(&mut connection)
        .await
        .map_err(redis_error)?;
    let read: Option<String> = connection.get(key).await.map_err(redis_error)?;
    match read {
        None => Err(ProbeError::Miss {
            key: key.to_owned(),
        }),
        Some(read) if read != value => Err(ProbeError::WrongValue {
            key: key.to_owned(),
        }),
        Some(_) => Ok(()),
    }
}

fn redis_error(error: redis::RedisError) -> ProbeError {
    if error.is_connection_refusal() {
        ProbeError::Connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    } else if error.is_io_error() || error.is_connection_dropped() {
        ProbeError::Io(std::io::Error::other(error.to_string()))
    } else {
        ProbeError::Protocol(error.to_string())
    }
}
