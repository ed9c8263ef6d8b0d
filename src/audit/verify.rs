//! Verification: walks rows in chain order and finds the first place where
//! the chain breaks — a row whose content no longer matches its hash
//! (edited), a missing position (deleted), a row that does not link to the
//! one before it or comes out of order (moved, reordered, inserted), or a
//! chain that ends before the recorded head (the last rows deleted).
//!
//! The same [`ChainCheck`] serves the database (`audit verify`) and an
//! export file (`audit verify --file`).

use std::fmt;
use std::io::BufRead;

use crate::store::chain::{GENESIS, chain_hash};
use crate::store::{self, AnyConnection, AuditFilter, AuditRecord, ChainHead, StoreError};

/// Where the checked stretch of the chain starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// The first row must sit at `pos + 1` and link to `hash`: the genesis
    /// (0, 64 zeros) or the pruning checkpoint.
    Known {
        /// Position before the first row.
        pos: i64,
        /// Hash the first row's `prev_hash` must equal.
        hash: String,
    },
    /// The first row must sit at `pos`; its `prev_hash` is taken on trust.
    TrustedAt {
        /// Expected first position.
        pos: i64,
    },
    /// Whatever comes first is taken on trust (position 1 must still link
    /// to the genesis hash).
    Trusted,
}

/// The first place the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// Chain position of the offending row, when it has one.
    pub chain_pos: Option<i64>,
    /// Its `seq`, when known.
    pub seq: Option<i64>,
    /// Line of the export file, when verifying a file.
    pub line: Option<u64>,
    /// What is wrong, in words an auditor can act on.
    pub reason: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut at = Vec::new();
        if let Some(l) = self.line {
            at.push(format!("line {l}"));
        }
        if let Some(p) = self.chain_pos {
            at.push(format!("chain position {p}"));
        }
        if let Some(s) = self.seq {
            at.push(format!("seq {s}"));
        }
        if at.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", at.join(", "), self.reason)
        }
    }
}

/// What a walk saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows whose hash was recomputed and matched.
    pub rows: u64,
    /// Rows whose link to the row before was checked.
    pub links: u64,
    /// Places where positions jump (allowed only for filtered exports).
    pub gaps: u64,
    /// First position and its `prev_hash`.
    pub first: Option<(i64, String)>,
    /// Last position and its hash.
    pub last: Option<(i64, String)>,
}

/// Checks rows one by one, in chain order.
#[derive(Debug)]
pub struct ChainCheck {
    anchor: Anchor,
    allow_gaps: bool,
    summary: Summary,
}

fn broken(r: &AuditRecord, reason: impl Into<String>) -> Break {
    Break {
        chain_pos: Some(r.chain_pos),
        seq: Some(r.seq),
        line: None,
        reason: reason.into(),
    }
}

impl ChainCheck {
    /// A check from `anchor`; `allow_gaps` for exports that were filtered.
    pub fn new(anchor: Anchor, allow_gaps: bool) -> Self {
        Self {
            anchor,
            allow_gaps,
            summary: Summary::default(),
        }
    }

    /// Checks the next row.
    pub fn push(&mut self, r: &AuditRecord) -> Result<(), Break> {
        let link: Option<(i64, String)> = match (&self.summary.last, &self.anchor) {
            (Some((last, hash)), _) => {
                if r.chain_pos <= *last {
                    return Err(broken(
                        r,
                        format!(
                            "comes after position {last}: rows are out of order \
                             (reordered or duplicated)"
                        ),
                    ));
                }
                if r.chain_pos > last + 1 {
                    if !self.allow_gaps {
                        return Err(broken(
                            r,
                            format!(
                                "positions {}..={} are missing: rows were deleted \
                             (or the export was filtered; see --partial)",
                                last + 1,
                                r.chain_pos - 1
                            ),
                        ));
                    }
                    self.summary.gaps += 1;
                    None
                } else {
                    Some((*last, hash.clone()))
                }
            }
            (None, Anchor::Known { pos, hash }) => {
                if r.chain_pos != pos + 1 {
                    return Err(broken(
                        r,
                        format!(
                            "the chain must continue at position {} but continues here: \
                         rows were deleted",
                            pos + 1
                        ),
                    ));
                }
                Some((*pos, hash.clone()))
            }
            (None, Anchor::TrustedAt { pos }) => {
                if r.chain_pos != *pos {
                    return Err(broken(
                        r,
                        format!("position {pos} is missing: rows were deleted"),
                    ));
                }
                (r.chain_pos == 1).then(|| (0, GENESIS.to_string()))
            }
            (None, Anchor::Trusted) => (r.chain_pos == 1).then(|| (0, GENESIS.to_string())),
        };
        if let Some((pos, expected)) = link {
            if r.prev_hash.as_deref() != Some(expected.as_str()) {
                let before = if pos == 0 {
                    "the genesis hash".to_string()
                } else {
                    format!("the hash of position {pos}")
                };
                return Err(broken(
                    r,
                    format!(
                        "does not link to the row before it (its prev_hash is not {before}): \
                     a row was deleted, replaced or moved here"
                    ),
                ));
            }
            self.summary.links += 1;
        }
        let computed = chain_hash(&r.fields());
        if r.hash.as_deref() != Some(computed.as_str()) {
            return Err(broken(
                r,
                "its content does not match its hash: the row was altered",
            ));
        }
        if self.summary.first.is_none() {
            self.summary.first = Some((r.chain_pos, r.prev_hash.clone().unwrap_or_default()));
        }
        self.summary.last = Some((r.chain_pos, computed));
        self.summary.rows += 1;
        Ok(())
    }

