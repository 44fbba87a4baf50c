//! Servers -> `@upstream`s: one per distinct server URL (variables at their defaults), named
//! from the host or the document's title, the URL overridable through `{env.NAME_URL}`; and
//! the security schemes' credentials, forwarded from the client's request.

use serde_json::Value as Json;

use super::{Importer, UpstreamOut, doc::child, gql, names};

impl Importer<'_> {
    /// The upstream of the document's first server, named and placed by the command line.
    pub(super) fn primary_upstream(&mut self) {
        let servers = self.doc.root.get("servers").cloned();
        self.upstream_for(servers.as_ref(), "#/servers");
    }

    /// The upstream for a list of servers (an operation's, its path's or the document's):
    /// the first server's URL, with its variables' defaults.
    pub(super) fn upstream_for(&mut self, servers: Option<&Json>, pointer: &str) -> String {
        let (servers, pointer) = match servers.and_then(Json::as_array).filter(|s| !s.is_empty()) {
            Some(s) => (s.clone(), pointer.to_owned()),
            None => (
                self.doc
                    .root
                    .get("servers")
                    .and_then(Json::as_array)
                    .cloned()
                    .unwrap_or_default(),
                "#/servers".to_owned(),
            ),
        };
        let first = servers.first().cloned().unwrap_or(Json::Null);
        let mut url = first
            .get("url")
            .and_then(Json::as_str)
            .unwrap_or("/")
            .to_owned();
        if let Some(Json::Object(vars)) = first.get("variables") {
            for (name, var) in vars {
                let default = var.get("default").map(|d| match d {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                });
                url = url.replace(&format!("{{{name}}}"), &default.unwrap_or_default());
            }
        }
        let primary = self.upstreams.is_empty();
        if primary && let Some(base) = &self.opts.base_url {
            url = base.clone();
        }
        if let Some(u) = self
            .upstreams
            .iter()
            .find(|u| u.url == url.trim_end_matches('/'))
        {
            return u.name.clone();
        }
        let at = child(&pointer, "0");
        let parsed = match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => None,
            Err(_) if url.starts_with('/') || url.is_empty() => {
                let rel = url.clone();
                url = format!("http://localhost{}", url.trim_end_matches('/'));
                let env = self.env_name_for(primary);
                self.note(
                    &at,
                    format!(
                        "the server URL {rel:?} is relative to where the document is served; baseUrl defaults to {url}: set {env} or use --base-url"
                    ),
                );
                url::Url::parse(&url).ok()
            }
            Err(_) => None,
        };
        let Some(mut parsed) = parsed else {
            self.note(
                &at,
                format!("the server URL {url:?} is not an http(s) URL; baseUrl defaults to http://localhost"),
            );
            return self.add_upstream("http://localhost".into(), None, primary);
        };
        if parsed.query().is_some() || parsed.fragment().is_some() {
            self.note(&at, "the server URL's query or fragment is left out");
            parsed.set_query(None);
            parsed.set_fragment(None);
        }
        let description = first
            .get("description")
            .and_then(Json::as_str)
            .map(str::to_owned);
        let text = parsed.as_str().trim_end_matches('/').to_owned();
        let host = parsed.host_str().map(str::to_owned);
        self.add_upstream_named(text, description, primary, host.as_deref())
    }

    fn env_name_for(&self, primary: bool) -> String {
        let name = if primary {
            self.upstream_name(None)
        } else {
            "API".into()
        };
        env_name(&name)
    }

    fn upstream_name(&self, host: Option<&str>) -> String {
        if self.upstreams.is_empty()
            && let Some(n) = &self.opts.upstream
        {
            return n.clone();
        }
        let from_host = host.and_then(|h| {
            let labels: Vec<&str> = h.split('.').collect();
            if h.parse::<std::net::IpAddr>().is_ok() || labels.len() < 2 {
                return None;
            }
            labels[..labels.len() - 1]
                .iter()
                .find(|l| !matches!(**l, "api" | "www" | "rest" | "apis"))
                .map(|l| names::camel(l).to_lowercase())
        });
        from_host
            .or_else(|| {
                // "Swagger Petstore - OpenAPI 3.1" -> petstore, "Tic Tac Toe" -> tictactoe.
                let title = self.doc.root.pointer("/info/title")?.as_str()?;
                let words: Vec<&str> = title
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .filter(|w| {
                        !w.is_empty()
                            && !w.starts_with(|c: char| c.is_ascii_digit())
                            && !matches!(
                                w.to_ascii_lowercase().as_str(),
                                "swagger"
                                    | "openapi"
                                    | "api"
                                    | "apis"
                                    | "rest"
                                    | "the"
                                    | "service"
                                    | "platform"
                                    | "v1"
                                    | "v2"
                                    | "v3"
                            )
                    })
                    .collect();
                let n = words.concat().to_lowercase();
                (!n.is_empty()).then_some(n)
            })
            .unwrap_or_else(|| "api".into())
    }

    fn add_upstream(&mut self, url: String, description: Option<String>, primary: bool) -> String {
        self.add_upstream_named(url, description, primary, None)
    }

    fn add_upstream_named(
        &mut self,
        url: String,
        description: Option<String>,
        primary: bool,
        host: Option<&str>,
    ) -> String {
        let mut name = self.upstream_name(host);
        if !primary || self.opts.upstream.is_none() {
            let mut n = 2;
            let base = name.clone();
            while self.upstreams.iter().any(|u| u.name == name) {
                name = format!("{base}{n}");
                n += 1;
            }
        }
        self.upstreams.push(UpstreamOut {
            env: env_name(&name),
            name: name.clone(),
            url,
            description,
        });
        name
    }

    /// Header rules from the security schemes the document uses: credentials are forwarded
    /// from the client's request, never written into the schema.
    pub(super) fn security(&mut self) {
        let Some(Json::Object(schemes)) = self.doc.at("#/components/securitySchemes").cloned()
        else {
            return;
        };
        for (name, scheme) in schemes {
            let scheme = match scheme.get("$ref").and_then(Json::as_str) {
                Some(r) => self.doc.at(r).cloned().unwrap_or(Json::Null),
                None => scheme,
            };
            let ptr = child("#/components/securitySchemes", &name);
            let header = match scheme.get("type").and_then(Json::as_str) {
                Some("http" | "oauth2" | "openIdConnect") => Some("authorization".to_owned()),
                Some("apiKey") => match scheme.get("in").and_then(Json::as_str) {
                    Some("header") => scheme
                        .get("name")
                        .and_then(Json::as_str)
                        .map(str::to_ascii_lowercase),
                    other => {
                        self.note(
                            &ptr,
                            format!(
                                "an API key in the {}: Fanout sends credentials in headers only; add it to each field's `query` if you need it",
                                other.unwrap_or("?")
                            ),
                        );
                        None
                    }
                },
                _ => None,
            };
            if let Some(h) = header
                && http::HeaderName::from_bytes(h.as_bytes()).is_ok()
            {
                let rule = format!("{{name: {}, from: {}}}", gql::string(&h), gql::string(&h));
                if !self.auth_headers.contains(&rule) {
                    self.auth_headers.push(rule);
                }
            }
        }
    }
}

fn env_name(upstream: &str) -> String {
    let mut s: String = upstream
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    format!("{s}_URL")
}
