//! Process-wide counters for `/metrics`, in Prometheus' text format or, when asked for,
//! OpenMetrics.
//!
//! Kept deliberately small: atomic counters and fixed-bucket histograms, no registry crate.
//! They live for the process, across schema reloads. What they count comes from the call
//! and request events ([`crate::observe::prom`]); the process figures are read from `/proc`
//! when scraped.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        LazyLock, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
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
    /// By route, then status code.
    responses: Mutex<BTreeMap<&'static str, BTreeMap<u16, u64>>>,
    in_flight: AtomicI64,
    /// By upstream.
    upstream: Mutex<BTreeMap<String, UpstreamMetrics>>,
    batch_sizes: Mutex<Option<Histogram>>,
    deduplicated: AtomicU64,
    spans_exported: AtomicU64,
    spans_failed: AtomicU64,
    spans_dropped: AtomicU64,
}

#[derive(Default)]
struct UpstreamMetrics {
    /// By outcome: `ok` or an error code.
    calls: BTreeMap<&'static str, Histogram>,
    retries: u64,
}

/// An upstream's circuit breaker as `/metrics` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
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

/// `# HELP` and `# TYPE` of a family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

impl Metrics {
    pub fn request(&self, outcome: &'static str, took: Duration) {
        let mut m = self.requests.lock().expect("metrics lock poisoned");
        m.entry(outcome)
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(took.as_secs_f64());
    }

    /// An HTTP response, refusals before execution included.
    pub fn response(&self, route: &'static str, status: u16) {
        let mut m = self.responses.lock().expect("metrics lock poisoned");
        *m.entry(route).or_default().entry(status).or_default() += 1;
    }

    /// One more (or, with `-1`, one fewer) request in flight.
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Relaxed);
    }

    pub fn upstream_call(
        &self,
        upstream: &str,
        outcome: &'static str,
        took: Duration,
        retries: u32,
    ) {
        let mut m = self.upstream.lock().expect("metrics lock poisoned");
        if !m.contains_key(upstream) {
            m.insert(upstream.to_owned(), UpstreamMetrics::default());
        }
        let up = m.get_mut(upstream).expect("inserted above");
        up.calls
            .entry(outcome)
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(took.as_secs_f64());
        up.retries += u64::from(retries);
    }

    pub fn batch(&self, size: usize) {
        let mut m = self.batch_sizes.lock().expect("metrics lock poisoned");
        m.get_or_insert_with(|| Histogram::new(&SIZE_BUCKETS))
            .observe(size as f64);
    }

    pub fn deduplicated(&self) {
        self.deduplicated.fetch_add(1, Relaxed);
    }

    /// Spans the OTLP exporter delivered, or failed to (dropped: the receiver is down).
    pub fn spans_exported(&self, n: usize, ok: bool) {
        let c = if ok {
            &self.spans_exported
        } else {
            &self.spans_failed
        };
        c.fetch_add(n as u64, Relaxed);
    }

    /// A span dropped before export: the queue was full.
    pub fn span_dropped(&self) {
        self.spans_dropped.fetch_add(1, Relaxed);
    }

    /// Spans handed to the exporter and not yet delivered or failed.
    pub fn spans_settled(&self) -> u64 {
        self.spans_exported.load(Relaxed) + self.spans_failed.load(Relaxed)
    }

    /// Everything, in Prometheus' text format; `breakers` are the serving schema's upstreams.
    pub fn render(&self, out: &mut String, breakers: &[(&str, BreakerState)]) {
        build_info(out);
        process(out);
        family(
            out,
            "fanout_http_responses_total",
            "counter",
            "HTTP responses by route and status, refusals before execution included.",
        );
        for (route, by) in self.responses.lock().expect("metrics lock poisoned").iter() {
            for (status, n) in by {
                let class = format!("{}xx", status / 100);
                let _ = writeln!(
                    out,
                    "fanout_http_responses_total{{route=\"{route}\",status=\"{status}\",class=\"{class}\"}} {n}"
                );
            }
        }
        family(
            out,
            "fanout_http_requests_in_flight",
            "gauge",
            "HTTP requests being served now.",
        );
        let _ = writeln!(
            out,
            "fanout_http_requests_in_flight {}",
            self.in_flight.load(Relaxed).max(0)
        );
        family(
            out,
            "fanout_requests_seconds",
            "histogram",
            "GraphQL requests by outcome, and their latency.",
        );
        for (outcome, h) in self.requests.lock().expect("metrics lock poisoned").iter() {
            h.render(
                out,
                "fanout_requests_seconds",
                &format!("outcome=\"{outcome}\""),
            );
        }
        let upstream = self.upstream.lock().expect("metrics lock poisoned");
        family(
            out,
            "fanout_upstream_seconds",
            "histogram",
            "Upstream calls by upstream and outcome (ok or an error code), and their latency.",
        );
        for (up, m) in upstream.iter() {
            for (outcome, h) in &m.calls {
                let labels = format!("upstream=\"{up}\",outcome=\"{outcome}\"");
                h.render(out, "fanout_upstream_seconds", &labels);
            }
        }
        family(
            out,
            "fanout_upstream_retries_total",
            "counter",
            "Upstream GETs sent again after a failure, by upstream.",
        );
        for (up, m) in upstream.iter() {
            let _ = writeln!(
                out,
                "fanout_upstream_retries_total{{upstream=\"{up}\"}} {}",
                m.retries
            );
        }
        drop(upstream);
        family(
            out,
            "fanout_upstream_circuit_open",
            "gauge",
            "1 while an upstream's circuit breaker is open (calls fail fast), else 0.",
        );
        for (up, state) in breakers {
            let open = u8::from(*state == BreakerState::Open);
            let _ = writeln!(
                out,
                "fanout_upstream_circuit_open{{upstream=\"{up}\"}} {open}"
            );
        }
        family(
            out,
            "fanout_batch_size",
            "histogram",
            "Keys per batched upstream call.",
        );
        if let Some(h) = &*self.batch_sizes.lock().expect("metrics lock poisoned") {
            h.render(out, "fanout_batch_size", "");
        }
        family(
            out,
            "fanout_deduplicated_total",
            "counter",
            "Upstream GETs answered by an identical call of the same request (or, with coalesce, of another).",
        );
        let _ = writeln!(
            out,
            "fanout_deduplicated_total {}",
            self.deduplicated.load(Relaxed)
        );
        family(
            out,
            "fanout_trace_spans_total",
            "counter",
            "Trace spans by result: exported over OTLP, or dropped because the export failed or the queue was full.",
        );
        let spans = [
            ("exported", &self.spans_exported),
            ("export_failed", &self.spans_failed),
            ("queue_full", &self.spans_dropped),
        ];
        for (result, n) in spans {
            let _ = writeln!(
                out,
                "fanout_trace_spans_total{{result=\"{result}\"}} {}",
                n.load(Relaxed)
            );
        }
    }
}