    /// What was checked so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }
}

/// The outcome of verifying the database.
#[derive(Debug, Clone)]
pub struct DbReport {
    /// The chain head as read before the walk.
    pub head: ChainHead,
    /// First position checked.
    pub from: i64,
    /// Whether the walk reached the head (so truncation was checked too).
    pub to_head: bool,
    /// What was checked.
    pub summary: Summary,
    /// The first break, if any.
    pub broken: Option<Break>,
    /// PostgreSQL: rows committed while the check ran, not yet sealed into
    /// the chain ([`store::seal_all`]). Not a break: reported beside it.
    pub unsealed: store::SealBacklog,
}

impl DbReport {
    /// One-paragraph, human-readable result.
    pub fn describe(&self) -> String {
        let s = &self.summary;
        let span = match (&s.first, &s.last) {
            (Some((a, _)), Some((b, _))) => format!("positions {a}..={b}"),
            _ => "no rows".into(),
        };
        if let Some(b) = &self.broken {
            return format!(
                "BROKEN: audit chain breaks at {b}\n({} rows before it verified, {span})",
                s.rows
            );
        }
        let head = &self.head;
        let anchor = if self.from == head.checkpoint_pos + 1 {
            if head.checkpoint_pos == 0 {
                "from the genesis".to_string()
            } else {
                format!(
                    "from the pruning checkpoint at position {} (hash {}, pruned at {})",
                    head.checkpoint_pos,
                    head.checkpoint_hash,
                    head.checkpoint_at.as_deref().unwrap_or("?")
                )
            }
        } else {
            format!(
                "from position {} (its link to position {} taken on trust)",
                self.from,
                self.from - 1
            )
        };
        let end = if self.to_head {
            format!(
                "up to the head (position {}, hash {})",
                head.head_pos, head.head_hash
            )
        } else {
            "up to the requested end (the head was not checked)".into()
        };
        let waiting = match (&self.unsealed.rows, &self.unsealed.oldest_at) {
            (0, _) => String::new(),
            (n, oldest) => format!(
                "\n{n} {} committed during the check, not sealed yet (oldest written at {})",
                if *n == 1 { "row was" } else { "rows were" },
                oldest.as_deref().unwrap_or("?")
            ),
        };
        format!(
            "OK: audit chain verified: {} rows ({span}), {anchor}, {end}{waiting}",
            s.rows
        )
    }
}

const PAGE: i64 = 1000;

