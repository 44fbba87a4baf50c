//! The client's query -> an owned plan of what to fetch.
//!
//! async-graphql has already validated the operation. Here its selection sets are copied into
//! [`Entry`] trees with variables substituted, argument defaults applied and `@skip` /
//! `@include` decided, so the executor can run them concurrently without borrowing the engine.
//! Fragment type conditions are kept on each entry: which entries apply is decided per object,
//! once its concrete type is known.

use std::collections::HashMap;

use async_graphql::{
    Name, Pos, Value as ConstValue, Variables,
    parser::Positioned,
    parser::types::{
        BaseType, Directive, FragmentDefinition, OperationDefinition, Selection, SelectionSet, Type,
    },
};
use indexmap::IndexMap;
use serde_json::{Map, Value as Json};

use crate::sdl::{Bindings, FieldDef, InputValueDef, TypeKind};

/// One field of the query as written: a response key, the field, its arguments, and the
/// type conditions of the fragments it sits in.
#[derive(Debug)]
pub struct Entry {
    pub key: String,
    pub name: String,
    pub pos: Pos,
    pub args: Map<String, Json>,
    /// Every enclosing fragment's type condition below the parent field.
    pub conditions: Vec<String>,
    pub children: Vec<Entry>,
}

/// Reads the query: variables, fragments, and the schema to find argument defaults.
pub struct Planner<'a> {
    pub bindings: &'a Bindings,
    pub operation: &'a OperationDefinition,
    pub fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    pub variables: &'a Variables,
}

