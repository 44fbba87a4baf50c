//! Limits on what an operation will execute, counted through its fragments.
//!
//! Every measure is taken over the operation as if each fragment spread were replaced by the
//! fragment's selections (what execution does), but each fragment is measured once and its
//! measure reused, so a chain of fragments that each spread the next twice costs time linear
//! in the text, not in its exponential expansion. A spread used twice counts twice.
//!
//! Complexity multiplies by list sizes: a list field costs 1 plus its selection's cost times
//! the number of items it is expected to return (see [`Walk::list_size`]).

use std::collections::HashMap;

use async_graphql::{
    Name, Positioned, Value as ConstValue, Variables,
    parser::types::{
        BaseType, ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
        Type, VariableDefinition,
    },
};
use async_graphql_value::Value;

use super::limits::code;
use crate::sdl::{Bindings, FieldDef, TypeKind};

/// Integer arguments that, by wide convention, bound how many items a list field returns.
const SIZE_ARGUMENTS: &[&str] = &[
    "first",
    "last",
    "limit",
    "take",
    "top",
    "count",
    "size",
    "pageSize",
    "perPage",
    "page_size",
    "per_page",
];

#[derive(Clone, Copy, Debug)]
pub struct ShapeLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_aliases: usize,
    pub max_root_fields: usize,
    pub max_directives: usize,
    /// The items a list field is taken to return when no argument says how many.
    pub assumed_list_size: usize,
}

/// What one selection set will execute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Measure {
    /// Levels of fields.
    pub depth: u64,
    pub complexity: u64,
    pub aliases: u64,
    /// Fields at the top level of the set (for an operation: its root fields).
    pub roots: u64,
    /// Fields in all, at every level.
    pub size: u64,
}

impl Measure {
    fn add(&mut self, other: Measure) {
        self.depth = self.depth.max(other.depth);
        self.complexity = self.complexity.saturating_add(other.complexity);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.roots = self.roots.saturating_add(other.roots);
        self.size = self.size.saturating_add(other.size);
    }
}

