#!/usr/bin/env bash
# GraphiQL's assets for `fanout --graphiql-dir DIR`, from the npm registry: the versions pinned
# in package-lock.json (graphiql 3, react 18, react-dom 18), copied flat into DIR.
#
#   bash tests/browser/assets.sh DIR
#   fanout --graphiql-dir DIR      # GraphiQL at /graphql, assets at /graphql/assets/
#
# Needs node and npm (and the registry) once; `npm ci` runs when node_modules is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [[ $# -ne 1 ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir="$1"

if [[ ! -d "$here/node_modules/graphiql" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

mkdir -p "$dir"
m="$here/node_modules"
# Source, then the name the page expects (src/http/graphiql.rs, FILES).
cp "$m/react/umd/react.production.min.js" "$dir/react.production.min.js"
cp "$m/react-dom/umd/react-dom.production.min.js" "$dir/react-dom.production.min.js"
cp "$m/graphiql/graphiql.min.js" "$dir/graphiql.min.js"
cp "$m/graphiql/graphiql.min.css" "$dir/graphiql.min.css"
# The licences travel with the code.
for pkg in react react-dom graphiql; do
  printf -- '---- %s %s ----\n' "$pkg" "$(node -p "require('$m/$pkg/package.json').version")"
  cat "$m/$pkg/LICENSE"
  echo
done > "$dir/LICENSES.txt"
echo "GraphiQL assets in $dir: $(cd "$dir" && ls | tr '\n' ' ')"
