//! The `fanout` binary: parse the command line, load the schema, serve until a signal.

use std::{collections::HashMap, process::ExitCode, sync::Arc};

use clap::Parser;
use fanout::{
    Gateway,
    config::{
        CheckArgs, Cli, Command, DemoServicesArgs, Format, ImportCommand, ImportOpenapiArgs,
        LogFormat, PlanArgs, SchemaArg, ServeArgs,
    },
    demo, gateway, http, observe, reload, sdl, server,
};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// A request allocates about a thousand small blocks; mimalloc serves them with less work
/// than the system allocator (see the README's benchmark section).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's own defaults keep freed pages for a second, commit whole arenas up front and back
/// them with transparent huge pages; under the list benchmark that held peak RSS at 58 MB,
/// against 36 MB with glibc. Without huge pages (the `no_thp` feature, Cargo.toml) and with
/// these two options it stays at 36 to 37 MB, still with mimalloc's lower CPU cost.
fn tune_allocator() {
    // Option numbers in mimalloc v3's `mi_option_e` (mimalloc.h), the version libmimalloc-sys
    // builds by default. A unit test checks them against their documented defaults.
    use libmimalloc_sys::mi_option_set;
    // SAFETY: setting an option is allowed at any time; these two only change when freed
    // memory is returned to the OS and when arena memory is committed.
    unsafe {
        mi_option_set(alloc_options::ARENA_EAGER_COMMIT, 0);
        mi_option_set(alloc_options::PURGE_DELAY, 0);
    }
}

mod alloc_options {
    pub const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    pub const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