fn build_info(out: &mut String) {
    family(
        out,
        "fanout_build_info",
        "gauge",
        "Always 1; the labels say which Fanout this is.",
    );
    let _ = writeln!(
        out,
        "fanout_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
}

/// CPU, memory and file descriptors of this process, from `/proc/self` (Linux). Nothing
/// elsewhere.
fn process(out: &mut String) {
    let Some(p) = ProcessStats::read() else {
        return;
    };
    family(
        out,
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent, in seconds.",
    );
    let _ = writeln!(out, "process_cpu_seconds_total {}", p.cpu_seconds);
    family(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    let _ = writeln!(out, "process_resident_memory_bytes {}", p.rss_bytes);
    family(
        out,
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    );
    let _ = writeln!(out, "process_virtual_memory_bytes {}", p.vsize_bytes);
    family(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    let _ = writeln!(out, "process_start_time_seconds {}", p.start_time_seconds);
    if let Some(fds) = p.open_fds {
        family(out, "process_open_fds", "gauge", "Open file descriptors.");
        let _ = writeln!(out, "process_open_fds {fds}");
    }
    if let Some(max) = p.max_fds {
        family(
            out,
            "process_max_fds",
            "gauge",
            "The most file descriptors the process may open.",
        );
        let _ = writeln!(out, "process_max_fds {max}");
    }
}

/// The figures Prometheus' client libraries call the process metrics.
#[derive(Debug)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub vsize_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` where there is none.
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: count from after it.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        // Fields 3.. of proc_pid_stat(5), so field N is at index N - 3.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let ticks = clock_ticks();
        let page = page_size();
        let cpu_seconds = (field(14)? + field(15)?) as f64 / ticks;
        let start_ticks = field(22)?;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                let line = l.lines().find(|l| l.starts_with("Max open files"))?;
                line.split_ascii_whitespace().nth(3)?.parse().ok()
            });
        Some(ProcessStats {
            cpu_seconds,
            rss_bytes: field(24)? * page,
            vsize_bytes: field(23)?,
            start_time_seconds: boot as f64 + start_ticks as f64 / ticks,
            open_fds,
            max_fds,
        })
    }
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux Fanout runs on (the kernel's `USER_HZ`, fixed
/// for user space on every architecture).
fn clock_ticks() -> f64 {
    100.0
}

/// The page size, from the kernel's auxiliary vector (`AT_PAGESZ`); 4096 if it cannot be read.
fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 4096;
    };
    auxv.chunks_exact(16)
        .find_map(|pair| {
            let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
            let value = u64::from_ne_bytes(pair[8..].try_into().ok()?);
            (key == AT_PAGESZ).then_some(value)
        })
        .unwrap_or(4096)
}

/// The text format turned into OpenMetrics: counter families are named without `_total`,
/// and the exposition ends with `# EOF`.
pub fn to_openmetrics(text: &str) -> String {
    let mut counters = Vec::new();
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.strip_suffix(" counter"))
        {
            counters.push(name.to_owned());
        }
    }
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        let renamed = ["# TYPE ", "# HELP "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            let base = name.strip_suffix("_total")?;
            counters
                .iter()
                .any(|c| c == name)
                .then(|| format!("{prefix}{base} {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_read_from_proc() {
        let p = ProcessStats::read().expect("Linux has /proc/self");
        assert!(p.rss_bytes > 1 << 20, "{p:?}");
        assert!(p.vsize_bytes >= p.rss_bytes, "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86_400.0);
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n\
                    # HELP b B.\n# TYPE b gauge\nb 1\n";
        assert_eq!(
            to_openmetrics(text),
            "# HELP a A.\n# TYPE a counter\na_total 3\n# HELP b B.\n# TYPE b gauge\nb 1\n# EOF\n"
        );
    }
}
