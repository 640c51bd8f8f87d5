// Package imports uses types from other packages and declares names that
// the generated file's imports would otherwise shadow.
package imports

import (
	"context"
	stdjson "encoding/json"
	"net/netip"
	"time"

	"github.com/google/uuid"
)

// json, fmt and errors are package-level names here: the generated file
// must alias its imports of encoding/json, fmt and errors.
var json = "not the package"

func fmt() {}

type errors struct{}

//qflow:flow sync
type Job struct {
	ID    uuid.UUID
	Since time.Time
}

type Stamp = time.Time

//qflow:step
func Fetch(ctx context.Context, j Job) (map[uuid.UUID][]stdjson.RawMessage, error) { return nil, nil }

//qflow:step depends=Fetch
func Addrs(ctx context.Context, m map[uuid.UUID][]stdjson.RawMessage) ([]netip.Addr, error) {
	return nil, nil
}

//qflow:step depends=Addrs
func Latest(ctx context.Context, addrs []netip.Addr) (*Stamp, error) { return nil, nil }

//qflow:step depends=Fetch,Latest
func Report(ctx context.Context, j Job, m map[uuid.UUID][]stdjson.RawMessage, s *time.Time) (struct {
	N int `json:"n"`
}, error) {
	return struct {
		N int `json:"n"`
	}{len(m)}, nil
}
