//! REST (JSON over HTTP) and the web console, on the same port as gRPC. A request whose content
//! type is not gRPC's comes here. Each REST route is one RPC of the public API: it builds the
//! caller exactly as gRPC does (`grpc::caller_of`), is admitted by the same `admit`, calls the
//! same handler, and answers its error with the same words (`status`) under the HTTP status of
//! its gRPC code. The OpenAPI document is made from the route table and the proto descriptors.
//! Websockets carry what gRPC streams: events, the serial console, and a VNC display.

pub mod json;
mod openapi;
pub mod routes;
mod ws;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, MethodFilter, MethodRouter};
use corral_raft::ClusterError;
use serde_json::{Map, Value};
use tonic::Code;

use super::grpc::{admit, caller_of};
use super::listen::ConnInfo;
use super::{status, Caller, Handles};
use routes::Route;

/// The largest request body: an OVF document (at most 1 MiB) with room to spare. JSON grows
/// several times when parsed, so this stays well below gRPC's message limit.
const MAX_BODY: usize = 4 << 20;

/// The OpenAPI document, made once.
static OPENAPI: LazyLock<Vec<u8>> = LazyLock::new(|| openapi::document(&routes::all()));

/// The REST API, its document, the websockets and the web console's files.
pub fn router(node: Arc<Handles>) -> axum::Router {
    let mut paths: BTreeMap<&'static str, MethodRouter> = BTreeMap::new();
    for route in routes::all() {
        let path = route.path;
        let filter = MethodFilter::try_from(route.method.clone()).expect("the table's methods are HTTP's");
        let route = Arc::new(route);
        let node = node.clone();
        let handler = move |req: Request| {
            let (node, route) = (node.clone(), route.clone());
            async move { dispatch(node, &route, req).await }
        };
        let methods = paths.remove(path).unwrap_or_default();
        paths.insert(path, methods.on(filter, handler));
    }
    let mut router = axum::Router::new();
    for (path, methods) in paths {
        router = router.route(path, methods.fallback(method_not_allowed));
    }
    let ws = node.clone();
    let scrape = node.clone();
    let console = node.clone();
    let vnc = node.clone();
    router
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/metrics", get(move |req: Request| metrics(scrape.clone(), req)))
        .route("/api/v1/events/websocket", get(move |req: Request| ws::events(ws.clone(), req)))
        .route("/api/v1/vms/{vm}/console/websocket", get(move |req: Request| ws::console(console.clone(), req)))
        .route("/api/v1/vms/{vm}/vnc/websocket", get(move |req: Request| ws::vnc(vnc.clone(), req)))
        .route("/api", any(no_such_path))
        .route("/api/{*rest}", any(no_such_path))
        .fallback_service(web(&node).layer(axum::middleware::from_fn(cache_control)))
        .layer(axum::middleware::from_fn_with_state(node.clone(), plaintext_to_tls))
        .layer(axum::middleware::map_response(security_headers))
}

/// One REST call: the request message from the path, the query and the body; the handler; the
/// reply or the error.
async fn dispatch(node: Arc<Handles>, route: &Route, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let cx: Caller = caller_of(&parts.headers, parts.extensions.get::<ConnInfo>());
    if let Some(refusal) = cross_site(&parts) {
        return refusal;
    }
    if let Err(s) = admit(&node, &cx, route.rpc) {
        return error(s.code(), s.message());
    }
    // A POST is the one method another site's page can send without asking first: it must say
    // it is JSON, which a form cannot.
    if route.method == axum::http::Method::POST && !is_json(&parts.headers) {
        return refused(ClusterError::invalid("content-type", "must be application/json"));
    }
    // Who calls is known before the body is read: a stranger's token does not get 4 MiB parsed.
    if !matches!(route.rpc, "login" | "ca") {
        if let Err(e) = node.who(&cx).await {
            return refused(e);
        }
    }
    let path = match Path::<Vec<(String, String)>>::from_request_parts(&mut parts, &()).await {
        Ok(Path(p)) => p,
        Err(e) => return refused(ClusterError::invalid("path", e.body_text())),
    };
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_with(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RESOURCE_EXHAUSTED",
                &format!("body: at most {MAX_BODY} bytes"),
            )
        }
    };
    let request = match request_of(route, &parts.headers, parts.uri.query(), &path, &body) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    match (route.call)(node, cx, request).await {
        Ok(json) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response(),
        Err(e) => refused(e),
    }
}

