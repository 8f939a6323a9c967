//! Per-shard packet counters, owned by the shard thread and published to
//! readers by copying into atomics once per loop turn batch.

/// Why a packet was not forwarded. A closed set: it becomes a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A datagram no peer claims (unknown ufrag or address), or garbage.
    UnknownSource,
    /// str0m refused the datagram.
    Malformed,
    /// RTP on an SSRC that maps to no published track (e.g. a subscribe-only peer sending).
    NotPublished,
    /// The subscriber's leg has no codec matching the publisher's.
    CodecUnsupported,
    /// The munger refused it: too late, or from before a source switch.
    Stale,
    /// The subscriber's m-line is not negotiated for sending (yet).
    NotNegotiated,
    /// The kernel socket buffer was full.
    SocketFull,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::UnknownSource,
        DropReason::Malformed,
        DropReason::NotPublished,
        DropReason::CodecUnsupported,
        DropReason::Stale,
        DropReason::NotNegotiated,
        DropReason::SocketFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownSource => "unknown_source",
            DropReason::Malformed => "malformed",
            DropReason::NotPublished => "not_published",
            DropReason::CodecUnsupported => "codec_unsupported",
            DropReason::Stale => "stale",
            DropReason::NotNegotiated => "not_negotiated",
            DropReason::SocketFull => "socket_full",
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub received_datagrams: u64,
    pub received_rtp: u64,
    pub forwarded: u64,
    pub sent_packets: u64,
    pub drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }
}
