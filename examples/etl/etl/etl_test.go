package etl_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/quantumflow/qflow/examples/etl/etl"
	"github.com/quantumflow/qflow/gen"
	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime"
)

var quiet = slog.New(slog.DiscardHandler)

// TestGeneratedIsCurrent fails when qflow_gen.go or qflow_etl.mmd is not
// what qflowgen would write now (fix: go generate ./examples/etl/...).
func TestGeneratedIsCurrent(t *testing.T) {
	results, diags := gen.Generate(context.Background(), ".", nil, []string{"."}, gen.Options{Mermaid: true})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	for _, r := range results {
		stale, err := r.Stale()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range stale {
			t.Errorf("%s is stale: run go generate ./examples/etl/...", f.Path)
		}
	}
}

// TestREADMEDiagram keeps the diagram in the README in step with the flow.
func TestREADMEDiagram(t *testing.T) {
	mmd, err := os.ReadFile("qflow_etl.mmd")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	body := string(mmd)
	body = body[strings.Index(body, "\n")+1:] // drop the "generated" comment
	if !strings.Contains(string(readme), "```mermaid\n"+body+"```") {
		t.Errorf("README.md lacks the flow's diagram; paste this in a ```mermaid block:\n%s", body)
	}
}

func TestParse(t *testing.T) {
	ok := []string{"SO-1", "2024-02-29", "north", "books", "atlas", "2", "12.5"}
	cases := []struct {
		fields  []string
		problem string
	}{
		{ok, ""},
		{ok[:6], "field count"},
		{[]string{"", "2024-01-01", "n", "c", "p", "1", "1"}, "order id"},
		{[]string{"x", "2024-02-30", "n", "c", "p", "1", "1"}, "date"},
		{[]string{"x", "2024-01-01", "", "c", "p", "1", "1"}, "region"},
		{[]string{"x", "2024-01-01", "n", " ", "p", "1", "1"}, "category"},
		{[]string{"x", "2024-01-01", "n", "c", "p", "0", "1"}, "quantity"},
		{[]string{"x", "2024-01-01", "n", "c", "p", "two", "1"}, "quantity"},
		{[]string{"x", "2024-01-01", "n", "c", "p", "1", "1.999"}, "price"},
		{[]string{"x", "2024-01-01", "n", "c", "p", "1", "-3.00"}, "price"},
		{[]string{"x", "2024-01-01", "n", "c", "p", "1", "12,50"}, "price"},
		{[]string{"x", "2024-01-01", "n", "c", "p", "1", ".5"}, "price"},
	}
	for _, c := range cases {
		row, err := etl.Parse(context.Background(), etl.Record{Line: 7, Fields: append([]string(nil), c.fields...)})
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.fields, err)
		}
		kind, _, _ := strings.Cut(row.Problem, ":")
		if kind != c.problem || (row.Sale == nil) != (c.problem != "") || row.Line != 7 {
			t.Errorf("Parse(%q) = %+v, want problem %q", c.fields, row, c.problem)
		}
	}
	row, _ := etl.Parse(context.Background(), etl.Record{Fields: ok})
	if want := (etl.Sale{OrderID: "SO-1", Date: "2024-02-29", Region: "north", Category: "books", Product: "atlas", Quantity: 2, PriceCents: 1250}); *row.Sale != want {
		t.Errorf("Sale = %+v, want %+v", *row.Sale, want)
	}
}

// The numbers of the shipped sales.csv (mkdata.go makes it).
var wantQuality = map[string]int{"category": 17, "date": 11, "field count": 16, "order id": 15, "price": 15, "quantity": 18}

const (
	wantRows     = 3000
	wantValid    = 2908
	wantRevenue  = 75485380 // cents
	wantCategory = 6
)

