//! `scim-bench --compare`: the same benchmark on several configurations in
//! one run, SQLite with one gateway node first, then PostgreSQL with each
//! node count of `--compare-nodes`, and one table that sets them side by
//! side. Each configuration gets a fresh database, a fresh load and its own
//! ceiling, so every cell can be read as a ratio to a ceiling measured
//! minutes earlier on the same machine, and a PostgreSQL cell also as a
//! ratio to SQLite's rate for the same operation.
//!
//! ```text
//! SQLite ×1 ─▶ PostgreSQL ×1 ─▶ PostgreSQL ×2 ─▶ …   each: fresh DB ─▶ load ─▶ ceiling + ops ─▶ its report
//!                                                  ─▶ one table: operation × configuration
//! ```

use std::fmt::Write;

use crate::ops::Op;
use crate::report::Row;

/// The node counts of the PostgreSQL configurations (`--compare-nodes`),
/// at least one, each at least 1, strictly increasing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCounts(Vec<usize>);

impl NodeCounts {
    /// Parses a comma-separated list such as `1,2,3`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut counts: Vec<usize> = Vec::new();
        for part in text.split(',') {
            let n: usize = part
                .trim()
                .parse()
                .map_err(|_| format!("expected node counts like 1,2,3, not {text:?}"))?;
            if n == 0 {
                return Err("a node count must be at least 1".into());
            }
            if let Some(&last) = counts.last().filter(|&&last| n <= last) {
                return Err(format!("node counts must increase: {n} after {last}"));
            }
            counts.push(n);
        }
        Ok(Self(counts))
    }
}

/// One configuration measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// PostgreSQL (the `--database-url` server) rather than a SQLite file.
    pub postgres: bool,
    /// Gateway nodes over the database.
    pub nodes: usize,
}

impl Config {
    /// Its name in the table, e.g. `PostgreSQL, 2 nodes`.
    pub fn name(self) -> String {
        let backend = if self.postgres {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        let plural = if self.nodes == 1 { "" } else { "s" };
        format!("{backend}, {} node{plural}", self.nodes)
    }
}

/// The configurations to measure, in order: SQLite with one node, then
/// PostgreSQL with each of `counts`.
pub fn configurations(counts: &NodeCounts) -> Vec<Config> {
    let sqlite = Config {
        postgres: false,
        nodes: 1,
    };
    let postgres = counts.0.iter().map(|&nodes| Config {
        postgres: true,
        nodes,
    });
    std::iter::once(sqlite).chain(postgres).collect()
}

/// What one configuration measured.
pub struct Measured {
    /// The configuration.
    pub config: Config,
    /// Its report's rows, ceiling first.
    pub rows: Vec<Row>,
}

impl Measured {
    fn find(&self, op: Op) -> Option<&Row> {
        self.rows.iter().find(|r| r.op == op)
    }
}

/// The closing table of a `--compare` run.
pub struct Comparison {
    /// Users loaded in each configuration.
    pub users: usize,
    /// The machine's cores, shared by nodes, database and load generator.
    pub cores: usize,
    /// The configurations, in the order measured.
    pub results: Vec<Measured>,
}

impl Comparison {
    /// Renders the comparison as Markdown: the table, then whether adding
    /// PostgreSQL nodes lowered any operation's throughput.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let names: Vec<String> = self.results.iter().map(|m| m.config.name()).collect();
        let _ = writeln!(
            s,
            "## scim-gateway comparison: {} users; {}\n",
            self.users,
            names.join(" · ")
        );
        let _ = writeln!(
            s,
            "Each cell: successful requests per second · that rate as a share of the same \
             configuration's GET /healthz ceiling · for PostgreSQL, that rate as a share of \
             SQLite's for the same operation. Every configuration had a fresh database and load; \
             its nodes, the database server and the load generator shared the machine's {} cores.\n",
            self.cores
        );
        let _ = writeln!(s, "| Operation | {} |", names.join(" | "));
        let _ = writeln!(s, "|---|{}", "---:|".repeat(names.len()));
        let sqlite = self.results.iter().find(|m| !m.config.postgres);
        for op in Op::ALL {
            let Some(label) = self.results.iter().find_map(|m| m.find(op)) else {
                continue;
            };
            let cells: Vec<String> = self
                .results
                .iter()
                .map(|m| cell(m, op, sqlite.filter(|_| m.config.postgres)))
                .collect();
            let _ = writeln!(s, "| {} | {} |", label.label, cells.join(" | "));
        }
        let postgres: Vec<&Measured> = self.results.iter().filter(|m| m.config.postgres).collect();
        if postgres.len() > 1 {
            let _ = writeln!(s, "\nAdding PostgreSQL nodes:");
            for pair in postgres.windows(2) {
                let _ = writeln!(s, "- {}", node_step(pair[0], pair[1]));
            }
        }
        s
    }
}

/// One table cell: `op`'s rate in `m`, its ratio to `m`'s ceiling and, for
/// PostgreSQL, to the `sqlite` rate.
fn cell(m: &Measured, op: Op, sqlite: Option<&Measured>) -> String {
    let Some(row) = m.find(op) else {
        return "–".into();
    };
    let mut text = format!("{}/s", thousands(row.rate));
    let ceiling = m.find(Op::Healthz).map_or(0.0, |r| r.rate);
    if op != Op::Healthz && ceiling > 0.0 {
        let _ = write!(text, " · {:.3}× ceiling", row.rate / ceiling);
    }
    if let Some(base) = sqlite.and_then(|s| s.find(op)).filter(|b| b.rate > 0.0) {
        let _ = write!(text, " · {:.2}× SQLite", row.rate / base.rate);
    }
    if row.errors > 0 {
        let _ = write!(text, " · {} errors", row.errors);
    }
    text
}

