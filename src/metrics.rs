//! Process-wide counters for `/metrics`, in Prometheus' text format.
//!
//! Kept deliberately small: atomic counters and fixed-bucket histograms, no registry crate.
//! They live for the process, across schema reloads.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        LazyLock, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Upper bounds of the batch size buckets.
const SIZE_BUCKETS: [f64; 8] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0];

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

#[derive(Default)]
pub struct Metrics {
    /// By outcome: `ok`, `field_errors` (data with errors), `request_error`.
    requests: Mutex<BTreeMap<&'static str, Histogram>>,
    /// By upstream, then outcome: `ok` or an error code.
    upstream: Mutex<BTreeMap<String, BTreeMap<&'static str, Histogram>>>,
    batch_sizes: Mutex<Option<Histogram>>,
    deduplicated: AtomicU64,
}

struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

impl Metrics {
    pub fn request(&self, outcome: &'static str, took: Duration) {
        let mut m = self.requests.lock().expect("metrics lock poisoned");
        m.entry(outcome)
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(took.as_secs_f64());
    }

    pub fn upstream_call(&self, upstream: &str, outcome: &'static str, took: Duration) {
        let mut m = self.upstream.lock().expect("metrics lock poisoned");
        if !m.contains_key(upstream) {
            m.insert(upstream.to_owned(), BTreeMap::new());
        }
        m.get_mut(upstream)
            .expect("inserted above")
            .entry(outcome)
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(took.as_secs_f64());
    }

    pub fn batch(&self, size: usize) {
        let mut m = self.batch_sizes.lock().expect("metrics lock poisoned");
        m.get_or_insert_with(|| Histogram::new(&SIZE_BUCKETS))
            .observe(size as f64);
    }

    pub fn deduplicated(&self) {
        self.deduplicated.fetch_add(1, Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP fanout_requests_seconds GraphQL requests by outcome, and their latency.\n",
        );
        out.push_str("# TYPE fanout_requests_seconds histogram\n");
        for (outcome, h) in self.requests.lock().expect("metrics lock poisoned").iter() {
            h.render(
                out,
                "fanout_requests_seconds",
                &format!("outcome=\"{outcome}\""),
            );
        }
        out.push_str("# HELP fanout_upstream_seconds Upstream calls by upstream and outcome (ok or an error code), and their latency.\n");
        out.push_str("# TYPE fanout_upstream_seconds histogram\n");
        for (up, by) in self.upstream.lock().expect("metrics lock poisoned").iter() {
            for (outcome, h) in by {
                let labels = format!("upstream=\"{up}\",outcome=\"{outcome}\"");
                h.render(out, "fanout_upstream_seconds", &labels);
            }
        }
        out.push_str("# HELP fanout_batch_size Keys per batched upstream call.\n");
        out.push_str("# TYPE fanout_batch_size histogram\n");
        if let Some(h) = &*self.batch_sizes.lock().expect("metrics lock poisoned") {
            h.render(out, "fanout_batch_size", "");
        }
        out.push_str("# HELP fanout_deduplicated_total Upstream GETs answered by an identical call of the same request (or, with coalesce, of another).\n");
        out.push_str("# TYPE fanout_deduplicated_total counter\n");
        let _ = writeln!(
            out,
            "fanout_deduplicated_total {}",
            self.deduplicated.load(Relaxed)
        );
    }
}
