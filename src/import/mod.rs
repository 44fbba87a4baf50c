//! `fanout import openapi FILE`: an OpenAPI 3.0 or 3.1 document -> a `schema.graphql` to start
//! from.
//!
//! The document is read into one JSON tree ([`doc`]); its component schemas become types
//! ([`types`]); its servers become `@upstream`s ([`servers`]); its operations become query and
//! mutation fields with `@rest` ([`operations`]);
//! links the document makes visible become proposed fields and batches ([`links`]); the
//! result prints as SDL ([`gql`]). What cannot be mapped becomes a [`Note`] naming its place in
//! the document (`#/paths/~1pets/get: ...`), for stderr.

mod doc;
mod gql;
mod links;
mod names;
mod operations;
mod servers;
mod types;

use std::{
    collections::{HashMap, HashSet},
    fmt::Write,
};

use doc::Doc;
use gql::{Field, Kind, TypeDef, Types};
use names::Taken;

/// What the command line can change.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The name of the upstream of the document's first server.
    pub upstream: Option<String>,
    /// The first server's URL, instead of the document's.
    pub base_url: Option<String>,
    /// How the file was named on the command line, for the header comment.
    pub source: String,
}

/// Something the import could not map, or mapped with a loss, at a place in the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// A JSON pointer into the document, `#/paths/~1pets/get`.
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

/// The generated schema and what to tell about it.
pub struct Output {
    pub sdl: String,
    pub notes: Vec<Note>,
    pub query_fields: usize,
    pub mutation_fields: usize,
    pub types: usize,
    pub proposals: usize,
}

/// Reads `text` (JSON or YAML) and writes the schema. `Err` when it is not an OpenAPI 3.0 or
/// 3.1 document at all.
pub fn openapi(text: &str, opts: &Options) -> Result<Output, String> {
    let doc = Doc::parse(text)?;
    let mut im = Importer::new(&doc, opts);
    im.primary_upstream();
    im.find_interfaces();
    im.components();
    im.operations();
    im.webhooks();
    im.security();
    let proposals = links::propose(&mut im);
    im.check_interfaces();
    Ok(im.finish(proposals))
}

const RESERVED: &[&str] = &[
    "String",
    "Int",
    "Float",
    "Boolean",
    "ID",
    "Query",
    "Mutation",
    "Subscription",
    types::JSON,
    types::INT64,
];

/// One REST service of the document (a distinct server URL).
struct UpstreamOut {
    name: String,
    url: String,
    env: String,
    description: Option<String>,
}

/// The import's state: what has been named and built so far.
pub(crate) struct Importer<'d> {
    doc: &'d Doc,
    opts: &'d Options,
    types: Types,
    type_names: Taken,
    /// `(pointer, input?)` of a schema -> the GraphQL type built for it.
    built: HashMap<(String, bool), String>,
    /// Component schemas with a discriminator that others extend with `allOf`.
    interfaces: HashSet<String>,
    query: Vec<Field>,
    query_names: Taken,
    mutation: Vec<Field>,
    mutation_names: Taken,
    upstreams: Vec<UpstreamOut>,
    /// Header rules every upstream gets, from the document's security schemes.
    auth_headers: Vec<String>,
    ops: Vec<operations::Op>,
    notes: Vec<Note>,
    uses_json: bool,
    uses_int64: bool,
}

impl<'d> Importer<'d> {
    fn new(doc: &'d Doc, opts: &'d Options) -> Self {
        Importer {
            doc,
            opts,
            types: Types::default(),
            type_names: Taken::with(RESERVED),
            built: HashMap::new(),
            interfaces: HashSet::new(),
            query: Vec::new(),
            query_names: Taken::default(),
            mutation: Vec::new(),
            mutation_names: Taken::default(),
            upstreams: Vec::new(),
            auth_headers: Vec::new(),
            ops: Vec::new(),
            notes: Vec::new(),
            uses_json: false,
            uses_int64: false,
        }
    }

