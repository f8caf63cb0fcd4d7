//! The HTTP/1.1 server: accept loop, routing, and the four endpoints.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PRAGMA, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{
    DISCOVERY_PATH, INTROSPECTION_PATH, IdpConfig, JWKS_PATH, State, TOKEN_PATH, default_header,
    is_expired, lock, sign_jwt, unix_now,
};

/// Largest form body accepted by `/token` and `/introspect` (413 beyond).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Accepts connections until the provider's tasks are aborted.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Typically EMFILE; back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (conn_state, tls) = (state.clone(), tls.clone());
        state.tasks.spawn(async move {
            match tls {
                None => serve(stream, conn_state).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream, conn_state).await;
                    }
                }
            }
        });
    }
}

async fn serve<IO>(io: IO, state: Arc<State>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(req, state.clone()));
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

type Answer = Response<Full<Bytes>>;

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Answer, Infallible> {
    let path = req.uri().path().to_owned();
    let counter = match path.as_str() {
        DISCOVERY_PATH => Some(&state.discovery_fetches),
        JWKS_PATH => Some(&state.jwks_fetches),
        TOKEN_PATH => Some(&state.token_requests),
        INTROSPECTION_PATH => Some(&state.introspections),
        _ => None,
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::SeqCst);
    }

    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if state.down.load(Ordering::SeqCst) {
        let mut answer = oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the identity provider is down",
        );
        answer
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(answer);
    }

    let method = req.method().clone();
    let answer = match (path.as_str(), method) {
        (DISCOVERY_PATH, Method::GET) => {
            let document = lock(&state.discovery_override)
                .clone()
                .unwrap_or_else(|| state.discovery());
            let mut answer = json_answer(StatusCode::OK, &document);
            answer.headers_mut().insert(
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            answer
        }
        (JWKS_PATH, Method::GET) => {
            let body = lock(&state.jwks_override)
                .clone()
                .unwrap_or_else(|| Bytes::from(state.jwks().to_string()));
            let mut answer = bytes_answer(StatusCode::OK, "application/json", body);
            let max_age = state.jwks_max_age.load(Ordering::SeqCst);
            if let Ok(value) = HeaderValue::try_from(format!("public, max-age={max_age}")) {
                answer.headers_mut().insert(CACHE_CONTROL, value);
            }
            answer
        }
        (TOKEN_PATH, Method::POST) => no_store(token_endpoint(req, &state).await),
        (INTROSPECTION_PATH, Method::POST) => no_store(introspection_endpoint(req, &state).await),
        (DISCOVERY_PATH | JWKS_PATH, _) => method_not_allowed("GET"),
        (TOKEN_PATH | INTROSPECTION_PATH, _) => method_not_allowed("POST"),
        _ => oauth_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    };
    Ok(answer)
}

async fn token_endpoint(req: Request<Incoming>, state: &State) -> Answer {
    let form = match read_form(req).await {
        Ok(form) => form,
        Err(answer) => return answer,
    };
    let Some(sub) = form.get("sub").filter(|s| !s.is_empty()) else {
        return invalid_request("the sub parameter is required");
    };
    let scope = form.get("scope").map_or("", String::as_str);
    let aud = match form.get("aud") {
        Some(aud) => Some(aud.as_str()),
        None => state.config.audience.as_deref(),
    };
    let ttl = match form.get("ttl") {
        None => state.config.default_ttl,
        Some(ttl) => match ttl.parse::<u64>() {
            Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
            _ => return invalid_request("ttl must be a positive number of seconds"),
        },
    };
    let key = {
        let keys = state.keys();
        match form.get("kid") {
            None => keys.current.clone(),
            Some(kid) => match keys.published.iter().find(|k| k.kid() == kid) {
                Some(key) => key.clone(),
                None => return invalid_request("kid names no published key"),
            },
        }
    };
    let mut claims = state.claims(sub, scope, aud, ttl);
    // `roles` and `groups`: space- or comma-separated, as arrays of strings.
    for name in ["roles", "groups"] {
        if let (Some(list), Value::Object(c)) = (form.get(name), &mut claims) {
            let items: Vec<Value> = list
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(Value::from)
                .collect();
            c.insert(name.into(), Value::Array(items));
        }
    }
    let Ok(token) = sign_jwt(&key, &default_header(&key), &claims) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "signing the token failed",
        );
    };
    state.remember(&token, claims, true);
    let mut body = Map::new();
    body.insert("access_token".into(), Value::from(token));
    body.insert("token_type".into(), Value::from("Bearer"));
    body.insert("expires_in".into(), Value::from(ttl.as_secs()));
    if !scope.is_empty() {
        body.insert("scope".into(), Value::from(scope));
    }
    json_answer(StatusCode::OK, &Value::Object(body))
}

async fn introspection_endpoint(req: Request<Incoming>, state: &State) -> Answer {
    if !client_authenticated(&req, &state.config) {
        let mut answer = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "HTTP Basic client authentication required",
        );
        answer.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mock-idp\""),
        );
        return answer;
    }
    let form = match read_form(req).await {
        Ok(form) => form,
        Err(answer) => return answer,
    };
    let Some(token) = form.get("token") else {
        return invalid_request("the token parameter is required");
    };
    let now = unix_now();
    let body = match state.tokens().get(token) {
        Some(entry) if entry.active && !is_expired(&entry.claims, now) => {
            let mut body = Map::new();
            body.insert("active".into(), Value::Bool(true));
            if let Value::Object(claims) = &entry.claims {
                for (name, value) in claims {
                    if name != "active" {
                        body.insert(name.clone(), value.clone());
                    }
                }
            }
            body.entry("token_type")
                .or_insert_with(|| Value::from("Bearer"));
            Value::Object(body)
        }
        _ => json!({ "active": false }),
    };
    json_answer(StatusCode::OK, &body)
}

/// Whether `req` carries `Authorization: Basic base64(client_id:client_secret)`.
fn client_authenticated(req: &Request<Incoming>, config: &IdpConfig) -> bool {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return false;
    };
    let Some(encoded) = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, credentials)| credentials.trim())
    else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(encoded) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    decoded.split_once(':') == Some((config.client_id.as_str(), config.client_secret.as_str()))
}

/// Reads an `application/x-www-form-urlencoded` body of at most [`MAX_FORM_BYTES`] into a
/// map; an error is the answer to send.
async fn read_form(req: Request<Incoming>) -> Result<HashMap<String, String>, Answer> {
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Err(oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the form is too large",
            ));
        }
    };
    let mut form = HashMap::new();
    for (name, value) in form_urlencoded::parse(&body) {
        if form
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(invalid_request(&format!(
                "the {name} parameter is repeated"
            )));
        }
    }
    Ok(form)
}

fn bytes_answer(status: StatusCode, content_type: &'static str, body: Bytes) -> Answer {
    let mut answer = Response::new(Full::new(body));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    answer
}

fn json_answer(status: StatusCode, body: &Value) -> Answer {
    bytes_answer(status, "application/json", Bytes::from(body.to_string()))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Answer {
    json_answer(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

fn invalid_request(description: &str) -> Answer {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn method_not_allowed(allow: &'static str) -> Answer {
    let mut answer = oauth_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "method not allowed",
    );
    answer
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    answer
}

/// Token and introspection answers must not be cached (RFC 6749 §5.1, RFC 7662 §4).
fn no_store(mut answer: Answer) -> Answer {
    let headers = answer.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    answer
}
