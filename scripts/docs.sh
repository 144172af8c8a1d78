#!/usr/bin/env bash
# Builds the DocC documentation of AMQPClient and AMQPEvents with the toolchain's docc, from the
# modules' public symbol graphs, into .build/docs/<Module>.doccarchive. Fails on any warning
# (a broken link, an undocumented parameter) and on any public symbol without documentation.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

swift build --traits SQLite --target AMQPEvents >/dev/null
modules="$(swift build --traits SQLite --show-bin-path)/Modules"
triple="$(swift -print-target-info | python3 -c 'import json,sys; print(json.load(sys.stdin)["target"]["triple"])')"
status=0
for module in AMQPClient AMQPEvents; do
  graphs=".build/symbol-graphs/$module"
  rm -rf "$graphs" && mkdir -p "$graphs" .build/docs
  swift-symbolgraph-extract -module-name "$module" -I "$modules" -target "$triple" -minimum-access-level public \
    -output-dir "$graphs" -Xcc -fmodule-map-file=Sources/CRabbitMQ/module.modulemap
  log="$(mktemp)"
  docc convert "Sources/$module/Documentation.docc" --additional-symbol-graph-dir "$graphs" \
    --fallback-display-name "$module" --fallback-bundle-identifier "org.swift-amqp-client.$module" \
    --output-path ".build/docs/$module.doccarchive" --experimental-documentation-coverage --coverage-summary-level brief \
    >"$log" 2>&1 || status=1
  warnings=$(grep -c "warning:" "$log" || true)
  # Public symbols without a summary, from the symbol graph itself.
  undocumented=$(python3 - "$graphs/$module.symbols.json" <<'PY'
import json, sys
graph = json.load(open(sys.argv[1]))
# Declared in this package's sources (not inherited from a protocol's default implementation,
# not synthesized), and without a doc comment.
missing = [s["pathComponents"] for s in graph["symbols"]
           if not s.get("docComment") and "/Sources/" in s.get("location", {}).get("uri", "")
           and "/.build/" not in s["location"]["uri"]
           and s["kind"]["identifier"] != "swift.extension"
           and not any(p.startswith("_") for p in s["pathComponents"])]
for path in missing[:200]:
    print("undocumented:", ".".join(path), file=sys.stderr)
print(len(missing))
PY
)
  echo "docs: $module: $warnings warnings, $undocumented public symbols without documentation"
  if [[ "$warnings" != 0 || "$undocumented" != 0 ]]; then
    grep -A2 "warning:" "$log" >&2 || true
    status=1
  fi
  rm -f "$log"
done
exit $status
