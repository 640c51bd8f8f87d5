// Package report is a flow run on a cron schedule.
package report

import "context"

// Input selects what the report covers; the schedule runs it with the zero
// value.
//
//qflow:flow report cron="0 * * * *" tz=Europe/Berlin
type Input struct{ Team string }

// Totals are the numbers of a report.
type Totals struct{ Orders int }

//qflow:step flow=report
func Collect(ctx context.Context, in Input) (Totals, error) { return Totals{Orders: len(in.Team)}, nil }

// Batch is a second flow, scheduled every five minutes in UTC, catching up
// on every missed tick.
//
//qflow:flow batch cron="*/5 * * * *" missed=all
type Batch []int

//qflow:step flow=batch
func Sum(ctx context.Context, in Batch) (int, error) { return len(in), nil }
