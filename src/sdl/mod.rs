//! `schema.graphql` -> checked bindings.
//!
//! [`load`] parses the file, checks every Fanout directive and template, and produces
//! [`Bindings`]: the GraphQL types plus, for each field, where its value comes from. Problems
//! are collected as [`Diagnostic`]s with line and column, all of them at once; a schema with
//! an error never produces bindings, so it never reaches serving.

mod check;
mod diag;
pub mod template;

use std::{sync::Arc, time::Duration};

use async_graphql::{Value as ConstValue, parser::types::Type};
use http::HeaderName;
use reqwest::Method;

pub use check::{LoadOptions, load, parse_duration};
pub use diag::{Diagnostic, Severity};
use template::Template;

/// The checked schema: types in file order, upstreams, and the root type names.
#[derive(Debug)]
pub struct Bindings {
    pub upstreams: Vec<Upstream>,
    pub types: crate::FastIndexMap<String, TypeDef>,
    pub query: String,
    pub mutation: Option<String>,
}

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    /// Scheme, host, port and an optional base path, without a trailing `/`.
    pub base_url: String,
    pub timeout: Option<Duration>,
    pub headers: Vec<HeaderRule>,
    pub max_batch_size: Option<usize>,
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per host.
    pub pool_max_idle: usize,
    /// Calls in flight to it at once; more wait for one to finish (within their deadline).
    pub max_connections: usize,
    /// A larger response is cut off with `UPSTREAM_BAD_RESPONSE`, so memory stays bounded.
    pub max_response_bytes: usize,
    /// A response holding more JSON values is refused before it is parsed: a few bytes per
    /// value (`[{},{},...]`) would otherwise expand into far more memory than they take.
    pub max_response_nodes: usize,
    /// Extra tries of a failed GET (see `upstream::resilience`).
    pub retries: u32,
    /// Share identical in-flight GETs across client requests.
    pub coalesce: bool,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

#[derive(Debug, Clone)]
pub enum HeaderRule {
    /// A header with a templated value.
    Value { name: HeaderName, value: Template },
    /// Copy this header of the client's request, when present.
    From { name: HeaderName, from: HeaderName },
}

#[derive(Debug)]
pub struct TypeDef {
    pub name: String,
    pub description: Option<String>,
    pub kind: TypeKind,
}

#[derive(Debug)]
pub enum TypeKind {
    Scalar,
    Object(ObjectDef),
    Interface(ObjectDef),
    Union(Vec<String>),
    Enum(Vec<EnumValueDef>),
    InputObject(Vec<InputValueDef>),
}

#[derive(Debug, Default)]
pub struct ObjectDef {
    pub fields: crate::FastIndexMap<String, FieldDef>,
    pub implements: Vec<String>,
}

#[derive(Debug)]
pub struct EnumValueDef {
    pub name: String,
    pub description: Option<String>,
    pub deprecation: Option<Option<String>>,
}

#[derive(Debug)]
pub struct FieldDef {
    pub name: String,
    pub description: Option<String>,
    pub args: Vec<InputValueDef>,
    pub ty: Type,
    pub source: Source,
    /// `Some(reason)` when `@deprecated` is on the field.
    pub deprecation: Option<Option<String>>,
}

#[derive(Debug)]
pub struct InputValueDef {
    pub name: String,
    pub description: Option<String>,
    pub ty: Type,
    pub default: Option<ConstValue>,
}

/// Where a field's value comes from.
#[derive(Debug)]
pub enum Source {
    /// A key or dot path of the parent's JSON (`@map(from:)`, or the field's own name).
    Key(Vec<String>),
    /// An upstream call (`@rest`).
    Rest(Arc<RestBinding>),
}

#[derive(Debug)]
pub struct RestBinding {
    /// The field, as `Type.field`.
    pub field: String,
    /// Index into [`Bindings::upstreams`].
    pub upstream: usize,
    pub upstream_name: String,
    pub method: Method,
    pub path: Template,
    pub query: Vec<QueryParam>,
    pub headers: Vec<HeaderRule>,
    pub body: Option<Template>,
    pub select: Vec<String>,
    /// The field's deadline: its own `timeout`, else the upstream's, else the global default.
    pub timeout: Duration,
    pub batch: Option<BatchSpec>,
    /// Whether the request (path, query, headers, body; a batch key aside) reads
    /// `{parent...}`. When not, every parent of a batch field shares one rendered request.
    pub reads_parent: bool,
}

impl RestBinding {
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        let headers = self.headers.iter().filter_map(|h| match h {
            HeaderRule::Value { value, .. } => Some(value),
            HeaderRule::From { .. } => None,
        });
        std::iter::once(&self.path)
            .chain(self.query.iter().map(|q| &q.value))
            .chain(headers)
            .chain(&self.body)
    }
}

#[derive(Debug)]
pub struct QueryParam {
    pub name: String,
    pub value: Template,
    /// `Some(",")`: a list becomes one joined parameter instead of repeated ones.
    pub join: Option<String>,
}

#[derive(Debug)]
pub struct BatchSpec {
    pub key: Template,
    /// The query parameter that carries the comma-joined keys, if any.
    pub query: Option<String>,
    pub match_path: Vec<String>,
    pub max_size: usize,
}

impl Bindings {
    pub fn object(&self, name: &str) -> Option<&ObjectDef> {
        match &self.types.get(name)?.kind {
            TypeKind::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Whether a fragment with type condition `cond` applies to an object of type `object`.
    pub fn condition_applies(&self, cond: &str, object: &str) -> bool {
        if cond == object {
            return true;
        }
        match self.types.get(cond).map(|t| &t.kind) {
            Some(TypeKind::Union(members)) => members.iter().any(|m| m == object),
            Some(TypeKind::Interface(_)) => self
                .object(object)
                .is_some_and(|o| o.implements.iter().any(|i| i == cond)),
            _ => false,
        }
    }

    /// The object types an abstract type can be at run time.
    pub fn possible_types<'a>(&'a self, abstract_type: &'a str) -> Vec<&'a str> {
        self.types
            .values()
            .filter(|t| matches!(t.kind, TypeKind::Object(_)))
            .map(|t| t.name.as_str())
            .filter(|o| self.condition_applies(abstract_type, o))
            .collect()
    }
}
