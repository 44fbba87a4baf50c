//! Links the document makes visible, proposed as `@rest` fields: a property `teamId` beside
//! an operation `GET /teams/{id}` becomes `team: Team`, fetched per parent, or batched when a
//! list operation `GET /teams?ids=...` exists. Each carries a `# proposed` comment, so the
//! author can keep or drop it.

use super::{
    Importer,
    gql::{self, Field, Kind, Ty},
    names,
    operations::Op,
};

/// An operation that fetches one resource by its id, or several by a list of ids.
struct Lookup<'a> {
    op: &'a Op,
    /// The resource's name, lower case without separators (`teams`).
    resource: String,
    /// The target type's name; for a batch, the item type.
    target: String,
    /// For a batch: the query parameter that takes the ids, and whether the document sends
    /// it as repeated parameters.
    ids: Option<(String, bool)>,
}

/// A field to add to an object type.
struct Proposal {
    type_name: String,
    field: Field,
}

/// Adds the proposed fields; returns how many.
pub(super) fn propose(im: &mut Importer<'_>) -> usize {
    let lookups = lookups(im);
    let mut proposals = Vec::new();
    for t in im.types.values() {
        let Kind::Object { fields, .. } = &t.kind else {
            continue;
        };
        for f in fields {
            if let Some(p) = proposal(&t.name, fields, f, &lookups) {
                proposals.push(p);
            }
        }
    }
    let count = proposals.len();
    for p in proposals {
        if let Some(Kind::Object { fields, .. }) =
            im.types.get_mut(&p.type_name).map(|t| &mut t.kind)
            && !fields.iter().any(|f| f.name == p.field.name)
        {
            fields.push(p.field);
        }
    }
    count
}

fn norm(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether a path's resource segment names `base` (`teams` for `team`, `categories` for
/// `category`).
fn names_resource(resource: &str, base: &str) -> bool {
    let b = norm(base);
    !b.is_empty()
        && (resource == b
            || *resource == format!("{b}s")
            || *resource == format!("{b}es")
            || b.strip_suffix('y')
                .is_some_and(|s| *resource == format!("{s}ies")))
}

/// The object type a type reference names, if it is one.
fn object_type(im: &Importer<'_>, ty: &Ty) -> Option<String> {
    let name = ty.base();
    matches!(
        im.types.get(name).map(|t| &t.kind),
        Some(Kind::Object { .. })
    )
    .then(|| name.to_owned())
}

fn lookups<'a>(im: &'a Importer<'_>) -> Vec<Lookup<'a>> {
    let mut out = Vec::new();
    for op in &im.ops {
        let Some(returns) = &op.returns else { continue };
        let Some(target) = object_type(im, returns) else {
            continue;
        };
        let segments: Vec<&str> = op.path.split('/').filter(|s| !s.is_empty()).collect();
        match (segments.as_slice(), op.path_params.as_slice()) {
            ([.., resource, last], [param])
                if !returns.is_list()
                    && !op.other_required
                    && *last == format!("{{{param}}}")
                    && !resource.starts_with('{') =>
            {
                out.push(Lookup {
                    op,
                    resource: norm(resource),
                    target,
                    ids: None,
                });
            }
            ([.., resource], []) if returns.is_list() && !op.other_required => {
                let singular = norm(resource);
                let ids = op.list_params.iter().find(|(name, _)| {
                    let n = norm(name);
                    n == "ids"
                        || n == "id"
                        || (n.ends_with("ids") && singular.starts_with(&n[..n.len() - 3]))
                });
                let has_id = im
                    .types
                    .get(&target)
                    .and_then(|t| t.fields())
                    .is_some_and(|fs| fs.iter().any(|f| f.name == "id"));
                if let Some(ids) = ids.filter(|_| has_id) {
                    out.push(Lookup {
                        op,
                        resource: singular,
                        target,
                        ids: Some(ids.clone()),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// `teamId`, `team_id`, `teamID` -> `team`; `teamIds`, `team_ids` -> (`team`, list).
fn id_base(key: &str) -> Option<(&str, bool)> {
    for (suffix, list) in [
        ("Ids", true),
        ("_ids", true),
        ("IDs", true),
        ("Id", false),
        ("_id", false),
        ("ID", false),
    ] {
        if let Some(base) = key.strip_suffix(suffix).filter(|b| !b.is_empty()) {
            return Some((base, list));
        }
    }
    None
}

fn proposal(
    type_name: &str,
    siblings: &[Field],
    f: &Field,
    lookups: &[Lookup<'_>],
) -> Option<Proposal> {
    if f.directives.iter().any(|d| d.starts_with("@rest")) {
        return None;
    }
    let ty = f.ty.as_ref()?;
    if !matches!(ty.base(), "ID" | "String" | "Int" | "Int64") {
        return None;
    }
    let key = f
        .directives
        .iter()
        .find_map(|d| d.strip_prefix("@map(from: \"")?.strip_suffix("\")"))
        .unwrap_or(&f.name);
    let (base, list) = id_base(key)?;
    if list != ty.is_list() {
        return None;
    }
    let name = names::field(base);
    if siblings.iter().any(|s| s.name == name) {
        return None;
    }
    let batch = lookups
        .iter()
        .find(|l| l.ids.is_some() && names_resource(&l.resource, base));
    let single = lookups
        .iter()
        .find(|l| l.ids.is_none() && names_resource(&l.resource, base));
    let up = |l: &Lookup<'_>| gql::string(&l.op.upstream);
    let (lookup, directive, how) = match (batch, single) {
        (Some(l), _) => {
            let (param, repeated) = l.ids.clone()?;
            let mut d = format!(
                "@rest(upstream: {}, path: {}, batch: {{key: \"{{parent.{key}}}\", query: {}, match: \"id\"}}",
                up(l),
                gql::string(&l.op.path),
                gql::string(&param)
            );
            if let Some(s) = &l.op.select {
                d.push_str(&format!(", select: {}", gql::string(s)));
            }
            d.push(')');
            let mut how = format!(
                "batched through GET {}?{param}=... ({})",
                l.op.path, l.op.field
            );
            if repeated {
                how.push_str(&format!(
                    "; Fanout sends {param}=1,2,3 where the document says {param}=1&{param}=2: check that the service takes commas"
                ));
            }
            (l, d, how)
        }
        (None, Some(l)) if !list => {
            let param = &l.op.path_params[0];
            let path =
                l.op.path
                    .replace(&format!("{{{param}}}"), &format!("{{parent.{key}}}"));
            let d = format!("@rest(upstream: {}, path: {})", up(l), gql::string(&path));
            (
                l,
                d,
                format!("one call per parent: GET {} ({})", l.op.path, l.op.field),
            )
        }
        _ => return None,
    };
    let target = Ty::Named(lookup.target.clone());
    let ty = if list {
        Ty::List(Box::new(target))
    } else {
        target
    };
    Some(Proposal {
        type_name: type_name.to_owned(),
        field: Field {
            name,
            description: None,
            args: Vec::new(),
            ty: Some(ty),
            directives: vec![directive],
            deprecated: None,
            comment: Some(format!(
                "proposed by fanout import: `{key}` beside `{}`, {how}. Keep it or delete it.",
                lookup.op.pointer
            )),
        },
    })
}
