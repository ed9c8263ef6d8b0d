//! The Markdown report: how the run was set up, how long loading took, one
//! table row per operation with its rate as a ratio to the ceiling measured
//! in the same run (absolute rates swing between runs on a shared machine;
//! same-run ratios do not), and the ratios worth comparing across runs.
//! With several gateway nodes the memory figures are the largest node's.

use std::fmt::Write;
use std::time::Duration;

use crate::gateway::Memory;
use crate::ops::Op;

/// One measured operation.
pub struct Row {
    /// Which operation.
    pub op: Op,
    /// Its label.
    pub label: String,
    /// Successful requests per second.
    pub rate: f64,
    /// Median latency, ms.
    pub p50: f64,
    /// 99th percentile latency, ms.
    pub p99: f64,
    /// Failed requests.
    pub errors: u64,
    /// Gateway peak RSS (VmHWM) after this operation, KiB (the largest
    /// node's when there are several).
    pub peak_kib: u64,
}

/// Everything the report prints.
pub struct Report {
    /// Users loaded.
    pub users: usize,
    /// Database backend.
    pub backend: &'static str,
    /// Gateway nodes sharing the database.
    pub nodes: usize,
    /// Setup sentence (connections, durations, cores).
    pub setup: String,
    /// Loading sentence.
    pub load: String,
    /// Measured operations, ceiling first.
    pub rows: Vec<Row>,
    /// Gateway memory after loading and at the end (the node with the
    /// largest peak RSS at each point).
    pub memory: (Memory, Memory),
    /// Anything unusual: errors, repeated member additions.
    pub notes: Vec<String>,
}

impl Report {
    /// Renders the report as Markdown.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let many = self.nodes > 1;
        let nodes = if many {
            format!(", {} gateway nodes", self.nodes)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "## scim-gateway benchmark: {} users, {}{nodes}\n",
            self.users, self.backend
        );
        let _ = writeln!(s, "{}\n\n{}\n", self.setup, self.load);
        let _ = writeln!(
            s,
            "| Operation | req/s | × ceiling | p50 ms | p99 ms | errors | peak RSS MiB{} |",
            if many { " (largest node)" } else { "" }
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
        let ceiling = self.find(Op::Healthz).map_or(0.0, |r| r.rate);
        for r in &self.rows {
            let ratio = if ceiling > 0.0 { r.rate / ceiling } else { 0.0 };
            let _ = writeln!(
                s,
                "| {} | {:.0} | {ratio:.3} | {:.2} | {:.2} | {} | {:.0} |",
                r.label,
                r.rate,
                r.p50,
                r.p99,
                r.errors,
                mib(r.peak_kib)
            );
        }
        s.push('\n');
        if let Some(get) = self.find(Op::GetUser) {
            for (op, name) in [
                (Op::FilterUserName, "userName"),
                (Op::FilterEmail, "emails"),
            ] {
                if let Some(f) = self.find(op) {
                    let _ = writeln!(
                        s,
                        "- {name} filter p50 at {} users: {:.2} ms = {:.2} × GET-by-id p50",
                        self.users,
                        f.p50,
                        ratio(f.p50, get.p50)
                    );
                }
            }
        }
        if let (Some(small), Some(big)) =
            (self.find(Op::AddMemberSmall), self.find(Op::AddMemberBig))
        {
            let _ = writeln!(
                s,
                "- add-member p50, big group / empty group: {:.2}",
                ratio(big.p50, small.p50)
            );
        }
        let (load, end) = self.memory;
        let whose = if many {
            format!(" of the largest of the {} nodes", self.nodes)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "- gateway peak RSS (VmHWM){whose}: {:.1} MiB after loading, {:.1} MiB at the end; resident \
             at the end: {:.1} MiB anonymous + {:.1} MiB file-backed (mapped database pages)",
            mib(load.peak_kib),
            mib(end.peak_kib),
            mib(end.anon_kib),
            mib(end.file_kib)
        );
        for note in &self.notes {
            let _ = writeln!(s, "- {note}");
        }
        s
    }