/// Verifies the chain in the database, all of it or positions
/// `from..=to`, in constant memory. On PostgreSQL every row committed
/// before the call is sealed first, so the chain checked holds it.
pub fn verify_db(
    conn: &mut AnyConnection,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<DbReport, StoreError> {
    store::seal_all(conn)?;
    let head = store::find_chain_head(conn)?;
    let unsealed = store::find_seal_backlog(conn)?;
    let start = from.unwrap_or(0).max(head.checkpoint_pos + 1);
    let anchor = if start == head.checkpoint_pos + 1 {
        Anchor::Known {
            pos: head.checkpoint_pos,
            hash: head.checkpoint_hash.clone(),
        }
    } else {
        Anchor::TrustedAt { pos: start }
    };
    let to_head = to.is_none_or(|t| t >= head.head_pos);
    let through = if to_head { Some(head.head_pos) } else { to };
    let mut check = ChainCheck::new(anchor, false);
    let report = |summary: &Summary, broken: Option<Break>| DbReport {
        head: head.clone(),
        from: start,
        to_head,
        summary: summary.clone(),
        broken,
        unsealed: unsealed.clone(),
    };
    let all = AuditFilter::default();
    let mut after = start - 1;
    loop {
        let page = store::find_audit_page(conn, &all, after, through, PAGE)?;
        for r in &page {
            if let Err(b) = check.push(r) {
                return Ok(report(check.summary(), Some(b)));
            }
        }
        match page.last() {
            Some(r) if page.len() as i64 == PAGE => after = r.chain_pos,
            _ => break,
        }
    }
    if start <= head.head_pos && check.summary().rows == 0 && !to_head {
        let b = Break {
            chain_pos: Some(start),
            seq: None,
            line: None,
            reason: "no row at this position: rows were deleted".into(),
        };
        return Ok(report(check.summary(), Some(b)));
    }
    if to_head {
        let (last_pos, last_hash) = check
            .summary()
            .last
            .clone()
            .unwrap_or((head.checkpoint_pos, head.checkpoint_hash.clone()));
        if last_pos != head.head_pos {
            let b = Break {
                chain_pos: Some(last_pos + 1),
                seq: None,
                line: None,
                reason: format!(
                    "the chain ends at position {last_pos} but its head records position {}: \
                     rows were deleted",
                    head.head_pos
                ),
            };
            return Ok(report(check.summary(), Some(b)));
        }
        if last_hash != head.head_hash {
            let b = Break {
                chain_pos: Some(last_pos),
                seq: None,
                line: None,
                reason: "the last row's hash is not the hash recorded in the chain head: \
                         the end of the chain was replaced"
                    .into(),
            };
            return Ok(report(check.summary(), Some(b)));
        }
        if from.is_none() {
            let (n, lo, hi) = store::find_unchained(conn)?;
            if n > 0 {
                let b = Break {
                    chain_pos: None,
                    seq: lo,
                    line: None,
                    reason: format!(
                        "{n} rows (seq {}..={}) are outside the chain: inserted or unlinked \
                         behind the gateway's back (rows written before the chain existed \
                         are chained by the next audit write)",
                        lo.unwrap_or_default(),
                        hi.unwrap_or_default()
                    ),
                };
                return Ok(report(check.summary(), Some(b)));
            }
        }
    }
    Ok(report(check.summary(), None))
}

/// The outcome of verifying an export file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// What was checked.
    pub summary: Summary,
    /// Whether gaps were allowed (a filtered export).
    pub partial: bool,
    /// The first break, if any.
    pub broken: Option<Break>,
}

impl FileReport {
    /// One-paragraph, human-readable result, saying what was and was not checked.
    pub fn describe(&self) -> String {
        let s = &self.summary;
        if let Some(b) = &self.broken {
            return format!(
                "BROKEN: export breaks at {b}\n({} rows before it verified)",
                s.rows
            );
        }
        let (Some((first, first_prev)), Some((last, last_hash))) = (&s.first, &s.last) else {
            return "OK: the file holds no audit rows; nothing was verified".into();
        };
        let start = if *first == 1 {
            "it starts at the genesis".to_string()
        } else {
            format!(
                "it starts at position {first}, whose prev_hash {first_prev} is taken on trust \
                 (compare it with the last hash of the previous export or the pruning checkpoint)"
            )
        };
        let body = if self.partial {
            format!(
                "every row's content matches its hash; {} links to a predecessor present in \
                 the file checked; {} gaps where rows are not in the file (filtered export: \
                 deletions inside gaps cannot be detected)",
                s.links, s.gaps
            )
        } else {
            "positions are contiguous and every row links to the one before it".into()
        };
        format!(
            "OK: export verified: {} rows, positions {first}..={last}; {body}; {start}; \
             last hash {last_hash} (compare it with `audit verify` on the database or the \
             next export)",
            s.rows
        )
    }
}

