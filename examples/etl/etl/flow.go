package etl

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/quantumflow/qflow/runtime"
)

//go:generate go run mkdata.go -o sales.csv
//go:generate go run github.com/quantumflow/qflow/cmd/qflowgen -mermaid

// EmbeddedSource names the data set shipped with the example (sales.csv,
// 3,000 orders, about 3% of them malformed) as an Input.Source.
const EmbeddedSource = "embedded:sales.csv"

//go:embed sales.csv
var salesCSV []byte

// Columns is the header a source must start with.
var Columns = []string{"order_id", "date", "region", "category", "product", "quantity", "unit_price"}

// Input is the flow's input.
//
//qflow:flow etl retries=2 backoff=200ms timeout=60s
type Input struct {
	// Source is the CSV to load: a file path, or EmbeddedSource. Workers
	// read it, so a path must exist where they run.
	Source string `json:"source"`
}

// Record is one raw data row of the source.
type Record struct {
	Line   int      `json:"line"`   // line number in the file, the header being line 1
	Fields []string `json:"fields"` // the row's fields as read
}

// Sale is a valid order.
type Sale struct {
	OrderID    string `json:"order_id"`
	Date       string `json:"date"` // YYYY-MM-DD
	Region     string `json:"region"`
	Category   string `json:"category"`
	Product    string `json:"product"`
	Quantity   int    `json:"quantity"`
	PriceCents int64  `json:"price_cents"`
}

// Row is Parse's verdict on one record: a Sale, or the problem that makes
// the record unusable.
type Row struct {
	Line    int    `json:"line"`
	Sale    *Sale  `json:"sale,omitempty"`
	Problem string `json:"problem,omitempty"` // "kind: detail"; empty for a valid row
	Raw     string `json:"raw,omitempty"`     // the record as CSV, for a rejected row
}

// Fingerprint identifies a source's content.
type Fingerprint struct {
	Records int    `json:"records"`
	SHA256  string `json:"sha256"` // of the records' fields, in order
}

// CategoryTotal sums the valid orders of one category.
type CategoryTotal struct {
	Category     string `json:"category"`
	Orders       int    `json:"orders"`
	Units        int    `json:"units"`
	RevenueCents int64  `json:"revenue_cents"`
}

// Reject is a row that did not parse.
type Reject struct {
	Line    int    `json:"line"`
	Problem string `json:"problem"`
	Raw     string `json:"raw"`
}

// QualityReport describes how clean the source was.
type QualityReport struct {
	Rows      int            `json:"rows"`
	Valid     int            `json:"valid"`
	Rejected  int            `json:"rejected"`
	ByProblem map[string]int `json:"by_problem"` // rejected rows per problem kind
	Rejects   []Reject       `json:"rejects"`    // in line order
}

// Summary is the flow's output: what Load wrote.
type Summary struct {
	Source       string          `json:"source"`
	Fingerprint  Fingerprint     `json:"fingerprint"`
	Quality      QualityReport   `json:"quality"`
	Categories   []CategoryTotal `json:"categories"`
	RevenueCents int64           `json:"revenue_cents"`
}

