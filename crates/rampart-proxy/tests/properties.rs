//! Property tests of the parsers that see hostile input before any defense does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use proptest::prelude::*;
use rampart_proxy::framing::{Framer, Verdicts};
use rampart_proxy::normalize::normalize;

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e%2E".to_string()),
        Just("%2e".to_string()),
        Just(String::new()),
        "[a-zA-Z0-9_~-]{1,6}",
        "%[0-9a-fA-F]{2}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..8).prop_map(|s| format!("/{}", s.join("/")))
}

proptest! {
    #[test]
    fn normalized_paths_have_no_dot_segments_and_are_stable(p in path()) {
        if let Ok(n) = normalize(&p) {
            prop_assert!(n.starts_with('/'));
            for seg in n.split('/') {
                prop_assert!(seg != "." && seg != "..", "{p} -> {n}");
                prop_assert!(!seg.eq_ignore_ascii_case("%2e") && !seg.eq_ignore_ascii_case("%2e%2e"), "{p} -> {n}");
            }
            prop_assert!(!n.contains("//"), "{p} -> {n}");
            let again = normalize(&n).unwrap();
            prop_assert_eq!(again.as_ref(), n.as_ref());
        }
    }

    #[test]
    fn normalize_never_panics(p in "/[ -~]{0,64}") {
        let _ = normalize(&p);
    }

    /// However the bytes of a pipelined stream are split across reads, the framer gives
    /// each request the same verdict.
    #[test]
    fn framing_verdicts_do_not_depend_on_read_boundaries(
        cuts in prop::collection::vec(1usize..40, 1..30),
        bodies in prop::collection::vec(0usize..300, 1..5),
        chunked in prop::collection::vec(any::<bool>(), 5),
    ) {
        let mut stream = Vec::new();
        for (i, len) in bodies.iter().enumerate() {
            let body = vec![b'x'; *len];
            if chunked[i] {
                stream.extend_from_slice(b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
                for part in body.chunks(7) {
                    stream.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    stream.extend_from_slice(part);
                    stream.extend_from_slice(b"\r\n");
                }
                stream.extend_from_slice(b"0\r\n\r\n");
            } else {
                stream.extend_from_slice(format!("POST /l HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n").as_bytes());
                stream.extend_from_slice(&body);
            }
        }
        // A final smuggling attempt must be caught whatever came before.
        stream.extend_from_slice(b"POST /x HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n");

        let verdicts = Arc::new(Verdicts::default());
        let mut framer = Framer::new(8192, 100, verdicts.clone());
        let mut rest = stream.as_slice();
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            framer.feed(&rest[..n]);
            rest = &rest[n..];
            i += 1;
        }
        let got: Vec<_> = std::iter::from_fn(|| verdicts.next()).collect();
        prop_assert_eq!(got.len(), bodies.len() + 1);
        prop_assert!(got[..bodies.len()].iter().all(Result::is_ok));
        prop_assert_eq!(got[bodies.len()], Err("content_length_and_transfer_encoding"));
    }

    #[test]
    fn framer_never_panics_on_garbage(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..20)) {
        let mut framer = Framer::new(1024, 16, Arc::new(Verdicts::default()));
        for c in &chunks {
            framer.feed(c);
        }
    }
}
