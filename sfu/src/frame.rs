//! What an RTP payload says about its video frame: whether it starts a
//! keyframe. Read from the payload descriptor only (RFC 7741 for VP8, RFC 6184
//! for H.264), never decoded; called once per incoming video packet.

use str0m::format::Codec;

/// Does this packet carry the start of a keyframe (an intra frame a decoder
/// can start from)?
pub fn starts_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => vp8_starts_keyframe(payload),
        Codec::H264 => h264_has_keyframe(payload),
        _ => false,
    }
}

/// RFC 7741 §4.2–4.3: the descriptor (with its optional extensions), then on
/// the first packet of a partition 0 the payload header, whose low bit P is 0
/// for a key frame.
fn vp8_starts_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let extended = first & 0x80 != 0;
    let start = first & 0x10 != 0;
    let partition = first & 0x07;
    if !start || partition != 0 {
        return false;
    }
    let mut i = 1;
    if extended {
        let Some(&x) = p.get(i) else {
            return false;
        };
        i += 1;
        if x & 0x80 != 0 {
            // Picture id: 7 or 15 bits (M flag).
            let Some(&pid) = p.get(i) else {
                return false;
            };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID / KEYIDX
        }
    }
    p.get(i).is_some_and(|h| h & 0x01 == 0)
}

/// RFC 6184: an IDR slice or a sequence parameter set, alone, aggregated
/// (STAP-A) or as the first fragment of a fragmented unit (FU-A).
fn h264_has_keyframe(p: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    let Some(&first) = p.first() else {
        return false;
    };
    match first & 0x1f {
        IDR | SPS => true,
        STAP_A => {
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                let nal = p[i + 2] & 0x1f;
                if nal == IDR || nal == SPS {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        FU_A => p
            .get(1)
            .is_some_and(|h| h & 0x80 != 0 && matches!(h & 0x1f, IDR | SPS)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_table() {
        let cases: &[(&str, &[u8], bool)] = &[
            ("plain key frame start", &[0x10, 0x00], true),
            ("plain inter frame start", &[0x10, 0x01], false),
            ("continuation of a key frame", &[0x00, 0x00], false),
            ("start of partition 1", &[0x11, 0x00], false),
            (
                "extended, 15-bit picture id, key",
                &[0x90, 0x80, 0x81, 0x23, 0x00],
                true,
            ),
            (
                "extended, 7-bit picture id, inter",
                &[0x90, 0x80, 0x05, 0x01],
                false,
            ),
            (
                "extended, pid + tl0 + tid, key",
                &[0x90, 0xe0, 0x81, 0x23, 0x07, 0x40, 0x00],
                true,
            ),
            ("truncated descriptor", &[0x90, 0x80], false),
            ("empty", &[], false),
        ];
        for (name, payload, key) in cases {
            assert_eq!(starts_keyframe(Codec::Vp8, payload), *key, "{name}");
        }
    }

    #[test]
    fn h264_table() {
        let cases: &[(&str, &[u8], bool)] = &[
            ("IDR slice", &[0x65, 0x88], true),
            ("SPS", &[0x67, 0x42], true),
            ("non-IDR slice", &[0x41, 0x9a], false),
            (
                "STAP-A with SPS",
                &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce],
                true,
            ),
            ("STAP-A without", &[0x78, 0x00, 0x02, 0x06, 0x05], false),
            ("FU-A start of IDR", &[0x7c, 0x85, 0x00], true),
            ("FU-A middle of IDR", &[0x7c, 0x05, 0x00], false),
            ("FU-A start of non-IDR", &[0x7c, 0x81, 0x00], false),
            ("truncated STAP-A", &[0x78, 0x00], false),
        ];
        for (name, payload, key) in cases {
            assert_eq!(starts_keyframe(Codec::H264, payload), *key, "{name}");
        }
    }

    #[test]
    fn audio_is_never_a_keyframe() {
        assert!(!starts_keyframe(Codec::Opus, &[0x10, 0x00]));
    }
}
