//! JSON Schemas -> GraphQL types: objects (with `allOf` merged), input objects, enums,
//! unions and interfaces (from discriminators), lists, and a `JSON` scalar for the rest.

use std::collections::HashSet;

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::{
    Importer,
    doc::{self, child, shape},
    gql::{Field, Kind, Ty, TypeDef},
    names::{self, Taken},
};

/// The scalar for values GraphQL cannot describe: free-form objects, mixed `oneOf`s.
pub const JSON: &str = "JSON";
/// The scalar for `format: int64`, which GraphQL's 32-bit `Int` cannot hold.
pub const INT64: &str = "Int64";

/// A schema as a GraphQL type, before `required` decides whether it is non-null.
pub struct Mapped {
    pub ty: Ty,
    pub nullable: bool,
}

/// An object schema with its `allOf`s merged.
#[derive(Default)]
pub struct Merged {
    /// Property name -> the pointer of its schema, in document order.
    pub props: IndexMap<String, String>,
    pub required: HashSet<String>,
    /// Interfaces (component names) it extends through `allOf`.
    pub extends: Vec<String>,
}

/// What a (resolved) schema is, for mapping.
enum Form {
    /// Another schema says it all (`allOf: [$ref]`, `oneOf: [$ref, null]`).
    Alias(String),
    Scalar(&'static str),
    List(Option<String>),
    Enum,
    Object,
    Union(Vec<String>),
    Json(Option<String>),
}

impl Importer<'_> {
    /// Component schemas with a discriminator that other components extend with `allOf`
    /// become interfaces; the others, object types implementing them.
    pub(super) fn find_interfaces(&mut self) {
        let Some(Json::Object(schemas)) = self.doc.at("#/components/schemas") else {
            return;
        };
        for schema in schemas.values() {
            for member in schema
                .get("allOf")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let Some(target) = member.get("$ref").and_then(Json::as_str) else {
                    continue;
                };
                let Some(name) = doc::component_name(target) else {
                    continue;
                };
                let base = &schemas.get(&name);
                if base
                    .is_some_and(|b| b.get("discriminator").is_some() && b.get("oneOf").is_none())
                {
                    self.interfaces.insert(name);
                }
            }
        }
    }

    /// Every component schema that is an object, enum, union or interface becomes a type,
    /// in document order, whether or not an operation uses it.
    pub(super) fn components(&mut self) {
        let names: Vec<String> = match self.doc.at("#/components/schemas") {
            Some(Json::Object(schemas)) => schemas.keys().cloned().collect(),
            _ => return,
        };
        for name in names {
            let ptr = child("#/components/schemas", &name);
            self.map(&ptr, &names::pascal(&name), false);
        }
    }

    pub(super) fn output(&mut self, ptr: &str, hint: &str) -> Mapped {
        self.map(ptr, hint, false)
    }

    pub(super) fn input(&mut self, ptr: &str, hint: &str) -> Mapped {
        self.map(ptr, hint, true)
    }

    fn json(&mut self, nullable: bool) -> Mapped {
        self.uses_json = true;
        Mapped {
            ty: Ty::named(JSON),
            nullable,
        }
    }

    /// The GraphQL type of the schema at `ptr`; `hint` names it when it is an inline object
    /// or enum. Builds the types it needs.
    pub(super) fn map(&mut self, ptr: &str, hint: &str, input: bool) -> Mapped {
        let raw_nullable = self.doc.at(ptr).is_some_and(|s| shape(s).nullable);
        let Some(r) = self.doc.resolve(ptr) else {
            self.note(
                ptr,
                "a `$ref` that leaves the document or leads nowhere: typed as JSON",
            );
            return self.json(true);
        };
        let (pointer, schema) = (r.pointer, r.value);
        let hint = match &r.component {
            Some(c) => names::pascal(c),
            None => hint.to_owned(),
        };
        let nullable = raw_nullable || shape(schema).nullable;
        match self.form(&pointer, schema, input) {
            Form::Alias(to) => {
                let m = self.map(&to, &hint, input);
                Mapped {
                    ty: m.ty,
                    nullable: m.nullable || nullable,
                }
            }
            Form::Scalar(name) => {
                if name == INT64 {
                    self.uses_int64 = true;
                }
                Mapped {
                    ty: Ty::named(name),
                    nullable,
                }
            }
            Form::List(items) => {
                let item = match items {
                    Some(items) => self.map(&items, &format!("{hint}Item"), input),
                    None => self.json(true),
                };
                let item = if item.nullable {
                    item.ty
                } else {
                    item.ty.non_null()
                };
                Mapped {
                    ty: Ty::List(Box::new(item)),
                    nullable,
                }
            }
            Form::Enum => self.enumeration(&pointer, schema, &hint, nullable),
            Form::Object => {
                let name = self.object(&pointer, &hint, input, r.component.as_deref());
                Mapped {
                    ty: Ty::Named(name),
                    nullable,
                }
            }
            Form::Union(members) => self.union(&pointer, schema, &hint, &members, nullable),
            Form::Json(why) => {
                if let Some(why) = why {
                    self.note(&pointer, why);
                }
                self.json(nullable)
            }
        }
    }

    fn form(&mut self, ptr: &str, s: &Json, input: bool) -> Form {
        let has_props = s
            .get("properties")
            .and_then(Json::as_object)
            .is_some_and(|p| !p.is_empty());
        if let Some(all) = s.get("allOf").and_then(Json::as_array) {
            let list = child(ptr, "allOf");
            let real: Vec<String> = all
                .iter()
                .enumerate()
                .filter(|(_, m)| !doc::is_annotation(m))
                .map(|(i, _)| child(&list, &i.to_string()))
                .collect();
            let structured = |p: &String| {
                self.doc.resolve(p).is_some_and(|r| {
                    let s = r.value;
                    s.get("properties").is_some()
                        || s.get("allOf").is_some()
                        || shape(s).types.iter().any(|t| t == "object")
                })
            };
            if !has_props && (real.len() == 1 || (!real.is_empty() && !real.iter().any(structured)))
            {
                return Form::Alias(real[0].clone());
            }
            return Form::Object;
        }
        for key in ["oneOf", "anyOf"] {
            let Some(members) = s.get(key).and_then(Json::as_array) else {
                continue;
            };
            if has_props {
                self.note(
                    ptr,
                    format!("`{key}` beside `properties`: only the properties are mapped"),
                );
                return Form::Object;
            }
            let list = child(ptr, key);
            let real: Vec<String> = members
                .iter()
                .enumerate()
                .filter(|(_, m)| !doc::is_null_only(m))
                .map(|(i, _)| child(&list, &i.to_string()))
                .collect();
            if real.len() == 1 {
                return Form::Alias(real[0].clone());
            }
            if input {
                return Form::Json(None);
            }
            if s.get("discriminator").is_some() {
                return Form::Union(real);
            }
            return Form::Json(Some(format!(
                "`{key}` without a discriminator: GraphQL cannot tell its members apart; typed as JSON"
            )));
        }
        if s.get("enum").is_some() {
            return Form::Enum;
        }
        let sh = shape(s);
        if sh.types.len() > 1 {
            return Form::Json(Some(format!(
                "a value of several types ({}): typed as JSON",
                sh.types.join(", ")
            )));
        }
        match sh.types.first().map(String::as_str) {
            Some("string") => Form::Scalar("String"),
            Some("boolean") => Form::Scalar("Boolean"),
            Some("number") => Form::Scalar("Float"),
            Some("integer") => match s.get("format").and_then(Json::as_str) {
                Some("int64") => Form::Scalar(INT64),
                _ => Form::Scalar("Int"),
            },
            Some("array") => Form::List(s.get("items").map(|_| child(ptr, "items"))),
            Some("object") if has_props => Form::Object,
            Some("object") => Form::Json(None),
            _ if has_props => Form::Object,
            _ => Form::Json(None),
        }
    }

    fn enumeration(&mut self, ptr: &str, s: &Json, hint: &str, nullable: bool) -> Mapped {
        let values: Vec<&Json> = s
            .get("enum")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter(|v| !v.is_null())
            .collect();
        let texts: Vec<&str> = values.iter().filter_map(|v| v.as_str()).collect();
        let plain = |name: &'static str| Mapped {
            ty: Ty::named(name),
            nullable,
        };
        if texts.len() != values.len() || texts.is_empty() {
            return match shape(s).types.first().map(String::as_str) {
                Some("integer") => plain("Int"),
                Some("number") => plain("Float"),
                Some("boolean") => plain("Boolean"),
                _ => plain("String"),
            };
        }
        if let Some(bad) = texts.iter().find(|t| !names::is_enum_value(t)) {
            self.note(
                ptr,
                format!("the enum value {bad:?} is not a GraphQL name: typed as String"),
            );
            return plain("String");
        }
        let key = (ptr.to_owned(), false);
        if let Some(name) = self.built.get(&key) {
            return Mapped {
                ty: Ty::Named(name.clone()),
                nullable,
            };
        }
        let name = self.type_names.unique(hint);
        self.built.insert(key, name.clone());
        let mut seen = HashSet::new();
        let values = texts
            .iter()
            .filter(|t| seen.insert(**t))
            .map(|t| ((*t).to_owned(), None, false))
            .collect();
        self.types.insert(
            name.clone(),
            TypeDef {
                name: name.clone(),
                description: doc::description(s),
                kind: Kind::Enum(values),
                comment: None,
            },
        );
        Mapped {
            ty: Ty::Named(name),
            nullable,
        }
    }

    fn union(
        &mut self,
        ptr: &str,
        s: &Json,
        hint: &str,
        members: &[String],
        nullable: bool,
    ) -> Mapped {
        let key = (ptr.to_owned(), false);
        if let Some(name) = self.built.get(&key) {
            return Mapped {
                ty: Ty::Named(name.clone()),
                nullable,
            };
        }
        let name = self.type_names.unique(hint);
        self.built.insert(key, name.clone());
        // Reserve the place in the output before the members are built.
        self.types.insert(
            name.clone(),
            TypeDef {
                name: name.clone(),
                description: doc::description(s),
                kind: Kind::Union(Vec::new()),
                comment: None,
            },
        );
        let mut out: Vec<String> = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let mapped = self.output(m, &format!("{name}Option{}", i + 1));
            let is_object = matches!(&mapped.ty, Ty::Named(n)
                if matches!(self.types.get(n).map(|t| &t.kind), Some(Kind::Object { .. })));
            if !is_object {
                self.types.shift_remove(&name);
                self.built.insert((ptr.to_owned(), false), JSON.to_owned());
                self.note(
                    ptr,
                    "a union member that is not an object type: typed as JSON",
                );
                return self.json(nullable);
            }
            let member = mapped.ty.base().to_owned();
            if !out.contains(&member) {
                out.push(member);
            }
        }
        let prop = s
            .pointer("/discriminator/propertyName")
            .and_then(Json::as_str)
            .unwrap_or("?");
        if prop != "__typename" {
            self.note(
                ptr,
                format!(
                    "union {name}: Fanout picks the member by `__typename` in the JSON, and this \
                     API names it in `{prop}`; answers without `__typename` fail unless only one member fits"
                ),
            );
        }
        if let Some(t) = self.types.get_mut(&name) {
            t.kind = Kind::Union(out);
        }
        Mapped {
            ty: Ty::Named(name),
            nullable,
        }
    }

    /// The object (or input object, or interface) type of an object schema.
    fn object(&mut self, ptr: &str, hint: &str, input: bool, component: Option<&str>) -> String {
        let key = (ptr.to_owned(), input);
        if let Some(name) = self.built.get(&key) {
            return name.clone();
        }
        let base = if input && !hint.ends_with("Input") {
            format!("{hint}Input")
        } else {
            hint.to_owned()
        };
        let name = self.type_names.unique(&base);
        self.built.insert(key, name.clone());
        let interface = !input && component.is_some_and(|c| self.interfaces.contains(c));
        let schema = self.doc.at(ptr).cloned().unwrap_or(Json::Null);
        // Reserve the place in the output before the fields (and their types) are built.
        self.types.insert(
            name.clone(),
            TypeDef {
                name: name.clone(),
                description: doc::description(&schema),
                kind: Kind::Scalar,
                comment: None,
            },
        );
        let merged = self.merged(ptr);
        let fields = self.fields(&merged, &name, input);
        let kind = if fields.is_empty() {
            // Nothing GraphQL can select: any JSON, under the schema's name.
            self.note(
                ptr,
                format!("no property that can be a GraphQL field: {name} is a scalar (any JSON)"),
            );
            Kind::Scalar
        } else if input {
            Kind::Input(fields)
        } else if interface {
            Kind::Interface { fields }
        } else {
            let implements = merged.extends.iter().map(|c| names::pascal(c)).collect();
            Kind::Object { fields, implements }
        };
        if let Some(t) = self.types.get_mut(&name) {
            t.kind = kind;
        }
        name
    }

    /// The properties of an object schema, its `allOf` members' included.
    pub(super) fn merged(&self, ptr: &str) -> Merged {
        let mut out = Merged::default();
        let mut seen = HashSet::new();
        self.merge_into(ptr, &mut out, &mut seen, true);
        out
    }

    fn merge_into(&self, ptr: &str, out: &mut Merged, seen: &mut HashSet<String>, top: bool) {
        let Some(r) = self.doc.resolve(ptr) else {
            return;
        };
        if !seen.insert(r.pointer.clone()) {
            return;
        }
        if !top
            && let Some(c) = &r.component
            && self.interfaces.contains(c)
            && !out.extends.contains(c)
        {
            out.extends.push(c.clone());
        }
        let s = r.value;
        if let Some(all) = s.get("allOf").and_then(Json::as_array) {
            for i in 0..all.len() {
                let member = child(&child(&r.pointer, "allOf"), &i.to_string());
                self.merge_into(&member, out, seen, false);
            }
        }
        if let Some(Json::Object(props)) = s.get("properties") {
            let at = child(&r.pointer, "properties");
            for name in props.keys() {
                out.props.insert(name.clone(), child(&at, name));
            }
        }
        for r in s
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str() {
                out.required.insert(r.to_owned());
            }
        }
    }

    fn fields(&mut self, merged: &Merged, type_name: &str, input: bool) -> Vec<Field> {
        let mut taken = Taken::default();
        let mut fields = Vec::new();
        for (prop, ptr) in &merged.props {
            let raw = self.doc.at(ptr).cloned().unwrap_or(Json::Null);
            let resolved = self.doc.resolve(ptr).map(|r| r.value.clone());
            let said =
                |k: &str| doc::flag(&raw, k) || resolved.as_ref().is_some_and(|r| doc::flag(r, k));
            if (input && said("readOnly")) || (!input && said("writeOnly")) {
                continue;
            }
            let mut directives = Vec::new();
            let name = if names::is_name(prop) {
                prop.clone()
            } else if input {
                self.note(
                    ptr,
                    format!("the property {prop:?} is not a GraphQL name, so an input cannot send it; left out"),
                );
                continue;
            } else if prop.contains('.') || prop.is_empty() {
                self.note(
                    ptr,
                    format!(
                        "the property {prop:?} cannot be read with @map (it holds a `.`); left out"
                    ),
                );
                continue;
            } else {
                directives.push(format!("@map(from: {})", super::gql::string(prop)));
                names::field(prop)
            };
            let name = taken.unique(&name);
            let hint = format!("{type_name}{}", names::pascal(prop));
            let hint = hint
                .strip_suffix("Input")
                .map(str::to_owned)
                .unwrap_or(hint);
            let m = self.map(ptr, &hint, input);
            let mut ty = m.ty;
            if !input && prop.eq_ignore_ascii_case("id") && is_id_like(&ty) {
                ty = Ty::named("ID");
            }
            let nested_input = input
                && matches!(
                    self.types.get(ty.base()).map(|t| &t.kind),
                    Some(Kind::Input(_))
                );
            // A required nested input stays nullable: input types may refer to each other
            // in circles, which GraphQL allows only through nullable fields.
            if merged.required.contains(prop) && !m.nullable && !nested_input {
                ty = ty.non_null();
            }
            let mut description = doc::description(&raw);
            let deprecated = said("deprecated");
            if input && deprecated {
                description = Some(format!("Deprecated. {}", description.unwrap_or_default()));
            }
            fields.push(Field {
                name,
                description,
                args: Vec::new(),
                ty: Some(ty),
                directives,
                deprecated: (!input && deprecated).then_some(None),
                comment: None,
            });
        }
        fields
    }

    /// An object type that claims an interface must have its fields with the same types;
    /// one that overrides a field with another type loses the claim.
    pub(super) fn check_interfaces(&mut self) {
        let mut drops = Vec::new();
        for t in self.types.values() {
            let Kind::Object { fields, implements } = &t.kind else {
                continue;
            };
            for i in implements {
                let fits = match self.types.get(i).map(|t| &t.kind) {
                    Some(Kind::Interface { fields: want }) => want.iter().all(|w| {
                        fields.iter().any(|f| {
                            f.name == w.name
                                && (f.ty == w.ty || f.ty.clone().map(Ty::nullable) == w.ty.clone())
                        })
                    }),
                    _ => false,
                };
                if !fits {
                    drops.push((t.name.clone(), i.clone()));
                }
            }
        }
        for (object, interface) in drops {
            if let Some(Kind::Object { implements, .. }) =
                self.types.get_mut(&object).map(|t| &mut t.kind)
            {
                implements.retain(|i| *i != interface);
            }
            self.note(
                "#/components/schemas",
                format!("{object} changes fields of {interface}, so it does not implement it"),
            );
        }
    }
}

fn is_id_like(ty: &Ty) -> bool {
    matches!(ty, Ty::Named(n) if n == "String" || n == "Int" || n == INT64)
}
