//go:build ignore

// Mkdata writes sales.csv, the data set shipped with the ETL example:
// 3,000 orders, about 3% of them malformed in one of six ways. It is
// deterministic (a fixed seed), so rerunning it rewrites the same bytes.
//
//	go run mkdata.go -o sales.csv
package main

import (
	"bufio"
	"encoding/csv"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"strconv"
	"time"
)

var (
	regions    = []string{"north", "south", "east", "west"}
	categories = map[string][]string{
		"books":       {"novel", "cookbook", "atlas", "comic"},
		"clothing":    {"scarf", "jacket", "boots", "hat"},
		"electronics": {"headphones", "charger", "keyboard", "lamp"},
		"garden":      {"hose", "rake", "seeds", "planter"},
		"grocery":     {"coffee", "tea", "olive oil", "honey"},
		"toys":        {"puzzle", "kite", "yo-yo", "blocks"},
	}
	order = []string{"books", "clothing", "electronics", "garden", "grocery", "toys"}
)

func main() {
	out := flag.String("o", "sales.csv", "output file")
	n := flag.Int("n", 3000, "rows")
	flag.Parse()
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	w := csv.NewWriter(bw)
	rng := rand.New(rand.NewPCG(2024, 6))
	w.Write([]string{"order_id", "date", "region", "category", "product", "quantity", "unit_price"})
	day0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range *n {
		cat := order[rng.IntN(len(order))]
		products := categories[cat]
		price := 199 + rng.IntN(9800) // cents
		row := []string{
			fmt.Sprintf("SO-%05d", 10001+i),
			day0.AddDate(0, 0, rng.IntN(366)).Format("2006-01-02"),
			regions[rng.IntN(len(regions))],
			cat,
			products[rng.IntN(len(products))],
			strconv.Itoa(1 + rng.IntN(9)),
			fmt.Sprintf("%d.%02d", price/100, price%100),
		}
		if rng.IntN(33) == 0 {
			row = spoil(rng, row)
		}
		w.Write(row)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		log.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

// spoil breaks a row in one of the ways real exports break.
func spoil(rng *rand.Rand, row []string) []string {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	switch rng.IntN(6) {
	case 0: // a column lost
		return row[:len(row)-1]
	case 1:
		row[0] = ""
	case 2:
		row[1] = pick("2024-02-30", "someday", "31/12/2024")
	case 3:
		row[5] = pick("three", "0", "-2", "")
	case 4:
		row[6] = pick("12,50", "free", "-3.00", "1.999")
	case 5:
		row[3] = ""
	}
	return row
}