    fn find(&self, op: Op) -> Option<&Row> {
        self.rows.iter().find(|r| r.op == op)
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// How the measuring connections reach the gateway, for the setup
/// sentence: over `nodes` nodes they are dealt out round-robin.
pub fn connections_sentence(connections: usize, nodes: usize) -> String {
    let mut s = format!("{connections} keep-alive connections on loopback");
    if nodes > 1 {
        let (low, high) = (connections / nodes, connections.div_ceil(nodes));
        let each = if low == high {
            low.to_string()
        } else {
            format!("{low} or {high}")
        };
        let _ = write!(
            s,
            " dealt out round-robin over {nodes} gateway nodes on one database ({each} each; \
             loading went through the first node)"
        );
    }
    s
}

/// `n` per second over `d`, for the loading sentence.
pub fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(op: Op, rate: f64, p50: f64) -> Row {
        Row {
            op,
            label: op.label(100),
            rate,
            p50,
            p99: p50 * 2.0,
            errors: 0,
            peak_kib: 4096,
        }
    }

    fn report(backend: &'static str, nodes: usize) -> Report {
        Report {
            users: 10,
            backend,
            nodes,
            setup: "setup".into(),
            load: "load".into(),
            rows: vec![
                row(Op::Healthz, 1000.0, 0.1),
                row(Op::GetUser, 250.0, 0.4),
                row(Op::FilterUserName, 200.0, 0.6),
                row(Op::AddMemberSmall, 100.0, 1.0),
                row(Op::AddMemberBig, 50.0, 3.0),
            ],
            memory: (
                Memory {
                    peak_kib: 2048,
                    ..Memory::default()
                },
                Memory {
                    rss_kib: 1536,
                    peak_kib: 3072,
                    anon_kib: 1024,
                    file_kib: 512,
                },
            ),
            notes: vec![],
        }
    }

    #[test]
    fn rates_are_ratios_to_the_ceiling_of_the_same_run() {
        let text = report("SQLite", 1).render();
        assert!(text.starts_with("## scim-gateway benchmark: 10 users, SQLite\n"));
        assert!(text.contains("| errors | peak RSS MiB |\n"));
        assert!(text.contains("- gateway peak RSS (VmHWM): 2.0 MiB"));
        assert!(text.contains("| GET /Users/{id} | 250 | 0.250 | 0.40 | 0.80 | 0 | 4 |"));
        assert!(text.contains("userName filter p50 at 10 users: 0.60 ms = 1.50 × GET-by-id p50"));
        assert!(text.contains("big group / empty group: 3.00"));
        assert!(text.contains("2.0 MiB after loading, 3.0 MiB at the end"));
        assert!(text.contains("1.0 MiB anonymous + 0.5 MiB file-backed"));
    }

    #[test]
    fn connections_are_shared_out_over_the_nodes() {
        assert_eq!(
            connections_sentence(32, 1),
            "32 keep-alive connections on loopback"
        );
        assert_eq!(
            connections_sentence(32, 2),
            "32 keep-alive connections on loopback dealt out round-robin over 2 gateway nodes on \
             one database (16 each; loading went through the first node)"
        );
        assert!(connections_sentence(32, 3).contains("(10 or 11 each;"));
    }

    #[test]
    fn several_nodes_report_the_largest_nodes_memory() {
        let text = report("PostgreSQL", 3).render();
        assert!(
            text.starts_with("## scim-gateway benchmark: 10 users, PostgreSQL, 3 gateway nodes\n")
        );
        assert!(text.contains("| errors | peak RSS MiB (largest node) |\n"));
        assert!(text.contains("- gateway peak RSS (VmHWM) of the largest of the 3 nodes: 2.0 MiB"));
    }
}
