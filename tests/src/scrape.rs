//! A plain HTTP/1.1 client of a few lines, to scrape a node's `--metrics-listen` as Prometheus
//! would, and reading one series out of the OpenMetrics text.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `request` as it is (`Connection: close` expected) and returns the status code and the
/// body of the answer.
pub fn request(addr: &str, request: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or(format!("no HTTP head in {text:?}"))?;
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or(format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

pub fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    request(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"))
}

/// The metrics text of the node whose `--metrics-listen` is `addr`.
pub fn metrics(addr: &str) -> Result<String, String> {
    match get(addr, "/metrics")? {
        (200, body) => Ok(body),
        (code, body) => Err(format!("{code}: {body}")),
    }
}

/// The value of the series `series` (its name and labels exactly as printed) in `text`.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}
