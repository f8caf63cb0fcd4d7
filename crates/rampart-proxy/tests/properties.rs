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

/// What an ownership check may see in place of a user id: the owner's id and other ids
/// under many spellings, dot segments, encoded separators, escapes of every kind.
fn id_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("alice".to_string()),
        Just("bob".to_string()),
        Just("%61lice".to_string()),
        Just("al%69ce".to_string()),
        Just("ALICE".to_string()),
        Just("%2561lice".to_string()),
        Just("alice%2F..%2Fbob".to_string()),
        Just("alice;x=1".to_string()),
        Just("alice%20".to_string()),
        Just("%C1%A1lice".to_string()),
        Just("al%C4%B1ce".to_string()),
        "[a-zA-Z%.;+]{0,3}(alice|bob)?[a-zA-Z%.;+]{0,3}",
        "(%[0-9a-fA-F]{2}){1,6}",
        segment(),
    ]
}

proptest! {
    /// Through the real normalizer, router and ownership rule: whenever alice is let
    /// through `/users/{user_id}/orders`, the path the upstream receives names alice's
    /// orders and nobody else's, once its segments are decoded as a framework would.
    #[test]
    fn an_allowed_owner_request_reaches_only_the_owners_resource(
        before in prop::collection::vec(segment(), 0..3),
        id in id_segment(),
        extra in prop::collection::vec(segment(), 0..3),
        trailing in any::<bool>(),
    ) {
        use rampart_authz::owner::{Source, percent_decode};
        use rampart_authz::{Authorize, Case, OwnerRule, Requirements};
        use rampart_core::{ClientInfo, Identity, ManualClock, RequestContext, RouteInfo, Verdict};
        use rampart_proxy::router::{HostMatch, Lookup, Matcher, PathMatch, Router};

        let router = Router::new(vec![(
            Matcher {
                host: HostMatch::parse(None),
                path: PathMatch::parse_path("/users/{user_id}/orders").unwrap(),
                methods: vec![],
            },
            (),
        )]);
        let authz = Authorize::new(
            Requirements::default(),
            vec![OwnerRule { source: Source::Path("user_id".into()), claim: "sub".into(), case: Case::Sensitive }],
            vec![],
            None,
            Arc::new(ManualClock::new()),
        );
        let mut raw = String::new();
        for s in &before {
            raw.push('/');
            raw.push_str(s);
        }
        raw.push_str("/users/");
        raw.push_str(&id);
        for s in &extra {
            raw.push('/');
            raw.push_str(s);
        }
        raw.push_str("/orders");
        if trailing {
            raw.push('/');
        }
        let Ok(normalized) = normalize(&raw) else { return Ok(()) };
        let Lookup::Found(_, params) = router.lookup("h", &normalized, &http::Method::GET) else {
            return Ok(());
        };
        let mut ctx = RequestContext::new(
            "t".into(),
            ClientInfo { ip: [127, 0, 0, 1].into(), peer: "127.0.0.1:1".parse().unwrap(), tls: None },
        );
        ctx.route = Some(RouteInfo { name: "r".into(), template: "/users/{user_id}/orders".into(), params });
        ctx.identity = Some(Identity { subject: "alice".into(), ..Identity::default() });
        let (head, ()) = http::Request::get(normalized.as_ref()).body(()).unwrap().into_parts();
        if matches!(authz.decide(&mut ctx, &head), Verdict::Continue) {
            let decoded: Vec<String> = normalized
                .trim_end_matches('/')
                .split('/')
                .map(|s| percent_decode(s, false).map(|d| d.into_owned()).unwrap_or_default())
                .collect();
            prop_assert_eq!(decoded, vec!["", "users", "alice", "orders"], "{} -> {}", raw, normalized);
        }
    }
}
