//! A live tunnel: heartbeats on the control stream, data streams on demand.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_protocol::control::ControlMessage;
use ferry_protocol::data::StreamHeader;
use ferry_protocol::limits::Limits;
use ferry_tunnel::{CloseCause, CloseCode, Connection, FrameReader, FrameWriter, Transport};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::catalog::Catalog;
use crate::sender::{DataSender, SendError};
use crate::worker::Worker;

/// What the broker said in `Welcome`.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub version: u16,
    pub session_id: u64,
    pub agent_id: String,
    pub group: String,
    pub heartbeat_secs: u32,
}

/// An open tunnel to the broker.
pub struct Session {
    conn: Connection,
    welcome: Welcome,
    control: mpsc::Sender<ControlMessage>,
    worker: Arc<Worker>,
}

impl Session {
    pub(crate) fn start(
        conn: Connection,
        reader: FrameReader,
        writer: FrameWriter,
        welcome: Welcome,
        catalog: Arc<Catalog>,
        spread_ms: Arc<AtomicU32>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(16);
        // The outbox is empty here, so this cannot fail.
        let _ = tx.try_send(ControlMessage::Catalog {
            sources: catalog.advertised(),
        });
        let worker = Worker::new(conn.clone(), catalog, tx.clone());
        tokio::spawn(control_loop(
            conn.clone(),
            reader,
            writer,
            rx,
            Duration::from_secs(u64::from(welcome.heartbeat_secs.clamp(1, 300))),
            worker.clone(),
            spread_ms,
        ));
        Self {
            conn,
            welcome,
            control: tx,
            worker,
        }
    }

    /// No task and no plan is running: the tunnel can be replaced without
    /// interrupting anything.
    pub fn is_idle(&self) -> bool {
        self.worker.is_idle()
    }

    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// QUIC, or TLS over TCP when the agent fell back to it.
    pub fn transport(&self) -> Transport {
        self.conn.transport()
    }

    /// Opens a data stream and sends its header. `parallelism` encoders
    /// (compression) run on blocking threads at once.
    pub async fn open_stream(
        &self,
        header: StreamHeader,
        parallelism: usize,
    ) -> Result<DataSender, SendError> {
        let (send, recv) = self.conn.open_bi().await?;
        DataSender::start(send, recv, header, parallelism, Limits::default()).await
    }

    /// Waits until the tunnel ends and says why.
    pub async fn closed(&self) -> CloseCause {
        self.conn.closed().await
    }

    /// Says goodbye and closes the tunnel.
    pub async fn close(self, reason: &str) {
        let _ = self
            .control
            .send(ControlMessage::Goodbye {
                reason: reason.to_string(),
            })
            .await;
        // Let the goodbye leave; the broker closes on it.
        let _ = tokio::time::timeout(Duration::from_millis(500), self.conn.closed()).await;
        CloseCode::Normal.close(&self.conn, reason);
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn control_loop(
    conn: Connection,
    reader: FrameReader,
    writer: FrameWriter,
    outbox: mpsc::Receiver<ControlMessage>,
    every: Duration,
    worker: Arc<Worker>,
    spread_ms: Arc<AtomicU32>,
) {
    control_loop_inner(conn, reader, writer, outbox, every, &worker, &spread_ms).await;
    worker.abort_all();
}

async fn control_loop_inner(
    conn: Connection,
    mut reader: FrameReader,
    mut writer: FrameWriter,
    mut outbox: mpsc::Receiver<ControlMessage>,
    every: Duration,
    worker: &Arc<Worker>,
    spread_ms: &AtomicU32,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut seq = 0u64;
    loop {
        let out = tokio::select! {
            _ = tick.tick() => {
                seq += 1;
                ControlMessage::Heartbeat { seq, sent_unix_ms: unix_ms() }
            }
            msg = outbox.recv() => match msg {
                Some(m) => m,
                None => return,
            },
            frame = reader.next() => {
                match frame {
                    Ok(Some(f)) => match ControlMessage::from_frame(&f) {
                        Ok(ControlMessage::HeartbeatAck { sent_unix_ms, reconnect_spread_ms, .. }) => {
                            debug!(rtt_ms = unix_ms().saturating_sub(sent_unix_ms), "heartbeat acknowledged");
                            spread_ms.store(reconnect_spread_ms, Ordering::Relaxed);
                        }
                        Ok(ControlMessage::Goodbye { reason }) => {
                            debug!(%reason, "broker said goodbye");
                        }
                        Ok(other) => {
                            let name = other.type_name();
                            if !worker.handle(other) {
                                debug!("ignoring control message {name}");
                            }
                        }
                        Err(e) => {
                            warn!("protocol violation on control stream: {e}");
                            CloseCode::ProtocolViolation.close(&conn, &e.to_string());
                            return;
                        }
                    },
                    // The connection is ending; the session reports why.
                    Ok(None) | Err(_) => return,
                }
                continue;
            }
        };
        match out.to_frame() {
            Ok(f) => {
                if writer.send(&f).await.is_err() {
                    return;
                }
            }
            Err(e) => warn!("cannot encode control message: {e}"),
        }
    }
}