/// The request message as JSON: the body's object, then the query's parameters, then the path's.
fn request_of(
    route: &Route,
    headers: &axum::http::HeaderMap,
    query: Option<&str>,
    path: &[(String, String)],
    body: &Bytes,
) -> Result<Value, ClusterError> {
    let desc = json::message(route.request);
    let mut object = Map::new();
    if !body.is_empty() {
        if !route.has_body() {
            return Err(ClusterError::invalid("body", format!("{} {} takes no body", route.method, route.path)));
        }
        if headers.contains_key(header::CONTENT_TYPE) && !is_json(headers) {
            return Err(ClusterError::invalid("content-type", "must be application/json"));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => object = o,
            Ok(_) => return Err(ClusterError::invalid("body", format!("must be a JSON object (a {})", route.request))),
            Err(e) => return Err(ClusterError::invalid("body", format!("not JSON: {e}"))),
        }
    }
    let mut given = std::collections::HashSet::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k)?, decode(v)?);
        let (field, _) = json::parameter(&desc, &k, &v)?;
        // Once each (a list takes each of its values), and not both in the body and the query.
        if object.contains_key(field.name()) && !given.contains(field.name()) {
            return Err(ClusterError::invalid(&k, "is given both in the body and as a parameter: give it once"));
        }
        if !field.is_list() && !given.insert(field.name().to_string()) {
            return Err(ClusterError::invalid(&k, "is given twice: give it once"));
        }
        given.insert(field.name().to_string());
        json::put_parameter(&desc, &mut object, &k, &v)?;
    }
    for (name, value) in path {
        let field = route.field_of(name);
        let mut given = Map::new();
        json::put_parameter(&desc, &mut given, field, value)?;
        for (k, v) in given {
            if let Some(old) = object.get(&k).filter(|old| **old != v) {
                return Err(ClusterError::invalid(
                    &k,
                    format!("the path says {v} and the body or query {old}: give it once"),
                ));
            }
            object.insert(k, v);
        }
    }
    Ok(Value::Object(object))
}

/// A query's percent-encoded text (`+` is a space).
pub(super) fn decode(text: &str) -> Result<String, ClusterError> {
    let spaced = text.replace('+', " ");
    let bytes = spaced.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            match byte {
                Some(b) => out.push(b),
                None => return Err(ClusterError::invalid("query", "a % is not followed by two hex digits")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ClusterError::invalid("query", "is not UTF-8"))
}

/// Whether the request says its body is JSON.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json"))
}

/// A browser's request made by another site's page (its `Origin` is not this node, or the
/// browser says so): refused, so that a page elsewhere cannot act with the operator's client
/// certificate or on a cluster that asks for no credentials. Clients that are not browsers send
/// no `Origin`.
pub(super) fn cross_site(parts: &axum::http::request::Parts) -> Option<Response> {
    let h = &parts.headers;
    let fetch_site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let origin = h.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("?"));
    let host = parts.uri.authority().map(|a| a.as_str()).or_else(|| h.get(header::HOST).and_then(|v| v.to_str().ok()));
    let foreign = match origin {
        None => false,
        Some(o) => {
            let o_host = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
            o_host.is_none() || o_host != host
        }
    };
    (foreign || fetch_site == Some("cross-site")).then(|| {
        error_with(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!(
                "a request from another site's page ({}) is refused: use this node's own web console",
                corral_raft::error::quote(origin.unwrap_or("cross-site"))
            ),
        )
    })
}

/// A handler's refusal as the answer: gRPC's code as an HTTP status, and its words.
pub(crate) fn refused(e: ClusterError) -> Response {
    let s = status(e);
    error(s.code(), s.message())
}

/// The HTTP status of a gRPC code.
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The name of a gRPC code as the error body carries it (`NOT_FOUND`).
fn code_name(code: Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

pub(super) fn error(code: Code, message: &str) -> Response {
    error_with(http_status(code), &code_name(code), message)
}

fn error_with(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "status": status.as_u16(), "message": message });
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response()
}

async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], OPENAPI.as_slice()).into_response()
}

/// `GET /metrics` on the API port: Prometheus' text, for callers with audit.read on the
/// cluster (`--metrics-listen` serves it without login on an address of its own).
async fn metrics(node: Arc<Handles>, req: Request) -> Response {
    let cx = caller_of(req.headers(), req.extensions().get::<ConnInfo>());
    if let Err(s) = admit(&node, &cx, "metrics") {
        return error(s.code(), s.message());
    }
    let need = [(corral_raft::model::auth::Operation::Events, super::authz::Obj::Cluster)];
    if let Err(e) = node.check(&cx, &need).await {
        return refused(e);
    }
    let text = crate::metrics::render(&node.metrics);
    ([(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::http::CONTENT_TYPE))], text).into_response()
}