impl Planner<'_> {
    /// The operation's root selection, grouped by response key in query order.
    pub fn roots(&self, root_type: &str) -> IndexMap<String, Vec<Entry>> {
        let mut entries = Vec::new();
        self.collect(
            &self.operation.selection_set.node,
            root_type,
            &[],
            &mut entries,
        );
        let mut out: IndexMap<String, Vec<Entry>> = IndexMap::new();
        for e in entries {
            out.entry(e.key.clone()).or_default().push(e);
        }
        out
    }

    fn collect(&self, set: &SelectionSet, parent: &str, conds: &[String], out: &mut Vec<Entry>) {
        for sel in &set.items {
            match &sel.node {
                Selection::Field(f) => {
                    let f = &f.node;
                    if !self.included(&f.directives) {
                        continue;
                    }
                    let name = f.name.node.to_string();
                    let def = self.field_def(parent, conds, &name);
                    let mut args = Map::new();
                    for (n, v) in &f.arguments {
                        let value = v.node.clone().into_const_with(|var| {
                            Ok::<_, std::convert::Infallible>(self.variable(&var))
                        });
                        let value = value.unwrap_or(ConstValue::Null);
                        args.insert(n.node.to_string(), to_json(value));
                    }
                    if let Some(def) = def {
                        for a in &def.args {
                            let v = args.remove(&a.name);
                            let v = self.with_defaults(&a.ty, v, a.default.as_ref());
                            if let Some(v) = v {
                                args.insert(a.name.clone(), v);
                            }
                        }
                    }
                    let mut children = Vec::new();
                    if let Some(def) = def {
                        let child_type = named(&def.ty);
                        self.collect(&f.selection_set.node, child_type, &[], &mut children);
                    }
                    out.push(Entry {
                        key: f.response_key().node.to_string(),
                        name,
                        pos: sel.pos,
                        args,
                        conditions: conds.to_vec(),
                        children,
                    });
                }
                Selection::FragmentSpread(s) => {
                    if !self.included(&s.node.directives) {
                        continue;
                    }
                    let Some(frag) = self.fragments.get(&s.node.fragment_name.node) else {
                        continue;
                    };
                    let cond = frag.node.type_condition.node.on.node.to_string();
                    self.nested(
                        &frag.node.selection_set.node,
                        parent,
                        conds,
                        Some(cond),
                        out,
                    );
                }
                Selection::InlineFragment(i) => {
                    if !self.included(&i.node.directives) {
                        continue;
                    }
                    let cond = i
                        .node
                        .type_condition
                        .as_ref()
                        .map(|c| c.node.on.node.to_string());
                    self.nested(&i.node.selection_set.node, parent, conds, cond, out);
                }
            }
        }
    }

    fn nested(
        &self,
        set: &SelectionSet,
        parent: &str,
        conds: &[String],
        cond: Option<String>,
        out: &mut Vec<Entry>,
    ) {
        match cond {
            Some(c) if c != parent => {
                let mut conds = conds.to_vec();
                conds.push(c);
                self.collect(set, parent, &conds, out);
            }
            _ => self.collect(set, parent, conds, out),
        }
    }

    /// The definition of `name` on the parent type, or on the innermost fragment's type when
    /// the parent is abstract.
    fn field_def(&self, parent: &str, conds: &[String], name: &str) -> Option<&FieldDef> {
        let owner = conds.last().map(String::as_str).unwrap_or(parent);
        match &self.bindings.types.get(owner)?.kind {
            TypeKind::Object(o) | TypeKind::Interface(o) => o.fields.get(name),
            _ => None,
        }
    }

    fn variable(&self, name: &Name) -> ConstValue {
        if let Some(v) = self.variables.get(name) {
            return v.clone();
        }
        self.operation
            .variable_definitions
            .iter()
            .find(|d| d.node.name.node == *name)
            .and_then(|d| d.node.default_value.as_ref())
            .map(|d| d.node.clone())
            .unwrap_or(ConstValue::Null)
    }

    fn included(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().all(|d| {
            let cond = || {
                d.node
                    .get_argument("if")
                    .and_then(|v| {
                        v.node
                            .clone()
                            .into_const_with(|n| Ok::<_, ()>(self.variable(&n)))
                            .ok()
                    })
                    .is_some_and(|v| v == ConstValue::Boolean(true))
            };
            match d.node.name.node.as_str() {
                "skip" => !cond(),
                "include" => cond(),
                _ => true,
            }
        })
    }

    /// Fills in defaults of an argument and, recursively, of the input objects inside it.
    fn with_defaults(
        &self,
        ty: &Type,
        value: Option<Json>,
        default: Option<&ConstValue>,
    ) -> Option<Json> {
        let value = value.or_else(|| default.map(|d| to_json(d.clone())))?;
        match (&ty.base, value) {
            (BaseType::List(item), Json::Array(items)) => Some(Json::Array(
                items
                    .into_iter()
                    .map(|i| {
                        self.with_defaults(item, Some(i), None)
                            .unwrap_or(Json::Null)
                    })
                    .collect(),
            )),
            (BaseType::Named(n), Json::Object(mut map)) => {
                if let Some(TypeKind::InputObject(fields)) =
                    self.bindings.types.get(n.as_str()).map(|t| &t.kind)
                {
                    for f in fields {
                        fill(self, f, &mut map);
                    }
                }
                Some(Json::Object(map))
            }
            (_, v) => Some(v),
        }
    }
}

fn fill(p: &Planner<'_>, f: &InputValueDef, map: &mut Map<String, Json>) {
    let v = map.remove(&f.name);
    if let Some(v) = p.with_defaults(&f.ty, v, f.default.as_ref()) {
        map.insert(f.name.clone(), v);
    }
}

/// The named type at the bottom of list and non-null wrappers.
pub fn named(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(n) => n.as_str(),
        BaseType::List(inner) => named(inner),
    }
}

fn to_json(v: ConstValue) -> Json {
    v.into_json().unwrap_or(Json::Null)
}

/// The entries that apply to an object of type `object`, merged by response key in order.
pub fn group<'e>(
    bindings: &Bindings,
    entries: &[&'e Entry],
    object: &str,
) -> crate::FastIndexMap<&'e str, Vec<&'e Entry>> {
    let mut out = crate::FastIndexMap::<&str, Vec<&Entry>>::default();
    for e in entries {
        if e.conditions
            .iter()
            .all(|c| bindings.condition_applies(c, object))
        {
            out.entry(e.key.as_str()).or_default().push(e);
        }
    }
    out
}
