//! Several gateway nodes over one database, as they run in production
//! behind a load balancer: each its own `serve` process on its own free
//! loopback port, all accepting one bearer token. They start one after
//! another, so the first applies the migrations and the others find the
//! schema ready. Every node is killed when the cluster is stopped or
//! dropped (an error or Ctrl-C never leaves one running).
//!
//! ```text
//!            ┌▶ node 1 (127.0.0.1:p1) ─┐
//! bench ─────┼▶ node 2 (127.0.0.1:p2) ─┼─▶ one database
//!  (round-   └▶ node N (127.0.0.1:pN) ─┘
//!   robin)
//! ```

use std::path::Path;

use anyhow::bail;

use crate::client::Target;
use crate::gateway::{Gateway, Memory, log_tail, random_token};

/// Running gateway nodes sharing one database and one token.
pub struct Cluster {
    nodes: Vec<Gateway>,
    /// Nodes asked for (logs are named by node when more than one).
    size: usize,
}

impl Cluster {
    /// Starts `n` (at least 1) nodes of `binary serve` on `database_url`,
    /// one after another, logging to `dir/gateway.log` (one node) or
    /// `dir/gateway-<i>.log`. If one fails to start, its log and those of
    /// the nodes already running are printed, and those are stopped.
    pub async fn start(
        binary: &Path,
        database_url: &str,
        dir: &Path,
        n: usize,
    ) -> anyhow::Result<Self> {
        if n == 0 {
            bail!("a cluster needs at least one node");
        }
        let token = random_token();
        let mut cluster = Self {
            nodes: Vec::with_capacity(n),
            size: n,
        };
        for i in 1..=n {
            let log = match n {
                1 => dir.join("gateway.log"),
                _ => dir.join(format!("gateway-{i}.log")),
            };
            match Gateway::start_with_token(binary, database_url, &log, &token).await {
                Ok(node) => cluster.nodes.push(node),
                Err(e) => {
                    if !cluster.nodes.is_empty() {
                        eprintln!("{}", cluster.log_tails(30));
                    }
                    eprintln!("{}", heading(&cluster.name(i), 30, &log_tail(&log, 30)));
                    let _ = cluster.stop().await;
                    return Err(e.context(format!("starting gateway node {i} of {n}")));
                }
            }
        }
        Ok(cluster)
    }

    /// How many nodes run.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The first node's address and token (loading goes through it).
    pub fn first(&self) -> &Target {
        // `start` refuses an empty cluster, so there is always a first node.
        &self.nodes[0].target
    }

    /// Every node's address and token, in start order.
    pub fn targets(&self) -> Vec<Target> {
        self.nodes.iter().map(|n| n.target.clone()).collect()
    }

    /// The memory of the node with the largest peak RSS now; fails if any
    /// node has exited.
    pub fn largest_memory(&mut self) -> anyhow::Result<Memory> {
        let mut largest = Memory::default();
        for node in &mut self.nodes {
            let memory = node.memory()?;
            if memory.peak_kib >= largest.peak_kib {
                largest = memory;
            }
        }
        Ok(largest)
    }

    /// The last `n` lines of every node's log, each under a heading.
    pub fn log_tails(&self, n: usize) -> String {
        let tails: Vec<String> = (1..)
            .zip(&self.nodes)
            .map(|(i, node)| heading(&self.name(i), n, &node.log_tail(n)))
            .collect();
        tails.join("\n")
    }

    /// Node `i`'s name in log headings.
    fn name(&self, i: usize) -> String {
        match self.size {
            1 => "gateway".into(),
            _ => format!("gateway node {i}"),
        }
    }

    /// Kills every node and waits for each to exit; the first failure is
    /// returned after all were tried.
    pub async fn stop(self) -> anyhow::Result<()> {
        let mut first_error = None;
        for node in self.nodes {
            if let Err(e) = node.stop().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A log tail under its heading, as the single-gateway benchmark prints it.
fn heading(name: &str, n: usize, tail: &str) -> String {
    format!("--- {name} log (last {n} lines) ---\n{tail}")
}
