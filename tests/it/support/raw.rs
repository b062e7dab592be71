//! HTTP/1.1 by hand, for requests no well-behaved client library would send: raw bytes in
//! the body and the headers, made-up methods, broken chunked bodies.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request as it goes on the wire, minus `Host`, `Connection` and `Content-Length`, which
/// [`send`] adds (`Content-Length` unless the request has its own, or a
/// `Transfer-Encoding`).
#[derive(Clone, Debug)]
pub struct RawRequest {
    pub method: String,
    /// Path and query, sent as they are.
    pub target: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    /// Sets header `name` (replacing any of that name), or removes it with `None`.
    pub fn set_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(value) = value {
            self.headers.push((name.to_owned(), value.to_vec()));
        }
    }

    /// The request, readable, for failure messages (long bodies cut short).
    pub fn describe(&self) -> String {
        let cut = |b: &[u8]| {
            let s = String::from_utf8_lossy(b);
            if s.len() > 200 {
                let start: String = s.chars().take(200).collect();
                format!("{start}… ({} bytes)", b.len())
            } else {
                s.into_owned()
            }
        };
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", cut(v)))
            .collect();
        format!(
            "{} {} [{}] {}",
            self.method,
            cut(&self.target),
            headers.join("; "),
            cut(&self.body)
        )
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` to `addr` on a connection of its own and reads the answer until the server
/// closes it. The body is written while the answer is read: a server that refuses a large
/// body before reading it answers, and may close, while the client is still sending.
pub async fn send(addr: &str, request: &RawRequest) -> RawResponse {
    let mut wire = Vec::new();
    wire.extend_from_slice(request.method.as_bytes());
    wire.push(b' ');
    wire.extend_from_slice(&request.target);
    wire.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    let framed = request.headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("transfer-encoding") || n.eq_ignore_ascii_case("content-length")
    });
    for (name, value) in &request.headers {
        wire.extend_from_slice(name.as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(value);
        wire.extend_from_slice(b"\r\n");
    }
    if !framed {
        wire.extend_from_slice(format!("Content-Length: {}\r\n", request.body.len()).as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(&request.body);

    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let write = async move {
        // The server may stop reading (and close) once it has answered; that is its right.
        let _ = writer.write_all(&wire).await;
        let _ = writer.flush().await;
        writer
    };
    let read = async move {
        let mut received = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        // Until the answer is whole: a server that answered before reading our whole body
        // may keep the connection open to read the rest.
        while !is_whole(&received) {
            match reader.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                // A reset after the answer (the server closed with our body unread) still
                // leaves the answer with us.
                Err(_) => break,
            }
        }
        received
    };
    let (_writer, received) =
        tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(write, read) })
            .await
            .unwrap_or_else(|_| panic!("no answer within 30 s to {}", request.describe()));
    parse(&received).unwrap_or_else(|| {
        panic!(
            "not an HTTP response to {}: {:?}",
            request.describe(),
            String::from_utf8_lossy(&received)
        )
    })
}

/// Whether `raw` holds a whole response framed by `Content-Length` or chunked encoding
/// (without either, only the end of the connection ends it).
fn is_whole(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    if let Some(length) = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= length;
    }
    head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n")
}

fn parse(raw: &[u8]) -> Option<RawResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}