    fn note(&mut self, pointer: &str, message: impl Into<String>) {
        let note = Note {
            pointer: pointer.to_owned(),
            message: message.into(),
        };
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    fn webhooks(&mut self) {
        let names: Vec<String> = match self.doc.root.get("webhooks") {
            Some(serde_json::Value::Object(hooks)) => hooks.keys().cloned().collect(),
            _ => return,
        };
        for name in names {
            let ptr = doc::child("#/webhooks", &name);
            self.note(
                &ptr,
                "a webhook is a call the API makes to its clients; there is nothing for Fanout to call",
            );
        }
    }

    fn finish(mut self, proposals: usize) -> Output {
        let mut out = String::new();
        let info = self.doc.root.get("info");
        let title = info
            .and_then(|i| i.get("title"))
            .and_then(|t| t.as_str())
            .unwrap_or("an OpenAPI document");
        let version = info
            .and_then(|i| i.get("version"))
            .and_then(|t| t.as_str())
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# Generated by `fanout import openapi {}` from {}{version} (OpenAPI {}).",
            self.opts.source,
            gql::string(title),
            self.doc.version
        );
        out.push_str(
            "# A start, not a finished schema: rename, trim and document what your clients need.\n\
             # Fields under a `# proposed` comment are links the import guessed from the document:\n\
             # keep them or delete them. What it could not map it listed on stderr.\n\n",
        );
        out.push_str("extend schema");
        for u in &self.upstreams {
            out.push('\n');
            if let Some(d) = &u.description {
                let _ = writeln!(out, "  # {}", d.lines().next().unwrap_or_default());
            }
            let base = format!("{{env.{}:-{}}}", u.env, u.url);
            let _ = write!(
                out,
                "  @upstream(name: {}, baseUrl: {}",
                gql::string(&u.name),
                gql::string(&base)
            );
            if !self.auth_headers.is_empty() {
                let _ = write!(
                    out,
                    ",\n            headers: [{}]",
                    self.auth_headers.join(", ")
                );
            }
            out.push(')');
        }
        out.push_str("\n\n");
        if self.query.is_empty() {
            self.note(
                "#/paths",
                "no GET operation to make a query field of; the schema gets a placeholder `_placeholder` query field",
            );
            self.query.push(Field {
                name: "_placeholder".into(),
                description: Some(
                    "The document has no GET operation: a GraphQL schema needs a query field, so \
                     here is one to replace."
                        .into(),
                ),
                ty: Some(gql::Ty::named("Boolean")),
                ..Field::default()
            });
        }
        let (query_fields, mutation_fields) = (self.query.len(), self.mutation.len());
        let roots = [
            ("Query", std::mem::take(&mut self.query)),
            ("Mutation", std::mem::take(&mut self.mutation)),
        ];
        for (name, fields) in roots {
            if fields.is_empty() {
                continue;
            }
            let root = TypeDef {
                name: name.into(),
                description: None,
                kind: Kind::Object {
                    fields,
                    implements: Vec::new(),
                },
                comment: None,
            };
            gql::write_type(&mut out, &root);
            out.push('\n');
        }
        for t in self.types.values() {
            gql::write_type(&mut out, t);
            out.push('\n');
        }
        if self.uses_json {
            out.push_str("\"\"\"\nAny JSON value, as the API sends or takes it.\n\"\"\"\n");
            let _ = writeln!(out, "scalar {}\n", types::JSON);
        }
        if self.uses_int64 {
            out.push_str("\"\"\"\nA 64-bit integer (`format: int64`), as a JSON number.\n\"\"\"\n");
            let _ = writeln!(out, "scalar {}\n", types::INT64);
        }
        let out = out.trim_end().to_owned() + "\n";
        Output {
            sdl: out,
            notes: self.notes,
            query_fields,
            mutation_fields,
            types: self.types.len(),
            proposals,
        }
    }
}
