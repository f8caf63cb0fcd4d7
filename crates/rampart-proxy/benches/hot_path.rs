//! Micro-benchmarks of the per-request work that runs before any defense: path
//! normalization, route lookup, the raw framing reader, header checks and client-IP
//! resolution. Run: `cargo bench -p rampart-proxy --bench hot_path`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use rampart_config::ForwardedHeader;
use rampart_proxy::forwarded::ClientIpPolicy;
use rampart_proxy::framing::{Framer, Verdicts};
use rampart_proxy::hygiene::{HeaderLimits, check_limits};
use rampart_proxy::normalize::normalize;
use rampart_proxy::router::{HostMatch, Matcher, PathMatch, Router};

fn router(n: usize) -> Router<usize> {
    let mut routes = Vec::new();
    for i in 0..n {
        let path = match i % 3 {
            0 => PathMatch::Exact(format!("/api/v1/resource{i}")),
            1 => {
                PathMatch::parse_path(&format!("/api/v1/things{i}/{{id}}/items/{{item}}")).unwrap()
            }
            _ => PathMatch::prefix(&format!("/static{i}")),
        };
        routes.push((
            Matcher {
                host: HostMatch::Any,
                path,
                methods: vec![Method::GET, Method::POST],
            },
            i,
        ));
    }
    Router::new(routes)
}

fn benches(c: &mut Criterion) {
    c.bench_function("normalize/clean", |b| {
        b.iter(|| normalize(black_box("/api/v1/users/42/orders")))
    });
    c.bench_function("normalize/dirty", |b| {
        b.iter(|| normalize(black_box("/api/v1/../v1/%75sers//42/./orders")))
    });

    for n in [10, 100] {
        let r = router(n);
        let last_template = format!("/api/v1/things{}/42/items/7", (n - 1) / 3 * 3 + 1);
        c.bench_function(&format!("router/{n}_routes/template"), |b| {
            b.iter(|| {
                matches!(
                    r.lookup("api.example.com", black_box(&last_template), &Method::GET),
                    rampart_proxy::router::Lookup::Found(..)
                )
            })
        });
    }

    let request = b"GET /api/v1/users/42 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789\r\nX-Request-Id: 1234\r\n\r\n";
    c.bench_function("framing/head", |b| {
        let verdicts = Arc::new(Verdicts::default());
        let mut framer = Framer::new(32 * 1024, 100, verdicts.clone());
        b.iter(|| {
            framer.feed(black_box(request));
            verdicts.next()
        })
    });

    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("x-forwarded-for", "198.51.100.7, 10.0.0.2"),
    ] {
        headers.insert(k, HeaderValue::from_static(v));
    }
    let limits = HeaderLimits {
        max_count: 100,
        max_bytes: 32 * 1024,
    };
    c.bench_function("hygiene/check_limits", |b| {
        b.iter(|| check_limits(40, black_box(&headers), limits))
    });
    let policy = ClientIpPolicy {
        trusted: vec!["10.0.0.0/8".parse().unwrap()],
        header: ForwardedHeader::XForwardedFor,
    };
    let peer = "10.0.0.1".parse().unwrap();
    c.bench_function("client_ip/xff_two_hops", |b| {
        b.iter(|| policy.client_ip(black_box(peer), black_box(&headers)))
    });
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
