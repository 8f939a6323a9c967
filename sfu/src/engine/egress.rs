//! Where a room's outgoing datagrams go. The shard passes its UDP socket; a
//! benchmark passes a sink, so the forwarding code runs without sockets.

use std::net::{SocketAddr, UdpSocket};

pub trait Egress {
    fn send(&self, contents: &[u8], to: SocketAddr) -> std::io::Result<()>;
}

impl Egress for UdpSocket {
    fn send(&self, contents: &[u8], to: SocketAddr) -> std::io::Result<()> {
        self.send_to(contents, to).map(|_| ())
    }
}
