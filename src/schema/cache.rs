//! Parsed queries, kept by their text: a frontend sends the same few queries over and over,
//! and parsing was a fifth of the gateway's instructions per dashboard query (callgrind).
//!
//! Only documents that passed the text checks and parsed are kept; a hit skips those, which
//! depend on the text alone. What the document will execute is checked on every request
//! ([`super::shape`]: list sizes may come from variables), and so is validation. Each schema
//! (re)load starts with an empty cache.

use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use indexmap::IndexMap;

/// Queries longer than this are parsed every time: they are rare, and each would take much
/// of the cache's budget.
const MAX_QUERY_BYTES: usize = 8 * 1024;
/// At most this many documents...
const MAX_ENTRIES: usize = 256;
/// ...whose texts add up to at most this many bytes. The oldest entry goes first.
const MAX_TOTAL_BYTES: usize = 256 * 1024;

#[derive(Clone, Default)]
pub struct DocumentCache {
    inner: Arc<Mutex<Entries>>,
}

#[derive(Default)]
struct Entries {
    docs: IndexMap<Arc<str>, ExecutableDocument>,
    bytes: usize,
}

impl DocumentCache {
    pub(super) fn get(&self, query: &str) -> Option<ExecutableDocument> {
        self.lock().docs.get(query).cloned()
    }

    pub(super) fn put(&self, query: &str, doc: &ExecutableDocument) {
        if query.len() > MAX_QUERY_BYTES {
            return;
        }
        let mut entries = self.lock();
        if entries.docs.contains_key(query) {
            return;
        }
        while entries.docs.len() >= MAX_ENTRIES || entries.bytes + query.len() > MAX_TOTAL_BYTES {
            let Some((old, _)) = entries.docs.shift_remove_index(0) else {
                break;
            };
            entries.bytes -= old.len();
        }
        entries.bytes += query.len();
        entries.docs.insert(Arc::from(query), doc.clone());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().expect("document cache lock poisoned")
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let entries = self.lock();
        (entries.docs.len(), entries.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(q: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(q).expect("a valid query")
    }

    #[test]
    fn keeps_documents_within_its_budget_oldest_out_first() {
        let cache = DocumentCache::default();
        let first = "{ a }";
        cache.put(first, &doc(first));
        assert!(cache.get(first).is_some());
        assert!(cache.get("{ b }").is_none());

        for i in 0..MAX_ENTRIES {
            let q = format!("{{ f{i} }}");
            cache.put(&q, &doc(&q));
        }
        let (n, _) = cache.len();
        assert_eq!(n, MAX_ENTRIES);
        assert!(cache.get(first).is_none(), "the oldest entry was evicted");
        assert!(cache.get("{ f0 }").is_some());

        // What is kept is the document of the text; any document serves to test the budget.
        let small = doc("{ z }");
        let long = format!("{{ {} }}", "x ".repeat(MAX_QUERY_BYTES));
        cache.put(&long, &small);
        assert!(cache.get(&long).is_none(), "a long query is not kept");

        let big = format!("{{ {} }}", "y ".repeat(MAX_QUERY_BYTES / 4));
        for i in 0..2 * MAX_TOTAL_BYTES / big.len() {
            let q = format!("{big} # {i}");
            cache.put(&q, &small);
            assert!(cache.get(&q).is_some());
            assert!(cache.len().1 <= MAX_TOTAL_BYTES);
        }
    }
}
