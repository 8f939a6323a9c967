//! The server's own SDP scan (m-lines, mids, directions), which checks an
//! offer against the publish/subscribe lists before str0m parses it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sdp) = std::str::from_utf8(data) {
        if let Ok(lines) = sfu::sdp::media_lines(sdp) {
            for l in lines {
                let _ = (l.direction.client_sends(), l.direction.client_receives());
            }
        }
    }
});
