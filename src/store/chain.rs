//! The chain hash: SHA-256 over a canonical, length-prefixed encoding of one
//! audit row and the hash of the row before it.
//!
//! ```text
//! hash(row) = hex(SHA-256( "scim-gateway/audit/v1\n"
//!                          ‖ field(chain_pos) ‖ field(seq) ‖ field(at)
//!                          ‖ field(tenant) ‖ field(actor) ‖ field(action)
//!                          ‖ field(resource_type) ‖ field(resource_id)
//!                          ‖ field(outcome) ‖ field(detail) ‖ field(app)
//!                          ‖ field(prev_hash) ))
//! field(NULL)  = 0x00
//! field(value) = 0x01 ‖ u64 big-endian byte length ‖ UTF-8 bytes
//! ```
//! Integers are written as their decimal text. The length prefix makes the
//! encoding unambiguous (`"ab" + "c"` and `"a" + "bc"` differ), and the
//! NULL marker keeps an absent value apart from an empty string. The first
//! row's `prev_hash` is [`GENESIS`]. Anyone can re-implement this in a few
//! lines to check an export without this program.

use sha2::{Digest, Sha256};

/// The `prev_hash` of the first row ever written: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain separation: a different encoding version gets a different prefix.
const DOMAIN: &[u8] = b"scim-gateway/audit/v1\n";

/// The hashed content of one audit row, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ChainFields<'a> {
    /// Position in the chain (1 for the first row).
    pub chain_pos: i64,
    /// The row's primary key.
    pub seq: i64,
    /// RFC 3339 UTC time.
    pub at: &'a str,
    /// Tenant acted on.
    pub tenant: Option<&'a str>,
    /// Who acted.
    pub actor: &'a str,
    /// What was done.
    pub action: &'a str,
    /// `User` or `Group`.
    pub resource_type: Option<&'a str>,
    /// The resource's id.
    pub resource_id: Option<&'a str>,
    /// `success` or a failure description.
    pub outcome: &'a str,
    /// Extra JSON detail, exactly as stored.
    pub detail: Option<&'a str>,
    /// The downstream app concerned.
    pub app: Option<&'a str>,
    /// The hash of the row before (or [`GENESIS`]).
    pub prev_hash: &'a str,
}

fn field(buf: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => buf.push(0),
        Some(bytes) => {
            buf.push(1);
            buf.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            buf.extend_from_slice(bytes);
        }
    }
}

/// The canonical byte encoding that is hashed (see the module docs).
pub fn encode(f: &ChainFields<'_>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256 + f.detail.map_or(0, str::len));
    buf.extend_from_slice(DOMAIN);
    let pos = f.chain_pos.to_string();
    let seq = f.seq.to_string();
    let fields: [Option<&str>; 12] = [
        Some(&pos),
        Some(&seq),
        Some(f.at),
        f.tenant,
        Some(f.actor),
        Some(f.action),
        f.resource_type,
        f.resource_id,
        Some(f.outcome),
        f.detail,
        f.app,
        Some(f.prev_hash),
    ];
    for v in fields {
        field(&mut buf, v.map(str::as_bytes));
    }
    buf
}

/// The row's hash: lower-case hex SHA-256 of [`encode`].
pub fn chain_hash(f: &ChainFields<'_>) -> String {
    hex::encode(Sha256::digest(encode(f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChainFields<'static> {
        ChainFields {
            chain_pos: 1,
            seq: 7,
            at: "2026-11-26T10:00:00.000Z",
            tenant: Some("acme"),
            actor: "acme/entra",
            action: "scim.create",
            resource_type: Some("User"),
            resource_id: Some("u1"),
            outcome: "success",
            detail: Some(r#"{"version":1}"#),
            app: None,
            prev_hash: GENESIS,
        }
    }

    #[test]
    fn encoding_is_pinned() {
        // A change here breaks every stored chain: bump the domain version instead.
        let f = ChainFields {
            chain_pos: 1,
            seq: 2,
            at: "t",
            tenant: None,
            actor: "",
            action: "a",
            resource_type: None,
            resource_id: None,
            outcome: "ok",
            detail: None,
            app: None,
            prev_hash: "p",
        };
        let mut want = DOMAIN.to_vec();
        let one = |s: &str| {
            let mut v = vec![1u8];
            v.extend_from_slice(&(s.len() as u64).to_be_bytes());
            v.extend_from_slice(s.as_bytes());
            v
        };
        want.extend(one("1"));
        want.extend(one("2"));
        want.extend(one("t"));
        want.push(0);
        want.extend(one(""));
        want.extend(one("a"));
        want.extend([0, 0]);
        want.extend(one("ok"));
        want.extend([0, 0]);
        want.extend(one("p"));
        assert_eq!(encode(&f), want);
    }

    #[test]
    fn hash_is_pinned() {
        assert_eq!(
            chain_hash(&sample()),
            hex::encode(Sha256::digest(encode(&sample())))
        );
        assert_eq!(chain_hash(&sample()).len(), 64);
        assert_eq!(GENESIS.len(), 64);
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_hash() {
        let a = sample();
        let b = ChainFields {
            actor: "acme/entrascim.create",
            action: "",
            ..a
        };
        let c = ChainFields {
            actor: "acme/",
            action: "entrascim.create",
            ..a
        };
        assert_ne!(chain_hash(&a), chain_hash(&b));
        assert_ne!(chain_hash(&b), chain_hash(&c));
    }

    #[test]
    fn null_and_empty_differ() {
        let a = ChainFields {
            app: None,
            ..sample()
        };
        let b = ChainFields {
            app: Some(""),
            ..sample()
        };
        assert_ne!(chain_hash(&a), chain_hash(&b));
    }

    #[test]
    fn every_field_is_covered() {
        let base = sample();
        let h = chain_hash(&base);
        let variants = [
            ChainFields {
                chain_pos: 2,
                ..base
            },
            ChainFields { seq: 8, ..base },
            ChainFields {
                at: "2026-11-26T10:00:00.001Z",
                ..base
            },
            ChainFields {
                tenant: Some("globex"),
                ..base
            },
            ChainFields {
                actor: "admin",
                ..base
            },
            ChainFields {
                action: "scim.delete",
                ..base
            },
            ChainFields {
                resource_type: Some("Group"),
                ..base
            },
            ChainFields {
                resource_id: Some("u2"),
                ..base
            },
            ChainFields {
                outcome: "failure",
                ..base
            },
            ChainFields {
                detail: Some(r#"{"version":2}"#),
                ..base
            },
            ChainFields {
                app: Some("crm"),
                ..base
            },
            ChainFields {
                prev_hash: "1",
                ..base
            },
        ];
        for v in &variants {
            assert_ne!(chain_hash(v), h, "{v:?}");
        }
    }
}
