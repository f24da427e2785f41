//! Access logs: one line per request on a listener that has `access_log`
//! set, formatted and written by a thread of its own so that the request
//! path never waits on a disk. A request hands its record over a bounded
//! channel; when
//! the writer has fallen behind by `buffer` lines, the line is dropped and
//! counted (`levee_access_log_dropped_total`) instead of delaying anyone.
//! Files are opened for appending and reopened on SIGUSR1 and at every
//! reload, so logrotate can move them away (`postrotate: kill -USR1`).

pub mod metrics;
mod record;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

pub use record::{AccessRecord, AttemptLog};

use crate::config::{AccessLogFormat, AccessLogSettings, AccessLogTarget};
use metrics::AccessLogMetrics;

/// How often the writer takes what has arrived, writes it and flushes (and
/// looks whether a reopen was asked for).
const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// A listener's access log: where its requests hand their lines.
pub struct AccessLog {
    settings: AccessLogSettings,
    lines: SyncSender<Box<AccessRecord>>,
    reopen: Arc<AtomicBool>,
    metrics: AccessLogMetrics,
}

impl AccessLog {
    /// Open the log as `settings` say and start its writer. A file that
    /// cannot be opened is an error (the config names a place levee
    /// cannot write to).
    pub fn start(
        listener: &str,
        settings: &AccessLogSettings,
        metrics: AccessLogMetrics,
    ) -> io::Result<AccessLog> {
        let sink = Sink::open(&settings.target)?;
        let (lines, received) = std::sync::mpsc::sync_channel(settings.buffer);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            listener: listener.to_owned(),
            format: settings.format,
            target: settings.target.clone(),
            sink,
            received,
            reopen: Arc::clone(&reopen),
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name(format!("access-log-{listener}"))
            .spawn(move || writer.run())?;
        Ok(AccessLog {
            settings: settings.clone(),
            lines,
            reopen,
            metrics,
        })
    }

    /// The settings it was started with (a reload keeps it if they stay).
    pub fn settings(&self) -> &AccessLogSettings {
        &self.settings
    }

    /// Hand `record` to the writer, which formats and writes it; drop it
    /// (counted) if the writer is behind. Formatting happens on the
    /// writer's thread, not the request's.
    pub fn write(&self, record: Box<AccessRecord>) {
        match self.lines.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.dropped.inc();
            }
        }
    }

    /// Reopen the file (logrotate moved it); done by the writer before its
    /// next line.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }
}

/// Where lines end up.
enum Sink {
    Stdout(io::Stdout),
    File(BufWriter<File>),
}

impl Sink {
    fn open(target: &AccessLogTarget) -> io::Result<Sink> {
        match target {
            AccessLogTarget::Stdout => Ok(Sink::Stdout(io::stdout())),
            AccessLogTarget::File(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|error| {
                        io::Error::new(
                            error.kind(),
                            format!("access log {}: {error}", path.display()),
                        )
                    })?;
                Ok(Sink::File(BufWriter::with_capacity(64 * 1024, file)))
            }
        }
    }

    fn write_line(&mut self, line: &str) -> io::Result<()> {
        match self {
            Sink::Stdout(stdout) => {
                let mut stdout = stdout.lock();
                stdout.write_all(line.as_bytes())?;
                stdout.write_all(b"\n")
            }
            Sink::File(file) => {
                file.write_all(line.as_bytes())?;
                file.write_all(b"\n")
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(stdout) => stdout.flush(),
            Sink::File(file) => file.flush(),
        }
    }
}

/// The writer thread's state.
struct Writer {
    listener: String,
    format: AccessLogFormat,
    target: AccessLogTarget,
    sink: Sink,
    received: Receiver<Box<AccessRecord>>,
    reopen: Arc<AtomicBool>,
    metrics: AccessLogMetrics,
}

impl Writer {
    /// Write lines until every sender is gone (the listener stopped or a
    /// reload replaced the log), then flush.
    ///
    /// It wakes every [`DRAIN_EVERY`] and writes whatever has arrived, in
    /// one flush, rather than being woken by each request: a wake-up and a
    /// `write` per line cost more than the line itself (callgrind: the
    /// writer's share of a request fell from 9.4k instructions to its
    /// formatting alone). Lines reach the file at most that late.
    fn run(mut self) {
        loop {
            let mut wrote = false;
            loop {
                match self.received.try_recv() {
                    Ok(record) => {
                        if !wrote {
                            self.reopen_if_asked();
                        }
                        self.write(&record);
                        wrote = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.flush();
                        return;
                    }
                }
            }
            if wrote {
                self.flush();
            } else {
                self.reopen_if_asked();
            }
            // A thread of its own, never a runtime's: sleeping blocks
            // nothing else.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(DRAIN_EVERY);
        }
    }

    fn write(&mut self, record: &AccessRecord) {
        let line = match self.format {
            AccessLogFormat::Json => record.json(),
            AccessLogFormat::Combined => record.combined(),
        };
        match self.sink.write_line(&line) {
            Ok(()) => {
                self.metrics.lines.inc();
            }
            Err(error) => self.failed("write", &error),
        }
    }

    fn flush(&mut self) {
        if let Err(error) = self.sink.flush() {
            self.failed("flush", &error);
        }
    }

    fn reopen_if_asked(&mut self) {
        if !self.reopen.swap(false, Ordering::AcqRel) {
            return;
        }
        self.flush();
        match Sink::open(&self.target) {
            Ok(sink) => {
                self.sink = sink;
                tracing::info!(listener = %self.listener, "access log reopened");
            }
            // The old file stays open: lines keep going somewhere.
            Err(error) => self.failed("reopen", &error),
        }
    }

    fn failed(&self, what: &str, error: &io::Error) {
        self.metrics.write_errors.inc();
        tracing::warn!(listener = %self.listener, %error, "access log {what} failed");
    }
}

/// A response's attempts as its access-log line tells them: in the
/// response's extensions when the listener has an access log.
#[derive(Clone, Debug)]
pub struct AttemptLogs {
    /// The endpoint whose response the client got.
    pub endpoint: Option<String>,
    /// Every attempt, in order; hedges that lost are `cancelled`.
    pub attempts: Vec<AttemptLog>,
}

/// A request's line, waiting for the end of its response body (its byte
/// count and duration).
pub struct PendingLine {
    log: Arc<AccessLog>,
    record: AccessRecord,
    started: tokio::time::Instant,
}

impl PendingLine {
    /// A line for `record`, whose request arrived at `started`.
    pub fn new(log: Arc<AccessLog>, record: AccessRecord, started: tokio::time::Instant) -> Self {
        PendingLine {
            log,
            record,
            started,
        }
    }

    /// The record, to fill in the answer's fields.
    pub fn record_mut(&mut self) -> &mut AccessRecord {
        &mut self.record
    }

    /// `bytes` more body bytes went to the client.
    pub fn count(&mut self, bytes: usize) {
        self.record.bytes += bytes as u64;
    }

    /// The response is over (sent, or abandoned by the client): write it.
    pub fn finish(self) {
        let PendingLine {
            log,
            mut record,
            started,
        } = self;
        record.duration = started.elapsed();
        log.write(Box::new(record));
    }
}
