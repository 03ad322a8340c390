#!/usr/bin/env node
// Semantic check of KQL queries with the real Kusto parser/analyzer (@kusto/language-service-next).
//
// Input (stdin, JSON):
//   {"database": "db",                                  // optional
//    "tables": [{"name": "NordPassEventLogs_CL", "schema": "(TimeGenerated:datetime, ...)"}],
//    "functions": [{"name": "vimX", "parameters": "(starttime:datetime=datetime(null))",
//                   "body": "{ NordPassEventLogs_CL | ... }"}],      // optional stored functions
//    "queries": [{"id": "rules/x.yaml", "text": "NordPassEventLogs_CL | ...",
//                 "tables": [...], "functions": [...]}]}  // optional per-query overrides
// Output (stdout, JSON): [{"id", "diagnostics": [{"severity", "code", "message", "start", "length"}],
//                          "columns": [{"name", "type"}] | null}]
// Exit code: 0 when no query has an Error diagnostic, 1 otherwise, 2 on bad input or a missing package.
//
// All queries go through one process because loading the Bridge.NET runtime costs far more than
// analysing a query; the Python side batches everything it finds into one call.
"use strict";

const fs = require("fs");
const path = require("path");

function loadKusto() {
  // Resolve from the repository root (two levels up), where package.json pins the version, so the
  // script works from any working directory.
  const root = path.resolve(__dirname, "..", "..");
  const resolveOpts = { paths: [process.env.KUSTO_LS_ROOT || root] };
  let bridgePath;
  let kustoPath;
  try {
    bridgePath = require.resolve("@kusto/language-service-next/bridge.min.js", resolveOpts);
    kustoPath = require.resolve("@kusto/language-service-next/Kusto.Language.Bridge.min.js", resolveOpts);
  } catch (err) {
    process.stderr.write(
      "@kusto/language-service-next is not installed; run `npm ci` in the repository root\n"
    );
    process.exit(2);
  }
  // Order matters: bridge.min.js defines the global `Bridge` that the Kusto bundle extends.
  require(bridgePath);
  require(kustoPath);
  return global.Kusto.Language;
}

function readInput() {
  const raw = fs.readFileSync(0, "utf8");
  try {
    return JSON.parse(raw);
  } catch (err) {
    process.stderr.write(`input is not JSON: ${err.message}\n`);
    process.exit(2);
  }
  return null;
}

function main() {
  const input = readInput();
  if (!input || !Array.isArray(input.tables) || !Array.isArray(input.queries)) {
    process.stderr.write("input needs `tables` and `queries` arrays\n");
    process.exit(2);
  }
  const K = loadKusto();
  // One GlobalState per distinct schema, so a drifted-schema check can share this process.
  // Stored functions (workspace functions such as ASIM parsers) are database members next to the
  // tables, declared with their parameter list and body, as Log Analytics holds them.
  const globalsBySchema = new Map();
  const globalsFor = (tableList, functionList) => {
    const key = JSON.stringify([tableList, functionList]);
    if (!globalsBySchema.has(key)) {
      const members = tableList.map((t) => new K.Symbols.TableSymbol.$ctor7(t.name, t.schema, t.description || ""));
      for (const f of functionList) {
        members.push(new K.Symbols.FunctionSymbol.$ctor16(f.name, f.parameters, f.body, f.description || ""));
      }
      const db = new K.Symbols.DatabaseSymbol.ctor(input.database || "db", members);
      globalsBySchema.set(key, K.GlobalState.Default.WithDatabase(db));
    }
    return globalsBySchema.get(key);
  };

  let failed = false;
  const results = input.queries.map((q) => {
    const globals = globalsFor(q.tables || input.tables, q.functions || input.functions || []);
    const code = K.KustoCode.ParseAndAnalyze(q.text, globals);
    const diagnostics = Bridge.toArray(code.GetDiagnostics()).map((d) => ({
      severity: String(d.Severity),
      code: String(d.Code),
      message: String(d.Message),
      start: d.Start,
      length: d.Length,
    }));
    if (diagnostics.some((d) => d.severity === "Error")) failed = true;
    const rt = code.ResultType;
    const columns =
      rt && rt.Columns ? Bridge.toArray(rt.Columns).map((c) => ({ name: c.Name, type: c.Type.Name })) : null;
    return { id: q.id, diagnostics, columns };
  });
  process.stdout.write(JSON.stringify(results));
  process.exit(failed ? 1 : 0);
}

main();
