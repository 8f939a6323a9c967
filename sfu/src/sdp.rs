//! A minimal read of an SDP offer: its m-lines' kinds, mids and directions.
//!
//! str0m parses the SDP for real. This pass exists so the engine can check an
//! offer against the client's publish/subscribe lists *before* applying it,
//! because an applied offer cannot be rolled back.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Audio,
    Video,
    Application,
    Other,
}

/// Direction as the offerer (the client) states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferDirection {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl OfferDirection {
    pub fn client_sends(self) -> bool {
        matches!(self, OfferDirection::SendRecv | OfferDirection::SendOnly)
    }
    pub fn client_receives(self) -> bool {
        matches!(self, OfferDirection::SendRecv | OfferDirection::RecvOnly)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    pub kind: LineKind,
    pub mid: Option<String>,
    pub direction: OfferDirection,
    /// Port 0 outside the BUNDLE group: the m-line is rejected or stopped.
    /// Port 0 on a mid in the group is a bundle-only section (RFC 8843), which
    /// Firefox offers for every m-line after the first under `max-bundle`:
    /// it is live, as str0m takes it too.
    pub stopped: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpError(pub String);

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The m-lines of an SDP, in order.
pub fn media_lines(sdp: &str) -> Result<Vec<MediaLine>, SdpError> {
    if !sdp.starts_with("v=0") {
        return Err(SdpError("SDP must start with 'v=0'".into()));
    }
    let mut lines = Vec::new();
    let mut session_direction = OfferDirection::SendRecv;
    // Parsers disagree on which of two direction attributes wins (str0m takes the
    // first), so an offer with two is refused rather than read one way here and
    // another way there.
    let mut explicit: Vec<bool> = Vec::new();
    let mut session_explicit = false;
    let mut bundled: Vec<&str> = Vec::new();
    for raw in sdp.lines() {
        let line = raw.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("m=") {
            let mut parts = rest.split(' ');
            let kind = match parts.next() {
                Some("audio") => LineKind::Audio,
                Some("video") => LineKind::Video,
                Some("application") => LineKind::Application,
                _ => LineKind::Other,
            };
            let stopped = parts.next().is_some_and(|p| p == "0");
            lines.push(MediaLine {
                kind,
                mid: None,
                direction: session_direction,
                stopped,
            });
            explicit.push(false);
            continue;
        }
        let direction = match line {
            "a=sendrecv" => Some(OfferDirection::SendRecv),
            "a=sendonly" => Some(OfferDirection::SendOnly),
            "a=recvonly" => Some(OfferDirection::RecvOnly),
            "a=inactive" => Some(OfferDirection::Inactive),
            _ => None,
        };
        let twice = || SdpError("more than one direction attribute in one section".into());
        match (lines.last_mut(), direction) {
            (None, Some(d)) => {
                if std::mem::replace(&mut session_explicit, true) {
                    return Err(twice());
                }
                session_direction = d
            }
            (Some(m), Some(d)) => {
                let seen = explicit.last_mut().expect("one flag per m-line");
                if std::mem::replace(seen, true) {
                    return Err(twice());
                }
                m.direction = d
            }
            (Some(m), None) => {
                if let Some(mid) = line.strip_prefix("a=mid:") {
                    if mid.is_empty() || mid.len() > 16 {
                        return Err(SdpError("a=mid must be 1-16 characters".into()));
                    }
                    m.mid = Some(mid.to_string());
                }
            }
            (None, None) => {
                if let Some(mids) = line.strip_prefix("a=group:BUNDLE") {
                    bundled.extend(mids.split_whitespace());
                }
            }
        }
    }
    if lines.is_empty() {
        return Err(SdpError("SDP has no m-lines".into()));
    }
    for l in &mut lines {
        if l.stopped && l.mid.as_deref().is_some_and(|m| bundled.contains(&m)) {
            l.stopped = false;
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_directions_in_one_section_are_refused() {
        let sdp =
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendonly\r\na=recvonly\r\n";
        assert!(media_lines(sdp).is_err());
        let ok = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=recvonly\r\n";
        assert_eq!(
            media_lines(ok).unwrap()[0].direction,
            OfferDirection::RecvOnly
        );
    }

    #[test]
    fn reads_kinds_mids_and_directions() {
        // A stopped m-line (port 0) leaves the BUNDLE group, as Chromium writes it.
        let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=inactive\r\n";
        let lines = media_lines(sdp).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            MediaLine {
                kind: LineKind::Audio,
                mid: Some("0".into()),
                direction: OfferDirection::SendOnly,
                stopped: false
            }
        );
        assert_eq!(lines[1].direction, OfferDirection::RecvOnly);
        assert!(lines[2].stopped);
    }

    #[test]
    fn port_zero_in_the_bundle_group_is_bundle_only_not_stopped() {
        // Firefox under max-bundle: every m-line after the first has port 0
        // and a=bundle-only. Port 0 outside the group still means stopped.
        let sdp = "v=0\r\no=mozilla...THIS_IS_SDPARTA-99.0 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=sendonly\r\na=mid:0\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 120\r\na=bundle-only\r\na=sendonly\r\na=mid:1\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 120\r\na=inactive\r\na=mid:2\r\n";
        let lines = media_lines(sdp).unwrap();
        assert!(!lines[0].stopped);
        assert!(!lines[1].stopped);
        assert_eq!(lines[1].direction, OfferDirection::SendOnly);
        assert!(lines[2].stopped);
    }

    #[test]
    fn rejects_garbage() {
        assert!(media_lines("").is_err());
        assert!(media_lines("hello").is_err());
        assert!(media_lines("v=0\r\ns=-\r\n").is_err());
        assert!(media_lines("v=0\r\nm=video 9 X 96\r\na=mid:\r\n").is_err());
    }
}
