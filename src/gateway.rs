//! A loaded schema, ready to execute requests: the bindings, the engine's schema, the HTTP
//! client, and the options that shape execution.

use std::{sync::Arc, time::Duration};

use async_graphql::{Request, Response, dynamic::Schema};
use http::HeaderMap;

use crate::{
    resolve::Exec,
    schema::{self, Limits},
    sdl::{self, Bindings, Diagnostic, LoadOptions},
    upstream::resilience::Runtime,
};

/// How requests are executed. Every value has a production-safe default.
#[derive(Clone, Debug)]
pub struct Options {
    /// A field's deadline when neither the field nor its upstream sets one.
    pub default_timeout: Duration,
    /// The whole request's deadline: no field outlives it.
    pub request_timeout: Duration,
    /// Show upstream URLs and bodies in `extensions.detail` of errors. Never in production.
    pub debug_errors: bool,
    /// Honour the `x-fanout-trace` request header.
    pub allow_trace: bool,
    /// The most a response's data may take, serialized (about); past it the request stops
    /// and answers `RESPONSE_TOO_LARGE`.
    pub max_response_bytes: usize,
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            default_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            debug_errors: false,
            allow_trace: true,
            max_response_bytes: 8 << 20,
            limits: Limits::default(),
        }
    }
}

pub struct Gateway {
    pub bindings: Arc<Bindings>,
    pub schema: Schema,
    /// One per upstream, in the order of `bindings.upstreams`.
    pub(crate) upstreams: Vec<Arc<Runtime>>,
    pub options: Options,
}

impl Gateway {
    /// Loads `source` (the text of a schema file). On success also returns the warnings.
    pub fn load(
        source: &str,
        options: Options,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<(Arc<Gateway>, Vec<Diagnostic>), Vec<Diagnostic>> {
        let load_opts = LoadOptions {
            default_timeout: options.default_timeout,
            env,
        };
        let (bindings, diags) = sdl::load(source, &load_opts);
        let Some(bindings) = bindings.map(Arc::new) else {
            return Err(diags);
        };
        let schema = schema::build(&bindings, &options.limits).map_err(|e| {
            vec![Diagnostic::error(
                1,
                1,
                format!("the schema is not valid GraphQL: {e}"),
            )]
        })?;
        let upstreams = bindings.upstreams.iter().map(Runtime::new).collect();
        let gw = Gateway {
            bindings,
            schema,
            upstreams,
            options,
        };
        Ok((Arc::new(gw), diags))
    }

    /// Executes one GraphQL request. `headers` are the client's, for `from` header rules;
    /// `trace` asks for the list of upstream calls in `extensions.fanout`.
    pub async fn execute(
        self: &Arc<Self>,
        request: Request,
        headers: HeaderMap,
        trace: bool,
    ) -> Response {
        let trace = trace && self.options.allow_trace;
        let exec = Arc::new(Exec::new(self.clone(), headers, trace));
        let response = self.schema.execute(request.data(exec.clone())).await;
        let mut response = exec.finish(response);
        response
            .errors
            .iter_mut()
            .for_each(schema::limits::classify);
        response
    }
}

/// Looks `{env.NAME}` up in the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
