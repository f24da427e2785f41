//! memcached probe over the text protocol: `set`, then `get`.
//!
//! Hand-written on purpose, and kept to the two commands a probe needs.
//! The async memcached crates are thinly maintained and general-purpose:
//! connection pools, several servers hashed into one keyspace, binary and
//! meta protocols. A probe wants the opposite: one fresh connection to one
//! server, and no client-side behaviour that could mask a failure (the
//! failure mode this probe exists to catch). The text protocol for `set` and
//! `get` is two request lines and three reply shapes (`STORED`, `VALUE ...`,
//! `END`), documented in memcached's `protocol.txt`.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::{PROBE_KEY_TTL, ProbeError, connect};

/// Longest reply line accepted, so a garbage-spewing port cannot make the
/// probe buffer without bound.
const MAX_LINE: u64 = 1024;

pub(crate) async fn probe(address: &str, key: &str, value: &str) -> Result<(), ProbeError> {
    let stream = connect(address).await?;
    let mut stream = BufReader::new(stream);
    let ttl = PROBE_KEY_TTL.as_secs().max(1);
    let set = format!("set {key} 0 {ttl} {}\r\n{value}\r\n", value.len());
    stream
        .get_mut()
        .write_all(set.as_bytes())
        .await
        .map_err(ProbeError::Io)?;
    let reply = read_line(&mut stream).await?;
    if reply != "STORED" {
        return Err(ProbeError::Protocol(format!("set answered {reply:?}")));
    }
    stream
        .get_mut()
        .write_all(format!("get {key}\r\n").as_bytes())
        .await
        .map_err(ProbeError::Io)?;
    let header = read_line(&mut stream).await?;
    if header == "END" {
        return Err(ProbeError::Miss {
            key: key.to_owned(),
        });
    }
    // VALUE <key> <flags> <bytes>
    let mut fields = header.split(' ');
    let (Some("VALUE"), Some(_key), Some(_flags), Some(length)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(ProbeError::Protocol(format!("get answered {header:?}")));
    };
    let length: usize = length
        .parse()
        .map_err(|_| ProbeError::Protocol(format!("get answered {header:?}")))?;
    if length != value.len() {
        return Err(ProbeError::WrongValue {
            key: key.to_owned(),
        });
    }
    let mut data = vec![0; length + 2];
    stream.read_exact(&mut data).await.map_err(ProbeError::Io)?;
    if &data[..length] != value.as_bytes() {
        return Err(ProbeError::WrongValue {
            key: key.to_owned(),
        });
    }
    let end = read_line(&mut stream).await?;
    if end != "END" {
        return Err(ProbeError::Protocol(format!("get ended with {end:?}")));
    }
    Ok(())
}

/// One reply line without its `\r\n`.
async fn read_line<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> Result<String, ProbeError> {
    let mut line = String::new();
    let read = reader
        .take(MAX_LINE)
        .read_line(&mut line)
        .await
        .map_err(ProbeError::Io)?;
    if read == 0 {
        return Err(ProbeError::Io(std::io::Error::from(
            std::io::ErrorKind::UnexpectedEof,
        )));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
