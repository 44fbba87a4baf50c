//! Checked bindings -> the executable async-graphql schema. The only place that builds it.
//!
//! async-graphql parses, validates and answers introspection. Data is Fanout's own business:
//! every root field gets [`crate::resolve::root_field`], which plans and fetches the whole
//! subtree; fields below the root are never called by the engine (see `resolve`).

use async_graphql::{
    dynamic::{
        Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Interface,
        InterfaceField, Object, Scalar, Schema, SchemaBuilder, TypeRef, Union,
    },
    parser::types::{BaseType, Type},
};

use crate::sdl::{Bindings, FieldDef, InputValueDef, TypeKind};

mod cache;
pub mod limits;
mod shape;
mod text;

/// Limits checked before a query executes, and what the schema reveals about itself.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Levels of fields, through fragments.
    pub max_depth: usize,
    /// Each field counts 1, plus its selection's complexity times the items it is expected
    /// to return (see `shape`).
    pub max_complexity: usize,
    /// The items a list field is taken to return when no argument says how many.
    pub assumed_list_size: usize,
    pub max_aliases: usize,
    pub max_root_fields: usize,
    /// Directives on one selection.
    pub max_directives: usize,
    /// Levels of `{ }` and `[ ]` in the query text (selection sets, lists, objects), and of
    /// lists and objects in variables.
    pub max_nesting: usize,
    /// Lexical tokens in the query text.
    pub max_tokens: usize,
    pub introspection: bool,
    /// "Did you mean ...?" in validation errors, which reveals field names.
    pub suggestions: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 15,
            max_complexity: 10_000,
            assumed_list_size: 10,
            max_aliases: 30,
            max_root_fields: 20,
            max_directives: 10,
            max_nesting: 32,
            max_tokens: 15_000,
            introspection: true,
            suggestions: true,
        }
    }
}

pub fn build(bindings: &std::sync::Arc<Bindings>, limits: &Limits) -> Result<Schema, String> {
    let mut builder = Schema::build(&bindings.query, bindings.mutation.as_deref(), None);
    for def in bindings.types.values() {
        let is_root = def.name == bindings.query || Some(&def.name) == bindings.mutation.as_ref();
        builder = register(builder, def, is_root);
    }
    // Depth, complexity, directives and nesting are Fanout's to check (see `limits`).
    builder = builder.extension(limits::GuardFactory(limits::Guard::new(
        bindings.clone(),
        limits,
    )));
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    if !limits.suggestions {
        builder = builder.disable_suggestions();
    }
    builder.finish().map_err(|e| e.0)
}

fn register(builder: SchemaBuilder, def: &crate::sdl::TypeDef, is_root: bool) -> SchemaBuilder {
    let desc = def.description.as_deref();
    match &def.kind {
        TypeKind::Scalar => {
            builder.register(with_desc(Scalar::new(&def.name), desc, Scalar::description))
        }
        TypeKind::Object(obj) => {
            let mut o = with_desc(Object::new(&def.name), desc, Object::description);
            for i in &obj.implements {
                o = o.implement(i);
            }
            for f in obj.fields.values() {
                o = o.field(field(f, is_root));
            }
            builder.register(o)
        }
        TypeKind::Interface(obj) => {
            let mut t = with_desc(Interface::new(&def.name), desc, Interface::description);
            for i in &obj.implements {
                t = t.implement(i);
            }
            for f in obj.fields.values() {
                let mut field = InterfaceField::new(&f.name, type_ref(&f.ty));
                field = with_desc(field, f.description.as_deref(), InterfaceField::description);
                for a in &f.args {
                    field = field.argument(input_value(a));
                }
                t = t.field(field);
            }
            builder.register(t)
        }
        TypeKind::Union(members) => {
            let mut u = with_desc(Union::new(&def.name), desc, Union::description);
            for m in members {
                u = u.possible_type(m);
            }
            builder.register(u)
        }
        TypeKind::Enum(values) => {
            let mut e = with_desc(Enum::new(&def.name), desc, Enum::description);
            for v in values {
                let mut item = with_desc(
                    EnumItem::new(&v.name),
                    v.description.as_deref(),
                    EnumItem::description,
                );
                if let Some(reason) = &v.deprecation {
                    item = item.deprecation(Some(deprecation_reason(reason)));
                }
                e = e.item(item);
            }
            builder.register(e)
        }
        TypeKind::InputObject(fields) => {
            let mut i = with_desc(InputObject::new(&def.name), desc, InputObject::description);
            for f in fields {
                i = i.field(input_value(f));
            }
            builder.register(i)
        }
    }
}

fn field(f: &FieldDef, is_root: bool) -> Field {
    let mut field = if is_root {
        Field::new(&f.name, type_ref(&f.ty), crate::resolve::root_field)
    } else {
        // Fanout resolves whole subtrees from the root (see `resolve`), so the engine never
        // reaches a nested resolver with a value to read.
        Field::new(&f.name, type_ref(&f.ty), |_| {
            FieldFuture::Value(None::<FieldValue>)
        })
    };
    field = with_desc(field, f.description.as_deref(), Field::description);
    if let Some(reason) = &f.deprecation {
        field = field.deprecation(Some(deprecation_reason(reason)));
    }
    for a in &f.args {
        field = field.argument(input_value(a));
    }
    field
}

/// `@deprecated` without a reason has the spec's default one (3.13.3): clients read a null
/// `deprecationReason` as "not deprecated".
fn deprecation_reason(reason: &Option<String>) -> &str {
    reason.as_deref().unwrap_or("No longer supported")
}

fn input_value(a: &InputValueDef) -> InputValue {
    let mut v = InputValue::new(&a.name, type_ref(&a.ty));
    v = with_desc(v, a.description.as_deref(), InputValue::description);
    if let Some(default) = &a.default {
        v = v.default_value(default.clone());
    }
    v
}

fn with_desc<T>(item: T, desc: Option<&str>, set: fn(T, String) -> T) -> T {
    match desc {
        Some(d) => set(item, d.to_owned()),
        None => item,
    }
}

pub fn type_ref(t: &Type) -> TypeRef {
    let inner = match &t.base {
        BaseType::Named(n) => TypeRef::Named(n.to_string().into()),
        BaseType::List(item) => TypeRef::List(Box::new(type_ref(item))),
    };
    if t.nullable {
        inner
    } else {
        TypeRef::NonNull(Box::new(inner))
    }
}
