//! A REST client for the tests: HTTPS (HTTP/1.1 or HTTP/2) to a node, trusting the cluster CA,
//! optionally with a client certificate; and a websocket over the same TLS.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long one call may take.
const CALL: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Http {
    addr: String,
    config: Arc<rustls::ClientConfig>,
    h2: bool,
    pub token: Option<String>,
}

/// An answer: its status, its headers and its body (JSON when it is JSON, else a string).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Answer {
    /// The error's message (`{"message": ...}`), or the body as text.
    pub fn message(&self) -> String {
        self.body["message"].as_str().map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(&self.raw).into())
    }
}

impl Http {
    /// A client of the node at `addr` (`HOST:PORT`) trusting the CA in `ca_pem`.
    pub fn new(addr: &str, ca_pem: &str) -> Http {
        Http::with_identity(addr, ca_pem, None)
    }

    /// The same, presenting a client certificate (a PEM file holding certificate and key).
    pub fn with_identity(addr: &str, ca_pem: &str, identity_pem: Option<&str>) -> Http {
        let ca = corral_proto::tls::pem_certs(ca_pem).expect("a CA certificate").remove(0);
        let verifier = Arc::new(corral_proto::tls::ClusterVerifier::new(ca).expect("a CA"));
        let identity = identity_pem.map(|pem| {
            (corral_proto::tls::pem_certs(pem).expect("a certificate"), corral_proto::tls::pem_key(pem).expect("a key"))
        });
        let config = corral_proto::tls::client_config(verifier, identity).expect("a TLS client");
        Http { addr: addr.to_string(), config: Arc::new(config), h2: false, token: None }
    }

    /// Speaks HTTP/2 instead of HTTP/1.1.
    pub fn h2(mut self) -> Http {
        self.h2 = true;
        self
    }

    pub fn with_token(mut self, token: &str) -> Http {
        self.token = Some(token.to_string());
        self
    }

    async fn tls(&self, alpn: &[u8]) -> std::io::Result<TlsStream<TcpStream>> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(&self.addr).await?;
        corral_proto::tls::handshake(Arc::new(config), &self.addr, tcp).await
    }

    /// One call; the body, when given, is sent as JSON.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let raw = body.map(|b| b.to_string().into_bytes());
        self.send(method, path, raw, &[("content-type", "application/json")]).await
    }

    /// One call with the body's bytes as they are and the headers given.
    pub async fn send(&self, method: &str, path: &str, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> Answer {
        tokio::time::timeout(CALL, self.send_now(method, path, body, headers))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {CALL:?}"))
    }

    async fn send_now(&self, method: &str, path: &str, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> Answer {
        let alpn: &[u8] = if self.h2 { b"h2" } else { b"http/1.1" };
        let io = hyper_util::rt::TokioIo::new(self.tls(alpn).await.expect("TLS to the node"));
        let mut req = http::Request::builder()
            .method(method)
            .uri(if self.h2 { format!("https://{}{path}", self.addr) } else { path.to_string() })
            .header("host", &self.addr);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default()))).expect("a request");
        let resp = if self.h2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.expect("HTTP/2");
            tokio::spawn(conn);
            send.send_request(req).await.expect("an HTTP/2 answer")
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.expect("HTTP/1.1");
            tokio::spawn(conn);
            send.send_request(req).await.expect("an HTTP/1.1 answer")
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let raw = resp.into_body().collect().await.expect("the answer's body").to_bytes().to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into()));
        Answer { status, headers, body, raw }
    }

    /// A websocket at `path`, the token given as the subprotocol `corral.bearer.TOKEN` as a
    /// browser gives it; `Err` is the HTTP answer that refused it.
    pub async fn websocket(
        &self,
        path: &str,
    ) -> Result<tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>, (u16, String)> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let stream = self.tls(b"http/1.1").await.expect("TLS to the node");
        let mut req = format!("wss://{}{path}", self.addr).into_client_request().expect("a websocket request");
        let mut protocols = "binary".to_string();
        if let Some(t) = &self.token {
            protocols.push_str(&format!(", corral.bearer.{t}"));
        }
        req.headers_mut().insert("sec-websocket-protocol", protocols.parse().expect("a header"));
        match tokio_tungstenite::client_async(req, stream).await {
            Ok((ws, resp)) => {
                let chosen = resp.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
                assert_eq!(chosen, Some("binary"), "the server answers with the binary subprotocol");
                Ok(ws)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).to_string()).unwrap_or_default();
                Err((resp.status().as_u16(), body))
            }
            Err(e) => Err((0, e.to_string())),
        }
    }
}
