//! The finishing touch on str0m's SDP answer before it goes to the client.
//!
//! str0m puts the server's ICE candidate in the first bundled m-section only.
//! BUNDLE allows that, but stacks that key candidates per transport (aiortc,
//! for one) lose it when two m-sections share a transport. Repeating the
//! candidate lines and `a=end-of-candidates` in every m-section that is not
//! rejected costs nothing and browsers accept it. The server gathers no
//! candidates after the answer, so `a=ice-options:trickle` is dropped.

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
    fn an_answer_without_candidates_is_left_as_it_is_but_for_trickle() {
        let sdp = "v=0\r\na=ice-options:trickle\r\nm=audio 9 X 111\r\na=mid:0\r\n";
        assert_eq!(
            candidates_in_every_section(sdp),
            "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\n"
        );
    }
}
