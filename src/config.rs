//! Command line and environment: every flag `--x-y` can also be set as `FANOUT_X_Y`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{gateway::Options, http::HttpOptions, schema::Limits, sdl};

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
pub enum Command {
    /// Serve the schema (the default).
    Serve(ServeArgs),
    /// Check the schema and print every problem; exits non-zero on an error.
    Check(CheckArgs),
    /// Print the client-facing SDL (Fanout's directives removed).
    Print(SchemaArg),
    /// Run only the demo REST services, on the ports `schema.graphql` defaults to.
    DemoServices(DemoServicesArgs),
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
}

impl ServeArgs {
    pub fn options(&self) -> Options {
        Options {
            default_timeout: self.default_timeout,
            request_timeout: self.request_timeout,
            debug_errors: self.debug_errors,
            allow_trace: !self.no_trace,
            limits: Limits::default(),
        }
    }

    pub fn http_options(&self) -> HttpOptions {
        HttpOptions {
            graphiql_assets: self.graphiql_assets.clone(),
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

fn duration(text: &str) -> Result<Duration, String> {
    sdl::parse_duration(text)
        .ok_or_else(|| format!("bad duration {text:?}: write e.g. 250ms, 2s or 1m"))
}
