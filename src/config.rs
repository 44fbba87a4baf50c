//! Command line and environment: every flag `--x-y` can also be set as `FANOUT_X_Y`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{gateway::Options, http::HttpOptions, schema::Limits, sdl, server::ServeOptions};

#[derive(Parser, Debug)]
#[command(
    name = "fanout",
    version,
    about = "A GraphQL gateway over REST services"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant, reason = "parsed once at start-up")]
pub enum Command {
    /// Serve the schema (the default).
    Serve(ServeArgs),
    /// Check the schema and print every problem; exits non-zero on an error.
    Check(CheckArgs),
    /// Print the client-facing SDL (Fanout's directives removed).
    Print(SchemaArg),
    /// Run only the demo REST services, on the ports `schema.graphql` defaults to.
    DemoServices(DemoServicesArgs),
    /// Show the upstream calls a query will make, level by level, without making any.
    Plan(PlanArgs),
    /// Write a schema.graphql to start from, from a description of your REST API.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    #[command(flatten)]
    pub schema: SchemaArg,
    /// The GraphQL operation, as a client would send it.
    #[arg(long)]
    pub query: String,
    /// Its variables, as a JSON object.
    #[arg(long)]
    pub variables: Option<String>,
    /// Which operation of the query to plan, when it holds several.
    #[arg(long)]
    pub operation_name: Option<String>,
    /// `human` (levels and notes) or `json` (what `extensions.fanoutPlan` holds).
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// A field's deadline when neither it nor its upstream sets `timeout`.
    #[arg(long, env = "FANOUT_DEFAULT_TIMEOUT", default_value = "2s", value_parser = duration)]
    pub default_timeout: Duration,
    /// The whole request's deadline.
    #[arg(long, env = "FANOUT_REQUEST_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub request_timeout: Duration,
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// From an OpenAPI 3.0 or 3.1 document (JSON or YAML): the schema on stdout, what could not
    /// be mapped on stderr.
    Openapi(ImportOpenapiArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ImportOpenapiArgs {
    /// The OpenAPI document.
    pub file: PathBuf,
    /// The name of the upstream for the document's (first) server.
    #[arg(long)]
    pub upstream: Option<String>,
    /// The base URL of that upstream, instead of the document's server URL.
    #[arg(long)]
    pub base_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DemoServicesArgs {
    /// Artificial latency per call.
    #[arg(long, env = "FANOUT_DEMO_LATENCY", default_value = "20ms", value_parser = latency)]
    pub latency: Duration,
    /// Ports of the users, orders and catalog services.
    #[arg(long, default_values_t = [4101, 4102, 4104], num_args = 3)]
    pub ports: Vec<u16>,
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub schema: SchemaArg,
    /// `human` (source excerpts and hints, on stderr) or `json` (an array on stdout).
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct SchemaArg {
    /// The schema file.
    #[arg(long, env = "FANOUT_SCHEMA", default_value = "schema.graphql")]
    pub schema: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub schema: SchemaArg,
    /// Address to listen on.
    #[arg(long, env = "FANOUT_LISTEN", default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,
    /// Reload the schema when the file changes (SIGHUP always reloads it).
    #[arg(long, env = "FANOUT_WATCH")]
    pub watch: bool,
    /// Threads that run requests (default: one per CPU). `1` runs everything on one thread,
    /// which usually costs less CPU per query; more threads carry more load.
    #[arg(long, env = "FANOUT_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Start the built-in demo REST services and serve the schema against them.
    #[arg(long, env = "FANOUT_DEMO")]
    pub demo: bool,
    /// The demo services' artificial latency per call.
    #[arg(long, env = "FANOUT_DEMO_LATENCY", default_value = "20ms", value_parser = latency)]
    pub demo_latency: Duration,
    /// A field's deadline when neither it nor its upstream sets `timeout`.
    #[arg(long, env = "FANOUT_DEFAULT_TIMEOUT", default_value = "2s", value_parser = duration)]
    pub default_timeout: Duration,
    /// The whole request's deadline.
    #[arg(long, env = "FANOUT_REQUEST_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub request_timeout: Duration,
    /// Show upstream URLs and bodies in errors (`extensions.detail`). Not for production.
    #[arg(long, env = "FANOUT_DEBUG_ERRORS")]
    pub debug_errors: bool,
    /// Ignore the `x-fanout-trace` request header.
    #[arg(long, env = "FANOUT_NO_TRACE")]
    pub no_trace: bool,
    /// Where GraphiQL's assets are loaded from.
    #[arg(long, env = "FANOUT_GRAPHIQL_ASSETS", default_value = crate::http::graphiql::DEFAULT_ASSETS)]
    pub graphiql_assets: String,
    /// Serve GraphiQL's assets from this directory (at `/graphql/assets/`) instead of
    /// loading them from --graphiql-assets: GraphiQL without internet access.
    /// `tests/browser/assets.sh DIR` fills one from the npm registry.
    #[arg(long, env = "FANOUT_GRAPHIQL_DIR", value_parser = graphiql_dir)]
    pub graphiql_dir: Option<PathBuf>,
    /// `production` (introspection, field suggestions and traces off) or `development`
    /// (all on). Default: development with --demo, else production.
    #[arg(long, env = "FANOUT_PROFILE", value_enum)]
    pub profile: Option<Profile>,
    /// Serve everything under this path, e.g. `/gateway` (behind a reverse proxy).
    #[arg(long, env = "FANOUT_PATH_PREFIX", default_value = "")]
    pub path_prefix: String,
    /// Origins allowed by CORS (repeat, or comma-separate in the variable). None: no CORS.
    #[arg(long, env = "FANOUT_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// Let CORS requests carry credentials (cookies, authorization). Needs explicit origins.
    #[arg(long, env = "FANOUT_CORS_CREDENTIALS")]
    pub cors_credentials: bool,
    /// A reverse proxy whose `X-Forwarded-For/-Proto/-Host` are believed: an address or a
    /// network, e.g. 127.0.0.1 or 10.0.0.0/8 (repeat, or comma-separate in the variable).
    /// Other peers' `X-Forwarded-*` headers are ignored.
    #[arg(long, env = "FANOUT_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxy: Vec<crate::http::edge::IpNet>,
    /// Accept POSTs of any Content-Type as JSON. Turns off CSRF prevention: only for
    /// clients that cannot send `application/json` and are never reached from a browser.
    #[arg(long, env = "FANOUT_NO_CSRF_PREVENTION")]
    pub no_csrf_prevention: bool,
    /// Most requests in one JSON-array POST (executed in order); 0: batching off.
    #[arg(long, env = "FANOUT_MAX_BATCH", default_value_t = 0)]
    pub max_batch: usize,
    /// Largest request body, in bytes (413 beyond).
    #[arg(long, env = "FANOUT_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Levels of fields in an operation, through fragments.
    #[arg(long, env = "FANOUT_MAX_DEPTH", default_value_t = Limits::default().max_depth)]
    pub max_depth: usize,
    /// Each field counts 1, a list field's selection counts once per expected item.
    #[arg(long, env = "FANOUT_MAX_COMPLEXITY", default_value_t = Limits::default().max_complexity)]
    pub max_complexity: usize,
    /// The items a list field is expected to return when no list argument or `first`/`limit`
    /// style argument says how many (for --max-complexity).
    #[arg(long, env = "FANOUT_ASSUMED_LIST_SIZE", default_value_t = Limits::default().assumed_list_size)]
    pub assumed_list_size: usize,
    /// Aliases in an operation, through fragments.
    #[arg(long, env = "FANOUT_MAX_ALIASES", default_value_t = Limits::default().max_aliases)]
    pub max_aliases: usize,
    /// Root fields of an operation, through fragments.
    #[arg(long, env = "FANOUT_MAX_ROOT_FIELDS", default_value_t = Limits::default().max_root_fields)]
    pub max_root_fields: usize,
    /// Directives on one selection.
    #[arg(long, env = "FANOUT_MAX_DIRECTIVES", default_value_t = Limits::default().max_directives)]
    pub max_directives: usize,
    /// Levels of `{}` and `[]` in the query text, and of lists and objects in variables.
    #[arg(long, env = "FANOUT_MAX_NESTING", default_value_t = Limits::default().max_nesting)]
    pub max_nesting: usize,
    /// The most a response's data may take, in bytes of JSON (about); past it the request
    /// stops and its data is null, with the error code RESPONSE_TOO_LARGE.
    #[arg(long, env = "FANOUT_MAX_RESPONSE_BYTES", default_value_t = Options::default().max_response_bytes)]
    pub max_response_bytes: usize,
    /// Tokens in the query text, counted before it is parsed.
    #[arg(long, env = "FANOUT_MAX_TOKENS", default_value_t = Limits::default().max_tokens)]
    pub max_tokens: usize,
    /// On SIGTERM: keep accepting requests this long with /readyz at 503, so a load
    /// balancer stops sending traffic first (default: stop accepting at once).
    #[arg(long, env = "FANOUT_DRAIN_DELAY", value_parser = duration)]
    pub drain_delay: Option<Duration>,
    /// On SIGTERM: how long in-flight requests may take to finish. Any still running then are
    /// cut off and the process exits with status 3 (0 when everything finished).
    #[arg(long, env = "FANOUT_DRAIN_GRACE", default_value = "10s", value_parser = duration)]
    pub drain_grace: Duration,
    /// How long a connection may take to send a request's line and headers, and wait idle
    /// for the next request; then it is closed. HTTP/2: how long it may have no request open.
    #[arg(long, env = "FANOUT_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// Largest request line plus headers, in bytes (431 beyond).
    #[arg(long, env = "FANOUT_MAX_HEADER_BYTES", default_value_t = ServeOptions::default().max_header_bytes, value_parser = positive)]
    pub max_header_bytes: usize,
    /// Most header lines in a request (431 beyond).
    #[arg(long, env = "FANOUT_MAX_HEADERS", default_value_t = ServeOptions::default().max_headers, value_parser = positive)]
    pub max_headers: usize,
    /// Most client connections open at once; beyond, new ones wait until one closes.
    #[arg(long, env = "FANOUT_MAX_CONNECTIONS", default_value_t = ServeOptions::default().max_connections, value_parser = positive)]
    pub max_connections: usize,
    /// How long a request body may take to arrive, from the end of its headers (408 beyond).
    #[arg(long, env = "FANOUT_BODY_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub body_read_timeout: Duration,
    /// `text` or `json` (one JSON object per line).
    #[arg(long, env = "FANOUT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Production,
    Development,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServeArgs {
    pub fn profile(&self) -> Profile {
        self.profile.unwrap_or(if self.demo {
            Profile::Development
        } else {
            Profile::Production
        })
    }

    pub fn options(&self) -> Options {
        let dev = self.profile() == Profile::Development;
        Options {
            default_timeout: self.default_timeout,
            request_timeout: self.request_timeout,
            debug_errors: self.debug_errors,
            allow_trace: dev && !self.no_trace,
            max_response_bytes: self.max_response_bytes,
            limits: Limits {
                max_depth: self.max_depth,
                max_complexity: self.max_complexity,
                assumed_list_size: self.assumed_list_size,
                max_aliases: self.max_aliases,
                max_root_fields: self.max_root_fields,
                max_directives: self.max_directives,
                max_nesting: self.max_nesting,
                max_tokens: self.max_tokens,
                introspection: dev,
                suggestions: dev,
            },
        }
    }

    pub fn http_options(&self) -> HttpOptions {
        HttpOptions {
            max_body_bytes: self.max_body_bytes,
            csrf_prevention: !self.no_csrf_prevention,
            max_batch: self.max_batch,
            cors_origins: self.cors_origin.clone(),
            cors_credentials: self.cors_credentials,
            graphiql_assets: self.graphiql_assets.clone(),
            graphiql_dir: self.graphiql_dir.clone(),
            trusted_proxies: self.trusted_proxy.clone(),
            body_read_timeout: Some(self.body_read_timeout),
            allow_plan: self.profile() == Profile::Development,
        }
    }

    /// How connections are served; the drain grace included.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            header_read_timeout: self.header_read_timeout,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            max_connections: self.max_connections,
            drain_grace: Some(self.drain_grace),
            ..ServeOptions::default()
        }
    }
}

/// A latency may be zero: `0ms` makes the demo services answer at once.
fn latency(text: &str) -> Result<Duration, String> {
    match text.trim().trim_end_matches("ms").trim_end_matches('s') {
        "0" => Ok(Duration::ZERO),
        _ => duration(text),
    }
}

/// A `--graphiql-dir` must hold every file the page loads; a missing one would only show as
/// a blank page in the browser.
fn graphiql_dir(text: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(text);
    let missing: Vec<&str> = crate::http::graphiql::FILES
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if missing.is_empty() {
        Ok(dir)
    } else {
        Err(format!(
            "{text} lacks {} (tests/browser/assets.sh DIR fetches them)",
            missing.join(", ")
        ))
    }
}

/// A count or size of at least 1.
fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?} is not a whole number of at least 1")),
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    sdl::parse_duration(text)
        .ok_or_else(|| format!("bad duration {text:?}: write e.g. 250ms, 2s or 1m"))
}
