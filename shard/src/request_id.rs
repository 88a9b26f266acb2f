//! The request id a request carries through the gateway and upstream (`X-Request-Id`):
//! the client's own when it is short and printable, else one the shard generates.
//!
//! Owns: that choice, inline (no allocation per request). Must not: log or count.

use crate::state::Shard;

/// A client-supplied `X-Request-Id` is kept up to this length; longer ones are replaced.
const MAX_REQUEST_ID: usize = 64;

/// The request id, kept inline so no allocation is needed per request.
#[derive(Clone, Copy)]
pub struct RequestId {
    bytes: [u8; MAX_REQUEST_ID],
    len: usize,
}

impl RequestId {
    pub fn new(shard: &Shard, from_client: Option<&[u8]>) -> RequestId {
        let mut id = RequestId {
            bytes: [0; MAX_REQUEST_ID],
            len: 0,
        };
        match from_client {
            Some(v)
                if !v.is_empty()
                    && v.len() <= MAX_REQUEST_ID
                    && v.iter().all(|b| b.is_ascii_graphic()) =>
            {
                id.bytes[..v.len()].copy_from_slice(v);
                id.len = v.len();
            }
            _ => {
                let mut generated = [0u8; 16];
                shard.next_request_id(&mut generated);
                id.bytes[..16].copy_from_slice(&generated);
                id.len = 16;
            }
        }
        id
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}