// Extract reads the source's records. A source that cannot be read, or
// whose header is wrong, fails the run: retrying will not fix it. Rows with
// the wrong number of fields are kept for Parse to report.
//
//qflow:step
func Extract(ctx context.Context, in Input) ([]Record, error) {
	data, err := readSource(in.Source)
	if err != nil {
		return nil, runtime.Permanent(err)
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, runtime.Permanent(fmt.Errorf("etl: %s: header: %w", in.Source, err))
	}
	if strings.Join(header, ",") != strings.Join(Columns, ",") {
		return nil, runtime.Permanent(fmt.Errorf("etl: %s: header is %q, want %q", in.Source, header, Columns))
	}
	var recs []Record
	for {
		fields, err := r.Read()
		var line int
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			// Unbalanced quotes and the like: keep the line for Parse to
			// reject, and go on with the next one.
			fields, line = []string{"<unreadable: " + pe.Err.Error() + ">"}, pe.StartLine
		} else if err != nil {
			return nil, runtime.Permanent(fmt.Errorf("etl: %s: %w", in.Source, err))
		}
		if err == nil {
			line, _ = r.FieldPos(0)
		}
		recs = append(recs, Record{Line: line, Fields: fields})
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

func readSource(src string) ([]byte, error) {
	if name, ok := strings.CutPrefix(src, "embedded:"); ok {
		if name != "sales.csv" {
			return nil, fmt.Errorf("etl: no embedded source %q (there is %s)", name, EmbeddedSource)
		}
		return salesCSV, nil
	}
	if src == "" {
		return nil, errors.New("etl: Input.Source is empty")
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, fmt.Errorf("etl: %w", err)
	}
	return data, nil
}

// Checksum counts the records and hashes their fields; it runs in parallel
// with the Parse tasks.
//
//qflow:step depends=Extract
func Checksum(ctx context.Context, recs []Record) (Fingerprint, error) {
	h := sha256.New()
	for _, r := range recs {
		for _, f := range r.Fields {
			io.WriteString(h, f)
			h.Write([]byte{0})
		}
		h.Write([]byte{'\n'})
	}
	return Fingerprint{Records: len(recs), SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Parse validates one record, once per record, in parallel. A malformed
// record is not an error: it comes back with its problem.
//
//qflow:step depends=Extract map timeout=10s
func Parse(ctx context.Context, rec Record) (Row, error) {
	s, problem := parseSale(rec.Fields)
	if problem != "" {
		return Row{Line: rec.Line, Problem: problem, Raw: toCSV(rec.Fields)}, nil
	}
	return Row{Line: rec.Line, Sale: s}, nil
}

func parseSale(f []string) (*Sale, string) {
	if len(f) != len(Columns) {
		return nil, fmt.Sprintf("field count: %d fields, want %d", len(f), len(Columns))
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	s := &Sale{OrderID: f[0], Date: f[1], Region: f[2], Category: f[3], Product: f[4]}
	if s.OrderID == "" {
		return nil, "order id: empty"
	}
	if _, err := time.Parse(time.DateOnly, s.Date); err != nil {
		return nil, fmt.Sprintf("date: %q is not a YYYY-MM-DD date", s.Date)
	}
	if s.Region == "" {
		return nil, "region: empty"
	}
	if s.Category == "" {
		return nil, "category: empty"
	}
	q, err := strconv.Atoi(f[5])
	if err != nil || q <= 0 {
		return nil, fmt.Sprintf("quantity: %q is not a positive whole number", f[5])
	}
	s.Quantity = q
	cents, ok := parseCents(f[6])
	if !ok {
		return nil, fmt.Sprintf("price: %q is not an amount like 12.34", f[6])
	}
	s.PriceCents = cents
	return s, ""
}

// parseCents parses a non-negative amount with at most two decimals.
func parseCents(s string) (int64, bool) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(frac) > 2 || strings.Trim(whole+frac, "0123456789") != "" {
		return 0, false
	}
	for len(frac) < 2 {
		frac += "0"
	}
	n, err := strconv.ParseInt(whole+frac, 10, 64)
	return n, err == nil
}

func toCSV(fields []string) string {
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write(fields)
	w.Flush()
	return strings.TrimSuffix(b.String(), "\n")
}

// Totals sums the valid orders per category, in category order.
//
//qflow:step depends=Parse
func Totals(ctx context.Context, rows []Row) ([]CategoryTotal, error) {
	by := map[string]*CategoryTotal{}
	for _, r := range rows {
		if r.Sale == nil {
			continue
		}
		t := by[r.Sale.Category]
		if t == nil {
			t = &CategoryTotal{Category: r.Sale.Category}
			by[r.Sale.Category] = t
		}
		t.Orders++
		t.Units += r.Sale.Quantity
		t.RevenueCents += int64(r.Sale.Quantity) * r.Sale.PriceCents
	}
	out := make([]CategoryTotal, 0, len(by))
	for _, t := range by {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Category < out[j].Category })
	return out, nil
}

// Quality counts valid and rejected rows, per problem kind, in parallel
// with Totals.
//
//qflow:step depends=Parse
func Quality(ctx context.Context, rows []Row) (QualityReport, error) {
	q := QualityReport{Rows: len(rows), ByProblem: map[string]int{}, Rejects: []Reject{}}
	for _, r := range rows {
		if r.Problem == "" {
			q.Valid++
			continue
		}
		q.Rejected++
		kind, _, _ := strings.Cut(r.Problem, ":")
		q.ByProblem[kind]++
		q.Rejects = append(q.Rejects, Reject{Line: r.Line, Problem: r.Problem, Raw: r.Raw})
	}
	return q, nil
}

// Load writes the results into PostgreSQL in one transaction, replacing
// what an earlier load of the same source wrote.
//
//qflow:step depends=Totals,Quality,Checksum retries=4 timeout=30s
func Load(ctx context.Context, in Input, totals []CategoryTotal, q QualityReport, fp Fingerprint) (Summary, error) {
	s := Summary{Source: in.Source, Fingerprint: fp, Quality: q, Categories: totals}
	for _, t := range totals {
		s.RevenueCents += t.RevenueCents
	}
	if err := store(ctx, s); err != nil {
		return Summary{}, err
	}
	return s, nil
}
