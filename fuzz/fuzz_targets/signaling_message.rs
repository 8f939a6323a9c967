//! Everything the signaling server parses from a websocket text frame: the
//! message itself, room and display names, and the access token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::auth::Auth;
use signaling::protocol::{validate_name_max, validate_room, ClientMessage};
use std::sync::OnceLock;

fn auth() -> &'static Auth {
    static AUTH: OnceLock<Auth> = OnceLock::new();
    AUTH.get_or_init(|| Auth::new(vec![7u8; 32], false).expect("32-byte key"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ClientMessage::Join { room, name, token, .. }) = ClientMessage::parse(text) {
        let _ = validate_room(&room);
        let _ = validate_name_max(&name, 64);
        let _ = auth().admit(&room, token.as_deref());
    }
    // The token parser on its own, with arbitrary input.
    let _ = auth().admit("room", Some(text));
});
