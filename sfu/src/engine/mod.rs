//! The media engine: shard threads running str0m peers, behind the
//! [`MediaPlane`] that signaling submits commands to.

pub mod counters;
pub mod egress;
pub mod layers;
pub mod peer;
pub mod probing;
pub mod quality;
pub mod room;
pub mod shard;
pub mod speakers;
pub mod stall;
pub mod stats;
pub mod testkit;

use crate::config::MediaConfig;
use shard::Shard;
use signaling::ids::RoomId;
use signaling::media::{MediaCommand, MediaError, MediaPlane};
use socket2::{Domain, Protocol, Socket, Type};
use stats::ShardStats;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Depth of each shard's command queue.
const COMMAND_QUEUE: usize = 1024;
/// Socket buffers: keyframe bursts overflow the kernel defaults.
const SOCKET_BUFFER_BYTES: usize = 8 * 1024 * 1024;

struct ShardHandle {
    commands: SyncSender<MediaCommand>,
    /// Where a wake-up datagram goes: the shard's own socket.
    wake_to: SocketAddr,
    stats: Arc<ShardStats>,
    media_addr: SocketAddr,
}

pub struct Engine {
    shards: Vec<ShardHandle>,
    waker: UdpSocket,
    /// Room → shard. Written only here, on signaling's side: a room is placed
    /// when its signaling room opens and forgotten when it closes. Shards
    /// never write it, so a room can never end up on two shards.
    placement: Mutex<HashMap<RoomId, usize>>,
}

impl Engine {
    /// Bind every shard's socket and start its thread.
    pub fn start(config: &MediaConfig, link: stats::LinkMetrics) -> anyhow::Result<Arc<Self>> {
        let cert = crate::cert::generate_dtls_cert()?;
        let waker = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let waker_addr = waker.local_addr()?;
        let mut shards = Vec::new();
        for index in 0..config.shards.max(1) {
            let port = if config.udp_port == 0 {
                0
            } else {
                config.udp_port + index as u16
            };
            let bind = SocketAddr::new(config.udp_bind, port);
            let socket = bind_udp(bind)?;
            let local = socket.local_addr()?;
            let advertised = SocketAddr::new(config.advertised_ip, local.port());
            let wake_ip = if local.ip().is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                local.ip()
            };
            let (tx, rx) = sync_channel(COMMAND_QUEUE);
            let stats = Arc::new(ShardStats::default());
            let mut shard = Shard::new(
                index,
                socket,
                advertised,
                waker_addr,
                rx,
                cert.clone(),
                stats.clone(),
                link.clone(),
            );
            shard.connect_timeout = std::time::Duration::from_secs(config.connect_timeout_secs);
            shard.starved_below_bps = config.starved_below_kbps * 1000;
            shard.loudest_audio = config.loudest_audio;
            std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || {
                    // Marks the shard dead if its loop ever ends by a panic.
                    let _alive = stats::Alive(shard.stats.clone());
                    shard.run()
                })?;
            shards.push(ShardHandle {
                commands: tx,
                wake_to: SocketAddr::new(wake_ip, local.port()),
                stats,
                media_addr: advertised,
            });
        }
        Ok(Arc::new(Self {
            shards,
            waker,
            placement: Mutex::new(HashMap::new()),
        }))
    }

    /// The advertised media address of each shard.
    pub fn media_addrs(&self) -> Vec<SocketAddr> {
        self.shards.iter().map(|s| s.media_addr).collect()
    }

    /// A shard whose thread has died (a fault outside any one room). The
    /// process cannot serve that shard's rooms any more and should exit.
    pub fn dead_shard(&self) -> Option<usize> {
        self.shards.iter().position(|s| s.stats.is_dead())
    }

    /// Ok when every shard thread is running and turning its loop.
    pub fn health(&self) -> Result<(), String> {
        if let Some(i) = self.dead_shard() {
            return Err(format!("shard {i} stopped after a fault"));
        }
        for (i, s) in self.shards.iter().enumerate() {
            match s.stats.since_heartbeat() {
                None => return Err(format!("shard {i} not started")),
                Some(d) if d > std::time::Duration::from_secs(2) => {
                    return Err(format!("shard {i} stalled for {} ms", d.as_millis()))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub fn shard_stats(&self) -> Vec<Arc<ShardStats>> {
        self.shards.iter().map(|s| s.stats.clone()).collect()
    }

    /// The shard of a room, placing it if it has none yet (`create`).
    fn shard_for(&self, room: RoomId, create: bool) -> Option<usize> {
        let mut placement = self.placement.lock().expect("placement lock poisoned");
        if let Some(i) = placement.get(&room) {
            return Some(*i);
        }
        if !create {
            return None;
        }
        // Least loaded by open rooms (this map, so a burst of opens spreads at
        // once), then by participants; a room never moves once placed.
        let mut open = vec![0usize; self.shards.len()];
        for shard in placement.values() {
            open[*shard] += 1;
        }
        let i = (0..self.shards.len())
            .min_by_key(|i| {
                let peers = self.shards[*i]
                    .stats
                    .peers
                    .load(std::sync::atomic::Ordering::Relaxed);
                (open[*i], peers)
            })
            .expect("at least one shard");
        placement.insert(room, i);
        Some(i)
    }
}

impl MediaPlane for Engine {
    fn submit(&self, cmd: MediaCommand) -> Result<(), MediaError> {
        let shard = match &cmd {
            MediaCommand::OpenRoom { room } => {
                self.shard_for(*room, true);
                return Ok(());
            }
            MediaCommand::CloseRoom { room } => self
                .placement
                .lock()
                .expect("placement lock poisoned")
                .remove(room),
            // A room opens before its first offer; placing here too only guards
            // against a caller that skipped `OpenRoom`.
            MediaCommand::Negotiate { room, .. } => self.shard_for(*room, true),
            MediaCommand::RemoveParticipant { room, .. }
            | MediaCommand::HostMute { room, .. }
            | MediaCommand::UpdateSubscription { room, .. } => self.shard_for(*room, false),
        };
        let Some(shard) = shard else {
            // Nothing of this room lives in the engine: removal is already done.
            if let MediaCommand::RemoveParticipant { reply, .. } = cmd {
                let _ = reply.send(Ok(()));
            }
            return Ok(());
        };
        let handle = &self.shards[shard];
        handle.commands.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => MediaError::Busy,
        })?;
        // Wake the shard from its socket wait; losing this only delays the command.
        let _ = self.waker.send_to(&[0], handle.wake_to);
        Ok(())
    }
}

fn bind_udp(addr: SocketAddr) -> anyhow::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket
        .bind(&addr.into())
        .map_err(|e| anyhow::anyhow!("cannot bind UDP {addr}: {e}"))?;
    Ok(socket.into())
}
