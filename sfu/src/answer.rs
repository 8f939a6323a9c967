//! The finishing touches on str0m's SDP answer before it goes to the client.
//!
//! RED goes first on an audio m-line whose offer put it first
//! ([`red_first_where_offered`]).
//!
//! str0m puts the server's ICE candidate in the first bundled m-section only.
//! BUNDLE allows that, but stacks that key candidates per transport (aiortc,
//! for one) lose it when two m-sections share a transport. Repeating the
//! candidate lines and `a=end-of-candidates` in every m-section that is not
//! rejected costs nothing and browsers accept it. The server gathers no
//! candidates after the answer, so `a=ice-options:trickle` is dropped.

/// The answer with RED first on each audio m-line whose offer put RED first.
///
/// str0m folds RED (RFC 2198) onto Opus and always lists Opus first in its
/// answer, and a browser sends the answer's first codec: a client that asks to
/// send RED (the web client does, for audio that survives loss) would send
/// plain Opus. m-lines pair with the offer's by position (RFC 8829).
pub fn red_first_where_offered(offer: &str, answer: &str) -> String {
    let red_first: Vec<bool> = sections(offer)
        .iter()
        .filter(|s| s[0].starts_with("m="))
        .map(|s| {
            let first = s.first().and_then(|m| m.split(' ').nth(3));
            s[0].starts_with("m=audio ") && first.is_some_and(|pt| red_pts(s).any(|r| r == pt))
        })
        .collect();
    let eol = if answer.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut out = String::with_capacity(answer.len());
    let mut index = 0;
    for section in sections(answer) {
        let is_media = section[0].starts_with("m=");
        let wants = is_media && red_first.get(index).copied().unwrap_or(false);
        index += usize::from(is_media);
        let red = if wants {
            red_pts(&section).next()
        } else {
            None
        };
        for (i, l) in section.iter().enumerate() {
            match red {
                Some(red) if i == 0 => {
                    // m=audio <port> <proto> <fmt>...: RED's payload type first.
                    let mut parts: Vec<&str> = l.split(' ').collect();
                    if let Some(at) = parts.iter().skip(3).position(|p| *p == red) {
                        let pt = parts.remove(3 + at);
                        parts.insert(3, pt);
                    }
                    out.push_str(&parts.join(" "));
                }
                _ => out.push_str(l),
            }
            out.push_str(eol);
        }
    }
    out
}

/// The session part, then each m-section, as lines.
fn sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = vec![Vec::new()];
    for l in sdp.lines() {
        if l.starts_with("m=") {
            out.push(Vec::new());
        }
        out.last_mut().expect("one at least").push(l);
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The payload types a section maps to `red/48000/2`.
fn red_pts<'a>(section: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    section.iter().filter_map(|l| {
        let (pt, codec) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
        codec.eq_ignore_ascii_case("red/48000/2").then_some(pt)
    })
}

/// The answer with every candidate line, and `a=end-of-candidates`, in each
/// m-section that is not rejected (port 0).
pub fn candidates_in_every_section(answer: &str) -> String {
    let eol = if answer.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let lines: Vec<&str> = answer
        .lines()
        .filter(|l| *l != "a=ice-options:trickle")
        .collect();
    let candidates: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("a=candidate:"))
        .fold(Vec::new(), |mut seen, c| {
            if !seen.contains(&c) {
                seen.push(c);
            }
            seen
        });
    if candidates.is_empty() {
        return lines.iter().map(|l| format!("{l}{eol}")).collect();
    }
    let mut out = String::with_capacity(answer.len() + 256);
    let mut section: Vec<&str> = Vec::new();
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        let is_media = section.first().is_some_and(|l| l.starts_with("m="));
        let rejected = section
            .first()
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"));
        for l in section.iter() {
            if is_media && (l.starts_with("a=candidate:") || *l == "a=end-of-candidates") {
                continue; // written once, at the end of the section
            }
            out.push_str(l);
            out.push_str(eol);
        }
        if is_media && !rejected {
            for c in &candidates {
                out.push_str(c);
                out.push_str(eol);
            }
            out.push_str("a=end-of-candidates");
            out.push_str(eol);
        }
        section.clear();
    };
    for l in lines {
        if l.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        section.push(l);
    }
    flush(&mut section, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str =
        "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
a=ice-options:trickle\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:u\r\n\
a=candidate:1 1 udp 2130706175 127.0.0.1 10000 typ host\r\na=end-of-candidates\r\na=recvonly\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=inactive\r\n";

    #[test]
    fn every_section_but_a_rejected_one_carries_the_candidate_once() {
        let out = candidates_in_every_section(ANSWER);
        let sections: Vec<&str> = out.split("m=").skip(1).collect();
        assert_eq!(sections.len(), 3);
        for (i, s) in sections.iter().enumerate() {
            let candidates = s.matches("a=candidate:").count();
            let ends = s.matches("a=end-of-candidates").count();
            if i == 2 {
                assert_eq!((candidates, ends), (0, 0), "rejected section: {s}");
            } else {
                assert_eq!((candidates, ends), (1, 1), "section {i}: {s}");
            }
        }
        assert!(!out.contains("ice-options:trickle"));
        assert!(out.ends_with("a=inactive\r\n"));
        assert!(out.lines().all(|l| !l.is_empty()));
        assert_eq!(out.matches("\r\n").count(), out.lines().count());
    }

    #[test]
    fn red_goes_first_in_the_answer_only_where_the_offer_put_it_first() {
        let offer = "v=0\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 63 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:63 red/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n";
        let answer = "v=0\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:63 red/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n";
        let out = red_first_where_offered(offer, answer);
        let m: Vec<&str> = out.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m,
            [
                "m=audio 9 UDP/TLS/RTP/SAVPF 63 111",
                "m=audio 9 UDP/TLS/RTP/SAVPF 111 63",
                "m=video 9 UDP/TLS/RTP/SAVPF 96"
            ]
        );
        assert_eq!(out.replacen("63 111", "111 63", 1), answer);
        // No RED in the answer (str0m dropped it): nothing moves.
        let plain = answer.replace("a=rtpmap:63 red/48000/2\r\n", "");
        assert_eq!(red_first_where_offered(offer, &plain), plain);
    }

    #[test]
    fn an_answer_without_candidates_is_left_as_it_is_but_for_trickle() {
        let sdp = "v=0\r\na=ice-options:trickle\r\nm=audio 9 X 111\r\na=mid:0\r\n";
        assert_eq!(
            candidates_in_every_section(sdp),
            "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\n"
        );
    }
}
