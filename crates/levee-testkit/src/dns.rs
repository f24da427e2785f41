//! A small authoritative DNS server on a real loopback UDP socket, for
//! testing name resolution: point a real resolver at it and change the
//! answers, or stop answering, while a test runs.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use levee_testkit::dns::DnsServer;
//! let dns = DnsServer::start("127.0.0.1:0".parse().unwrap()).await?;
//! dns.set("svc.test", &["127.0.0.1".parse().unwrap()], 5); // A svc.test
//! dns.remove("svc.test"); // NXDOMAIN
//! dns.set_silent(true); // queries time out
//! # Ok(()) }
//! ```
//!
//! It answers A and AAAA queries only, from a table of names; messages are
//! parsed and built with `hickory-proto`. There is no TCP, so an answer too
//! big for one UDP datagram is not supported.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Largest datagram read; a DNS query is far smaller, but reading less
/// would silently cut an oversized one instead of failing to parse it.
const RECV_BUFFER: usize = 64 * 1024;

/// Pause after a failed `recv_from`, so the loop does not spin.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// A running DNS server. It stops at [`DnsServer::shutdown`] or when
/// dropped.
pub struct DnsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// State shared by the handle and the serving task.
#[derive(Default)]
struct Shared {
    /// Addresses per name; names are keyed by [`key`].
    names: Mutex<HashMap<String, Entry>>,
    /// While set, queries are read and dropped.
    silent: AtomicBool,
    /// DNS queries received, answered or not.
    queries: AtomicU64,
}

/// What a known name answers.
struct Entry {
    addresses: Vec<IpAddr>,
    ttl: u32,
}

impl DnsServer {
    /// Binds UDP on `addr` (e.g. `127.0.0.1:0`) and answers until dropped or
    /// shut down. Must be called inside a Tokio runtime.
    pub async fn start(addr: SocketAddr) -> io::Result<DnsServer> {
        let socket = UdpSocket::bind(addr).await?;
        let addr = socket.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(serve(socket, Arc::clone(&shared)));
        Ok(DnsServer { addr, shared, task })
    }

    /// The bound address (with the real port if `start` was given port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers `name` (e.g. `svc.test`, with or without the trailing dot,
    /// in any case) with `addresses`: the IPv4 ones for A queries, the IPv6
    /// ones for AAAA queries, each record with `ttl` seconds. Replaces what
    /// the name had.
    pub fn set(&self, name: &str, addresses: &[IpAddr], ttl: u32) {
        let entry = Entry {
            addresses: addresses.to_vec(),
            ttl,
        };
        self.shared.names.lock().insert(key(name), entry);
    }

    /// Forgets `name`: queries for it get NXDOMAIN.
    pub fn remove(&self, name: &str) {
        self.shared.names.lock().remove(&key(name));
    }

    /// While `silent` is true, queries are read and dropped, so a resolver
    /// times out; with `false` the server answers again.
    pub fn set_silent(&self, silent: bool) {
        self.shared.silent.store(silent, Ordering::Release);
    }

    /// Number of DNS queries received so far, of every type, answered or
    /// not (silent mode included). Datagrams that do not parse as a DNS
    /// query are not counted.
    pub fn queries(&self) -> u64 {
        self.shared.queries.load(Ordering::Acquire)
    }

