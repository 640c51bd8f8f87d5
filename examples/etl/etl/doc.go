// Package etl is QuantumFlow's example flow: it extracts orders from a CSV
// file, parses and validates every row in parallel (a map step), aggregates
// them in two parallel branches (totals per category, a data-quality
// report) and loads the results into PostgreSQL in one transaction.
//
// The flow is declared with //qflow: annotations; qflowgen wrote
// qflow_gen.go (RunEtl, StartEtl, RegisterEtl, ...) and qflow_etl.mmd, the
// flow's Mermaid diagram. Rerun both generators with go generate.
//
// A malformed row is reported, not fatal: Parse returns it with the
// problem, Quality counts it and Load stores it in etl_rejects.
//
// Load writes three tables, which it creates when missing: etl_loads (one
// row per source), etl_category_totals and etl_rejects. It replaces a
// source's rows, so loading the same source again gives the same tables.
// Call SetDatabase before running a worker for this flow.
package etl