// TestETL runs the flow end to end on PostgreSQL, twice (the load is
// idempotent), and checks the summary and the tables against the data set.
func TestETL(t *testing.T) {
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	etl.SetDatabase(db.Pool)
	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	defer c.Close()
	w := runtime.NewWorker(db.Pool, &runtime.WorkerOptions{Concurrency: 64, PollInterval: 50 * time.Millisecond, Logger: quiet})
	if err := etl.RegisterEtl(w); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()

	began := time.Now()
	out, err := etl.RunEtl(ctx, c, etl.Input{Source: etl.EmbeddedSource})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("run took %s", time.Since(began))
	s := out.Load
	q := s.Quality
	if q.Rows != wantRows || q.Valid != wantValid || q.Rejected != wantRows-wantValid || len(q.Rejects) != q.Rejected {
		t.Errorf("rows %d, valid %d, rejected %d (%d listed); want %d, %d, %d",
			q.Rows, q.Valid, q.Rejected, len(q.Rejects), wantRows, wantValid, wantRows-wantValid)
	}
	if diff := cmp.Diff(wantQuality, q.ByProblem); diff != "" {
		t.Errorf("rejects by problem (-want +got):\n%s", diff)
	}
	if s.RevenueCents != wantRevenue || len(s.Categories) != wantCategory || s.Fingerprint.Records != wantRows {
		t.Errorf("revenue %d, %d categories, %d records; want %d, %d, %d",
			s.RevenueCents, len(s.Categories), s.Fingerprint.Records, wantRevenue, wantCategory, wantRows)
	}
	checkTables(t, db)

	// Loading the same source again (as a retry of Load, or a second run,
	// would) replaces its rows: the tables hold one load of it.
	again, err := etl.Load(ctx, etl.Input{Source: s.Source}, s.Categories, s.Quality, s.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, again); diff != "" {
		t.Errorf("second Load (-first +second):\n%s", diff)
	}
	checkTables(t, db)

	// A source that cannot be read fails the run at once, at extract.
	_, err = etl.RunEtl(ctx, c, etl.Input{Source: filepath.Join(t.TempDir(), "missing.csv")})
	var re *runtime.RunError
	if !errors.As(err, &re) || re.Step != "extract" || !strings.Contains(re.Message, "missing.csv") {
		t.Errorf("missing source: %v, want a failure at extract naming the file", err)
	}
}

// TestExtractOwnFile loads a small file with a broken quote: the broken
// line is rejected, the rest loads.
func TestExtractOwnFile(t *testing.T) {
	src := filepath.Join(t.TempDir(), "mini.csv")
	data := strings.Join(etl.Columns, ",") + "\n" +
		"A-1,2024-01-02,west,toys,kite,2,3.50\n" +
		"A-2,2024-01-02,west,\"toys,kite,2,3.50\n"
	if err := os.WriteFile(src, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, err := etl.Extract(context.Background(), etl.Input{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Line != 2 || recs[1].Line != 3 {
		t.Fatalf("records %+v", recs)
	}
	row, _ := etl.Parse(context.Background(), recs[1])
	if row.Problem == "" {
		t.Errorf("the broken line parsed: %+v", row)
	}
	if _, err := etl.Extract(context.Background(), etl.Input{Source: "embedded:nope.csv"}); !runtime.IsPermanent(err) {
		t.Errorf("unknown embedded source: %v, want a permanent error", err)
	}
}

// checkTables checks the tables hold exactly one load of the data set.
func checkTables(t *testing.T, db *pgtest.DB) {
	t.Helper()
	var loads, valid, totals, orders, rejects int
	var revenue int64
	err := db.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM etl_loads), (SELECT sum(valid) FROM etl_loads),
		(SELECT count(*) FROM etl_category_totals), (SELECT sum(orders) FROM etl_category_totals),
		(SELECT sum(revenue_cents) FROM etl_category_totals), (SELECT count(*) FROM etl_rejects)`).
		Scan(&loads, &valid, &totals, &orders, &revenue, &rejects)
	if err != nil {
		t.Fatal(err)
	}
	if loads != 1 || valid != wantValid || totals != wantCategory || orders != wantValid || revenue != wantRevenue || rejects != wantRows-wantValid {
		t.Errorf("tables hold %d loads (%d valid), %d totals (%d orders, %d cents), %d rejects; want 1 load of %d valid, %d totals, %d cents, %d rejects",
			loads, valid, totals, orders, revenue, rejects, wantValid, wantCategory, wantRevenue, wantRows-wantValid)
	}
}
