//! One-off HTTP requests the gateway itself makes from a shard (token introspection): to an
//! address resolved at load time, over TLS (rustls, the Mozilla roots) for `https://`,
//! one request per connection, the whole answer read bounded in size and time.
//!
//! The request is sent as HTTP/1.0, so the answer cannot be chunked and ends when the
//! server closes (or at its `Content-Length`).
//!
//! Owns: that exchange. Must not: resolve names, pool connections, or be used for proxied
//! traffic (that is `upstream` and `pool`).

use std::sync::Arc;
use std::time::Duration;

use mcp_gateway_config::Outbound;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// What an outbound call sends back: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The TLS settings of outbound calls: these CA certificates (DER), else the Mozilla
/// roots; ring's algorithms.
pub fn tls_config(ca_certs: Option<&[Vec<u8>]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_certs {
        Some(certs) => {
            for der in certs {
                let cert = rustls::pki_types::CertificateDer::from(der.clone());
                roots.add(cert).map_err(|e| e.to_string())?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // ring, not aws-lc-rs: the shards link ring already (session tokens), and ureq uses it.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        .map_err(|e| e.to_string())
}

/// POSTs `body` (`content_type`) to `to`, with extra header lines `headers` (each ending in
/// CRLF); the answer, at most `limit` bytes, within `timeout`.
pub async fn post(
    to: &Outbound,
    tls: &Arc<rustls::ClientConfig>,
    headers: &str,
    content_type: &str,
    body: &[u8],
    limit: usize,
    timeout: Duration,
) -> Result<Answer, String> {
    let mut request = format!(
        "POST {} HTTP/1.0\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nAccept: application/json\r\nUser-Agent: mcp-gateway\r\n{headers}\r\n",
        to.path,
        to.authority,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let exchange = async {
        let stream = TcpStream::connect(to.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", to.addr))?;
        let _ = stream.set_nodelay(true);
        let raw = if to.tls {
            let name = rustls::pki_types::ServerName::try_from(to.host.clone())
                .map_err(|e| format!("server name {}: {e}", to.host))?;
            let connector = monoio_rustls::TlsConnector::from(tls.clone());
            let mut stream = connector
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS with {}: {e}", to.host))?;
            exchange(&mut stream, request, limit).await?
        } else {
            let mut stream = stream;
            exchange(&mut stream, request, limit).await?
        };
        parse(&raw)
    };
    monoio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer from {} within {timeout:?}", to.authority))?
}

/// Writes the request and reads until the server closes (or `limit` is passed).
async fn exchange<S: AsyncReadRent + AsyncWriteRent>(
    stream: &mut S,
    request: Vec<u8>,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let (written, _) = stream.write_all(request).await;
    written.map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    loop {
        let buf = Vec::with_capacity(16 * 1024);
        let (read, buf) = stream.read(buf).await;
        match read {
            Ok(0) => return Ok(answer),
            Ok(_) => {
                answer.extend_from_slice(&buf);
                if answer.len() > limit {
                    return Err(format!("answer larger than {limit} bytes"));
                }
                if complete(&answer) {
                    return Ok(answer);
                }
            }
            // A TLS peer that closes without close_notify still sent its whole answer.
            Err(_) if complete(&answer) => return Ok(answer),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Whether `raw` holds a head and as many body bytes as its `Content-Length` says.
fn complete(raw: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(raw) {
        Ok(httparse::Status::Complete(head)) => {
            content_length(response.headers).is_some_and(|n| raw.len() - head >= n)
        }
        _ => false,
    }
}

fn content_length(headers: &[httparse::Header<'_>]) -> Option<usize> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse().ok())
}

fn parse(raw: &[u8]) -> Result<Answer, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(raw) {
        Ok(httparse::Status::Complete(head)) => head,
        _ => return Err("malformed answer".to_string()),
    };
    let status = response.code.unwrap_or(0);
    let mut body = raw[head..].to_vec();
    if let Some(n) = content_length(response.headers) {
        body.truncate(n);
    }
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_and_complete() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra";
        assert!(complete(raw));
        let answer = parse(raw).ok();
        assert_eq!(answer.as_ref().map(|a| a.status), Some(200));
        assert_eq!(answer.map(|a| a.body), Some(b"{}".to_vec()));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}"));
        assert!(parse(b"garbage").is_err());
        assert!(tls_config(None).is_ok());
        assert!(tls_config(Some(&[b"not a certificate".to_vec()])).is_err());
    }
}