/// Whether going from configuration `a` to `b` (more nodes) lowered any
/// operation's throughput, as a sentence.
fn node_step(a: &Measured, b: &Measured) -> String {
    let step = format!("{} → {} nodes", a.config.nodes, b.config.nodes);
    let lowered: Vec<String> = a
        .rows
        .iter()
        .filter_map(|before| {
            let after = b.find(before.op)?;
            (after.rate < before.rate).then(|| {
                format!(
                    "{} {}/s → {}/s (−{:.1} %)",
                    before.label,
                    thousands(before.rate),
                    thousands(after.rate),
                    (1.0 - after.rate / before.rate) * 100.0
                )
            })
        })
        .collect();
    if lowered.is_empty() {
        format!("{step}: no operation's throughput went down.")
    } else {
        format!(
            "{step}: lowered the throughput of {} of {} operations: {}.",
            lowered.len(),
            a.rows.len(),
            lowered.join("; ")
        )
    }
}

/// A rate with thousands separators: `1,234`; one decimal below 10.
fn thousands(rate: f64) -> String {
    if rate < 10.0 {
        return format!("{rate:.1}");
    }
    let digits = format!("{rate:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(postgres: bool, nodes: usize, rates: [f64; 3]) -> Measured {
        let ops = [Op::Healthz, Op::GetUser, Op::CreateUser];
        let rows = ops
            .into_iter()
            .zip(rates)
            .map(|(op, rate)| Row {
                op,
                label: op.label(100),
                rate,
                p50: 1.0,
                p99: 2.0,
                errors: if op == Op::CreateUser && nodes == 3 {
                    7
                } else {
                    0
                },
                peak_kib: 1024,
            })
            .collect();
        Measured {
            config: Config { postgres, nodes },
            rows,
        }
    }

    #[test]
    fn node_counts_parse_as_an_increasing_list() {
        assert_eq!(NodeCounts::parse("1,2,3"), Ok(NodeCounts(vec![1, 2, 3])));
        assert_eq!(NodeCounts::parse(" 2 , 4 "), Ok(NodeCounts(vec![2, 4])));
        assert_eq!(NodeCounts::parse("5"), Ok(NodeCounts(vec![5])));
        assert!(NodeCounts::parse("").is_err());
        assert!(NodeCounts::parse("1,,2").is_err());
        assert!(NodeCounts::parse("1,x").is_err());
        assert!(NodeCounts::parse("0,1").is_err());
        assert_eq!(
            NodeCounts::parse("1,3,2"),
            Err("node counts must increase: 2 after 3".into())
        );
    }

    #[test]
    fn sqlite_comes_first_then_each_postgres_count() {
        let configs = configurations(&NodeCounts(vec![1, 2]));
        let names: Vec<String> = configs.into_iter().map(Config::name).collect();
        assert_eq!(
            names,
            [
                "SQLite, 1 node",
                "PostgreSQL, 1 node",
                "PostgreSQL, 2 nodes"
            ]
        );
    }

    #[test]
    fn rates_with_thousands_separators() {
        assert_eq!(thousands(1234.4), "1,234");
        assert_eq!(thousands(999.6), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(thousands(4.26), "4.3");
    }

    #[test]
    fn the_table_sets_each_configuration_beside_sqlite() {
        let comparison = Comparison {
            users: 500,
            cores: 2,
            results: vec![
                measured(false, 1, [10_000.0, 4_000.0, 1_000.0]),
                measured(true, 1, [9_000.0, 2_000.0, 1_500.0]),
                measured(true, 2, [8_000.0, 2_400.0, 1_200.0]),
                measured(true, 3, [8_500.0, 2_600.0, 1_300.0]),
            ],
        };
        let text = comparison.render();
        let expected = "\
| Operation | SQLite, 1 node | PostgreSQL, 1 node | PostgreSQL, 2 nodes | PostgreSQL, 3 nodes |
|---|---:|---:|---:|---:|
| GET /healthz (ceiling) | 10,000/s | 9,000/s · 0.90× SQLite | 8,000/s · 0.80× SQLite | 8,500/s · 0.85× SQLite |
| GET /Users/{id} | 4,000/s · 0.400× ceiling | 2,000/s · 0.222× ceiling · 0.50× SQLite | 2,400/s · 0.300× ceiling · 0.60× SQLite | 2,600/s · 0.306× ceiling · 0.65× SQLite |
| POST /Users | 1,000/s · 0.100× ceiling | 1,500/s · 0.167× ceiling · 1.50× SQLite | 1,200/s · 0.150× ceiling · 1.20× SQLite | 1,300/s · 0.153× ceiling · 1.30× SQLite · 7 errors |

Adding PostgreSQL nodes:
- 1 → 2 nodes: lowered the throughput of 2 of 3 operations: GET /healthz (ceiling) 9,000/s → 8,000/s (−11.1 %); POST /Users 1,500/s → 1,200/s (−20.0 %).
- 2 → 3 nodes: no operation's throughput went down.
";
        assert!(text.starts_with(
            "## scim-gateway comparison: 500 users; SQLite, 1 node · PostgreSQL, 1 node · \
             PostgreSQL, 2 nodes · PostgreSQL, 3 nodes\n"
        ));
        assert!(text.contains("shared the machine's 2 cores."));
        assert!(text.ends_with(expected), "{text}");
    }
}