    #[cfg(test)]
    #[test]
    fn option_numbers_match_mimalloc() {
        use libmimalloc_sys::mi_option_get;
        // SAFETY: reading an option has no side effect but initializing it.
        let (eager, delay) = unsafe {
            (
                mi_option_get(ARENA_EAGER_COMMIT),
                mi_option_get(PURGE_DELAY),
            )
        };
        // Defaults per mimalloc.h: arena_eager_commit = 2, purge_delay = 1000 (v3).
        assert_eq!((eager, delay), (2, 1000));
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let workers = match &cli.command {
        Some(Command::Serve(args)) => args.workers,
        None => cli.serve.workers,
        _ => None,
    };
    let runtime = match workers {
        // One thread: no work stealing, no waking another thread for each upstream answer.
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(n))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    match runtime {
        Ok(rt) => {
            let code = rt.block_on(run(cli));
            // Do not wait for blocking work still running (a DNS lookup of a request that was
            // cut off): the drain already had its grace.
            rt.shutdown_background();
            code
        }
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    let json_logs = match &cli.command {
        Some(Command::Serve(args)) => args.log_format == LogFormat::Json,
        None => cli.serve.log_format == LogFormat::Json,
        _ => false,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if json_logs {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_env_filter(filter)
            .init();
    } else {
        // Colours only for a terminal: a log file or collector gets plain `key=value` text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_env_filter(filter)
            .init();
    }
    match cli.command {
        Some(Command::Check(args)) => check(&args),
        Some(Command::Print(arg)) => print(&arg),
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::DemoServices(args)) => demo_services(args).await,
        Some(Command::Import(ImportCommand::Openapi(args))) => import_openapi(&args),
        Some(Command::Plan(args)) => plan(&args).await,
        None => serve(cli.serve).await,
    }
}

/// A schema file, read and loaded: the gateway when there is no error, the diagnostics,
/// and the source to render them against.
struct Loaded {
    gw: Option<Arc<Gateway>>,
    diags: Vec<sdl::Diagnostic>,
    source: String,
}

fn read_and_load(
    arg: &SchemaArg,
    opts: fanout::Options,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Loaded, String> {
    let source = std::fs::read_to_string(&arg.schema)
        .map_err(|e| format!("error: cannot read {}: {e}", arg.schema.display()))?;
    let (gw, diags) = match Gateway::load(&source, opts, env) {
        Ok((gw, warnings)) => (Some(gw), warnings),
        Err(errors) => (None, errors),
    };
    Ok(Loaded { gw, diags, source })
}

/// Loads the schema for serving or printing; every diagnostic goes to stderr.
fn load(
    arg: &SchemaArg,
    opts: fanout::Options,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Option<Arc<Gateway>> {
    let file = arg.schema.display().to_string();
    let Loaded { gw, diags, source } = match read_and_load(arg, opts, env) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return None;
        }
    };
    for d in &diags {
        eprint!("{}", d.render(&file, &source));
    }
    if gw.is_none() {
        let errors = diags.iter().filter(|d| d.is_error()).count();
        eprintln!("{file}: {errors} error(s); nothing was served");
    }
    gw
}

fn check(args: &CheckArgs) -> ExitCode {
    let file = args.schema.schema.display().to_string();
    let Loaded { gw, diags, source } = match read_and_load(
        &args.schema,
        fanout::Options::default(),
        &gateway::process_env,
    ) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    match args.format {
        Format::Json => {
            let all: Vec<_> = diags.iter().map(|d| d.to_json(&file)).collect();
            println!("{}", serde_json::Value::Array(all));
        }
        Format::Human => {
            for d in &diags {
                eprint!("{}", d.render(&file, &source));
            }
            eprintln!("{file}: {errors} error(s), {warnings} warning(s)");
        }
    }
    if gw.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print(arg: &SchemaArg) -> ExitCode {
    match load(arg, fanout::Options::default(), &gateway::process_env) {
        Some(gw) => {
            println!("{}", gw.schema.sdl());
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

/// The plan on stdout; a query the server would refuse is refused here the same way (exit 1).
async fn plan(args: &PlanArgs) -> ExitCode {
    let opts = fanout::Options {
        default_timeout: args.default_timeout,
        request_timeout: args.request_timeout,
        ..fanout::Options::default()
    };
    let Some(gw) = load(&args.schema, opts, &gateway::process_env) else {
        return ExitCode::FAILURE;
    };
    let mut request = async_graphql::Request::new(args.query.clone());
    if let Some(name) = &args.operation_name {
        request = request.operation_name(name);
    }
    if let Some(text) = &args.variables {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v @ serde_json::Value::Object(_)) => {
                request = request.variables(async_graphql::Variables::from_json(v));
            }
            _ => {
                eprintln!("error: --variables must be a JSON object, e.g. '{{\"id\": \"1\"}}'");
                return ExitCode::FAILURE;
            }
        }
    }
    match fanout::call_plan::plan(&gw, request).await {
        Ok(plan) => {
            match args.format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&plan).expect("a plan always serializes")
                ),
                Format::Human => print!("{}", fanout::call_plan::to_text(&plan)),
            }
            ExitCode::SUCCESS
        }
        Err(refused) => {
            for e in &refused.errors {
                eprintln!("error: {}", e.message);
            }
            ExitCode::FAILURE
        }
    }
}

/// The schema on stdout; notes, the summary and any problem on stderr. The output is loaded
/// as `fanout check` would load it, so a schema that would not pass is never printed.
fn import_openapi(args: &ImportOpenapiArgs) -> ExitCode {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return ExitCode::FAILURE;
        }
    };
    let opts = fanout::import::Options {
        upstream: args.upstream.clone(),
        base_url: args.base_url.clone(),
        source: args.file.display().to_string(),
    };
    let out = match fanout::import::openapi(&text, &opts) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return ExitCode::FAILURE;
        }
    };
    for note in &out.notes {
        eprintln!("{note}");
    }
    if let Err(diags) = Gateway::load(&out.sdl, fanout::Options::default(), &|_| None) {
        for d in &diags {
            eprint!("{}", d.render("<generated schema>", &out.sdl));
        }
        eprintln!(
            "error: the generated schema does not pass `fanout check`; this is a bug in fanout import"
        );
        return ExitCode::FAILURE;
    }
    print!("{}", out.sdl);
    eprintln!(
        "fanout import: {} query field(s), {} mutation(s), {} type(s), {} proposed link(s) (marked `# proposed`); {} note(s) above",
        out.query_fields,
        out.mutation_fields,
        out.types,
        out.proposals,
        out.notes.len()
    );
    ExitCode::SUCCESS
}

