//! What the import produces, before it is text: GraphQL types with Fanout's directives, and
//! the SDL they print as.

use std::fmt::{self, Write};

use indexmap::IndexMap;

/// A GraphQL type reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ty {
    Named(String),
    List(Box<Ty>),
    NonNull(Box<Ty>),
}

impl Ty {
    pub fn named(n: &str) -> Ty {
        Ty::Named(n.to_owned())
    }

    pub fn non_null(self) -> Ty {
        match self {
            Ty::NonNull(_) => self,
            other => Ty::NonNull(Box::new(other)),
        }
    }

    pub fn nullable(self) -> Ty {
        match self {
            Ty::NonNull(inner) => *inner,
            other => other,
        }
    }

    /// The named type under lists and non-null.
    pub fn base(&self) -> &str {
        match self {
            Ty::Named(n) => n,
            Ty::List(t) | Ty::NonNull(t) => t.base(),
        }
    }

    pub fn is_list(&self) -> bool {
        match self {
            Ty::List(_) => true,
            Ty::NonNull(t) => t.is_list(),
            Ty::Named(_) => false,
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Named(n) => f.write_str(n),
            Ty::List(t) => write!(f, "[{t}]"),
            Ty::NonNull(t) => write!(f, "{t}!"),
        }
    }
}

#[derive(Debug, Default)]
pub struct Arg {
    pub name: String,
    pub description: Option<String>,
    pub ty: Option<Ty>,
    /// A GraphQL literal.
    pub default: Option<String>,
}

#[derive(Debug, Default)]
pub struct Field {
    pub name: String,
    pub description: Option<String>,
    pub args: Vec<Arg>,
    pub ty: Option<Ty>,
    /// Directive uses as written (`@map(from: "x-next")`, `@rest(...)`).
    pub directives: Vec<String>,
    pub deprecated: Option<Option<String>>,
    /// A comment line printed above the field (proposed links say so here).
    pub comment: Option<String>,
}

#[derive(Debug)]
pub enum Kind {
    Object {
        fields: Vec<Field>,
        implements: Vec<String>,
    },
    Interface {
        fields: Vec<Field>,
    },
    Union(Vec<String>),
    Enum(Vec<(String, Option<String>, bool)>),
    Input(Vec<Field>),
    Scalar,
}

#[derive(Debug)]
pub struct TypeDef {
    pub name: String,
    pub description: Option<String>,
    pub kind: Kind,
    pub comment: Option<String>,
}

impl TypeDef {
    pub fn fields(&self) -> Option<&Vec<Field>> {
        match &self.kind {
            Kind::Object { fields, .. } | Kind::Interface { fields } | Kind::Input(fields) => {
                Some(fields)
            }
            _ => None,
        }
    }
}

/// A GraphQL string literal.
pub fn string(text: &str) -> String {
    serde_json::to_string(text).expect("strings always serialize")
}

fn description(out: &mut String, indent: &str, text: Option<&str>) {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return;
    };
    let text = text.replace("\r\n", "\n").replace("\"\"\"", "\\\"\"\"");
    let _ = writeln!(out, "{indent}\"\"\"");
    for line in text.lines() {
        if line.trim().is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{indent}{line}");
        }
    }
    let _ = writeln!(out, "{indent}\"\"\"");
}

fn deprecated(d: &Option<Option<String>>) -> String {
    match d {
        None => String::new(),
        Some(None) => " @deprecated".into(),
        Some(Some(r)) => format!(" @deprecated(reason: {})", string(r)),
    }
}

fn comment(out: &mut String, indent: &str, text: Option<&str>) {
    for line in text.into_iter().flat_map(str::lines) {
        let _ = writeln!(out, "{indent}# {line}");
    }
}

fn field(out: &mut String, f: &Field, spaced: bool) {
    if spaced {
        out.push('\n');
    }
    comment(out, "  ", f.comment.as_deref());
    description(out, "  ", f.description.as_deref());
    let _ = write!(out, "  {}", f.name);
    if !f.args.is_empty() {
        let documented = f.args.iter().any(|a| a.description.is_some());
        if documented || f.args.len() > 3 {
            out.push_str("(\n");
            for a in &f.args {
                description(out, "    ", a.description.as_deref());
                let _ = write!(out, "    {}: {}", a.name, a.ty.as_ref().expect("typed"));
                if let Some(d) = &a.default {
                    let _ = write!(out, " = {d}");
                }
                out.push('\n');
            }
            out.push_str("  )");
        } else {
            let args: Vec<String> = f
                .args
                .iter()
                .map(|a| {
                    let ty = a.ty.as_ref().expect("typed");
                    match &a.default {
                        Some(d) => format!("{}: {ty} = {d}", a.name),
                        None => format!("{}: {ty}", a.name),
                    }
                })
                .collect();
            let _ = write!(out, "({})", args.join(", "));
        }
    }
    let _ = write!(out, ": {}", f.ty.as_ref().expect("typed"));
    for d in &f.directives {
        let _ = write!(out, "\n    {d}");
    }
    out.push_str(&deprecated(&f.deprecated));
    out.push('\n');
}

/// Whether fields get a blank line between them: when any has a description or comment.
fn documented(fields: &[Field]) -> bool {
    fields
        .iter()
        .any(|f| f.description.is_some() || f.comment.is_some())
}

/// The SDL of one type.
pub fn write_type(out: &mut String, t: &TypeDef) {
    comment(out, "", t.comment.as_deref());
    description(out, "", t.description.as_deref());
    match &t.kind {
        Kind::Object { fields, implements } => {
            let _ = write!(out, "type {}", t.name);
            if !implements.is_empty() {
                let _ = write!(out, " implements {}", implements.join(" & "));
            }
            out.push_str(" {");
            let spaced = documented(fields);
            if !spaced {
                out.push('\n');
            }
            fields.iter().for_each(|f| field(out, f, spaced));
            out.push_str("}\n");
        }
        Kind::Interface { fields } => {
            let _ = write!(out, "interface {} {{", t.name);
            let spaced = documented(fields);
            if !spaced {
                out.push('\n');
            }
            fields.iter().for_each(|f| field(out, f, spaced));
            out.push_str("}\n");
        }
        Kind::Input(fields) => {
            let _ = write!(out, "input {} {{", t.name);
            let spaced = documented(fields);
            if !spaced {
                out.push('\n');
            }
            for f in fields {
                if spaced {
                    out.push('\n');
                }
                description(out, "  ", f.description.as_deref());
                let _ = writeln!(out, "  {}: {}", f.name, f.ty.as_ref().expect("typed"));
            }
            out.push_str("}\n");
        }
        Kind::Union(members) => {
            let _ = writeln!(out, "union {} = {}", t.name, members.join(" | "));
        }
        Kind::Enum(values) => {
            let _ = writeln!(out, "enum {} {{", t.name);
            for (v, desc, dep) in values {
                description(out, "  ", desc.as_deref());
                let dep = if *dep { " @deprecated" } else { "" };
                let _ = writeln!(out, "  {v}{dep}");
            }
            out.push_str("}\n");
        }
        Kind::Scalar => {
            let _ = writeln!(out, "scalar {}", t.name);
        }
    }
}

/// Types by name, in the order they were first named.
pub type Types = IndexMap<String, TypeDef>;