async fn no_such_path(req: Request) -> Response {
    error_with(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!(
            "no such API path: {} {} (the API is described at /api/v1/openapi.json)",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> Response {
    error_with(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNIMPLEMENTED",
        &format!("{} takes no {} (the API is described at /api/v1/openapi.json)", req.uri().path(), req.method()),
    )
}

/// The web console's built files; a path that names none gets index.html (the console routes
/// in the browser).
fn web(node: &Handles) -> MethodRouter {
    match &node.config.web_root {
        Some(root) => {
            let index = tower_http::services::ServeFile::new(root.join("index.html"));
            axum::routing::get_service(tower_http::services::ServeDir::new(root).fallback(index))
        }
        None => get(|| async {
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))],
                "This node has no web console files: build them with `make web` in Corral's source tree, or give \
                 corrald --web-root DIR (the package installs them in /usr/share/corral/web). The REST API is at \
                 /api/v1 (described at /api/v1/openapi.json).\n",
            )
        }),
    }
}

/// Over plaintext, once the cluster speaks TLS, the console and its login form are not served:
/// the browser is sent to the same port over https (the API itself answers a plaintext caller
/// with its refusal, as gRPC does).
async fn plaintext_to_tls(
    axum::extract::State(node): axum::extract::State<Arc<Handles>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let plain = matches!(req.extensions().get::<ConnInfo>().map(|c| &c.via), Some(super::listen::Via::Plain));
    if plain && node.cluster.requires_tls() {
        let host = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .or_else(|| req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_string));
        let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        if let Some(to) = host.and_then(|h| HeaderValue::from_str(&format!("https://{h}{path}")).ok()) {
            return (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, to)], "this node speaks https only\n")
                .into_response();
        }
        return error_with(StatusCode::FORBIDDEN, "PERMISSION_DENIED", "this node speaks https only");
    }
    next.run(req).await
}

/// Vite names the files under /assets/ by their content's hash: a browser keeps them for good.
/// The page itself is asked for again each time, so that a new build is seen at once.
async fn cache_control(req: Request, next: axum::middleware::Next) -> Response {
    let immutable = req.uri().path().starts_with("/assets/");
    let mut response = next.run(req).await;
    let value =
        if immutable && response.status().is_success() { "public, max-age=31536000, immutable" } else { "no-cache" };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    response
}

/// What every answer carries: no sniffing, no framing, scripts only from this node.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
         frame-ancestors 'none'",
    ));
    response
}

/// Whether a request is gRPC's (by its content type): the rest is REST's and the web's.
pub fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .is_some_and(|v| v == "application/grpc" || v.starts_with("application/grpc+"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn codes_have_http_statuses_and_names() {
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::FailedPrecondition), StatusCode::CONFLICT);
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
    }

    #[test]
    fn a_request_is_made_of_body_query_and_path() {
        let all = routes::all();
        let route = all.iter().find(|r| r.path == "/api/v1/vms/{vm}" && r.method == Method::GET).unwrap();
        let v = request_of(
            route,
            &Default::default(),
            Some("next_run=true"),
            &[("vm".into(), "web%201".into())],
            &Bytes::new(),
        )
        .unwrap();
        assert_eq!(v, serde_json::json!({"vm": "web%201", "next_run": true}));
        let e = request_of(route, &Default::default(), Some("colour=red"), &[], &Bytes::new()).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = request_of(route, &Default::default(), None, &[], &Bytes::from_static(b"{}")).unwrap_err();
        assert!(e.to_string().contains("takes no body"), "{e}");

        let clone = all.iter().find(|r| r.rpc == "clone").unwrap();
        let v = request_of(
            clone,
            &Default::default(),
            None,
            &[("vm".into(), "a".into())],
            &Bytes::from_static(b"{\"name\":\"b\"}"),
        )
        .unwrap();
        assert_eq!(v, serde_json::json!({"source": "a", "name": "b"}));
        let e = request_of(
            clone,
            &Default::default(),
            None,
            &[("vm".into(), "a".into())],
            &Bytes::from_static(b"{\"source\":\"c\"}"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("give it once"), "{e}");
        let e = request_of(clone, &Default::default(), None, &[], &Bytes::from_static(b"[1]")).unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
    }

    #[test]
    fn every_route_names_real_messages_and_fields() {
        let mut seen = std::collections::HashSet::new();
        for r in routes::all() {
            let desc = json::message(r.request);
            json::message(r.response);
            for p in r.parameters() {
                assert!(desc.get_field_by_name(r.field_of(p)).is_some(), "{} {}: {p}", r.method, r.path);
            }
            assert!(seen.insert((r.method.clone(), r.path)), "{} {} twice", r.method, r.path);
        }
    }

    #[test]
    fn queries_are_percent_decoded() {
        assert_eq!(decode("a%20b+c").unwrap(), "a b c");
        assert!(decode("%zz").is_err());
        assert!(decode("%ff").is_err());
    }
}
