//! Per-shard packet counters, owned by the shard thread and published to
//! readers as a snapshot copy at most every 20 ms (`ShardStats::snapshot`).

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
    /// The host muted this track: the engine forwards none of it, whatever the client sends.
    Muted,
    /// The subscriber waits for a keyframe (it joined, or lost packets it cannot
    /// repair): frames it could not decode are not sent.
    AwaitingKeyframe,
    /// The subscriber's ICE/DTLS is not up yet: a copy queued now would reach it
    /// late, in a burst, when it connects.
    NotConnected,
}

impl DropReason {
    pub const ALL: [DropReason; 10] = [
        DropReason::UnknownSource,
        DropReason::Malformed,
        DropReason::NotPublished,
        DropReason::CodecUnsupported,
        DropReason::Stale,
        DropReason::NotNegotiated,
        DropReason::SocketFull,
        DropReason::Muted,
        DropReason::AwaitingKeyframe,
        DropReason::NotConnected,
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
            DropReason::Muted => "muted",
            DropReason::AwaitingKeyframe => "awaiting_keyframe",
            DropReason::NotConnected => "not_connected",
        }
    }
}

/// What a packet carries, for traffic counters. A closed set: a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Video,
    Rtcp,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Audio, Kind::Video, Kind::Rtcp];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
            Kind::Rtcp => "rtcp",
        }
    }
}

/// Why a peer connection was given up. A closed set: a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFailure {
    /// ICE or DTLS did not complete within the connect timeout.
    ConnectTimeout,
    /// ICE lost the peer after it had connected.
    IceDisconnected,
    /// str0m reported an error on the connection.
    RtcError,
}

impl PeerFailure {
    pub const ALL: [PeerFailure; 3] = [
        PeerFailure::ConnectTimeout,
        PeerFailure::IceDisconnected,
        PeerFailure::RtcError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PeerFailure::ConnectTimeout => "connect_timeout",
            PeerFailure::IceDisconnected => "ice_disconnected",
            PeerFailure::RtcError => "rtc_error",
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

/// Keyframe request kinds, in the order of the counter arrays.
pub const KEYFRAME_KINDS: [&str; 2] = ["pli", "fir"];

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub received_datagrams: u64,
    pub received_rtp: u64,
    pub forwarded: u64,
    pub sent_packets: u64,
    pub drops: [u64; DropReason::ALL.len()],
    /// By `Kind`: RTP payload bytes for audio and video, datagram bytes for RTCP.
    pub inbound: [Traffic; 3],
    pub outbound: [Traffic; 3],
    /// RTX packets sent to subscribers.
    pub retransmissions: u64,
    /// From subscribers (on our send streams) and to publishers (on theirs).
    pub nacks_received: u64,
    pub nacks_sent: u64,
    /// By `KEYFRAME_KINDS`.
    pub keyframe_requests_received: [u64; 2],
    pub keyframe_requests_sent: [u64; 2],
    pub peer_failures: [u64; PeerFailure::ALL.len()],
    /// Peer connections that ended because the client closed them (a leave),
    /// not counted as failures.
    pub peer_closes: u64,
    /// Rooms dropped because handling them panicked.
    pub room_faults: u64,
    /// Subscriptions whose receiver reports show no progress while we send
    /// (a gauge: how many are stalled now).
    pub stalled_subscriptions: u64,
    /// Times a subscription entered the stalled state.
    pub stalls: u64,
    /// Layer switches done on a keyframe: [down, up].
    pub layer_switches: [u64; 2],
    /// Video payload bytes forwarded, by layer (low, mid, high; a track sent
    /// without simulcast counts as high).
    pub forwarded_video_bytes: [u64; 3],
    /// Video subscriptions paused now (by the client, the host or a starved
    /// link): a gauge, recounted with the stalled one.
    pub paused_subscriptions: u64,
    /// Audio packets not forwarded: not among the loudest microphones, or
    /// marked silent (level -127 dBov).
    pub audio_suppressed: u64,
    /// Participants by connection quality now (excellent, good, poor, lost):
    /// gauges, recounted with the stalled one.
    pub connection_quality: [u64; 4],
}

impl Counters {
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn inbound(&mut self, kind: Kind, bytes: usize) {
        let t = &mut self.inbound[kind as usize];
        t.packets += 1;
        t.bytes += bytes as u64;
    }

    pub fn outbound(&mut self, kind: Kind, bytes: usize) {
        let t = &mut self.outbound[kind as usize];
        t.packets += 1;
        t.bytes += bytes as u64;
    }

    pub fn fail(&mut self, reason: PeerFailure) {
        self.peer_failures[reason as usize] += 1;
    }
}

/// An RTCP packet, told apart from RTP by its packet type (RFC 5761 §4).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && datagram[0] >> 6 == 2 && (192..=223).contains(&datagram[1])
}

/// The SSRC of an RTP packet (RTCP and non-RTP give None).
pub fn rtp_ssrc(datagram: &[u8]) -> Option<u32> {
    if datagram.len() < 12 || datagram[0] >> 6 != 2 || is_rtcp(datagram) {
        return None;
    }
    Some(u32::from_be_bytes([
        datagram[8],
        datagram[9],
        datagram[10],
        datagram[11],
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_rtcp_from_rtp() {
        let sr = [0x80, 200, 0, 6, 1, 2, 3, 4];
        let rtp = [0x80, 96, 0, 1, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
        let rtp_marker = [0x80, 96 | 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
        assert!(is_rtcp(&sr));
        assert!(!is_rtcp(&rtp));
        assert_eq!(rtp_ssrc(&rtp), Some(0xdeadbeef));
        assert_eq!(rtp_ssrc(&rtp_marker), Some(7));
        assert_eq!(rtp_ssrc(&sr), None);
        assert!(
            !is_rtcp(&[0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0]),
            "DTLS is not RTCP"
        );
    }
}