async fn demo_services(args: DemoServicesArgs) -> ExitCode {
    let ports = [args.ports[0], args.ports[1], args.ports[2]];
    match demo::start_on(args.latency, ports).await {
        Ok(d) => {
            tracing::info!(users = %d.users, orders = %d.orders, catalog = %d.catalog, latency = ?args.latency, "demo REST services running");
            server::shutdown_signal().await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot start the demo services: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    // The demo's services must outlive the server: keep them bound here.
    let mut overrides = HashMap::new();
    let _demo = if args.demo {
        match demo::start(args.demo_latency).await {
            Ok(d) => {
                overrides.extend(d.env());
                tracing::info!(users = %d.users, orders = %d.orders, catalog = %d.catalog, latency = ?args.demo_latency, "demo REST services started");
                Some(d)
            }
            Err(e) => {
                eprintln!("error: cannot start the demo services: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let env: reload::Env = Arc::new(move |name: &str| {
        overrides
            .get(name)
            .cloned()
            .or_else(|| gateway::process_env(name))
    });
    let Some(gw) = load(&args.schema, args.options(), &*env) else {
        return ExitCode::FAILURE;
    };
    match observe::otel::Config::from_env(gateway::process_env) {
        Ok(None) => {}
        Ok(Some(config)) => {
            if let Err(e) = observe::otel::init(&config) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            tracing::info!(protocol = ?config.protocol, service = %config.service_name, "exporting traces over OTLP");
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = http::edge::cors(&args.cors_origin, args.cors_credentials) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let prefix = args.path_prefix.trim_end_matches('/').to_owned();
    if !prefix.is_empty() && !prefix.starts_with('/') {
        eprintln!("error: --path-prefix must start with `/`, e.g. /gateway");
        return ExitCode::FAILURE;
    }
    let live = reload::Live::new(gw);
    let reloader = reload::Reloader {
        path: args.schema.schema.clone(),
        options: args.options(),
        env,
        live: live.clone(),
    };
    #[cfg(unix)]
    match reloader.clone().on_sighup() {
        Ok(hup) => drop(tokio::spawn(hup)),
        Err(e) => tracing::warn!("cannot listen for SIGHUP ({e}); reload with --watch instead"),
    }
    if args.watch {
        tokio::spawn(reloader.watch(std::time::Duration::from_millis(500)));
    }
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(
        profile = ?args.profile(),
        "Fanout serving {} on http://{addr}{prefix}/graphql",
        args.schema.schema.display()
    );
    let routes = http::live_router(live.clone(), args.http_options());
    let app = if prefix.is_empty() {
        routes
    } else {
        axum::Router::new().nest(&prefix, routes)
    };
    // On SIGTERM or Ctrl-C: /readyz turns 503 (for `--drain-delay`, still serving), then new
    // connections are refused and in-flight requests get `--drain-grace` to finish; those
    // still running then are cut off, and the exit status says so.
    let (grace, delay) = (args.drain_grace, args.drain_delay);
    let opts = args.serve_options();
    let shutdown = async move {
        server::shutdown_signal().await;
        live.set_draining();
        if let Some(delay) = delay {
            tracing::info!(delay = ?delay, "draining: /readyz is 503, still accepting");
            tokio::time::sleep(delay).await;
        }
        tracing::info!(grace = ?grace, "draining: finishing in-flight requests");
    };
    let served = server::serve_with(listener, app, shutdown, &opts).await;
    // The spans of the last requests, sent while the process can still wait a little.
    observe::otel::shutdown(std::time::Duration::from_secs(5)).await;
    match served {
        Ok(server::Drain::Complete) => {
            tracing::info!("drained; bye");
            ExitCode::SUCCESS
        }
        Ok(server::Drain::CutOff {
            connections,
            requests,
        }) => {
            tracing::warn!(
                requests,
                connections,
                "drain grace period over: cut off {requests} request(s) in flight \
                 on {connections} connection(s)"
            );
            ExitCode::from(EXIT_CUT_OFF)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The exit status when the drain grace ran out and connections, with the requests in flight
/// on them, were cut off.
const EXIT_CUT_OFF: u8 = 3;