    /// Stops the server; once this returns the socket is closed.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Table key of a name: no trailing dot, lower case (DNS names compare
/// without regard to case).
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Reads queries and answers them, forever (until aborted).
async fn serve(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(_) => {
                tokio::time::sleep(RECV_ERROR_PAUSE).await;
                continue;
            }
        };
        // Garbage, and responses (never answer those: two servers could
        // bounce them forever), are ignored.
        let Ok(query) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        if query.metadata.message_type != MessageType::Query {
            continue;
        }
        shared.queries.fetch_add(1, Ordering::AcqRel);
        if shared.silent.load(Ordering::Acquire) {
            continue;
        }
        if let Ok(bytes) = answer(&query, &shared).to_vec() {
            // A client that went away is not the server's problem.
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

/// The response to `query`, from the table in `shared`.
fn answer(query: &Message, shared: &Shared) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata = Metadata::response_from_request(&query.metadata);
    response.metadata.authoritative = true;
    response.metadata.recursion_available = true;
    response.add_queries(query.queries.iter().cloned());
    // RFC 6891: a query with an OPT record gets one back.
    if query.edns.is_some() {
        response.set_edns(Edns::new());
    }

    if query.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return response;
    }
    let [question] = query.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    let names = shared.names.lock();
    let Some(entry) = names.get(&key(&question.name().to_ascii())) else {
        response.metadata.response_code = ResponseCode::NXDomain;
        return response;
    };
    for address in &entry.addresses {
        let data = match (question.query_type(), address) {
            (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
            (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
            _ => continue,
        };
        let record = Record::from_rdata(question.name().clone(), entry.ttl, data);
        response.add_answer(record);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Name;
    use std::net::Ipv4Addr;

    /// How long a test waits for an answer that should come.
    const ANSWER_WAIT: Duration = Duration::from_secs(2);

    async fn server() -> DnsServer {
        DnsServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
    }

    /// Sends one query for `name`, returns the response if one comes
    /// within `wait`.
    async fn ask(server: &DnsServer, name: &str, wait: Duration) -> Option<Message> {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut query = Message::new(0x1234, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        let question =
            hickory_proto::op::Query::query(Name::from_ascii(name).unwrap(), RecordType::A);
        query.add_query(question.clone());
        socket
            .send_to(&query.to_vec().unwrap(), server.addr())
            .await
            .unwrap();
        let mut buf = vec![0u8; RECV_BUFFER];
        let len = tokio::time::timeout(wait, socket.recv(&mut buf))
            .await
            .ok()?
            .unwrap();
        let response = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(response.metadata.id, 0x1234);
        assert_eq!(response.metadata.message_type, MessageType::Response);
        assert!(response.metadata.recursion_desired);
        assert!(response.metadata.authoritative);
        assert_eq!(response.queries, vec![question]);
        Some(response)
    }

    /// The A addresses and TTLs in a response, in order.
    fn a_records(response: &Message) -> Vec<(Ipv4Addr, u32)> {
        let records = response.answers.iter();
        records
            .filter_map(|record| match record.data {
                RData::A(A(v4)) => Some((v4, record.ttl)),
                _ => None,
            })
            .collect()
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn set_name_answers_a_records_with_its_ttl() {
        let dns = server().await;
        dns.set("Svc.Test.", &ips(&["10.0.0.1", "10.0.0.2", "::1"]), 7);
        let response = ask(&dns, "svc.test.", ANSWER_WAIT).await.unwrap();
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        let expected = vec![
            (Ipv4Addr::new(10, 0, 0, 1), 7),
            (Ipv4Addr::new(10, 0, 0, 2), 7),
        ];
        assert_eq!(a_records(&response), expected);
        assert_eq!(response.answers.len(), 2, "no AAAA record in an A answer");
        assert_eq!(dns.queries(), 1);
    }

    #[tokio::test]
    async fn set_replaces_the_answer_for_the_next_query() {
        let dns = server().await;
        dns.set("svc.test", &ips(&["10.0.0.1"]), 30);
        let first = ask(&dns, "svc.test.", ANSWER_WAIT).await.unwrap();
        assert_eq!(a_records(&first), vec![(Ipv4Addr::new(10, 0, 0, 1), 30)]);
        dns.set("svc.test", &ips(&["10.0.0.9"]), 1);
        let second = ask(&dns, "svc.test.", ANSWER_WAIT).await.unwrap();
        assert_eq!(a_records(&second), vec![(Ipv4Addr::new(10, 0, 0, 9), 1)]);
    }

    #[tokio::test]
    async fn unknown_name_gets_nxdomain() {
        let dns = server().await;
        dns.set("svc.test", &ips(&["10.0.0.1"]), 30);
        dns.remove("svc.test");
        let response = ask(&dns, "svc.test.", ANSWER_WAIT).await.unwrap();
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
        assert!(response.answers.is_empty());
    }

    #[tokio::test]
    async fn silent_server_counts_but_does_not_answer() {
        let dns = server().await;
        dns.set("svc.test", &ips(&["10.0.0.1"]), 30);
        dns.set_silent(true);
        assert!(
            ask(&dns, "svc.test.", Duration::from_millis(300))
                .await
                .is_none()
        );
        assert_eq!(dns.queries(), 1);
        dns.set_silent(false);
        assert!(ask(&dns, "svc.test.", ANSWER_WAIT).await.is_some());
        dns.shutdown().await;
    }

    #[tokio::test]
    async fn garbage_does_not_stop_the_server() {
        let dns = server().await;
        dns.set("svc.test", &ips(&["10.0.0.1"]), 30);
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for garbage in [&b""[..], b"\x00", b"not a dns message at all", &[0xff; 300]] {
            socket.send_to(garbage, dns.addr()).await.unwrap();
        }
        let response = ask(&dns, "svc.test.", ANSWER_WAIT).await.unwrap();
        assert_eq!(a_records(&response), vec![(Ipv4Addr::new(10, 0, 0, 1), 30)]);
    }
}