/// A refusal: its code and message.
pub type Refusal = (&'static str, String);

/// Checks every operation of `doc` against `limits`, and that the document as a whole
/// (validation walks each fragment definition expanded, too) stays within the complexity
/// limit counted without list sizes.
pub fn check(
    doc: &ExecutableDocument,
    variables: &Variables,
    bindings: &Bindings,
    limits: &ShapeLimits,
) -> Result<(), Refusal> {
    let mut total = 0u64;
    for (_, op) in doc.operations.iter() {
        let op = &op.node;
        known_variable_types(op, bindings)?;
        let root = match op.ty {
            OperationType::Mutation => bindings.mutation.as_deref(),
            _ => Some(bindings.query.as_str()),
        };
        let mut walk = Walk::new(doc, variables, &op.variable_definitions, bindings, limits);
        let m = walk.set(&op.selection_set.node, root);
        walk.finish()?;
        judge(m, limits)?;
        total = total.saturating_add(m.size);
    }
    let mut walk = Walk::new(doc, variables, &[], bindings, limits);
    for name in doc.fragments.keys() {
        total = total.saturating_add(walk.fragment(name).size);
    }
    walk.finish()?;
    if total > limits.max_complexity as u64 {
        return Err((
            code::COMPLEXITY_LIMIT,
            format!(
                "the document expands to {total} fields (each fragment where it is spread, \
                 and each fragment definition); at most {} are allowed",
                limits.max_complexity
            ),
        ));
    }
    Ok(())
}

/// Every variable's type must name an input type of the schema (spec 5.8.2). Checked here
/// because the engine's validation panics on a default value of an unknown type.
fn known_variable_types(op: &OperationDefinition, bindings: &Bindings) -> Result<(), Refusal> {
    for def in &op.variable_definitions {
        let name = crate::resolve::plan::named(&def.node.var_type.node);
        let input = crate::resolve::coerce::is_builtin(name)
            || matches!(
                bindings.types.get(name).map(|t| &t.kind),
                Some(TypeKind::Scalar | TypeKind::Enum(_) | TypeKind::InputObject(_))
            );
        if !input {
            return Err((
                code::VALIDATION_FAILED,
                format!(
                    "variable \"${}\" has type \"{name}\", which is not an input type of the schema",
                    def.node.name.node
                ),
            ));
        }
    }
    Ok(())
}

fn judge(m: Measure, limits: &ShapeLimits) -> Result<(), Refusal> {
    let over = |value: u64, max: usize| value > max as u64;
    if over(m.roots, limits.max_root_fields) {
        return Err((
            code::ROOT_FIELD_LIMIT,
            format!(
                "the operation has {} root fields (fragments included); at most {} are allowed",
                m.roots, limits.max_root_fields
            ),
        ));
    }
    if over(m.aliases, limits.max_aliases) {
        return Err((
            code::ALIAS_LIMIT,
            format!(
                "the operation uses {} aliases (fragments included); at most {} are allowed",
                m.aliases, limits.max_aliases
            ),
        ));
    }
    if over(m.depth, limits.max_depth) {
        return Err((
            code::DEPTH_LIMIT,
            format!(
                "the operation nests fields {} deep; at most {} levels are allowed",
                m.depth, limits.max_depth
            ),
        ));
    }
    if over(m.complexity, limits.max_complexity) {
        return Err((
            code::COMPLEXITY_LIMIT,
            format!(
                "the operation's complexity is {} (each field 1, a list field's selection \
                 times its expected items); at most {} is allowed",
                m.complexity, limits.max_complexity
            ),
        ));
    }
    Ok(())
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    definitions: &'a [Positioned<VariableDefinition>],
    bindings: &'a Bindings,
    limits: &'a ShapeLimits,
    /// Each fragment's measure once taken; `None` while it is being taken.
    memo: HashMap<&'a Name, Option<Measure>>,
    /// The first refusal found on the way (too many directives, a fragment cycle).
    refusal: Option<Refusal>,
}

impl<'a> Walk<'a> {
    fn new(
        doc: &'a ExecutableDocument,
        variables: &'a Variables,
        definitions: &'a [Positioned<VariableDefinition>],
        bindings: &'a Bindings,
        limits: &'a ShapeLimits,
    ) -> Self {
        Walk {
            doc,
            variables,
            definitions,
            bindings,
            limits,
            memo: HashMap::new(),
            refusal: None,
        }
    }

    fn finish(self) -> Result<(), Refusal> {
        self.refusal.map_or(Ok(()), Err)
    }

    fn refuse(&mut self, code: &'static str, message: impl FnOnce() -> String) {
        if self.refusal.is_none() {
            self.refusal = Some((code, message()));
        }
    }

    /// The measure of `set`, selected on a value of type `ty` (`None`: not one of the
    /// schema's own types, such as introspection's).
    fn set(&mut self, set: &'a SelectionSet, ty: Option<&'a str>) -> Measure {
        let mut m = Measure::default();
        for sel in &set.items {
            self.directives(sel.node.directives().len(), sel.pos);
            match &sel.node {
                Selection::Field(f) => {
                    let f = &f.node;
                    let def = ty.and_then(|t| self.field_def(t, f.name.node.as_str()));
                    let child_ty = def.map(|d| crate::resolve::plan::named(&d.ty));
                    let child = self.set(&f.selection_set.node, child_ty);
                    let items = match def {
                        Some(d) if !f.selection_set.node.items.is_empty() => {
                            self.list_size(d, &f.arguments)
                        }
                        _ => 1,
                    };
                    m.add(Measure {
                        depth: child.depth + 1,
                        complexity: child.complexity.saturating_mul(items).saturating_add(1),
                        aliases: child.aliases + u64::from(f.alias.is_some()),
                        roots: 1,
                        size: child.size.saturating_add(1),
                    });
                }
                Selection::InlineFragment(i) => {
                    let on = i.node.type_condition.as_ref();
                    let on = on.map(|c| c.node.on.node.as_str()).or(ty);
                    let inner = self.set(&i.node.selection_set.node, on);
                    m.add(inner);
                }
                Selection::FragmentSpread(s) => {
                    let inner = self.fragment(&s.node.fragment_name.node);
                    m.add(inner);
                }
            }
        }
        m
    }

    fn fragment(&mut self, name: &'a Name) -> Measure {
        match self.memo.get(name) {
            Some(Some(known)) => return *known,
            Some(None) => {
                // Validation would refuse it too, but only after walking it forever.
                self.refuse(code::VALIDATION_FAILED, || {
                    format!("fragment \"{name}\" spreads itself, directly or through others")
                });
                return Measure::default();
            }
            None => {}
        }
        let Some(frag) = self.doc.fragments.get(name) else {
            return Measure::default(); // validation refuses the unknown fragment
        };
        self.memo.insert(name, None);
        let on = frag.node.type_condition.node.on.node.as_str();
        let m = self.set(&frag.node.selection_set.node, Some(on));
        self.memo.insert(name, Some(m));
        m
    }

    fn directives(&mut self, n: usize, pos: async_graphql::Pos) {
        let max = self.limits.max_directives;
        if n > max {
            self.refuse(code::DIRECTIVE_LIMIT, || {
                format!(
                    "the selection at {}:{} has {n} directives; at most {max} are allowed",
                    pos.line, pos.column
                )
            });
        }
    }

    fn field_def(&self, ty: &str, name: &str) -> Option<&'a FieldDef> {
        match &self.bindings.types.get(ty)?.kind {
            TypeKind::Object(o) | TypeKind::Interface(o) => o.fields.get(name),
            _ => None,
        }
    }

    /// How many items a field is expected to return: 1 for a field that is not a list. For
    /// a list, the length of the longest list argument given (`ids: [1, 2, 3]` returns about
    /// three), else an integer argument named like a page size (`first`, `limit`, ...),
    /// else the assumed list size; each further level of list (`[[T]]`) multiplies by the
    /// assumed size. Defaults of the field's arguments count as given. Never less than 1.
    fn list_size(&self, def: &FieldDef, given: &[(Positioned<Name>, Positioned<Value>)]) -> u64 {
        let levels = list_levels(&def.ty);
        if levels == 0 {
            return 1;
        }
        let assumed = self.limits.assumed_list_size.max(1) as u64;
        let mut lists = None::<u64>;
        let mut sizes = None::<u64>;
        for arg in &def.args {
            let given = given.iter().find(|(n, _)| n.node == arg.name);
            let size = match given {
                Some((_, v)) => self.size(&v.node),
                None => arg.default.as_ref().and_then(const_size),
            };
            match size {
                Some(Size::List(n)) => lists = Some(lists.unwrap_or(0).max(n)),
                Some(Size::Int(n)) if SIZE_ARGUMENTS.contains(&arg.name.as_str()) => {
                    sizes = Some(sizes.unwrap_or(0).max(n));
                }
                _ => {}
            }
        }
        let outer = lists.or(sizes).unwrap_or(assumed).max(1);
        (1..levels).fold(outer, |n, _| n.saturating_mul(assumed))
    }

    /// What an argument's value says about a size, with variables read (the request's,
    /// else the operation's default).
    fn size(&self, v: &Value) -> Option<Size> {
        match v {
            Value::Variable(name) => match self.variables.get(name) {
                Some(v) => const_size(v),
                None => self
                    .definitions
                    .iter()
                    .find(|d| d.node.name.node == *name)
                    .and_then(|d| d.node.default_value.as_ref())
                    .and_then(|d| const_size(&d.node)),
            },
            Value::List(items) => Some(Size::List(items.len() as u64)),
            Value::Number(n) => n.as_u64().map(Size::Int),
            _ => None,
        }
    }
}

/// A list's length, or a non-negative integer.
enum Size {
    List(u64),
    Int(u64),
}

fn const_size(v: &ConstValue) -> Option<Size> {
    match v {
        ConstValue::List(items) => Some(Size::List(items.len() as u64)),
        ConstValue::Number(n) => n.as_u64().map(Size::Int),
        _ => None,
    }
}

fn list_levels(ty: &Type) -> usize {
    match &ty.base {
        BaseType::Named(_) => 0,
        BaseType::List(inner) => 1 + list_levels(inner),
    }
}
