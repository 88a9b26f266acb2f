//! Encoding what the gateway itself writes: status lines, header lines, local and error
//! responses, and the shard's cached `Date` value.
//!
//! Owns: byte layout of outgoing heads. Must not: allocate beyond growing the caller's
//! reused output buffer.

use std::io::Write;

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

pub fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

pub fn header_u64(out: &mut Vec<u8>, name: &str, value: u64) {
    let mut digits = itoa::Buffer::new();
    header(out, name, digits.format(value).as_bytes());
}

/// A complete response with a body the gateway produced itself.
pub struct LocalResponse<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub body: &'a [u8],
    pub close: bool,
    pub request_id: &'a [u8],
    /// Extra header lines, each `Name: value` without CRLF.
    pub extra: &'a [&'a str],
    /// The configured security header lines (`security.headers`), written after `extra`;
    /// borrowed from the config generation, so adding them allocates nothing.
    pub security: &'a [String],
}

pub fn local_response(out: &mut Vec<u8>, date: &[u8], r: &LocalResponse<'_>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(r.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(r.status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !date.is_empty() {
        header(out, "Date", date);
    }
    header(out, "Server", b"mcp-gateway");
    header(out, "Content-Type", r.content_type.as_bytes());
    header_u64(out, "Content-Length", r.body.len() as u64);
    if !r.request_id.is_empty() {
        header(out, "X-Request-Id", r.request_id);
    }
    for line in r
        .extra
        .iter()
        .copied()
        .chain(r.security.iter().map(String::as_str))
    {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if r.close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(r.body);
}

/// `{"error":{"code":N,"status":"...","message":"...","requestId":"..."}}`
pub fn error_body(status: u16, message: &str, request_id: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(128 + message.len());
    let _ = write!(
        body,
        "{{\"error\":{{\"code\":{},\"status\":\"{}\",\"message\":",
        status,
        reason(status)
    );
    json_string(&mut body, message.as_bytes());
    body.extend_from_slice(b",\"requestId\":");
    json_string(&mut body, request_id);
    body.extend_from_slice(b"}}");
    body
}

/// A JSON-RPC error object for MCP paths. The gateway does not read request bodies, so the
/// request's JSON-RPC id is unknown here: `null`, as JSON-RPC allows.
pub fn jsonrpc_error_body(code: i64, message: &str, status: u16, request_id: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(160 + message.len());
    let _ = write!(
        body,
        "{{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{{\"code\":{code},\"message\":"
    );
    json_string(&mut body, message.as_bytes());
    let _ = write!(body, ",\"data\":{{\"status\":{status},\"requestId\":");
    json_string(&mut body, request_id);
    body.extend_from_slice(b"}}}");
    body
}

/// Writes `s` as a JSON string literal (non-UTF-8 and control bytes escaped).
pub fn json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut tmp = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\\ufffd".as_bytes());
        }
    }
    out.push(b'"');
}

/// The `Date` header value, refreshed by the shard's tick rather than per request.
pub fn http_date(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let (year, month, day) = civil_from_days(days as i64);
    let month_name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {day:02} {month_name} {year} {h:02}:{m:02}:{s:02} GMT")
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's method).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_format() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn error_body_is_json() {
        let body = error_body(404, "unknown server \"x\"", b"abc");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], 404);
        assert_eq!(v["error"]["message"], "unknown server \"x\"");
        assert_eq!(v["error"]["requestId"], "abc");
    }
}
