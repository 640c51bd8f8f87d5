package p

import "context"

//qflow:flow f
type In struct{ N int }

type Item struct{ ID int }

func HasItems(in In) bool { return in.N > 0 }

// Fetch may be skipped.
//
//qflow:step when=HasItems
func Fetch(ctx context.Context, in In) ([]Item, error) { return nil, nil }

// Score cannot take Fetch's skip: a map step gets one element.
//
//qflow:step depends=Fetch map
func Score(ctx context.Context, it *Item) (int, error) { return 0, nil }

// Always is never skipped, so a pointer element is a plain type mismatch.
//
//qflow:step
func Always(ctx context.Context) ([]Item, error) { return nil, nil }

//qflow:step depends=Always map
func Each(ctx context.Context, it *Item) (int, error) { return 0, nil }

// Lookup may fail without failing the run; a map over its output is
// skipped with it.
//
//qflow:step optional
func Lookup(ctx context.Context) ([]Item, error) { return nil, nil }

//qflow:step depends=Lookup map
func Check(ctx context.Context, it *Item) (bool, error) { return true, nil }
