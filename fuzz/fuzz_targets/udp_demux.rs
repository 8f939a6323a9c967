//! Everything the shard reads from a UDP datagram itself before str0m sees
//! it: the STUN check and ICE ufrag, and the RTP/RTCP classification.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sfu::engine::counters::{is_rtcp, rtp_ssrc};
use sfu::stun::{is_stun, server_ufrag};

fuzz_target!(|data: &[u8]| {
    if is_stun(data) {
        let _ = server_ufrag(data);
    }
    let _ = is_rtcp(data);
    let _ = rtp_ssrc(data);
});