/// Verifies an NDJSON export read from `input`. With `partial`, position
/// gaps (a filtered export) are allowed and only links to rows present are
/// checked.
pub fn verify_file(input: impl BufRead, partial: bool) -> std::io::Result<FileReport> {
    let mut check = ChainCheck::new(Anchor::Trusted, partial);
    let report = |check: &ChainCheck, broken: Option<Break>| FileReport {
        summary: check.summary().clone(),
        partial,
        broken,
    };
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        let n = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        if n == 1 && line.starts_with("chain_pos,") {
            let b = Break {
                chain_pos: None,
                seq: None,
                line: Some(1),
                reason: "this is a CSV export; CSV cannot tell an empty value from an absent \
                         one, so only NDJSON exports can be verified"
                    .into(),
            };
            return Ok(report(&check, Some(b)));
        }
        let r: AuditRecord = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                let b = Break {
                    chain_pos: None,
                    seq: None,
                    line: Some(n),
                    reason: format!("not an audit row: {e}"),
                };
                return Ok(report(&check, Some(b)));
            }
        };
        if let Err(mut b) = check.push(&r) {
            b.line = Some(n);
            return Ok(report(&check, Some(b)));
        }
    }
    Ok(report(&check, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|i| {
                let mut r = AuditRecord {
                    chain_pos: i,
                    seq: i + 10,
                    at: format!("2026-11-26T10:00:{i:02}.000Z"),
                    tenant: Some("acme".into()),
                    actor: "acme/entra".into(),
                    action: "scim.create".into(),
                    resource_type: Some("User".into()),
                    resource_id: Some(format!("u{i}")),
                    outcome: "success".into(),
                    detail: None,
                    app: None,
                    prev_hash: Some(prev.clone()),
                    hash: None,
                };
                let h = chain_hash(&r.fields());
                r.hash = Some(h.clone());
                prev = h;
                r
            })
            .collect()
    }

    fn run(rows: &[AuditRecord], anchor: Anchor, gaps: bool) -> Result<Summary, Break> {
        let mut c = ChainCheck::new(anchor, gaps);
        for r in rows {
            c.push(r)?;
        }
        Ok(c.summary().clone())
    }

    fn genesis() -> Anchor {
        Anchor::Known {
            pos: 0,
            hash: GENESIS.into(),
        }
    }

    #[test]
    fn an_intact_chain_verifies() {
        let s = run(&chain(5), genesis(), false).unwrap();
        assert_eq!((s.rows, s.links, s.gaps), (5, 5, 0));
    }

    #[test]
    fn an_edited_row_breaks_at_that_row() {
        let mut rows = chain(5);
        rows[2].outcome = "failure".into();
        let b = run(&rows, genesis(), false).unwrap_err();
        assert_eq!(b.chain_pos, Some(3));
        assert!(b.reason.contains("altered"), "{b}");
    }

    #[test]
    fn a_deleted_row_breaks_at_the_next() {
        let mut rows = chain(5);
        rows.remove(1);
        let b = run(&rows, genesis(), false).unwrap_err();
        assert_eq!(b.chain_pos, Some(3));
        assert!(b.reason.contains("deleted"), "{b}");
    }

    #[test]
    fn swapped_rows_break() {
        let mut rows = chain(5);
        rows.swap(1, 2);
        let b = run(&rows, genesis(), false).unwrap_err();
        assert_eq!(b.chain_pos, Some(3));
        // Renumbering the swapped rows does not help: the link breaks.
        let mut rows = chain(5);
        rows.swap(1, 2);
        rows[1].chain_pos = 2;
        rows[2].chain_pos = 3;
        let b = run(&rows, genesis(), false).unwrap_err();
        assert_eq!(b.chain_pos, Some(2));
    }

    #[test]
    fn a_filtered_export_checks_what_it_can() {
        let rows: Vec<_> = chain(6).into_iter().filter(|r| r.chain_pos != 3).collect();
        let s = run(&rows, Anchor::Trusted, true).unwrap();
        assert_eq!((s.rows, s.links, s.gaps), (5, 4, 1));
        assert!(run(&rows, Anchor::Trusted, false).is_err());
    }

    #[test]
    fn a_range_needs_its_first_row() {
        let rows: Vec<_> = chain(6).into_iter().skip(3).collect();
        assert!(run(&rows, Anchor::TrustedAt { pos: 4 }, false).is_ok());
        assert!(run(&rows, Anchor::TrustedAt { pos: 3 }, false).is_err());
    }

    #[test]
    fn a_file_round_trips_through_ndjson() {
        let text: String = chain(4)
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        let ok = verify_file(text.as_bytes(), false).unwrap();
        assert!(ok.broken.is_none(), "{}", ok.describe());
        let tampered = text.replacen("\"u2\"", "\"u9\"", 1);
        let bad = verify_file(tampered.as_bytes(), false).unwrap();
        assert_eq!(bad.broken.unwrap().line, Some(2));
    }
}
