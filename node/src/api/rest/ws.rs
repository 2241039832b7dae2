//! What gRPC streams, as websockets for the browser: live events (one JSON event per text
//! frame), a VM's serial console (bytes both ways in binary frames) and its VNC display (RFB
//! relayed both ways; the browser authenticates to the display with a ticket's password).
//! Browsers cannot set headers on a websocket, so a token may come as the subprotocol
//! `corral.bearer.TOKEN` (Kubernetes' way); the server answers with `binary`. Each is checked
//! (admit, then the handler's permission) before the upgrade, so a refusal is an HTTP answer.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde_json::Map;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{json, refused};
use crate::api::grpc::{admit, caller_of};
use crate::api::listen::ConnInfo;
use crate::api::{console, events, Caller, Handles};
use corral_proto::{Event, FollowEventsRequest, VmRef};
use corral_raft::ClusterError;

/// The subprotocol prefix that carries a token.
const BEARER_PROTOCOL: &str = "corral.bearer.";
/// How long connecting to a VM's display may take.
const DISPLAY_CONNECT: Duration = Duration::from_secs(10);
/// The largest frame a client may send (a console's keystrokes, a VNC client's messages).
const MAX_FRAME: usize = 1 << 20;

/// The caller of a websocket request, with a token from its subprotocols when it sent no
/// `authorization` header.
fn caller(parts: &Parts) -> Caller {
    let mut cx = caller_of(&parts.headers, parts.extensions.get::<ConnInfo>());
    if cx.bearer.is_none() && cx.private {
        cx.bearer = parts
            .headers
            .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|p| p.trim().strip_prefix(BEARER_PROTOCOL))
            .map(str::to_string);
    }
    cx
}

/// Admits the caller and takes the upgrade; `Err` is the answer to send instead.
async fn open(node: &Handles, req: Request, rpc: &str) -> Result<(Parts, Caller, WebSocketUpgrade), Response> {
    let (mut parts, _body) = req.into_parts();
    if let Some(refusal) = super::cross_site(&parts) {
        return Err(refusal);
    }
    let cx = caller(&parts);
    admit(node, &cx, rpc).map_err(|s| super::error(s.code(), s.message()))?;
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &()).await.map_err(|e| {
        refused(ClusterError::invalid("upgrade", format!("this path is a websocket: {}", e.body_text())))
    })?;
    let upgrade = upgrade.protocols(["binary"]).max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME);
    Ok((parts, cx, upgrade))
}

async fn vm_of(parts: &mut Parts) -> Result<String, Response> {
    Path::<String>::from_request_parts(parts, &())
        .await
        .map(|Path(vm)| vm)
        .map_err(|e| refused(ClusterError::invalid("vm", e.body_text())))
}

/// `GET /api/v1/events/websocket?after_index=N&tail=N`: events as they are applied.
pub async fn events(node: Arc<Handles>, req: Request) -> Response {
    let (parts, cx, upgrade) = match open(&node, req, "follow").await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let desc = json::message("FollowEventsRequest");
    let mut object = Map::new();
    for pair in parts.uri.query().unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let put = super::decode(k).and_then(|k| Ok((k, super::decode(v)?)));
        if let Err(e) = put.and_then(|(k, v)| json::put_parameter(&desc, &mut object, &k, &v)) {
            return refused(e);
        }
    }
    let request: FollowEventsRequest = match json::from_json(&desc, object.into()) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    let mut stream = match events::Api(node).follow(&cx, request).await {
        Ok(s) => s,
        Err(e) => return refused(e),
    };
    let event = json::message("Event");
    upgrade.on_upgrade(move |socket| async move {
        let (mut out, mut inbound) = socket.split();
        loop {
            tokio::select! {
                next = stream.next() => {
                    let Some(e): Option<Event> = next else { break };
                    let Ok(text) = json::to_json(&event, &e) else { break };
                    let Ok(text) = String::from_utf8(text) else { break };
                    if out.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                // The client's frames are not read for anything but its going away.
                msg = inbound.next() => if matches!(msg, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) { break },
            }
        }
        let _ = out.close().await;
    })
}

/// `GET /api/v1/vms/{vm}/console/websocket`: the serial console. The first frame is text,
/// `{"host": NAME}`; then the guest's output in binary frames; a refusal later is a text frame
/// `{"error": MESSAGE}` before the close.
pub async fn console(node: Arc<Handles>, req: Request) -> Response {
    let (mut parts, cx, upgrade) = match open(&node, req, "console").await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let vm = match vm_of(&mut parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (keys, typed) = mpsc::channel::<Result<Vec<u8>, ClusterError>>(16);
    let input = Box::pin(tokio_stream::wrappers::ReceiverStream::new(typed));
    let mut output = match console::Api(node).console(&cx, &vm, input).await {
        Ok(o) => o,
        Err(e) => return refused(e),
    };
    upgrade.on_upgrade(move |socket: WebSocket| async move {
        let (mut out, mut inbound) = socket.split();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = inbound.next().await {
                let data = match msg {
                    Message::Binary(b) => b.to_vec(),
                    Message::Text(t) => t.as_str().as_bytes().to_vec(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                for chunk in data.chunks(console::MAX_INPUT) {
                    if keys.send(Ok(chunk.to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        });
        while let Some(next) = output.next().await {
            let msg = match next {
                Ok(o) if o.data.is_empty() && !o.host.is_empty() => {
                    Message::Text(serde_json::json!({ "host": o.host }).to_string().into())
                }
                Ok(o) if o.data.is_empty() => continue,
                Ok(o) => Message::Binary(o.data.into()),
                Err(e) => {
                    let _ =
                        out.send(Message::Text(serde_json::json!({ "error": e.to_string() }).to_string().into())).await;
                    break;
                }
            };
            if out.send(msg).await.is_err() {
                break;
            }
        }
        reader.abort();
        let _ = out.close().await;
    })
}

/// `GET /api/v1/vms/{vm}/vnc/websocket`: the VM's VNC display, for a caller with vm.console, once
/// this node has given a ticket for it (`POST /api/v1/vms/{vm}/vnc`): the relay goes only to a
/// display a ticket named, and the display itself asks for the ticket's password.
pub async fn vnc(node: Arc<Handles>, req: Request) -> Response {
    let (mut parts, cx, upgrade) = match open(&node, req, "vnc").await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let vm = match vm_of(&mut parts).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (address, port) = match console::Api(node).display(&cx, VmRef { vm }).await {
        Ok(d) => d,
        Err(e) => return refused(e),
    };
    let tcp = match tokio::time::timeout(DISPLAY_CONNECT, tokio::net::TcpStream::connect((address.as_str(), port)))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return refused(ClusterError::Unavailable(format!("the VM's display at {address}:{port}: {e}"))),
        Err(_) => {
            return refused(ClusterError::Unavailable(format!("the VM's display at {address}:{port} did not answer")))
        }
    };
    let _ = tcp.set_nodelay(true);
    upgrade.on_upgrade(move |socket: WebSocket| async move {
        let (mut out, mut inbound) = socket.split();
        let (mut from_vm, mut to_vm) = tcp.into_split();
        let up = async {
            while let Some(Ok(msg)) = inbound.next().await {
                let data = match msg {
                    Message::Binary(b) => b,
                    Message::Close(_) => break,
                    _ => continue,
                };
                if to_vm.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = to_vm.shutdown().await;
        };
        let down = async {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match from_vm.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = out.close().await;
        };
        tokio::select! {
            _ = up => {}
            _ = down => {}
        }
    })
}
