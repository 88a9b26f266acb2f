//! Session, message-endpoint and sticky tokens (`mcp::session::SessionCodec`). Input: a
//! mode byte, 4 bytes of "now", 8 bytes of replica id, then the token or session bytes.
//!
//! Properties: no panic; arbitrary bytes never open as a token of a kind other than the one
//! they were sealed for; what is sealed opens back to the same replica, session and expiry;
//! any one-byte change to a sealed token makes it fail to open.

#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use mcp_gateway_shard::mcp::session::{SessionCodec, TokenError, MAX_UPSTREAM_SESSION};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const TTL: u32 = 3600;

thread_local! {
    static CODEC: RefCell<SessionCodec> = RefCell::new(SessionCodec::new(SECRET, TTL));
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 13 {
        return;
    }
    let (mode, rest) = (data[0], &data[1..]);
    let now = u64::from(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
    let mut replica_bytes = [0u8; 8];
    replica_bytes.copy_from_slice(&rest[4..12]);
    let replica = u64::from_be_bytes(replica_bytes);
    let payload = &rest[12..];

    CODEC.with(|codec| {
        let mut codec = codec.borrow_mut();
        // Arbitrary bytes as each kind of token.
        let _ = codec.open(payload, now);
        let _ = codec.open_endpoint(payload, now);
        let _ = codec.open_sticky(payload, now);

        // Seal, open, and tamper.
        let session = &payload[..payload.len().min(MAX_UPSTREAM_SESSION)];
        let token = match mode % 3 {
            0 => codec.seal(replica, session, now),
            1 => codec.seal_endpoint(replica, session, now),
            _ => codec.seal_sticky(replica, now),
        };
        let token = match token {
            Ok(token) => token,
            Err(err) => panic!("seal failed: {err}"),
        };
        let expires = u32::try_from(now + u64::from(TTL)).unwrap_or(u32::MAX);
        let opened = [
            codec.open(token.as_bytes(), now),
            codec.open_endpoint(token.as_bytes(), now),
            codec.open_sticky(token.as_bytes(), now).map(|replica| {
                mcp_gateway_shard::mcp::session::Opened {
                    replica,
                    upstream_session: Vec::new(),
                    expires_unix: expires,
                }
            }),
        ];
        let kind = usize::from(mode % 3);
        for (i, result) in opened.iter().enumerate() {
            if i != kind {
                assert_eq!(result, &Err(TokenError::Forged), "opened as the wrong kind");
                continue;
            }
            let o = match result {
                Ok(o) => o,
                Err(err) => panic!("a fresh token did not open: {err}"),
            };
            assert_eq!(o.replica, replica);
            assert_eq!(o.expires_unix, expires);
            if kind < 2 {
                assert_eq!(o.upstream_session, session);
            }
        }
        if u64::from(expires) < u64::from(u32::MAX) {
            assert_eq!(
                codec.open(token.as_bytes(), u64::from(expires) + 1).err(),
                if kind == 0 {
                    Some(TokenError::Expired)
                } else {
                    Some(TokenError::Forged)
                }
            );
        }

        // One byte changed: never opens.
        let mut tampered = token.into_bytes();
        let at = usize::from(mode) % tampered.len();
        let delta = rest[3] | 1;
        tampered[at] = tampered[at].wrapping_add(delta);
        assert!(codec.open(&tampered, now).is_err(), "tampered token opened");
        assert!(codec.open_endpoint(&tampered, now).is_err());
        assert!(codec.open_sticky(&tampered, now).is_err());
    });
});
