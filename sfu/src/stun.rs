//! Just enough STUN to route a binding request to its peer: the USERNAME
//! attribute's first half is our (the server's) ICE ufrag.
//!
//! This runs on untrusted datagrams before str0m sees them, so it checks every
//! length and never panics (see the fuzz target).

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
const HEADER_LEN: usize = 20;

/// Is this datagram STUN (RFC 7983 demultiplexing: first byte 0..=3 and the magic cookie)?
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] < 4 && buf[4..8] == MAGIC_COOKIE
}

/// The server's ufrag from a binding request's `USERNAME` ("server:client").
pub fn server_ufrag(buf: &[u8]) -> Option<&str> {
    if !is_stun(buf) {
        return None;
    }
    let declared = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let end = HEADER_LEN.checked_add(declared)?.min(buf.len());
    let mut at = HEADER_LEN;
    while at + 4 <= end {
        let kind = u16::from_be_bytes([buf[at], buf[at + 1]]);
        let len = usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]]));
        let value = buf.get(at + 4..at + 4 + len)?;
        if kind == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&0x0024u16.to_be_bytes()); // PRIORITY first
        attrs.extend_from_slice(&4u16.to_be_bytes());
        attrs.extend_from_slice(&[0, 0, 0, 1]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut p = vec![0x00, 0x01];
        p.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        p.extend_from_slice(&MAGIC_COOKIE);
        p.extend_from_slice(&[7; 12]);
        p.extend_from_slice(&attrs);
        p
    }

    #[test]
    fn finds_the_server_ufrag() {
        assert_eq!(server_ufrag(&binding(b"srvA:cli")), Some("srvA"));
        assert_eq!(server_ufrag(&binding(b"abc")), Some("abc"));
    }

    #[test]
    fn rejects_non_stun_and_truncated() {
        assert_eq!(server_ufrag(&[0x80, 0x60, 0, 1]), None);
        let p = binding(b"srvA:cli");
        for cut in 0..p.len() - 1 {
            // Truncated packets never panic; they may or may not still parse.
            let _ = server_ufrag(&p[..cut]);
        }
        assert_eq!(server_ufrag(&p[..24]), None);
    }
}
